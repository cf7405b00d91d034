"""Discord as a `Surface`: a channel or thread (plain messages) or a slash command (interaction webhook).

Every request carries `allowed_mentions` with nothing allowed, so text an agent writes (`@everyone`, a
role or user mention) is shown but never notifies anyone. Requests spend from shared budgets, one per
bot and one per channel and route, sized so that Discord's fixed-window buckets are never exceeded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord

from agents.base import Attachment, Button, Media
from bridges.budget import RateBudget, WindowBudget
from bridges.controls import Control
from bridges.discord.config import DiscordConfig
from bridges.discord.files import upload
from bridges.discord.views import ButtonViews
from bridges.split import utf16_length
from bridges.surface import Surface, SurfaceError

NO_PINGS = discord.AllowedMentions.none()
MAX_LENGTH = 2000
MAX_TRACKED_CHANNELS = 10_000


LATENCY_ALLOWANCE = 0.1
"""Seconds a request may take from taking its token to reaching Discord (a button store write, the
network); each window is this much longer than Discord's to absorb it."""


@dataclass(frozen=True)
class ChannelRoutes:
    """The budgets of one channel, one per Discord route: posting, editing and typing are separate
    rate-limit buckets (each reports its own `X-RateLimit-Bucket`), so an edit never waits for a post's
    slot and typing never costs text a slot. Each tuple ends with the bot-wide budget."""

    posts: tuple[RateBudget, ...]
    edits: tuple[RateBudget, ...]
    typing: tuple[RateBudget, ...]


class Budgets:
    """The shared budgets: one for the whole bot, and per channel (a thread is a channel of its own) one
    per route, each allowing Discord's whole bucket, `channel_messages` per window."""

    def __init__(self, config: DiscordConfig) -> None:
        # Bot-wide, an even pace (at most `limit` in any window even when requests reach Discord up to
        # LATENCY_ALLOWANCE late) rather than the whole bucket at once: with hundreds of replies in
        # flight, a burst of 50 can take longer than the allowance to get through the event loop.
        limit = config.global_requests_per_second
        self.bot = RateBudget(limit - 1, per=1.0 + LATENCY_ALLOWANCE, burst=1)
        self._window = (config.channel_messages, config.channel_window_seconds + LATENCY_ALLOWANCE)
        self._channels: dict[int, ChannelRoutes] = {}

    def routes(self, channel_id: int) -> ChannelRoutes:
        """The channel's budgets come first: requests wait there longest, and the bot-wide token taken
        last is spent at once, so the bot's pace is what Discord sees."""
        routes = self._channels.get(channel_id)
        if routes is None:
            if len(self._channels) >= MAX_TRACKED_CHANNELS:  # forget channels that are quiet again
                self._channels = {k: r for k, r in self._channels.items() if not _quiet(r)}
            routes = self._channels[channel_id] = ChannelRoutes(
                *((WindowBudget(*self._window), self.bot) for _ in range(3))
            )
        return routes

    def for_channel(self, channel_id: int) -> tuple[RateBudget, ...]:
        """What a new message in the channel spends from."""
        return self.routes(channel_id).posts


def _quiet(routes: ChannelRoutes) -> bool:
    return all(budgets[0].full() for budgets in (routes.posts, routes.edits, routes.typing))


@asynccontextmanager
async def surface_errors() -> AsyncIterator[None]:
    """Turn discord.py and network failures into `SurfaceError`; a 4xx other than 429 is permanent."""
    try:
        yield
    except discord.HTTPException as exc:
        permanent = 400 <= exc.status < 500 and exc.status != 429
        raise SurfaceError(f"discord {exc.status} (code {exc.code})", permanent=permanent) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SurfaceError(f"discord unreachable: {type(exc).__name__}") from exc


class DiscordSurface(ABC):
    """What channel and interaction surfaces share: limits, budgets, buttons, embeds, error mapping."""

    max_length = MAX_LENGTH
    control_buttons = frozenset(Control)

    async def final_id(self, message_id: str) -> str:
        return message_id

    def __init__(
        self, *, edit_interval: float, routes: ChannelRoutes, views: ButtonViews, max_upload: int
    ) -> None:
        self.edit_interval = edit_interval
        self.max_upload = max_upload
        self.budgets: Sequence[RateBudget] = routes.posts
        self.edit_budgets: Sequence[RateBudget] = routes.edits
        self.typing_budgets: Sequence[RateBudget] = routes.typing
        self._views = views
        self.posted = False
        """Whether anything was shown yet (a slash command must not be left "thinking")."""

    @staticmethod
    def measure(text: str) -> int:
        """UTF-16 units: never less than what Discord counts, so a chunk that fits here fits there."""
        return utf16_length(text)

    async def send(self, text: str, buttons: Sequence[Button] = ()) -> str:
        view = await self._views.build(buttons)
        async with surface_errors():
            message_id = await self._post(content=text, **({"view": view} if view else {}))
        self.posted = True
        return str(message_id)

    async def edit(
        self, message_id: str, text: str, buttons: Sequence[Button] = (), *, final: bool = False
    ) -> None:
        view = await self._views.build(buttons)
        async with surface_errors():
            await self._patch(int(message_id), content=text, view=view)

    async def send_media(self, media: Media) -> str:
        embed = discord.Embed(description=media.caption or None)
        if media.kind == "image":
            embed.set_image(url=media.url)
        else:
            embed.title, embed.url = media.caption or f"{media.kind.title()} attachment", media.url
            embed.description = None
        async with surface_errors():
            message_id = await self._post(embed=embed)
        self.posted = True
        return str(message_id)

    async def send_file(self, file: Attachment, caption: str = "") -> str:
        async with surface_errors():
            message_id = await self._post(content=caption or None, files=[upload(file)])
        self.posted = True
        return str(message_id)

    @abstractmethod
    async def _post(self, **fields: Any) -> int: ...

    @abstractmethod
    async def _patch(self, message_id: int, **fields: Any) -> None: ...


