"""The `[telegram]` section: token, endpoints, admins, the pacing that keeps the bot clear of 429s, and
the optional moderator desk (`[telegram.handoff]`)."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, model_validator

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


class TelegramConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr
    base_url: str = Field("https://api.telegram.org/bot", description="Bot API root; the token is appended")
    base_file_url: str = "https://api.telegram.org/file/bot"
    admins: tuple[int, ...] = Field((), description="Telegram user ids allowed to use /agent")
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
    group_messages_per_minute: float = Field(20.0, gt=0, le=60)
    group_burst: int = Field(15, ge=1, le=60)
    messages_per_second: float = Field(25.0, gt=0, le=30, description="bot-wide, below Telegram's ~30/s")
    bot_burst: int = Field(10, ge=1, le=30)
    max_retry_after: float = Field(
        60.0, ge=0, description="wait out a 429 up to this long before giving up on the request"
    )
    handoff: TelegramDeskConfig | None = Field(None, description="the moderator desk; none unless set")
