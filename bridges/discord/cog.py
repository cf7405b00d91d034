"""The Discord cog: turns messages, slash commands and button presses into Relay calls.

Who is answered, and where: DMs (if enabled); in servers, in an allowed channel by a member with an
allowed role, a message that mentions the bot, replies to one of its messages, or is written in a thread
the bot opened, and whatever else the place's trigger rule picks (bridges/triggers.py: keywords, every
message, every new forum post...). Slash commands follow the same rules; `/agent` also needs Manage
Server. A block is global, so `/block` and `/unblock` work only in the desk's own server, for its
moderators (the desk's moderator roles, or Manage Server there).

A blocked user, or one over the message rate, is turned away before anything visible happens: no public
"thinking…", no echo of `/ask`, no new thread.
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
from discord.utils import escape_markdown

from bridges.admission import Refusal
from bridges.attachments import with_sticker_words
from bridges.catalogue import Phrasebook, Strings
from bridges.controls import Control, ControlNotices
from bridges.copies import Origin
from bridges.discord.command_words import CommandWords
from bridges.discord.config import DiscordConfig, DiscordDeskConfig
from bridges.discord.files import attachments_of
from bridges.discord.ratings import DiscordRatings
from bridges.discord.surface import NO_PINGS, DiscordSurface, Surfaces
from bridges.discord.views import CONTROL_EVENT, PRESS_EVENT, ChoiceButton, ControlButton, HandoffButton
from bridges.durations import parse_duration
from bridges.moderation import USER_ID, Moderation, Moderator, Target
from bridges.notices import Notices as DBNotices
from bridges.ratings import rating_press
from bridges.registry import blockable
from bridges.relay import Relay
from bridges.surface import Inbound, SurfaceError, send_notice
from bridges.triggers import Answer, MessageFacts
from bridges.turns import Place

log = logging.getLogger(__name__)

PLATFORM = "discord"
CHANNEL_SCOPE, SERVER_SCOPE = "discord_channel", "discord_guild"
"""Where `/agent` binds an agent (declared in bridges/registry.py): a channel (its threads too), a server."""
PLATFORM_CHOICES = [app_commands.Choice(name=name, value=name) for name in blockable()]
"""Whose users `/block` can name by id: every platform in the registry that has blockable users."""
WHOM = {
    "user": "A Discord user",
    "platform": "With user_id: the platform of a user who is not on this server",
    "user_id": "With platform: their id, as shown on a handoff notification",
}
"""How the commands that name a user (`/block`, `/unblock`, `/takeover`) describe their options."""
LOCALES_KEPT = 10_000
"""Users whose last interaction locale is remembered for their DMs; the longest ago is forgotten first."""
ADMISSION_TIMEOUT = 2.0
"""Seconds a slash command waits for the block and rate check, within Discord's 3 s to answer."""


class Replies(Strings, key="discord"):
    """What the cog itself says."""

    not_here = "I'm not available here."
    button_expired = "This button no longer works. Please ask again."
    admins_only = "Only members with the Manage Server permission can choose the agent."
    bound = "New conversations in this {scope} will use the agent **{agent}**."
    asked = "> {question}"
    failed = "Sorry, something went wrong on my side. Please try again in a moment."
    moderators_only = (
        "Only moderators can block or unblock users, and only in the server where handoffs are handled."
    )
    block_usage = (
        "Say whom: pick a `user`, or give both `platform` and `user_id` (as shown on the handoff "
        "notification). With no options, use it in a handoff's thread for that handoff's user."
    )


