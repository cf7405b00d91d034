"""The Discord cog: turns messages, slash commands and button presses into Relay calls.

Who is answered, and where: DMs (if enabled); in servers, a message that mentions the bot, replies to
one of its messages, or is written in a thread the bot opened, in an allowed channel by a member with
an allowed role. Slash commands follow the same rules; `/agent` also needs Manage Server. `/block` and
`/unblock` are for moderators (the desk's moderator roles, or Manage Server) anywhere in a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands
from discord.utils import escape_markdown

from bridges.discord.config import DiscordConfig, DiscordDeskConfig
from bridges.discord.surface import NO_PINGS, DiscordSurface, Surfaces
from bridges.discord.views import PRESS_EVENT, ChoiceButton, HandoffButton
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
    moderators_only = "Only moderators can block or unblock users."
    block_usage = (
        "Say whom: pick a `user`, or give both `platform` and `user_id` (digits, as shown on the handoff "
        "notification). With no options, use it in a handoff's thread for that handoff's user."
    )
    blocked = "Blocked {who}: everything they send is ignored until someone uses `/unblock`."
    blocked_already = "{who} was already blocked."
    unblocked = "Unblocked {who}: the bot answers them again."
    unblocked_already = "{who} was not blocked."
    handoff_stays = (
        " Their handoff #{id} stays open, but what they send no longer reaches it: "
        "resolve or return it when you are done."
    )


@dataclass(frozen=True)
class _Target:
    """Whom a `/block` or `/unblock` is about."""

    platform: str
    user_id: str
    name: str = ""
    handoff_id: int | None = None
    """Their open handoff, when the command was used in its thread."""

    def __str__(self) -> str:
        who = f"{self.platform} user {self.user_id}"
        return f"**{escape_markdown(self.name)}** ({who})" if self.name else who


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

    @app_commands.command(name="block", description="Ignore everything a user sends (moderators)")
    @app_commands.describe(
        user="A Discord user",
        platform="With user_id: the platform of a user who is not on this server",
        user_id="With platform: their id, as shown on a handoff notification",
    )
    @app_commands.guild_only()
    async def block(
        self,
        interaction: discord.Interaction[Any],
        user: discord.User | None = None,
        platform: Literal["discord", "telegram"] | None = None,
        user_id: str | None = None,
    ) -> None:
        await self._moderate(interaction, user, platform, user_id, block=True)

    @app_commands.command(name="unblock", description="Answer a blocked user again (moderators)")
    @app_commands.describe(
        user="A Discord user",
        platform="With user_id: the platform of a user who is not on this server",
        user_id="With platform: their id, as shown on a handoff notification",
    )
    @app_commands.guild_only()
    async def unblock(
        self,
        interaction: discord.Interaction[Any],
        user: discord.User | None = None,
        platform: Literal["discord", "telegram"] | None = None,
        user_id: str | None = None,
    ) -> None:
        await self._moderate(interaction, user, platform, user_id, block=False)

    async def _moderate(
        self,
        interaction: discord.Interaction[Any],
        user: discord.User | None,
        platform: str | None,
        user_id: str | None,
        *,
        block: bool,
    ) -> None:
        """Block or unblock, answering only the moderator. No default_permissions: that would hide the
        commands from moderator roles without Manage Server, so the check is here alone."""
        if not is_moderator(interaction.user, self.config.handoff):
            await interaction.response.send_message(Replies.moderators_only, ephemeral=True)
            return
        track_current(self.in_flight)
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            target = await self._target(interaction, user, platform, user_id)
            reply = await self._apply(target, f"{PLATFORM}:{interaction.user.id}", block) if target else None
        except Exception:
            log.exception("discord: /%s failed", "block" if block else "unblock")
            reply = Replies.failed
        await interaction.edit_original_response(
            content=reply or Replies.block_usage, allowed_mentions=NO_PINGS
        )

    async def _target(
        self,
        interaction: discord.Interaction[Any],
        user: discord.User | None,
        platform: str | None,
        user_id: str | None,
    ) -> _Target | None:
        """The user named by the options, or with none the user of the handoff whose thread this is;
        None if that is not exactly one user."""
        if user is not None:
            return None if platform or user_id else _Target(PLATFORM, str(user.id), user.display_name)
        if platform and user_id:
            user_id = user_id.strip()
            return _Target(platform, user_id) if user_id.isascii() and user_id.isdigit() else None
        if platform or user_id:
            return None
        # the desk's refs are stored under its name, which is the platform's
        handoff_id = await self.relay.handoffs.open_handoff_at(
            PLATFORM, "thread", str(interaction.channel_id)
        )
        if handoff_id is None:
            return None
        view = await self.relay.handoffs.view(handoff_id)
        return _Target(view.platform, view.user_id, view.user_name, handoff_id)

    async def _apply(self, target: _Target, by: str, block: bool) -> str:
        """Do it, and say what changed; a block leaves the user's open handoff to the moderators."""
        relay = self.relay
        if not block:
            done = await relay.unblock(target.platform, target.user_id, by=by)
            return (Replies.unblocked if done else Replies.unblocked_already).format(who=target)
        if await relay.is_blocked(target.platform, target.user_id):
            return Replies.blocked_already.format(who=target)
        await relay.block(target.platform, target.user_id, by=by)
        reply = Replies.blocked.format(who=target)
        handoff_id = target.handoff_id or await relay.open_handoff_of_user(target.platform, target.user_id)
        return reply + (Replies.handoff_stays.format(id=handoff_id) if handoff_id is not None else "")

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

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """A press no button of ours matches (forged, or from a version long gone) is answered, so the
        user learns the button is dead instead of seeing "This interaction failed"."""
        if interaction.type is not discord.InteractionType.component:
            return
        data: dict[str, Any] = dict(interaction.data or {})
        custom_id = str(data.get("custom_id", ""))
        ours = [ChoiceButton] + ([HandoffButton] if self.config.handoff is not None else [])
        if any(item.__discord_ui_compiled_template__.fullmatch(custom_id) for item in ours):
            return
        log.info("discord: a press of unknown button %r", custom_id[:100])
        await interaction.response.send_message(Replies.button_expired, ephemeral=True)

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


def is_moderator(user: discord.abc.User, desk: DiscordDeskConfig | None) -> bool:
    """A server member with one of the desk's moderator roles, or with Manage Server."""
    if not isinstance(user, discord.Member):
        return False
    roles = {role.id for role in user.roles}
    moderator_roles = set(desk.moderator_roles) if desk is not None else set()
    return bool(roles & moderator_roles) or user.guild_permissions.manage_guild


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
