"""The Discord desk's `/takeover` and `/contact`, and the "Take over conversation" message menu.

Only the desk's moderators, in the desk's server (the same check as `/block`); anyone else is answered
privately, and so is the moderator. `/takeover` names a Discord user, or any platform's user by id (as a
notification shows them); the message menu names the author of a message in a channel or thread the bot
serves, and so that conversation. `/contact` writes to a Discord user in a direct message, which Discord
refuses when they do not accept messages from the server's members: the moderator is told so.
The work is done by `bridges.takeover.Takeovers`, shared with the Telegram desk.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands
from discord.utils import escape_markdown

from bridges.budget import acquire_all
from bridges.cases import DeskWords
from bridges.catalogue import Strings
from bridges.discord.cog import (
    CHANNEL_SCOPE,
    PLATFORM,
    PLATFORM_CHOICES,
    WHOM,
    SwitchboardCog,
    _place,
    track_current,
)
from bridges.discord.surface import NO_PINGS
from bridges.moderation import Moderator, Target
from bridges.surface import Inbound, SurfaceError
from bridges.takeover import Takeovers

log = logging.getLogger(__name__)

CANNOT_MESSAGE_USER = 50007
"""Discord's "Cannot send messages to this user": they accept no direct messages from the bot."""


class TakeoverReplies(Strings, key="discord.takeover"):
    """What only the Discord side of /takeover and /contact says."""

    takeover_usage = (
        "Say whom: pick a `user`, or give both `platform` and `user_id` (as shown on a handoff "
        "notification), or use it alone in a case's thread. Or use **Take over conversation** on one of "
        "their messages."
    )
    not_a_user = "That message is not from a user the assistant talks to."
    dms_closed = (
        "Discord would not deliver a direct message to {user}: they do not accept messages from this "
        "server's members (or share no server with the bot). Nothing was opened."
    )
    unreachable = "Discord refused the message to {user} ({detail}). Nothing was opened."


class TakeoverCommands(commands.Cog, name="Takeover"):
    """Registered by the bridge only when `[discord.handoff]` is configured."""

    def __init__(self, cog: SwitchboardCog, takeovers: Takeovers) -> None:
        self.bot = cog.bot
        self.cog = cog
        """The main cog: who may moderate (`may_moderate`), whom options name (`target_of`), the
        surfaces, and the handlers in flight, which a shutdown lets finish."""
        self.takeovers = takeovers
        self.menu = app_commands.ContextMenu(name="Take over conversation", callback=self.take_over_message)
        self.menu.guild_only = True

    @property
    def words(self) -> TakeoverReplies:
        """What moderators are answered, in the desks' language."""
        return self.takeovers.handoffs.catalogue.desk(TakeoverReplies)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @app_commands.command(name="takeover", description="Take over a user's conversation with the assistant")
    @app_commands.describe(**WHOM)
    @app_commands.choices(platform=PLATFORM_CHOICES)
    @app_commands.guild_only()
    async def takeover(
        self,
        interaction: discord.Interaction[Any],
        user: discord.User | None = None,
        platform: str | None = None,
        user_id: str | None = None,
    ) -> None:
        async def work(moderator: Moderator) -> str:
            target = await self.cog.target_of(interaction, user, platform, user_id)
            if target is None:
                return self.words.takeover_usage
            return await self.takeovers.take_over(moderator, target)

        await self._privately(interaction, work)

    async def take_over_message(
        self, interaction: discord.Interaction[Any], message: discord.Message
    ) -> None:
        """The message menu: the author's conversation where the message was written (a thread the bot
        opened on it is that conversation too)."""

        async def work(moderator: Moderator) -> str:
            if message.author.bot or message.webhook_id is not None:
                return self.words.not_a_user
            target = Target(PLATFORM, str(message.author.id), message.author.display_name)
            chat, thread = _place(message.channel)
            places = [(chat, thread)] if thread else [(chat, ""), (chat, str(message.id))]
            return await self.takeovers.take_over(moderator, target, places)

        await self._privately(interaction, work)

    @app_commands.command(name="contact", description="Open a conversation with a user in a direct message")
    @app_commands.describe(user="The Discord user to write to")
    @app_commands.guild_only()
    async def contact(self, interaction: discord.Interaction[Any], user: discord.User) -> None:
        async def work(moderator: Moderator) -> str:
            if user.bot:
                return self.words.not_a_user
            target = Target(PLATFORM, str(user.id), user.display_name)
            try:
                dm = await user.create_dm()
            except discord.HTTPException as exc:
                return _refused(user, exc, self.words)
            private = Inbound(
                PLATFORM,
                str(dm.id),
                str(user.id),
                user.display_name,
                "",
                is_dm=True,
                binding_scopes=((CHANNEL_SCOPE, str(dm.id)),),
            )
            return await self.takeovers.contact(moderator, target, private, self._greeter(user, dm.id))

        await self._privately(interaction, work)

    def _greeter(self, user: discord.User, channel_id: int) -> Callable[[str], Awaitable[str | None]]:
        surface = self.cog.surfaces.channel(channel_id)

        async def greet(text: str) -> str | None:
            await acquire_all(surface.budgets)
            try:
                await surface.send(text)
            except SurfaceError as exc:
                cause = exc.__cause__
                if isinstance(cause, discord.HTTPException):
                    return _refused(user, cause, self.words)
                return self.words.unreachable.format(user=escape_markdown(user.display_name), detail=exc)
            return None

        return greet

    async def _privately(
        self, interaction: discord.Interaction[Any], work: Callable[[Moderator], Awaitable[str]]
    ) -> None:
        """Run `work` for a desk moderator in the desk's server and answer only them; refuse anyone else."""
        if not await self.cog.may_moderate(interaction):
            desk = self.takeovers.handoffs.catalogue.desk(DeskWords)
            await interaction.response.send_message(desk.not_moderator, ephemeral=True)
            return
        track_current(self.cog.in_flight)
        await interaction.response.defer(ephemeral=True, thinking=True)
        moderator = Moderator(
            f"{PLATFORM}:{interaction.user.id}",
            interaction.user.display_name,
            f"discord server {interaction.guild_id}, channel {interaction.channel_id}",
        )
        try:
            answer = await work(moderator)
        except Exception:
            log.exception("discord: a takeover or contact by %s failed", moderator.id)
            answer = self.takeovers.handoffs.catalogue.desk(DeskWords).failed
        await interaction.edit_original_response(content=answer, allowed_mentions=NO_PINGS)


def _refused(user: discord.abc.User, exc: discord.HTTPException, say: TakeoverReplies) -> str:
    name = escape_markdown(user.display_name)
    if exc.code == CANNOT_MESSAGE_USER:
        return say.dms_closed.format(user=name)
    return say.unreachable.format(user=name, detail=f"{exc.status}, code {exc.code}")
