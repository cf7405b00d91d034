"""Discord as a `Surface`: a channel or thread (plain messages) or a slash command (interaction webhook).

Every request carries `allowed_mentions` with nothing allowed, so text an agent writes (`@everyone`, a
role or user mention) is shown but never notifies anyone. Requests spend from shared budgets, one per
bot and one per channel, sized so that Discord's fixed-window buckets are never exceeded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import discord

from agents.base import Attachment, Button, Media
from bridges.budget import RateBudget
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
network); the budget spreads tokens over this much more than Discord's window to absorb it."""


def fixed_window_budget(limit: int, window: float) -> RateBudget:
    """A token bucket that never puts more than `limit` requests into any Discord bucket window.

    Discord resets a bucket `window` seconds after the window's first request. A bucket that starts with
    one token and earns `limit - 1` per window can spend at most 1 + (limit - 1) = `limit` in any window,
    even when requests arrive up to `LATENCY_ALLOWANCE` later than they took their tokens.
    """
    return RateBudget(limit - 1, per=window + LATENCY_ALLOWANCE, burst=1)


class Budgets:
    """The shared budgets: one for the whole bot, one per channel (a thread is a channel of its own)."""

    def __init__(self, config: DiscordConfig) -> None:
        self.bot = fixed_window_budget(config.global_requests_per_second, 1.0)
        self._channel_limit = (config.channel_messages, config.channel_window_seconds)
        self._channels: dict[int, RateBudget] = {}

    def for_channel(self, channel_id: int) -> tuple[RateBudget, RateBudget]:
        """The channel first: requests wait there longest, and the bot-wide token taken last is spent
        at once, so the bot's pace is what Discord sees."""
        budget = self._channels.get(channel_id)
        if budget is None:
            if len(self._channels) >= MAX_TRACKED_CHANNELS:  # forget channels that are quiet again
                self._channels = {k: b for k, b in self._channels.items() if not b.full()}
            budget = self._channels[channel_id] = fixed_window_budget(*self._channel_limit)
        return budget, self.bot


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

    def __init__(
        self,
        *,
        edit_interval: float,
        budgets: Sequence[RateBudget],
        views: ButtonViews,
        max_upload: int,
    ) -> None:
        self.edit_interval = edit_interval
        self.max_upload = max_upload
        self.budgets = budgets
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

    async def edit(self, message_id: str, text: str, buttons: Sequence[Button] = ()) -> None:
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
        budgets: Sequence[RateBudget],
        views: ButtonViews,
        max_upload: int,
    ) -> None:
        super().__init__(edit_interval=edit_interval, budgets=budgets, views=views, max_upload=max_upload)
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
        budgets: Sequence[RateBudget],
        views: ButtonViews,
        max_upload: int,
    ) -> None:
        super().__init__(edit_interval=edit_interval, budgets=budgets, views=views, max_upload=max_upload)
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
            budgets=self.budgets.for_channel(channel_id),
            views=self.views,
            max_upload=self.max_upload,
        )

    def interaction(self, interaction: discord.Interaction[Any]) -> InteractionSurface:
        return InteractionSurface(
            interaction,
            edit_interval=self.edit_interval,
            budgets=self.budgets.for_channel(interaction.channel_id or 0),
            views=self.views,
            max_upload=self.max_upload,
        )

    def for_place(self, platform: str, chat_id: str, thread_id: str) -> Surface | None:
        """`SurfaceFactory`: reach a Discord conversation outside of a reply (handoff, recovery)."""
        if platform != "discord":
            return None
        return self.channel(int(thread_id or chat_id))
