"""The `[discord]` configuration section: token, endpoints, who may talk to the bot where, rate budgets,
and the optional moderator desk (`[discord.handoff]`)."""

from __future__ import annotations

import re
from typing import ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from bridges.base import PlatformConfig

PING = re.compile(r"(role|user):(\d{1,20})")
"""An intake reason's ping on the Discord desk: a role or a member, by id."""


class DiscordDeskConfig(BaseModel):
    """Where handoffs are shown to moderators on Discord, and who counts as one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: int = Field(description="moderator channel: one notification, and a thread, per handoff")
    moderator_roles: tuple[int, ...] = Field(
        (), description="members with one of these roles may claim and reply (so may Manage Server)"
    )
    ping_role: int | None = Field(None, description="role mentioned on each new request and on escalation")
    log_channel: int | None = Field(
        None, description="gets every transition, and the transcript as a file when a handoff closes"
    )


class DiscordConfig(PlatformConfig):
    token: SecretStr
    upload_limit: int = Field(
        10 * 1024 * 1024,
        ge=1024 * 1024,
        le=500 * 1024 * 1024,
        description="largest file the bot may upload: 10 MiB, more on boosted servers",
    )
    api_base: str = Field("https://discord.com/api/v10", description="REST base URL, up to and with /vN")
    gateway_url: str | None = Field(
        None, description="gateway WebSocket URL; unset, the one Discord names in GET /gateway/bot"
    )
    shard_count: int | None = Field(
        None, ge=1, description="shard the gateway connection this many ways (AutoShardedBot)"
    )
    shard_ids: tuple[int, ...] = Field(
        (),
        description="the shards this process runs, each below shard_count; empty runs all of them. "
        "Split them across processes that share one database.",
    )

    dms: bool = Field(True, description="answer direct messages")
    message_content_intent: bool = Field(
        False,
        description="ask for the privileged Message Content intent (enable it in the Developer Portal too); "
        "needed for replies that do not ping the bot and for follow-ups in its threads without a mention. "
        "Mentions, DMs, slash commands and buttons work without it.",
    )
    members_intent: bool = Field(
        False,
        description="ask for the privileged Server Members intent (enable it in the Developer Portal too), "
        "so a user's open handoff closes when they leave a server the bot is in",
    )
    threads: bool = Field(
        False, description="answer a mention in a new thread, one per conversation, instead of in the channel"
    )
    thread_name: str = Field("Chat with {user}", min_length=1, max_length=90)

    allowed_channels: tuple[int, ...] = Field(
        (), description="if set, only these channels (or threads in them)"
    )
    denied_channels: tuple[int, ...] = ()
    allowed_roles: tuple[int, ...] = Field((), description="if set, only members with one of these roles")
    denied_roles: tuple[int, ...] = ()

    sync_commands: bool = Field(True, description="register the slash commands with Discord at start")
    command_guilds: tuple[int, ...] = Field(
        (), description="register commands in these servers only (instant); empty registers them globally"
    )

    global_requests_per_second: int = Field(50, ge=2, description="Discord's bot-wide request limit")
    channel_messages: int = Field(5, ge=2, description="Discord's message bucket: requests per window")
    channel_window_seconds: float = Field(5.0, gt=0, description="...per channel, in this many seconds")
    guild_ready_timeout: float = Field(
        2.0, ge=0, le=60, description="seconds to wait for server data at start before answering"
    )
    handoff: DiscordDeskConfig | None = Field(None, description="the moderator desk; none if unset")

    @property
    def has_desk(self) -> bool:
        return self.handoff is not None

    max_choice_buttons: ClassVar[int | None] = 25
    """Five action rows of five buttons (bridges/discord/views.py shows no more)."""

    def ping_problem(self, entry: str | int) -> str | None:
        if isinstance(entry, str) and PING.fullmatch(entry):
            return None
        return f'{str(entry)[:40]!r} is not a Discord ping: write "role:ID" or "user:ID"'

    @property
    def unaddressed_text_hint(self) -> str | None:
        if self.message_content_intent:
            return None
        return (
            "this rule needs the text of messages that do not mention the bot: set "
            "discord.message_content_intent = true (and enable it in the Developer Portal)"
        )

    @model_validator(mode="after")
    def _desk_can_read_replies(self) -> Self:
        if self.handoff is not None and not self.message_content_intent:
            raise ValueError(
                "handoff needs message_content_intent = true: without it Discord hides what moderators "
                "write in handoff threads"
            )
        return self

    @model_validator(mode="after")
    def _shards_within_count(self) -> Self:
        if self.shard_ids and self.shard_count is None:
            raise ValueError("shard_ids needs shard_count: the total number of shards across processes")
        if self.shard_count is not None and any(not 0 <= i < self.shard_count for i in self.shard_ids):
            raise ValueError(f"shard_ids must lie in 0..{self.shard_count - 1} (shard_count - 1)")
        if len(set(self.shard_ids)) != len(self.shard_ids):
            raise ValueError("shard_ids lists a shard twice")
        return self

    @field_validator("thread_name")
    @classmethod
    def _only_user_placeholder(cls, value: str) -> str:
        try:
            value.format(user="someone")
        except (KeyError, IndexError, ValueError):
            raise ValueError("may only use the placeholder {user}") from None
        return value

    @field_validator("api_base")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("api_base", "gateway_url")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError("expected an absolute URL such as https://discord.com/api/v10")
        return value
