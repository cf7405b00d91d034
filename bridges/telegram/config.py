"""The `[telegram]` section: token, endpoints, admins, and the pacing that keeps the bot clear of 429s."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


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
