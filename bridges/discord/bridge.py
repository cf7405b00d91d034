"""The Discord bridge as one object bot.py can start and close beside the other bridges."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
import discord
import yarl
from discord.ext import commands

from bridges.base import BridgeStartError, finish_in_flight, never
from bridges.buttons import ButtonStore, DatabaseButtonStore
from bridges.discord.cog import PLATFORM, SwitchboardCog, track_current
from bridges.discord.command_words import CatalogueTranslator
from bridges.discord.config import DiscordConfig
from bridges.discord.desk import DiscordDesk
from bridges.discord.desk_commands import DeskCommands
from bridges.discord.surface import NO_PINGS, Surfaces
from bridges.discord.takeover_commands import TakeoverCommands
from bridges.discord.usage import UsageCommand
from bridges.discord.views import HANDOFF_EVENT, ButtonViews, ChoiceButton, ControlButton, HandoffButton
from bridges.relay import Relay
from bridges.surface import Surface
from bridges.takeover import Takeovers
from models import Conversation
from ops import metrics

log = logging.getLogger(__name__)


class _CountRateLimits(logging.Filter):
    """discord.py waits out a 429 itself and only logs it; the metric counts those log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("We are being rate limited."):
            metrics.PLATFORM_RATE_LIMITED.labels("discord").inc()
        return True


def _count_rate_limits() -> None:
    http_log = logging.getLogger("discord.http")
    if not any(isinstance(f, _CountRateLimits) for f in http_log.filters):
        http_log.addFilter(_CountRateLimits())
    if http_log.getEffectiveLevel() > logging.WARNING:  # the record must be made to be counted
        http_log.setLevel(logging.WARNING)


class ShardedBot(commands.AutoShardedBot, commands.Bot):
    """An AutoShardedBot that is also a `commands.Bot` to the type checker, so the cog and surfaces take
    either; both bases add nothing at run time, so it behaves exactly as AutoShardedBot."""