class SwitchboardCog(commands.Cog, name="Switchboard"):
    def __init__(self, bot: commands.Bot, relay: Relay, config: DiscordConfig, surfaces: Surfaces) -> None:
        self.bot = bot
        self.relay = relay
        self.config = config
        self.surfaces = surfaces
        self.in_flight: set[asyncio.Task[Any]] = set()
        self.accepting = True
        self.moderation = Moderation(relay)
        self.ratings = DiscordRatings(relay.handoffs.ratings, surfaces)
        self._desk_guild_id: int | None = None
        self._locales: dict[int, str] = {}
        """user id -> the locale of their last interaction: what their DMs are answered in."""

    # -- messages ----------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        answer = self._trigger(message) if self.accepting else None
        if answer is None:
            return
        track_current(self.in_flight)
        channel: discord.abc.Messageable = message.channel
        reply_to: int | None = message.id if message.guild is not None else None
        text = answer.text
        inbound = _inbound_of_message(message, channel, text, self._locale_of(message))
        with self.relay.line_up(inbound) as place:  # before any await: turns keep their order
            refusal = await self.relay.admission(inbound)
            if refusal is not None:  # before a thread is opened for them
                if refusal.notice is not None:
                    surface = self.surfaces.channel(message.channel.id, reply_to=reply_to)
                    await self._guarded(send_notice(surface, refusal.notice), surface, inbound.locale)
                return
            if self.config.threads and isinstance(message.channel, discord.TextChannel):
                thread = await self._open_thread(message)
                if thread is not None:  # a conversation of its own: its line, which follow-ups join
                    channel, reply_to = thread, None
                    inbound = _inbound_of_message(message, channel, text, self._locale_of(message))
                    place.leave()
                    place = self.relay.line_up(inbound)
            surface = self.surfaces.channel(int(inbound.thread_id or inbound.chat_id), reply_to=reply_to)
            await self._guarded(self.relay.handle(inbound, surface, place=place), surface, inbound.locale)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """A user edited a message the bot would answer (raw: the message need not be in the cache)."""
        message = payload.message
        if not self.accepting or "content" not in payload.data:
            return
        answer = self._trigger(message, roll=False)
        if answer is not None:
            locale = self._locale_of(message)
            await self.relay.edited(_inbound_of_message(message, message.channel, answer.text, locale))

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        """A user deleted a message: its copies in a handoff are marked deleted (raw: it need not be
        in the cache; a message the bot never passed on has no copies, so nothing happens)."""
        if self.accepting:
            channel = self.bot.get_channel(payload.channel_id)
            chat = _place(channel)[0] if channel is not None else str(payload.channel_id)
            await self.relay.deleted(Origin(PLATFORM, chat, str(payload.message_id)))

    def _trigger(self, message: discord.Message, *, roll: bool = True) -> Answer | None:
        """Whether to answer (and with what text), after the allow and deny lists: the place's trigger
        rule decides from what the message says about itself (`roll=False` for an edit)."""
        me = self.bot.user
        if me is None or message.author.id == me.id:  # never its own, even where bots are answered
            return None
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return None
        if message.guild is None and not self.config.dms:
            return None
        if message.guild is not None and not self._allowed(message.channel, message.author):
            return None
        channel = message.channel
        reference = message.reference.resolved if message.reference else None
        thread = channel if isinstance(channel, discord.Thread) else None
        facts = MessageFacts(
            text=self._without_own_mention(message.content),
            scopes=_binding_scopes(_place(channel)[0], message.guild.id if message.guild else None),
            user_id=str(message.author.id),
            roles=frozenset(str(role.id) for role in getattr(message.author, "roles", ())),
            private=message.guild is None,
            mentioned=any(user.id == me.id for user in message.mentions),
            reply_to_bot=(isinstance(reference, discord.Message) and reference.author.id == me.id)
            or (thread is not None and thread.owner_id == me.id),
            from_bot=message.author.bot or message.webhook_id is not None,
            # a forum post is a thread whose starter message has the thread's id
            new_post=thread is not None
            and message.id == thread.id
            and isinstance(thread.parent, discord.ForumChannel),
        )
        return self.relay.policy.triggers.answer(facts, roll=roll)

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

    @app_commands.command(name="ask", description=CommandWords.ask)
    @app_commands.describe(question=CommandWords.ask_question)
    async def ask(self, interaction: discord.Interaction[Any], question: str) -> None:
        begun = await self._begin(interaction, question)
        if begun is None:
            return
        inbound, place = begun
        surface = self.surfaces.interaction(interaction)
        await self._guarded(self.relay.handle(inbound, surface, place=place), surface, inbound.locale)
        if not surface.posted:  # went to a moderator: still show what was asked
            asked = self._words(interaction)(Replies).asked.format(question=question[:1990])
            await self._guarded(surface.send(asked), surface, inbound.locale)

    @app_commands.command(name="reset", description=CommandWords.reset)
    async def reset(self, interaction: discord.Interaction[Any]) -> None:
        begun = await self._begin(interaction, "/reset")
        if begun is not None:
            surface = self.surfaces.interaction(interaction)
            await self._guarded(self.relay.reset(begun[0], surface, place=begun[1]), surface, begun[0].locale)

    @app_commands.command(name="human", description=CommandWords.human)
    async def human(self, interaction: discord.Interaction[Any]) -> None:
        begun = await self._begin(interaction, "/human")
        if begun is not None:
            surface = self.surfaces.interaction(interaction)
            await self._guarded(
                self.relay.request_human(begun[0], surface, place=begun[1]), surface, begun[0].locale
            )

    @app_commands.command(name="stop", description=CommandWords.stop)
    async def stop(self, interaction: discord.Interaction[Any]) -> None:
        if not self._interaction_allowed(interaction):
            await interaction.response.send_message(
                self._words(interaction)(Replies).not_here, ephemeral=True
            )
            return
        stopped = self.relay.stop(_inbound_of(interaction, "/stop"))
        say = self._words(interaction)(ControlNotices)
        reply = say.stopped if stopped else say.nothing_to_stop
        await interaction.response.send_message(reply, ephemeral=True)

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
            await interaction.response.send_message(
                self._words(interaction)(Replies).admins_only, ephemeral=True
            )
            return
        chat_id, _ = _interaction_place(interaction)
        where = (SERVER_SCOPE, str(interaction.guild_id)) if scope == "server" else (CHANNEL_SCOPE, chat_id)
        try:
            await self.relay.bindings.bind(*where, name, by=f"{PLATFORM}:{interaction.user.id}")
        except ValueError as exc:
            await interaction.response.send_message(str(exc), ephemeral=True)
            return
        bound = self._words(interaction)(Replies).bound.format(scope=scope, agent=name)
        await interaction.response.send_message(bound, ephemeral=True)

    @app_commands.command(name="block", description="Ignore everything a user sends (moderators)")
    @app_commands.describe(
        **WHOM,
        duration="How long, such as 30m, 2h, 7d or 1w; empty blocks until /unblock",
        reason="Why: moderators see it in the log, the user never does",
    )
    @app_commands.choices(platform=PLATFORM_CHOICES)
    @app_commands.guild_only()
    async def block(
        self,
        interaction: discord.Interaction[Any],
        user: discord.User | None = None,
        platform: str | None = None,
        user_id: str | None = None,
        duration: str | None = None,
        reason: str | None = None,
    ) -> None:
        await self._moderate(interaction, user, platform, user_id, block=(duration, reason or ""))

    @app_commands.command(name="unblock", description="Answer a blocked user again (moderators)")
    @app_commands.describe(**WHOM)
    @app_commands.choices(platform=PLATFORM_CHOICES)
    @app_commands.guild_only()
    async def unblock(
        self,
        interaction: discord.Interaction[Any],
        user: discord.User | None = None,
        platform: str | None = None,
        user_id: str | None = None,
    ) -> None:
        await self._moderate(interaction, user, platform, user_id, block=None)

    async def _moderate(
        self,
        interaction: discord.Interaction[Any],
        user: discord.User | None,
        platform: str | None,
        user_id: str | None,
        *,
        block: tuple[str | None, str] | None,
    ) -> None:
        """Block (for the duration and with the reason given) or unblock (`block=None`), answering only
        the moderator. No default_permissions: that would hide the commands from moderator roles without
        Manage Server, so the check is here alone."""
        say = self._words(interaction)(Replies)
        if not await self.may_moderate(interaction):
            await interaction.response.send_message(say.moderators_only, ephemeral=True)
            return
        track_current(self.in_flight)
        await interaction.response.defer(ephemeral=True, thinking=True)
        moderator = Moderator(
            f"{PLATFORM}:{interaction.user.id}",
            interaction.user.display_name,
            f"discord server {interaction.guild_id}, channel {interaction.channel_id}",
        )
        try:
            target = await self.target_of(interaction, user, platform, user_id)
            if target is None:
                reply = say.block_usage
            elif block is None:
                reply = await self.moderation.unblock(target, _who(target), moderator)
            else:
                reply = await self._block(target, moderator, *block)
        except Exception:
            log.exception("discord: /%s failed", "unblock" if block is None else "block")
            reply = say.failed
        await interaction.edit_original_response(content=reply, allowed_mentions=NO_PINGS)

    async def _block(self, target: Target, moderator: Moderator, duration: str | None, reason: str) -> str:
        words = (duration or "").split()
        try:
            length = parse_duration(words[0]) if len(words) == 1 else None
        except ValueError:
            length = None
        if duration is not None and length is None:
            return self.moderation.words.bad_duration.format(word=escape_markdown(duration[:40]))
        return await self.moderation.block(target, _who(target), moderator, length, reason.strip())

    async def may_moderate(self, interaction: discord.Interaction[Any]) -> bool:
        """A moderator of the desk (its roles, or Manage Server), in the desk's own server."""
        desk = self.config.handoff
        if desk is None or not is_moderator(interaction.user, desk):
            return False
        return interaction.guild_id is not None and interaction.guild_id == await self._desk_server()

    async def _desk_server(self) -> int | None:
        """The server that holds the desk channel (fetched once if this shard has no cache of it)."""
        if self._desk_guild_id is None and self.config.handoff is not None:
            channel_id = self.config.handoff.channel
            try:
                channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
            except discord.HTTPException as exc:
                log.warning("discord: cannot see the desk channel %s (status %s)", channel_id, exc.status)
                return None
            self._desk_guild_id = getattr(getattr(channel, "guild", None), "id", None)
        return self._desk_guild_id

    async def target_of(
        self,
        interaction: discord.Interaction[Any],
        user: discord.User | None,
        platform: str | None,
        user_id: str | None,
    ) -> Target | None:
        """The user named by the options, or with none the user of the handoff whose thread this is;
        None if that is not exactly one user."""
        if user is not None:
            return None if platform or user_id else Target(PLATFORM, str(user.id), user.display_name)
        if platform and user_id:
            user_id = user_id.strip()
            known = platform in blockable() and USER_ID.fullmatch(user_id)
            return Target(platform, user_id) if known else None
        if platform or user_id:
            return None
        # the desk's refs are stored under its name, which is the platform's
        handoff_id = await self.relay.handoffs.open_handoff_at(
            PLATFORM, "thread", str(interaction.channel_id)
        )
        if handoff_id is None:
            return None
        view = await self.relay.handoffs.view(handoff_id)
        return Target(view.platform, view.user_id, view.user_name, handoff_id)

    @agent.autocomplete("name")
    async def _agent_names(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        names = [n for n in sorted(self.relay.agents) if current.lower() in n.lower()]
        return [app_commands.Choice(name=n, value=n) for n in names[:25]]

    async def _begin(self, interaction: discord.Interaction[Any], text: str) -> tuple[Inbound, Place] | None:
        """Refuse (privately) where the bot may not answer, or whom it may not answer now (blocked, or
        over the message rate); else show "thinking", and return the Inbound with its place in line,
        which the Relay call it is handed to leaves."""
        words = self._words(interaction)
        if not self._interaction_allowed(interaction):
            await interaction.response.send_message(words(Replies).not_here, ephemeral=True)
            return None
        track_current(self.in_flight)
        inbound = _inbound_of(interaction, text)
        place = self.relay.line_up(inbound)
        try:
            try:  # Discord waits 3 s for an answer; a slow database must not cost the user theirs
                refusal = await asyncio.wait_for(self.relay.admission(inbound), ADMISSION_TIMEOUT)
            except TimeoutError:
                refusal = Refusal(words(DBNotices).db_unavailable)
            if refusal is not None:
                place.leave()
                notice = refusal.notice or words(Replies).not_here
                await interaction.response.send_message(notice, ephemeral=True)
                return None
            await interaction.response.defer(thinking=True)
        except BaseException:
            place.leave()
            raise
        return inbound, place

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
        user learns the button is dead instead of seeing "This interaction failed". A modal's submit is
        a rating's comment (the only modal sent)."""
        if interaction.type is discord.InteractionType.modal_submit and self.accepting:
            track_current(self.in_flight)
            await self.ratings.submitted(interaction)
            return
        if interaction.type is not discord.InteractionType.component:
            return
        data: dict[str, Any] = dict(interaction.data or {})
        custom_id = str(data.get("custom_id", ""))
        ours = [ChoiceButton, ControlButton] + ([HandoffButton] if self.config.handoff is not None else [])
        if any(item.__discord_ui_compiled_template__.fullmatch(custom_id) for item in ours):
            return
        log.info("discord: a press of unknown button %r", custom_id[:100])
        await interaction.response.send_message(
            self._words(interaction)(Replies).button_expired, ephemeral=True
        )

    @commands.Cog.listener(f"on_{PRESS_EVENT}")
    async def on_press(self, interaction: discord.Interaction[Any], token: str) -> None:
        button = await self.surfaces.views.resolve(token)
        press = rating_press(button) if button is not None else None
        if press is not None and self.accepting:  # a rating, whoever may talk to the agent here
            track_current(self.in_flight)
            await self.ratings.pressed(interaction, press)
            return
        if button is None or not self._interaction_allowed(interaction):
            say = self._words(interaction)(Replies)
            reply = say.button_expired if button is None else say.not_here
            await interaction.response.send_message(reply, ephemeral=True)
            return
        track_current(self.in_flight)
        await interaction.response.defer()  # acknowledges the press; the answer is a new message
        inbound = replace(_inbound_of(interaction, button.label), button=button)
        surface = self.surfaces.channel(int(inbound.thread_id or inbound.chat_id))
        await self._guarded(self.relay.handle(inbound, surface), surface, inbound.locale)

    @commands.Cog.listener(f"on_{CONTROL_EVENT}")
    async def on_control(self, interaction: discord.Interaction[Any], control: Control, owner: str) -> None:
        """Stop (the reply's user, or a moderator) or Regenerate (its user only) pressed on a reply."""
        if not self._interaction_allowed(interaction):
            await interaction.response.send_message(
                self._words(interaction)(Replies).not_here, ephemeral=True
            )
            return
        message_id = str(interaction.message.id) if interaction.message else ""
        own = str(interaction.user.id) == owner
        say = self._words(interaction)(ControlNotices)
        if control is Control.STOP:
            if not own and not self._may_stop_others(interaction):
                await interaction.response.send_message(say.stop_not_yours, ephemeral=True)
            elif self.relay.stop(replace(_inbound_of(interaction, ""), user_id=owner), on_message=message_id):
                await interaction.response.defer()  # the reply's final edit takes the button away
                if not own:  # a moderator's action: on the desks' log, with who, whom and where
                    await self.relay.handoffs.audit(
                        f"⏹ discord user {interaction.user.id} stopped a reply to discord user {owner} "
                        f"in channel {interaction.channel_id}"
                    )
            else:
                await interaction.response.send_message(say.already_finished, ephemeral=True)
            return
        if not own:
            await interaction.response.send_message(say.regenerate_not_yours, ephemeral=True)
            return
        track_current(self.in_flight)
        await interaction.response.defer()

        async def acknowledge(notice: str | None) -> None:
            if notice is not None:
                await interaction.followup.send(notice, ephemeral=True)

        inbound = _inbound_of(interaction, "")
        surface = self.surfaces.channel(int(inbound.thread_id or inbound.chat_id))
        await self._guarded(
            self.relay.regenerate(inbound, surface, acknowledge, self._words(interaction)), surface
        )

    def _may_stop_others(self, interaction: discord.Interaction[Any]) -> bool:
        """Who may stop a reply to someone else: whoever may manage messages here, or a desk moderator."""
        return interaction.permissions.manage_messages or is_moderator(interaction.user, self.config.handoff)

    def _words(self, interaction: discord.Interaction[Any]) -> Phrasebook:
        """What to say to whoever interacted: in their client's language, which is also remembered for
        their DMs (a message carries no language of its own)."""
        locale = interaction.locale.value
        self._locales.pop(interaction.user.id, None)
        self._locales[interaction.user.id] = locale
        if len(self._locales) > LOCALES_KEPT:  # forget who interacted longest ago
            del self._locales[next(iter(self._locales))]
        return self.relay.catalogue.words(locale)

    def _locale_of(self, message: discord.Message) -> str:
        """A server's messages are answered in its preferred locale; a DM in the language of the user's
        last interaction with the bot, if any."""
        if message.guild is not None:
            return message.guild.preferred_locale.value
        return self._locales.get(message.author.id, "")

    async def _guarded(self, call: Awaitable[object], surface: DiscordSurface, locale: str = "") -> None:
        """The Relay handles agent and platform failures itself; anything else still gets the user an
        answer (a slash command would otherwise stay "thinking"), in their `locale`, and a log entry."""
        try:
            await call
        except Exception:
            log.exception("discord: a turn failed unexpectedly")
            with contextlib.suppress(SurfaceError):
                await surface.send(self.relay.catalogue.words(locale)(Replies).failed)


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


def _who(target: Target) -> str:
    who = f"{target.platform} user {target.user_id}"
    return f"**{escape_markdown(target.name)}** ({who})" if target.name else who


def _inbound_of_message(message: discord.Message, channel: Any, text: str, locale: str) -> Inbound:
    guild_id = message.guild.id if message.guild else None
    files = attachments_of(message)
    inbound = _inbound(
        _place(channel), guild_id, message.author, with_sticker_words(text, files), str(message.id)
    )
    return replace(inbound, attachments=files, locale=locale)


def _inbound_of(interaction: discord.Interaction[Any], text: str) -> Inbound:
    message_id = str(interaction.message.id) if interaction.message else ""
    inbound = _inbound(
        _interaction_place(interaction), interaction.guild_id, interaction.user, text, message_id
    )
    return replace(inbound, locale=interaction.locale.value)


def _inbound(
    place: tuple[str, str], guild_id: int | None, author: discord.abc.User, text: str, message_id: str
) -> Inbound:
    chat_id, thread_id = place
    return Inbound(
        platform=PLATFORM,
        chat_id=chat_id,
        thread_id=thread_id,
        guild_id=str(guild_id or ""),
        user_id=str(author.id),
        display_name=author.display_name,
        text=text,
        message_id=message_id,
        is_dm=guild_id is None,
        binding_scopes=_binding_scopes(chat_id, guild_id),
    )


def _binding_scopes(chat_id: str, guild_id: int | None) -> tuple[tuple[str, str], ...]:
    """A message's places for bindings and trigger rules: its channel (a thread's parent), its server."""
    return ((CHANNEL_SCOPE, chat_id), *([(SERVER_SCOPE, str(guild_id))] if guild_id else []))