class ChannelSurface(DiscordSurface):
    """A DM, channel or thread. The first message of a reply can answer (without pinging) the user's."""

    def __init__(
        self,
        channel: discord.abc.Messageable,
        *,
        reply_to: int | None = None,
        edit_interval: float,
        routes: ChannelRoutes,
        views: ButtonViews,
        max_upload: int,
    ) -> None:
        super().__init__(edit_interval=edit_interval, routes=routes, views=views, max_upload=max_upload)
        self.channel = channel
        self._reply_to = reply_to

    async def typing(self) -> None:
        async with surface_errors():
            await self.channel.typing()

    async def _post(self, **fields: Any) -> int:
        if self._reply_to is not None:
            original = self.channel.get_partial_message(self._reply_to)  # type: ignore[attr-defined]
            fields["reference"] = original.to_reference(fail_if_not_exists=False)
            self._reply_to = None
        message = await self.channel.send(allowed_mentions=NO_PINGS, **fields)
        return message.id

    async def _patch(self, message_id: int, **fields: Any) -> None:
        message = self.channel.get_partial_message(message_id)  # type: ignore[attr-defined]
        await message.edit(allowed_mentions=NO_PINGS, **fields)


class InteractionSurface(DiscordSurface):
    """The answer to a slash command: the deferred ("thinking") response first, then follow-ups."""

    def __init__(
        self,
        interaction: discord.Interaction[Any],
        *,
        edit_interval: float,
        routes: ChannelRoutes,
        views: ButtonViews,
        max_upload: int,
    ) -> None:
        super().__init__(edit_interval=edit_interval, routes=routes, views=views, max_upload=max_upload)
        self.interaction = interaction

    async def typing(self) -> None:
        return None  # the deferred response already shows "thinking"

    async def _post(self, **fields: Any) -> int:
        if "embed" in fields:
            fields["embeds"] = [fields.pop("embed")]
        if not self.posted:
            if "files" in fields:  # the original response takes files as its attachments
                fields["attachments"] = fields.pop("files")
            original = await self.interaction.edit_original_response(allowed_mentions=NO_PINGS, **fields)
            return original.id
        followup = await self.interaction.followup.send(wait=True, allowed_mentions=NO_PINGS, **fields)
        return followup.id

    async def _patch(self, message_id: int, **fields: Any) -> None:
        await self.interaction.followup.edit_message(message_id, allowed_mentions=NO_PINGS, **fields)


class Surfaces:
    """Builds surfaces that share this bot's budgets and button views; also the bridge's SurfaceFactory."""

    def __init__(
        self, client: discord.Client, config: DiscordConfig, edit_interval: float, views: ButtonViews
    ) -> None:
        self._client = client
        self.budgets = Budgets(config)
        self.edit_interval = edit_interval
        self.views = views
        self.max_upload = config.upload_limit

    def channel(self, channel_id: int, *, reply_to: int | None = None) -> ChannelSurface:
        return ChannelSurface(
            self._client.get_partial_messageable(channel_id),
            reply_to=reply_to,
            edit_interval=self.edit_interval,
            routes=self.budgets.routes(channel_id),
            views=self.views,
            max_upload=self.max_upload,
        )

    def interaction(self, interaction: discord.Interaction[Any]) -> InteractionSurface:
        return InteractionSurface(
            interaction,
            edit_interval=self.edit_interval,
            routes=self.budgets.routes(interaction.channel_id or 0),
            views=self.views,
            max_upload=self.max_upload,
        )

    def for_place(self, platform: str, chat_id: str, thread_id: str) -> Surface | None:
        """`SurfaceFactory`: reach a Discord conversation outside of a reply (handoff, recovery)."""
        if platform != "discord":
            return None
        return self.channel(int(thread_id or chat_id))