class DiscordBridge:
    platform = "discord"

    def __init__(self, config: DiscordConfig, relay: Relay, *, buttons: ButtonStore | None = None) -> None:
        self.config = config
        self.relay = relay
        _count_rate_limits()
        # A text bot: discord.py's warnings that voice libraries are missing only alarm operators.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        intents = discord.Intents.none()
        intents.guilds = intents.guild_messages = intents.dm_messages = True
        intents.message_content = config.message_content_intent
        intents.members = config.members_intent
        options: dict[str, Any] = {
            "command_prefix": (),  # no text commands: slash commands only, so no message parses as one
            "help_command": None,
            "intents": intents,
            "allowed_mentions": NO_PINGS,
            "guild_ready_timeout": config.guild_ready_timeout,
        }
        if config.shard_count is None:
            self.bot = commands.Bot(**options)
        else:  # shard_ids None runs every shard in this process
            sharding: dict[str, Any] = {
                "shard_count": config.shard_count,
                "shard_ids": list(config.shard_ids) or None,
            }
            self.bot = ShardedBot(**options, **sharding)
        views = ButtonViews(buttons or DatabaseButtonStore(relay.db))
        self.surfaces = Surfaces(self.bot, config, config.edit_interval, views)
        self.cog = SwitchboardCog(self.bot, relay, config, self.surfaces)
        self.desk = (
            DiscordDesk(
                self.bot,
                config.handoff,
                relay.handoffs,
                self.surfaces.budgets,
                self.cog.in_flight,
                upload_limit=config.upload_limit,
            )
            if config.handoff is not None
            else None
        )
        """The moderator desk, if `[discord.handoff]` is configured; add it to the HandoffService's
        desks once the bridge has started."""
        self._connection: asyncio.Task[None] | None = None

    async def finished(self) -> None:
        await never()  # serves until closed; a lost gateway shows in `healthy`

    def healthy(self) -> bool:
        connected = self._connection is not None and not self._connection.done()
        return connected and self.bot.is_ready() and not self.bot.is_closed()

    def surface_for(self, platform: str, chat_id: str, thread_id: str) -> Surface | None:
        """A `SurfaceFactory` for handoff notices and crash recovery."""
        return self.surfaces.for_place(platform, chat_id, thread_id)

    def jump_link(self, conversation: Conversation) -> str | None:
        """A `JumpLink`: the server channel or thread of a Discord user's conversation. None for a DM,
        which no moderator could open, and for other platforms' conversations."""
        if conversation.platform != self.platform:
            return None
        channel = self.bot.get_channel(int(conversation.chat_id))  # a thread's chat is its parent
        guild = getattr(channel, "guild", None)
        if guild is None:
            return None
        return f"https://discord.com/channels/{guild.id}/{conversation.thread_id or conversation.chat_id}"

    async def start(self) -> None:
        """Log in, register the slash commands, connect, and return once Discord says the bot is ready."""
        # discord.py reads both endpoints from class attributes: one Discord bot per process.
        discord.http.Route.BASE = self.config.api_base
        await self.bot.add_cog(self.cog)
        await self.bot.add_cog(UsageCommand(self.relay))
        self.bot.add_dynamic_items(ChoiceButton, ControlButton)
        self.bot.add_listener(self._member_left, "on_raw_member_remove")
        if self.desk is not None:
            await self.bot.add_cog(DeskCommands(self.desk, self.cog.may_moderate, self.cog.in_flight))
            await self.bot.add_cog(TakeoverCommands(self.cog, Takeovers(self.relay)))
            self.bot.add_dynamic_items(HandoffButton)
            self.bot.add_listener(self.desk.on_handoff_press, f"on_{HANDOFF_EVENT}")
            self.bot.add_listener(self.desk.on_message)
            self.bot.add_listener(self.desk.on_raw_message_edit)
            self.bot.add_listener(self.desk.on_raw_message_delete)
        try:
            await self.bot.login(self.config.token.get_secret_value())
        except discord.LoginFailure:
            await self.bot.close()
            raise BridgeStartError("discord: the bot token was rejected; check [discord] token") from None
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            await self.bot.close()
            raise BridgeStartError(
                f"discord: could not reach the API at {self.config.api_base} ({type(exc).__name__})"
            ) from None
        await self._choose_gateway()
        if self.config.sync_commands:
            await self._sync_commands()
        for _ in range(self._startup_requests()):  # paid after the fact: they count towards Discord's
            await self.surfaces.budgets.bot.acquire()  # global limit, and paying late never overspends
        self._connection = asyncio.create_task(self.bot.connect(reconnect=True), name="discord-gateway")
        ready = asyncio.create_task(self.bot.wait_until_ready(), name="discord-ready")
        await asyncio.wait({self._connection, ready}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            await self.close()
            raise BridgeStartError(f"discord: could not connect to the gateway ({self._failure()})")
        log.info("discord: connected as %s (%s)", self.bot.user, self.bot.user and self.bot.user.id)

    async def _member_left(self, payload: discord.RawMemberRemoveEvent) -> None:
        """A user who left a server the bot is in (Discord says so only with `members_intent`) no
        longer reads its answers: their open case closes, whichever desk serves it."""
        track_current(self.cog.in_flight)
        try:
            await self.relay.handoffs.cases.user_gone(
                PLATFORM,
                str(payload.user.id),
                "left the server",
                where=lambda chat: self._gone_from(chat, payload.guild_id, payload.user.id),
            )
        except Exception:
            log.exception("discord: could not close the case of a user who left")

    def _gone_from(self, chat_id: str, guild_id: int, user_id: int) -> bool:
        """Whether a user who left server `guild_id` can no longer be in the conversation in `chat_id`:
        a channel of that server; or a DM, once they share no server with the bot any more (Discord lets
        bots write only to users they share a server with). Leaving another server closes nothing."""
        channel = self.bot.get_channel(int(chat_id)) if chat_id.isdigit() else None
        guild = getattr(channel, "guild", None)
        if guild is not None:
            return bool(guild.id == guild_id)
        user = self.bot.get_user(user_id)
        return user is None or not [g for g in user.mutual_guilds if g.id != guild_id]

    async def _choose_gateway(self) -> None:
        """Connect where GET /gateway/bot says, unless `gateway_url` overrides it. discord.py asks only
        when it also picks the shard count, so with a fixed count (or none) the bridge asks itself."""
        url = self.config.gateway_url
        if url is None:
            try:
                recommended, url, _ = await self.bot.http.get_bot_gateway()
            except (discord.GatewayNotFound, aiohttp.ClientError, OSError) as exc:
                await self.bot.close()
                raise BridgeStartError(
                    f"discord: GET /gateway/bot failed ({type(exc).__name__}); set [discord] gateway_url "
                    "to connect without it"
                ) from None
            if recommended > (self.config.shard_count or 1):
                log.warning(
                    "discord: Discord recommends %d shards for this bot; set [discord] shard_count",
                    recommended,
                )
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
        if self.config.shard_count is not None:
            log.info(
                "discord: running shards %s of %d",
                list(self.config.shard_ids) or "all",
                self.config.shard_count,
            )

    def _startup_requests(self) -> int:
        """Log-in (user and application), GET /gateway/bot unless the gateway is configured, plus one
        command registration per scope."""
        gateway = 1 if self.config.gateway_url is None else 0
        return 2 + gateway + (len(self.config.command_guilds) or 1 if self.config.sync_commands else 0)

    async def _sync_commands(self) -> None:
        tree = self.bot.tree
        await tree.set_translator(CatalogueTranslator(self.relay.catalogue))  # each client's language
        if not self.config.command_guilds:
            await tree.sync()
            return
        for guild_id in self.config.command_guilds:
            guild = discord.Object(id=guild_id)
            tree.copy_global_to(guild=guild)
            await tree.sync(guild=guild)

    def _failure(self) -> str:
        if self._connection is None or not self._connection.done() or self._connection.cancelled():
            return "closed"
        error = self._connection.exception()
        if isinstance(error, discord.PrivilegedIntentsRequired):
            return (
                "enable the privileged intents asked for (Message Content, and Server Members with "
                "members_intent) in the Developer Portal, or turn them off in config"
            )
        return type(error).__name__ if error else "closed"

    async def close(self, grace: float = 20.0) -> None:
        """Take no new messages, let replies in progress finish within `grace` seconds, then disconnect.

        A reply cut off here stays marked as pending and is reported to its user on the next start.
        """
        self.cog.accepting = False
        await finish_in_flight(self.platform, self.cog.in_flight, grace)
        await self.bot.close()
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection
