"""What the fake Telegram remembers: users, chats, messages with their edit history, drafts, requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FakeUser:
    id: int
    first_name: str
    username: str | None = None
    is_bot: bool = False
    language_code: str | None = None
    """The IETF tag of the user's app language, sent with users only (Bot API `User`)."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.username:
            data["username"] = self.username
        if self.language_code and not self.is_bot:
            data["language_code"] = self.language_code
        return data


ANONYMOUS_ADMIN = FakeUser(1087968824, "Group", "GroupAnonymousBot", is_bot=True)
"""The `from` of a message a group's anonymous admin posts (Bot API: `sender_chat` is the group)."""
CHANNEL_BOT = FakeUser(136817688, "Channel", "Channel_Bot", is_bot=True)
"""The `from` of a message posted in a group on behalf of a channel."""


@dataclass(frozen=True)
class FakeChat:
    id: int
    type: str
    """"private", "group" or "supergroup"."""
    title: str = ""
    is_forum: bool = False

    @property
    def is_group(self) -> bool:
        return self.type in ("group", "supergroup")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.is_group:
            data["title"] = self.title
        else:
            data["first_name"] = self.title
        if self.is_forum:
            data["is_forum"] = True
        return data


@dataclass(frozen=True)
class FakeDocument:
    """A sent document: an upload (`content`, as the multipart body carried it) or a URL / file_id."""

    file_name: str
    mime_type: str = ""
    content: bytes | None = None
    url: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "file_id": self.url or f"doc-{hash(self.content)}",
            "file_unique_id": str(abs(hash((self.file_name, self.content, self.url)))),
            "file_name": self.file_name,
        }
        if self.mime_type:
            data["mime_type"] = self.mime_type
        if self.content is not None:
            data["file_size"] = len(self.content)
        return data


@dataclass
class FakeMessage:
    chat: FakeChat
    message_id: int
    sender: FakeUser
    text: str
    date: int
    entities: list[dict[str, Any]] = field(default_factory=list)
    reply_markup: dict[str, Any] | None = None
    thread_id: int | None = None
    reply_to: FakeMessage | None = None
    photo: str | None = None
    """The photo's URL for a photo message; `text` then holds the caption."""
    document: FakeDocument | None = None
    """A document message's file; `text` then holds the caption."""
    file: tuple[str, Any] | None = None
    """A user's file as the Bot API shows it: (field, JSON), such as ("voice", {...}) or ("photo", [...]);
    `text` then holds the caption."""
    forum_topic_created: dict[str, Any] | None = None
    """Set on the service message that opens a forum topic (its id is the topic's thread id)."""
    sender_chat: FakeChat | None = None
    """Set when posted on behalf of a chat (a channel, or a group's anonymous admin); `sender` is then
    Telegram's placeholder user, the same for everyone who posts that way."""
    history: list[str] = field(default_factory=list)
    """Every text the message has shown, the first one included."""
    forwarded_from: FakeUser | str | None = None
    """A forward: of this user's message, or (a name) of a user who hides their account in forwards."""

    def __post_init__(self) -> None:
        if not self.history:
            self.history.append(self.text)

    @property
    def edits(self) -> int:
        return len(self.history) - 1

    @property
    def has_media(self) -> bool:
        return bool(self.photo or self.document or self.file)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "message_id": self.message_id,
            "date": self.date,
            "chat": self.chat.to_json(),
            "from": self.sender.to_json(),
        }
        if self.sender_chat is not None:
            data["sender_chat"] = self.sender_chat.to_json()
        text_key, entities_key = ("caption", "caption_entities") if self.has_media else ("text", "entities")
        if self.text:
            data[text_key] = self.text
        if self.entities:
            data[entities_key] = self.entities
        if self.photo:
            data["photo"] = [
                {"file_id": self.photo, "file_unique_id": str(hash(self.photo)), "width": 1, "height": 1}
            ]
        if self.document:
            data["document"] = self.document.to_json()
        if self.file is not None:
            data[self.file[0]] = self.file[1]
        if self.forum_topic_created is not None:
            data["forum_topic_created"] = self.forum_topic_created
        if self.reply_markup and "inline_keyboard" in self.reply_markup:  # a ForceReply is not shown back
            data["reply_markup"] = self.reply_markup
        if self.thread_id is not None:
            data["message_thread_id"] = self.thread_id
            data["is_topic_message"] = True
        if self.reply_to is not None:
            data["reply_to_message"] = self.reply_to.to_json()
        if isinstance(self.forwarded_from, FakeUser):
            data["forward_origin"] = {
                "type": "user",
                "date": self.date,
                "sender_user": self.forwarded_from.to_json(),
            }
        elif self.forwarded_from is not None:
            data["forward_origin"] = {
                "type": "hidden_user",
                "date": self.date,
                "sender_user_name": self.forwarded_from,
            }
        return data


@dataclass
class FakeDraft:
    chat_id: int
    draft_id: int
    thread_id: int | None
    history: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RequestRecord:
    method: str
    params: dict[str, Any]
    status: int
    description: str = ""
