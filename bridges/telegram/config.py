"""The `[telegram]` section: token, endpoints, admins, the pacing that keeps the bot clear of 429s, and
the optional moderator desk (`[telegram.handoff]`)."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from bridges.base import PlatformConfig

USERNAME = re.compile(r"@[A-Za-z0-9_]{4,32}")
Username = Annotated[str, StringConstraints(pattern=r"^@[A-Za-z0-9_]{4,32}$")]


class TelegramDeskConfig(BaseModel):
    """Where Telegram moderators take handoffs: a supergroup with topics on, one topic per handoff.

    Without topics the desk still works: requests are posted in the chat and followed up as replies.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    chat_id: int = Field(lt=0, description="the moderators' supergroup (make the bot an admin there)")
    members_are_moderators: bool = Field(
        True, description="every member of chat_id may claim and reply (checked with getChatMember)"
    )
    moderators: tuple[int, ...] = Field((), description="user ids who are moderators besides the members")
    mention: tuple[Username | int, ...] = Field(
        (), description="pinged on each new request and on escalation: @usernames, or user ids"
    )
    log_chat_id: int | None = Field(None, description="where transitions and transcripts are posted")
    log_thread_id: int | None = Field(None, description="a topic of log_chat_id, if it is a forum")
    membership_cache_seconds: float = Field(
        60.0, ge=0, le=3600, description="how long a getChatMember answer is trusted"
    )

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if not self.members_are_moderators and not self.moderators:
            raise ValueError("nobody could take handoffs: set moderators or members_are_moderators = true")
        if self.log_thread_id is not None and self.log_chat_id is None:
            raise ValueError("log_thread_id needs log_chat_id")
        return self


class TelegramConfig(PlatformConfig):
    token: SecretStr
    base_url: str = Field("https://api.telegram.org/bot", description="Bot API root; the token is appended")
    base_file_url: str = "https://api.telegram.org/file/bot"
    admins: tuple[int, ...] = Field((), description="Telegram user ids allowed to use /agent")
    allowed_chats: tuple[int, ...] = Field(
        (), description="if set, only these groups and supergroups (private chats follow allowed_users)"
    )
    allowed_users: tuple[int, ...] = Field(
        (), description="if set, only these user ids (and the admins), in groups and private chats"
    )
    drafts: bool = Field(True, description="stream private-chat replies as native drafts (sendMessageDraft)")
    start_text: str = Field(
        "Hi! Send me a message and the assistant will answer. /reset starts over, /human asks for a person.",
        min_length=1,
        max_length=4096,
    )
    poll_timeout: float = Field(30.0, ge=0, le=50, description="long-poll seconds for getUpdates")
    poll_interval: float = Field(0.0, ge=0, le=10)
    drop_pending_updates: bool = False
    concurrent_updates: int = Field(256, ge=1, description="updates handled at once (different chats)")
    chat_messages_per_second: float = Field(1.0, gt=0, le=30)
    chat_burst: int = Field(2, ge=1, le=10)
    group_messages: int = Field(20, ge=1, le=60, description="Telegram's hard cap per group: messages...")
    group_window_seconds: float = Field(60.0, gt=0, description="...in any this many seconds")
    messages_per_second: float = Field(25.0, gt=0, le=30, description="bot-wide, below Telegram's ~30/s")
    bot_burst: int = Field(10, ge=1, le=30)
    max_retry_after: float = Field(
        60.0, ge=0, description="wait out a 429 up to this long before giving up on the request"
    )
    handoff: TelegramDeskConfig | None = Field(None, description="the moderator desk; none unless set")

    @model_validator(mode="before")
    @classmethod
    def _earlier_group_keys(cls, data: Any) -> Any:
        """Files from earlier releases paced groups with `group_messages_per_minute` (a rate) and
        `group_burst`; both now mean the hard window `group_messages` per 60 s, which is what Telegram
        enforces. The burst has no meaning in a window and is dropped."""
        if isinstance(data, dict) and ("group_messages_per_minute" in data or "group_burst" in data):
            data = dict(data)
            per_minute = data.pop("group_messages_per_minute", None)
            data.pop("group_burst", None)
            if per_minute is not None and "group_messages" not in data:
                data["group_messages"] = max(1, int(float(per_minute)))
                data.setdefault("group_window_seconds", 60.0)
        return data

    webhook_url: str | None = Field(
        None,
        description="receive updates by webhook at this public HTTPS URL instead of polling; a proxy "
        "in front forwards it, path unchanged, to webhook_listen",
    )
    webhook_listen: str = Field("127.0.0.1:8443", description="host:port the webhook server binds")
    webhook_secret: SecretStr | None = Field(
        None,
        description="required with webhook_url: Telegram sends it with every update, and requests "
        "without it are refused (1-256 of A-Z a-z 0-9 _ -)",
    )
    webhook_max_body_bytes: int = Field(
        1 << 20,
        ge=16 << 10,
        le=64 << 20,
        description="a larger request is refused with 413 before it is read (updates are a few KiB)",
    )
    webhook_header_timeout: float = Field(
        5.0, gt=0, le=60, description="seconds a client has to send a request's headers, from its first byte"
    )
    webhook_body_timeout: float = Field(
        10.0, gt=0, le=300, description="seconds a client has to send a request's body, once its headers came"
    )
    webhook_keepalive_timeout: float = Field(
        75.0,
        gt=0,
        le=3600,
        description="seconds an idle connection stays open; above the proxy's own (nginx: 60), so the "
        "proxy never sends on a connection being closed",
    )

    @property
    def webhook_address(self) -> tuple[str, int]:
        """`webhook_listen` split into the host and port to bind."""
        host, _, port = self.webhook_listen.rpartition(":")
        return host.strip("[]"), int(port)

    @field_validator("allowed_chats")
    @classmethod
    def _groups_only(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(chat > 0 for chat in value):
            raise ValueError(
                "lists groups, whose ids are negative (such as -1001234567890); put people in allowed_users"
            )
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url_absolute(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("expected an absolute URL such as https://bot.example.com/telegram")
        return value

    @field_validator("webhook_listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("expected host:port, such as 127.0.0.1:8443 or 0.0.0.0:8443")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _telegram_secret_alphabet(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")  # never echo it
        return value

    @property
    def has_desk(self) -> bool:
        return self.handoff is not None

    max_choice_buttons: ClassVar[int | None] = 100
    """What the Bot API takes in one inline keyboard."""

    def ping_problem(self, entry: str | int) -> str | None:
        if isinstance(entry, int) or USERNAME.fullmatch(entry):
            return None
        return f'{entry[:40]!r} is not a Telegram mention: write "@username" or a user id'

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> Self:
        if self.webhook_url is not None and self.webhook_secret is None:
            raise ValueError("webhook_url needs webhook_secret, or anyone could post updates as Telegram")
        return self
