"""The Discord cog: turns messages, slash commands and button presses into Relay calls.

Who is answered, and where: DMs (if enabled); in servers, a message that mentions the bot, replies to
one of its messages, or is written in a thread the bot opened, in an allowed channel by a member with
an allowed role. Slash commands follow the same rules; `/agent` also needs Manage Server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bridges.discord.config import DiscordConfig
from bridges.discord.surface import DiscordSurface, Surfaces
from bridges.discord.views import PRESS_EVENT
from bridges.relay import Relay
from bridges.surface import Inbound, SurfaceError
from models import BindingScope

log = logging.getLogger(__name__)

PLATFORM = "discord"


class Replies:
    """What the cog itself says."""

    not_here = "I'm not available here."
    button_expired = "This button no longer works. Please ask again."
    admins_only = "Only members with the Manage Server permission can choose the agent."
    bound = "New conversations in this {scope} will use the agent **{agent}**."
    asked = "> {question}"
    failed = "Sorry, something went wrong on my side. Please try again in a moment."


class SwitchboardCog(commands.Cog, name="Switchboard"):
    def __init__(self, bot: commands.Bot, relay: Relay, config: DiscordConfig, surfaces: Surfaces) -> None:
        self.bot = bot
        self.relay = relay
        self.config = config
        self.surfaces = surfaces
        self.in_flight: set[asyncio.Task[Any]] = set()
        self.accepting = True

    # -- messages ----------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if not self.accepting or not self._addressed(message):
            return
        track_current(self.in_flight)
        channel: discord.abc.Messageable = message.channel
        reply_to: int | None = message.id if message.guild is not None else None
        if self.config.threads and isinstance(message.channel, discord.TextChannel):
            thread = await self._open_thread(message)
            if thread is not None:
                channel, reply_to = thread, None
        chat_id, thread_id = _place(channel)
        inbound = Inbound(
            platform=PLATFORM,
            chat_id=chat_id,
            thread_id=thread_id,
            guild_id=str(message.guild.id) if message.guild else "",
            user_id=str(message.author.id),
            display_name=message.author.display_name,
            text=self._without_own_mention(message.content),
            message_id=str(message.id),
            is_dm=message.guild is None,
        )
        surface = self.surfaces.channel(int(thread_id or chat_id), reply_to=reply_to)
        await self._guarded(self.relay.handle(inbound, surface), surface)

    def _addressed(self, message: discord.Message) -> bool:
        me = self.bot.user
        if me is None or message.author.bot or message.webhook_id is not None:
            return False
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return False
        if message.guild is None:
            return self.config.dms
        if not self._allowed(message.channel, message.author):
            return False
        reference = message.reference.resolved if message.reference else None
        return (
            any(user.id == me.id for user in message.mentions)
            or (isinstance(reference, discord.Message) and reference.author.id == me.id)
            or (isinstance(message.channel, discord.Thread) and message.channel.owner_id == me.id)
        )

    def _allowed(self, channel: Any, user: discord.abc.User) -> bool:
        """Channel and role allow/deny lists; a thread or channel also matches by its parent or category.

        The moderator desk's channel and its handoff threads belong to the desk, never to a user chat.
        """
        config = self.config
        places = {getattr(channel, name, None) for name in ("id", "parent_id", "category_id")} - {None}
        if config.handoff is not None and config.handoff.channel in places:
            return False
        if places & set(config.denied_channels):
            return False
        if config.allowed_channels and not places & set(config.allowed_channels):
            return False
        roles = {role.id for role in getattr(user, "roles", ())}
        if roles & set(config.denied_roles):
            return False
        return not config.allowed_roles or bool(roles & set(config.allowed_roles))

    def _without_own_mention(self, content: str) -> str:
        me = self.bot.user
        return re.sub(rf"<@!?{me.id}>", "", content).strip() if me else content.strip()

    async def _open_thread(self, message: discord.Message) -> discord.Thread | None:
        name = self.config.thread_name.format(user=message.author.display_name)[:100]
        for budget in self.surfaces.budgets.for_channel(message.channel.id):
            await budget.acquire()
        try:
            return await message.create_thread(name=name)
        except discord.HTTPException as exc:
            log.warning("could not open a thread (status %s); answering in the channel", exc.status)
            return None

    # -- slash commands ----------------------------------------------------------------------------

    @app_commands.command(name="ask", description="Ask the assistant something")
    @app_commands.describe(question="Your question")
    async def ask(self, interaction: discord.Interaction[Any], question: str) -> None:
        inbound = await self._begin(interaction, question)
        if inbound is None:
            return
        surface = self.surfaces.interaction(interaction)
        await self._guarded(self.relay.handle(inbound, surface), surface)
        if not surface.posted:  # went to a moderator, or was refused: still show what was asked
            await self._guarded(surface.send(Replies.asked.format(question=question[:1990])), surface)

    @app_commands.command(name="reset", description="Start a new conversation with the assistant")
    async def reset(self, interaction: discord.Interaction[Any]) -> None:
        inbound = await self._begin(interaction, "/reset")
        if inbound is not None:
            surface = self.surfaces.interaction(interaction)
            await self._guarded(self.relay.reset(inbound, surface), surface)

    @app_commands.command(name="human", description="Ask for a human moderator")
    async def human(self, interaction: discord.Interaction[Any]) -> None:
        inbound = await self._begin(interaction, "/human")
        if inbound is not None:
            surface = self.surfaces.interaction(interaction)
            await self._guarded(self.relay.request_human(inbound, surface), surface)

    @app_commands.command(name="agent", description="Choose the agent for this server or channel")
    @app_commands.describe(
        name="A configured agent", scope="Where the choice applies (default: this channel)"
    )
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    async def agent(
        self,
        interaction: discord.Interaction[Any],
        name: str,
        scope: Literal["channel", "server"] = "channel",
    ) -> None:
        # default_permissions only hides the command; a server can change that, so check here too
        if interaction.guild_id is None or not interaction.permissions.manage_guild:
            await interaction.response.send_message(Replies.admins_only, ephemeral=True)
            return
        chat_id, _ = _interaction_place(interaction)
        where = (
            (BindingScope.DISCORD_GUILD, str(interaction.guild_id))
            if scope == "server"
            else (BindingScope.DISCORD_CHANNEL, chat_id)
        )
        try:
            await self.relay.bind_agent(*where, name, by=f"{PLATFORM}:{interaction.user.id}")
        except ValueError as exc:
            await interaction.response.send_message(str(exc), ephemeral=True)
            return
        await interaction.response.send_message(Replies.bound.format(scope=scope, agent=name), ephemeral=True)

    @agent.autocomplete("name")
    async def _agent_names(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        names = [n for n in sorted(self.relay.agents) if current.lower() in n.lower()]
        return [app_commands.Choice(name=n, value=n) for n in names[:25]]

    async def _begin(self, interaction: discord.Interaction[Any], text: str) -> Inbound | None:
        """Refuse (privately) where the bot may not answer; else show "thinking" and build the Inbound."""
        if not self._interaction_allowed(interaction):
            await interaction.response.send_message(Replies.not_here, ephemeral=True)
            return None
        track_current(self.in_flight)
        await interaction.response.defer(thinking=True)
        return _inbound_of(interaction, text)

    def _interaction_allowed(self, interaction: discord.Interaction[Any]) -> bool:
        if not self.accepting:
            return False
        if interaction.guild_id is None:
            return self.config.dms
        return self._allowed(interaction.channel, interaction.user)

    # -- button presses ----------------------------------------------------------------------------

    @commands.Cog.listener(f"on_{PRESS_EVENT}")
    async def on_press(self, interaction: discord.Interaction[Any], token: str) -> None:
        button = await self.surfaces.views.resolve(token)
        if button is None or not self._interaction_allowed(interaction):
            reply = Replies.button_expired if button is None else Replies.not_here
            await interaction.response.send_message(reply, ephemeral=True)
            return
        track_current(self.in_flight)
        await interaction.response.defer()  # acknowledges the press; the answer is a new message
        inbound = replace(_inbound_of(interaction, button.label), button=button)
        surface = self.surfaces.channel(int(inbound.thread_id or inbound.chat_id))
        await self._guarded(self.relay.handle(inbound, surface), surface)

    async def _guarded(self, call: Awaitable[object], surface: DiscordSurface) -> None:
        """The Relay handles agent and platform failures itself; anything else still gets the user an
        answer (a slash command would otherwise stay "thinking") and a log entry."""
        try:
            await call
        except Exception:
            log.exception("discord: a turn failed unexpectedly")
            with contextlib.suppress(SurfaceError):
                await surface.send(Replies.failed)


def track_current(in_flight: set[asyncio.Task[Any]]) -> None:
    """discord.py runs every handler as its own task; remember it so a shutdown can let it finish."""
    task = asyncio.current_task()
    if task is not None:
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)


def _place(channel: Any) -> tuple[str, str]:
    """(chat id, thread id): a thread belongs to its parent channel's bindings, but is its own place."""
    if isinstance(channel, discord.Thread):
        return str(channel.parent_id), str(channel.id)
    return str(channel.id), ""


def _interaction_place(interaction: discord.Interaction[Any]) -> tuple[str, str]:
    return _place(interaction.channel) if interaction.channel else (str(interaction.channel_id), "")


def _inbound_of(interaction: discord.Interaction[Any], text: str) -> Inbound:
    chat_id, thread_id = _interaction_place(interaction)
    return Inbound(
        platform=PLATFORM,
        chat_id=chat_id,
        thread_id=thread_id,
        guild_id=str(interaction.guild_id or ""),
        user_id=str(interaction.user.id),
        display_name=interaction.user.display_name,
        text=text,
        message_id=str(interaction.message.id) if interaction.message else "",
        is_dm=interaction.guild_id is None,
    )
