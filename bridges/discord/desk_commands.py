"""The Discord desk's slash commands: /note /reply /areply /snippet /asnippet /unclaim /transfer /close
/history in a case's thread, and /search, /ratings and managing snippets anywhere in the desk's server.

Only the desk's moderators, in the desk's server (the same check as `/block`); anyone else, and anyone
outside an open case's thread, is answered privately. What a moderator does to a case (a note, a reply)
is answered in the thread for the other moderators to see, as on Telegram where the command itself
shows; the rest only to them. The work is done by `bridges.cases.Cases`, shared with the Telegram desk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands
from discord.utils import escape_markdown

from bridges.cases import past_lines
from bridges.catalogue import Strings
from bridges.discord.cog import PLATFORM, PLATFORM_CHOICES, is_moderator, track_current
from bridges.discord.desk import DiscordDesk, _clip
from bridges.discord.surface import MAX_LENGTH, NO_PINGS
from bridges.ratings import MAX_REPORT_DAYS, REPORT_DAYS

log = logging.getLogger(__name__)

MAX_TEXT = 1800
"""What a moderator may type into a reply or note: its echo in the thread stays within one message."""
MAX_CHOICE = 100
"""Discord's limit on an autocomplete choice's name."""

Work = Callable[[int, str, str], Awaitable[str]]
"""(case id, moderator id, moderator name) -> the answer."""
Check = Callable[[discord.Interaction[Any]], Awaitable[bool]]


class CommandReplies(Strings, key="discord.commands"):
    """What only the Discord desk says: the echo of a reply, which a Telegram topic shows by itself."""

    replied = "↪ **{name}** to the user: {text}"
    replied_as = "↪ **{name}** to the user, as {staff}: {text}"


class DeskCommands(commands.Cog, name="Desk"):
    """Registered by the bridge only when `[discord.handoff]` is configured."""

    snippet = app_commands.Group(
        name="snippet", description="Saved replies shared by both desks", guild_only=True
    )

    def __init__(self, desk: DiscordDesk, may_moderate: Check, in_flight: set[asyncio.Task[Any]]) -> None:
        self.desk = desk
        self.cases = desk.handoffs.cases
        self.may_moderate = may_moderate
        """`SwitchboardCog.may_moderate`: a desk moderator, in the desk's server."""
        self.in_flight = in_flight
        """The bridge's handlers in progress, which a shutdown lets finish."""

    # -- in a case's thread ------------------------------------------------------------------------

    @app_commands.command(name="note", description="Keep a note in the case; the user does not see it")
    @app_commands.describe(text="The note")
    @app_commands.guild_only()
    async def note(
        self, interaction: discord.Interaction[Any], text: app_commands.Range[str, 1, MAX_TEXT]
    ) -> None:
        async def work(case: int, mod_id: str, name: str) -> str:
            if not await self.cases.note(case, mod_id, name, text, from_desk=self.desk.name):
                return self.cases.words.closed_already
            return self.cases.words.note_shown.format(name=escape_markdown(name), text=text)

        await self._in_case(interaction, work, public=True)

    @app_commands.command(name="reply", description="Send the user a message under your name")
    @app_commands.describe(text="What the user reads")
    @app_commands.guild_only()
    async def reply(
        self, interaction: discord.Interaction[Any], text: app_commands.Range[str, 1, MAX_TEXT]
    ) -> None:
        await self._in_case(interaction, self._sender(text, anonymous=False), public=True)

    @app_commands.command(name="areply", description="Send the user a message under the staff name")
    @app_commands.describe(text="What the user reads")
    @app_commands.guild_only()
    async def areply(
        self, interaction: discord.Interaction[Any], text: app_commands.Range[str, 1, MAX_TEXT]
    ) -> None:
        await self._in_case(interaction, self._sender(text, anonymous=True), public=True)

    @snippet.command(name="send", description="Send a saved reply to the user")
    @app_commands.describe(name="The snippet")
    async def snippet_send(self, interaction: discord.Interaction[Any], name: str) -> None:
        await self._in_case(interaction, self._snippet_sender(name, anonymous=None), public=True)

    @app_commands.command(name="asnippet", description="Send a saved reply under the staff name")
    @app_commands.describe(name="The snippet")
    @app_commands.guild_only()
    async def asnippet(self, interaction: discord.Interaction[Any], name: str) -> None:
        await self._in_case(interaction, self._snippet_sender(name, anonymous=True), public=True)

    @app_commands.command(name="unclaim", description="Let the case go back to waiting for a moderator")
    @app_commands.guild_only()
    async def unclaim(self, interaction: discord.Interaction[Any]) -> None:
        async def work(case: int, mod_id: str, name: str) -> str:
            return await self.cases.unclaim(case, mod_id, name)

        await self._in_case(interaction, work)

    @app_commands.command(name="transfer", description="Hand the case to another moderator")
    @app_commands.describe(member="The moderator who takes the case")
    @app_commands.guild_only()
    async def transfer(self, interaction: discord.Interaction[Any], member: discord.Member) -> None:
        async def work(case: int, mod_id: str, name: str) -> str:
            if member.bot or not is_moderator(member, self.desk.config):
                return self.cases.words.not_a_moderator.format(name=escape_markdown(member.display_name))
            to_id = f"{PLATFORM}:{member.id}"
            return await self.cases.transfer(case, mod_id, name, to_id, member.display_name)

        await self._in_case(interaction, work)

    @app_commands.command(name="close", description="Close the case, now or later, with a reason")
    @app_commands.describe(
        delay="Close later unless the user writes first, such as 30m, 2h or 1d",
        reason="Why: kept in the case's history; the user does not see it",
    )
    @app_commands.rename(delay="in")
    @app_commands.guild_only()
    async def close(
        self, interaction: discord.Interaction[Any], delay: str | None = None, reason: str | None = None
    ) -> None:
        async def work(case: int, mod_id: str, name: str) -> str:
            return await self.cases.close(case, mod_id, name, reason or "", delay=delay)

        await self._in_case(interaction, work)

    @app_commands.command(name="history", description="The user's earlier cases")
    @app_commands.guild_only()
    async def history(self, interaction: discord.Interaction[Any]) -> None:
        async def work(case: int, mod_id: str, name: str) -> str:
            view = await self.desk.handoffs.view(case)
            count, cases = await self.cases.history(case)
            user = escape_markdown(view.user_name)
            if not count:
                return self.cases.words.history_none.format(user=user)
            head = self.cases.words.history_head.format(user=user, count=count)
            return "\n".join([head, *map(escape_markdown, past_lines(cases, self.desk.past_link))])

        await self._in_case(interaction, work)

    # -- anywhere in the desk's server -------------------------------------------------------------

    @snippet.command(name="add", description="Save a new reply")
    @app_commands.describe(name="Up to 32 lower-case letters, digits, - or _", text="The reply")
    async def snippet_add(self, interaction: discord.Interaction[Any], name: str, text: str) -> None:
        await self._in_server(interaction, lambda by: self.cases.save_snippet(name, text, by, new=True))

    @snippet.command(name="edit", description="Change a saved reply")
    @app_commands.describe(name="The snippet", text="Its new text")
    async def snippet_edit(self, interaction: discord.Interaction[Any], name: str, text: str) -> None:
        await self._in_server(interaction, lambda by: self.cases.save_snippet(name, text, by, new=False))

    @snippet.command(name="remove", description="Delete a saved reply")
    @app_commands.describe(name="The snippet")
    async def snippet_remove(self, interaction: discord.Interaction[Any], name: str) -> None:
        await self._in_server(interaction, lambda by: self.cases.remove_snippet(name, by))

    @snippet.command(name="list", description="The saved replies")
    async def snippet_list(self, interaction: discord.Interaction[Any]) -> None:
        async def work(by: str) -> str:
            return escape_markdown(await self.cases.snippet_list())

        await self._in_server(interaction, work)

    @app_commands.command(name="search", description="Find cases by user and by words")
    @app_commands.describe(
        words="Words from the conversation",
        platform="With user_id: the user's platform",
        user_id="With platform: their id, as shown on a handoff notification",
    )
    @app_commands.choices(platform=PLATFORM_CHOICES)
    @app_commands.guild_only()
    async def search(
        self,
        interaction: discord.Interaction[Any],
        words: str | None = None,
        platform: str | None = None,
        user_id: str | None = None,
    ) -> None:
        async def work(by: str) -> str:
            if not (words or "").strip() and not (platform and user_id):
                return self.cases.words.search_usage
            who = (platform, user_id.strip()) if platform and user_id else (None, None)
            found = await self.cases.search(words or "", *who)
            if not found:
                return self.cases.words.found_none
            lines = map(escape_markdown, past_lines(found, self.desk.past_link))
            return "\n".join([self.cases.words.found_head, *lines])

        await self._in_server(interaction, work)

    @app_commands.command(name="ratings", description="This desk's satisfaction ratings over a period")
    @app_commands.describe(days=f"How many days back (default {REPORT_DAYS})")
    @app_commands.guild_only()
    async def ratings(
        self,
        interaction: discord.Interaction[Any],
        days: app_commands.Range[int, 1, MAX_REPORT_DAYS] = REPORT_DAYS,
    ) -> None:
        async def work(by: str) -> str:
            return escape_markdown(await self.desk.handoffs.ratings.report(self.desk.name, days))

        await self._in_server(interaction, work)

    @snippet_send.autocomplete("name")
    @snippet_edit.autocomplete("name")
    @snippet_remove.autocomplete("name")
    @asnippet.autocomplete("name")
    async def _snippet_names(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        """Snippet names starting with what was typed, each with the start of its text; none for anyone
        who may not use them."""
        if not await self.may_moderate(interaction):
            return []
        found = await self.cases.snippets(current.strip())
        return [
            app_commands.Choice(name=_clip(f"{name}: {' '.join(text.split())}", MAX_CHOICE), value=name)
            for name, text in found
        ]

    # -- helpers -----------------------------------------------------------------------------------

    def _sender(self, text: str, *, anonymous: bool | None) -> Work:
        """Send `text` to the user; the answer echoes it in the thread."""

        async def work(case: int, mod_id: str, name: str) -> str:
            refused = await self.cases.reply(case, mod_id, name, text, anonymous=anonymous)
            if refused is not None:
                return refused
            as_staff = self.desk.handoffs.policy.anonymous_replies if anonymous is None else anonymous
            shown = escape_markdown(name)
            if as_staff:
                staff = escape_markdown(self.desk.handoffs.policy.staff_name)
                return self.cases.desk(CommandReplies).replied_as.format(name=shown, staff=staff, text=text)
            return self.cases.desk(CommandReplies).replied.format(name=shown, text=text)

        return work

    def _snippet_sender(self, snippet: str, *, anonymous: bool | None) -> Work:
        async def work(case: int, mod_id: str, name: str) -> str:
            text = await self.cases.snippet(snippet)
            if text is None:
                return self.cases.words.snippet_missing.format(name=escape_markdown(snippet[:40]))
            return await self._sender(text, anonymous=anonymous)(case, mod_id, name)

        return work

    async def _in_case(
        self, interaction: discord.Interaction[Any], work: Work, *, public: bool = False
    ) -> None:
        """Run `work` on the open case whose thread this is, in order with the thread's messages; refuse
        privately anyone else and anywhere else."""
        if not await self.may_moderate(interaction):
            await interaction.response.send_message(self.cases.words.not_moderator, ephemeral=True)
            return
        track_current(self.in_flight)
        thread_id = interaction.channel_id or 0
        case = await self.desk.handoffs.open_handoff_at(self.desk.name, "thread", str(thread_id))
        if case is None:
            await interaction.response.send_message(self.cases.words.not_in_case, ephemeral=True)
            return
        # answered before waiting for the thread's turn: Discord gives an interaction 3 s
        await interaction.response.defer(ephemeral=not public, thinking=True)
        async with self.desk.in_order(thread_id):
            user = interaction.user
            try:
                answer = await work(case, f"{PLATFORM}:{user.id}", user.display_name)
            except Exception:
                log.exception("discord desk: /%s failed", _name(interaction))
                answer = self.cases.words.failed
        await self._answer(interaction, answer)

    async def _in_server(
        self, interaction: discord.Interaction[Any], work: Callable[[str], Awaitable[str]]
    ) -> None:
        """Run `work` (given who does it) for a moderator anywhere in the desk's server; answer only them."""
        if not await self.may_moderate(interaction):
            await interaction.response.send_message(self.cases.words.not_moderator, ephemeral=True)
            return
        track_current(self.in_flight)
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            answer = await work(f"{PLATFORM}:{interaction.user.id}")
        except Exception:
            log.exception("discord desk: /%s failed", _name(interaction))
            answer = self.cases.words.failed
        await self._answer(interaction, answer)

    @staticmethod
    async def _answer(interaction: discord.Interaction[Any], text: str) -> None:
        await interaction.edit_original_response(content=_clip(text, MAX_LENGTH), allowed_mentions=NO_PINGS)


def _name(interaction: discord.Interaction[Any]) -> str:
    command = interaction.command
    return command.qualified_name if command is not None else "?"
