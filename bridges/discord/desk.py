"""The Discord moderator desk: each handoff gets a notification in the moderator channel, with a thread
started on it where the user's messages appear and the claiming moderator's replies are picked up.

Nothing lives only in memory, so a restart at any state loses nothing: the Claim / Resolve / Return
buttons carry the handoff id in their custom_id (`HandoffButton`), and a thread is traced back to its
handoff through the refs `open` returned, which the service stored (`HandoffService.open_handoff_at`).
Every request allows no mentions except the configured moderator role, on the notification and on the
escalation ping; what users, agents and moderators wrote never notifies anyone.
"""

from __future__ import annotations

import asyncio
import io
import logging
import weakref
from collections.abc import Mapping
from typing import Any

import discord
from discord.utils import escape_markdown

from agents.base import Attachment
from bridges.cases import PastCase, past_lines
from bridges.catalogue import Strings
from bridges.copies import Origin, desk_side
from bridges.discord.cog import PLATFORM, is_moderator, track_current
from bridges.discord.config import PING, DiscordDeskConfig
from bridges.discord.files import UPLOAD_LIMIT, attachments_of, upload
from bridges.discord.surface import MAX_LENGTH, NO_PINGS, Budgets, surface_errors
from bridges.discord.views import HandoffAction, HandoffButton
from bridges.handoff import HandoffService
from bridges.mirror import Mirror
from bridges.moderator_desk import HandoffView
from bridges.sla import SlaNotices
from bridges.split import split_text, utf16_length
from bridges.takeover import CONTACT, TAKEOVER
from models import OPEN_HANDOFF_STATUSES, HandoffStatus

log = logging.getLogger(__name__)

MAX_THREAD_NAME = 100
MAX_DESCRIPTION = 3500
"""Below Discord's 4,096, so the whole embed stays under its 6,000-character total."""
MAX_FIELD = 1024
MAX_RECENT_ENTRY = 300


class DeskReplies(Strings, key="discord.desk"):
    """What the desk says to moderators."""

    requested = "{ping}Handoff #{id}: **{user}** ({platform}) asked for a moderator."
    taken_over = "Handoff #{id}: **{moderator}** took over the conversation with **{user}** ({platform})."
    contacted = "Handoff #{id}: **{moderator}** opened a conversation with **{user}** ({platform})."
    escalated = "{ping}Handoff #{id} from **{user}** is still waiting for a moderator."
    overdue = "{ping}Handoff #{id} from **{user}** is past its first-response target: nobody has answered."
    not_moderator = "Only moderators can do that."
    claimed = "You claimed handoff #{id}. What you write in its thread now goes to {user}."
    claimed_already = "{name} has already claimed this handoff."
    closed_resolved = "Handoff #{id} is resolved; {user} is back with the assistant."
    closed_returned = "Handoff #{id} is handed back to the assistant."
    closed_already = "This handoff is already closed."
    earlier_cases = "Earlier cases: {count}"
    failed = "Sorry, that did not work. Please try again in a moment."
    not_passed_on = "Only moderators can reply to the user; this message was not passed on."
    thread_claimed = "**{name}** claimed this handoff: what they write here goes to the user."
    thread_closed = "{status}. Messages here no longer reach the user."


_STATUS: dict[HandoffStatus, tuple[str, discord.Colour]] = {
    HandoffStatus.REQUESTED: ("Waiting for a moderator", discord.Colour.orange()),
    HandoffStatus.CLAIMED: ("Claimed by {claimer}", discord.Colour.blurple()),
    HandoffStatus.RESOLVED: ("Resolved by {closer}", discord.Colour.green()),
    HandoffStatus.RETURNED: ("Returned to the bot by {closer}", discord.Colour.light_grey()),
    HandoffStatus.EXPIRED: ("Expired: nobody claimed it in time", discord.Colour.dark_grey()),
}
_ACTIONS: dict[HandoffStatus, tuple[HandoffAction, ...]] = {
    HandoffStatus.REQUESTED: ("claim", "resolve", "return"),
    HandoffStatus.CLAIMED: ("resolve", "return"),
}
_SPEAKERS = {"agent": "Assistant", "moderator": "Moderator"}


class DiscordDesk:
    """A `ModeratorDesk` in one Discord channel. The bridge routes button presses (`on_handoff_press`)
    and messages (`on_message`) here; the main cog leaves this channel and its threads alone."""

    name = PLATFORM
    """The key of its refs, by which `/block` in a handoff's thread finds the handoff."""
    place_keys: tuple[str, ...] = ("thread",)
    """A moderator's message is traced to its handoff by the thread it was written in."""

    def __init__(
        self,
        client: discord.Client,
        config: DiscordDeskConfig,
        handoffs: HandoffService,
        budgets: Budgets,
        in_flight: set[asyncio.Task[Any]],
        *,
        upload_limit: int = UPLOAD_LIMIT,
    ) -> None:
        self.config = config
        self.upload_limit = upload_limit
        self.handoffs = handoffs
        self._client = client
        self._budgets = budgets
        self._in_flight = in_flight
        """The bridge's handlers in progress, which a shutdown lets finish."""
        self._default_ping = (f"role:{config.ping_role}",) if config.ping_role is not None else ()
        self._mirror = Mirror(handoffs)
        self._threads: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()
        """One lock per thread while its messages are being relayed: discord.py handles every message
        in a task of its own, and a moderator's messages must reach the user in the order written."""

    @property
    def words(self) -> DeskReplies:
        """What the desk says, in the desks' language."""
        return self.handoffs.catalogue.desk(DeskReplies)

    # -- ModeratorDesk -------------------------------------------------------------------------------

    async def open(self, view: HandoffView) -> dict[str, Any]:
        channel_id = self.config.channel
        words = self.words
        headline = {TAKEOVER: words.taken_over, CONTACT: words.contacted}.get(
            view.requested_by, words.requested
        )
        waiting = view.status == HandoffStatus.REQUESTED  # a case a moderator opened needs nobody pinged
        message = await self._send(
            channel_id, *self._notice(headline, view, ping=waiting), **self._card(view)
        )
        refs: dict[str, Any] = {"channel": str(channel_id), "message": str(message.id)}
        await self._pace(channel_id)
        name = _clip(f"#{view.handoff_id} {view.user_name}".strip(), MAX_THREAD_NAME)
        try:
            # Through the raw route: the desk's server may be on a shard this process does not run, and
            # discord.py's Message.create_thread needs that server cached.
            thread = await self._client.http.start_thread_with_message(
                channel_id, message.id, name=name, auto_archive_duration=1440
            )
            refs["thread"] = str(thread["id"])
        except discord.HTTPException as exc:  # user messages then go to the channel itself
            log.warning("handoff %s: could not start a thread (status %s)", view.handoff_id, exc.status)
        return refs

    async def update(self, refs: Mapping[str, Any], view: HandoffView) -> None:
        """Redraw the notification; ping again on escalation; note a claim or a close in the thread.

        The service escalates a request once (a conditional UPDATE), and it is the only update that
        leaves a request unclaimed, so "requested and escalated" means the escalation is happening now.
        """
        channel_id, notification = await self._redraw(refs, view)
        if view.status == HandoffStatus.REQUESTED:
            if view.escalated:
                reference = notification.to_reference(fail_if_not_exists=False)
                await self._send(channel_id, *self._notice(self.words.escalated, view), reference=reference)
            return
        if view.status == HandoffStatus.CLAIMED:
            note = self.words.thread_claimed.format(name=escape_markdown(view.claimed_by_name or ""))
        else:
            note = self.words.thread_closed.format(status=_status(view)[0])
        await self._send(_thread_of(refs), content=note)

    async def post(self, refs: Mapping[str, Any], author: str, text: str) -> str | None:
        chunks = split_text(_said(author, text), MAX_LENGTH, utf16_length)
        sent = [await self._send(_thread_of(refs), content=chunk) for chunk in chunks]
        return str(sent[0].id) if len(sent) == 1 else None

    async def edit(self, refs: Mapping[str, Any], message_id: str, author: str, text: str) -> None:
        thread = _thread_of(refs)
        await self._pace(thread)
        message = self._client.get_partial_messageable(thread).get_partial_message(int(message_id))
        await message.edit(content=_clip(_said(author, text), MAX_LENGTH), allowed_mentions=NO_PINGS)

    async def post_file(self, refs: Mapping[str, Any], author: str, file: Attachment) -> None:
        async with surface_errors():
            await self._send(
                _thread_of(refs), content=f"**{escape_markdown(author)}:**", files=[upload(file)]
            )

    async def note(self, refs: Mapping[str, Any], text: str) -> None:
        await self._send(_thread_of(refs), content=_clip(escape_markdown(text), MAX_LENGTH))

    async def overdue(self, refs: Mapping[str, Any], view: HandoffView) -> None:
        """Mark the notification as past its first-response target and ping, in reply to it."""
        channel_id, notification = await self._redraw(refs, view)
        reference = notification.to_reference(fail_if_not_exists=False)
        await self._send(channel_id, *self._notice(self.words.overdue, view), reference=reference)

    async def _redraw(self, refs: Mapping[str, Any], view: HandoffView) -> tuple[int, discord.PartialMessage]:
        """Edit the notification to show `view`; returns its channel and the message."""
        channel_id = int(refs["channel"])
        notification = self._client.get_partial_messageable(channel_id).get_partial_message(
            int(refs["message"])
        )
        await self._pace(channel_id)
        await notification.edit(allowed_mentions=NO_PINGS, **self._card(view))
        return channel_id, notification

    async def log(self, view: HandoffView, summary: str, transcript: str | None) -> None:
        if self.config.log_channel is None:
            return
        user = f"{view.platform} user {escape_markdown(view.user_name)} ({view.user_id})"
        files = (
            [discord.File(io.BytesIO(transcript.encode()), filename=f"handoff-{view.handoff_id}.txt")]
            if transcript is not None
            else []
        )
        await self._send(
            self.config.log_channel,
            content=_clip(f"{escape_markdown(summary)}\n{user}", MAX_LENGTH),
            files=files,
        )

    async def audit(self, summary: str) -> None:
        if self.config.log_channel is not None:
            await self._send(self.config.log_channel, content=_clip(escape_markdown(summary), MAX_LENGTH))

    # -- Discord events ------------------------------------------------------------------------------

    def is_moderator(self, user: discord.abc.User) -> bool:
        """A member with a moderator role, or with Manage Server (the same people `/block` allows)."""
        return is_moderator(user, self.config)

    async def on_handoff_press(
        self, interaction: discord.Interaction[Any], action: HandoffAction, handoff_id: int
    ) -> None:
        """Claim, resolve or return; the presser alone is told the outcome (who won, if they lost)."""
        if interaction.channel_id != self.config.channel or not self.is_moderator(interaction.user):
            await interaction.response.send_message(self.words.not_moderator, ephemeral=True)
            return
        track_current(self._in_flight)
        await interaction.response.defer(ephemeral=True, thinking=True)  # the claim notifies everyone first
        moderator_id, moderator_name = f"discord:{interaction.user.id}", interaction.user.display_name
        try:
            if action == "claim":
                outcome = await self.handoffs.claim(handoff_id, moderator_id, moderator_name)
                if outcome.won:
                    view = await self.handoffs.view(handoff_id)
                    reply = self.words.claimed.format(id=handoff_id, user=escape_markdown(view.user_name))
                elif outcome.claimer_name is not None:
                    reply = self.words.claimed_already.format(name=escape_markdown(outcome.claimer_name))
                else:
                    reply = self.words.closed_already
            else:
                resolve = action == "resolve"
                status = HandoffStatus.RESOLVED if resolve else HandoffStatus.RETURNED
                if await self.handoffs.close(handoff_id, status, moderator_id, moderator_name):
                    view = await self.handoffs.view(handoff_id)
                    closed = self.words.closed_resolved if resolve else self.words.closed_returned
                    reply = closed.format(id=handoff_id, user=escape_markdown(view.user_name))
                else:
                    reply = self.words.closed_already
        except Exception:
            log.exception("handoff %s: %s by %s failed", handoff_id, action, moderator_id)
            reply = self.words.failed
        await interaction.edit_original_response(content=reply, allowed_mentions=NO_PINGS)

    async def on_message(self, message: discord.Message) -> None:
        """A moderator's plain message in a case's thread: a reply or a note, as `Cases.plain_message`
        decides (the desk's `plain_messages`); anyone else is told it was not passed on."""
        thread = message.channel
        if not isinstance(thread, discord.Thread) or thread.parent_id != self.config.channel:
            return
        files = attachments_of(message)
        if message.author.bot or message.webhook_id is not None or not (message.content.strip() or files):
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        track_current(self._in_flight)
        async with self.in_order(thread.id):  # taken before any await: keeps order
            handoff_id = await self.handoffs.open_handoff_at(self.name, "thread", str(thread.id))
            if handoff_id is None:
                return  # a closed handoff's thread: moderators may go on talking among themselves
            if not self.is_moderator(message.author):
                await self._answer(message, self.words.not_passed_on)
                return
            author = message.author
            answer = await self.handoffs.cases.plain_message(
                handoff_id,
                f"discord:{author.id}",
                author.display_name,
                _readable(message),
                files,
                from_desk=self.name,
                origin=Origin(desk_side(self.name), str(thread.id), str(message.id)),
            )
            if answer is not None:
                await self._answer(message, answer)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """A moderator edited a reply in a case's thread: the user's copy is edited to match."""
        message = payload.message
        if "content" not in payload.data or message.author.bot or not self._in_desk(payload.channel_id):
            return
        origin = Origin(desk_side(self.name), str(payload.channel_id), str(message.id))
        async with self.in_order(payload.channel_id):
            await self._mirror.moderator_edited(origin, message.author.display_name, _readable(message))

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        """A moderator deleted a reply in a case's thread: the user's copy says so."""
        if self._in_desk(payload.channel_id):
            origin = Origin(desk_side(self.name), str(payload.channel_id), str(payload.message_id))
            async with self.in_order(payload.channel_id):
                await self._mirror.moderator_deleted(origin)

    def _in_desk(self, channel_id: int) -> bool:
        """Whether the channel is one of the desk's case threads (as cached: the bot opened them)."""
        channel = self._client.get_channel(channel_id)
        return isinstance(channel, discord.Thread) and channel.parent_id == self.config.channel

    def in_order(self, thread_id: int) -> asyncio.Lock:
        """The lock of a case's thread: its messages and desk commands are handled one at a time, in
        arrival order (take it before the first await; asyncio wakes waiters first in, first out)."""
        return self._threads.setdefault(thread_id, asyncio.Lock())

    def past_link(self, case: PastCase) -> str | None:
        """A past case's thread on this desk, if it had one and the desk's server is known."""
        thread = (case.refs.get(self.name) or {}).get("thread")
        guild = getattr(self._client.get_channel(self.config.channel), "guild", None)
        return f"https://discord.com/channels/{guild.id}/{thread}" if thread and guild else None

    # -- helpers -------------------------------------------------------------------------------------

    def _card(self, view: HandoffView) -> dict[str, Any]:
        """The notification's embed and buttons, with the user's earlier cases linked to their threads."""
        card = _card(view)
        if view.earlier_cases:
            lines = past_lines(view.history, self.past_link)
            card["embed"].add_field(
                name=self.words.earlier_cases.format(count=view.earlier_cases),
                value=_clip(escape_markdown("\n".join(lines)), MAX_FIELD),
                inline=False,
            )
        return card

    def _notice(
        self, template: str, view: HandoffView, *, ping: bool = True
    ) -> tuple[str, discord.AllowedMentions]:
        """A message that pings (unless `ping` is off): the case's intake reason's pings on this desk,
        else the desk's role; only those may be mentioned."""
        wanted = (view.pings.get(self.name) or self._default_ping) if ping else ()
        pings = [PING.fullmatch(str(entry)) for entry in wanted]
        roles = [int(match[2]) for match in pings if match and match[1] == "role"]
        users = [int(match[2]) for match in pings if match and match[1] == "user"]
        mentions = [f"<@&{role}>" for role in roles] + [f"<@{user}>" for user in users]
        text = template.format(
            ping="".join(f"{mention} " for mention in mentions),
            id=view.handoff_id,
            user=escape_markdown(view.user_name),
            platform=view.platform,
            moderator=escape_markdown(view.claimed_by_name or ""),
        )
        allowed = discord.AllowedMentions(
            everyone=False,
            users=[discord.Object(user) for user in users] or False,
            roles=[discord.Object(role) for role in roles] or False,
            replied_user=False,
        )
        return _clip(text, MAX_LENGTH), allowed

    async def _answer(self, message: discord.Message, text: str) -> None:
        await self._send(
            message.channel.id, content=text, reference=message.to_reference(fail_if_not_exists=False)
        )

    def _channel(self, channel_id: int) -> discord.abc.Messageable:
        """The cached channel, whose messages know their server (a thread can only be started on
        those); a partial one if the cache does not have it."""
        channel = self._client.get_channel(channel_id)
        if isinstance(channel, discord.abc.Messageable):
            return channel
        return self._client.get_partial_messageable(channel_id)

    async def _pace(self, channel_id: int) -> None:
        for budget in self._budgets.for_channel(channel_id):
            await budget.acquire()

    async def _send(
        self,
        channel_id: int,
        content: str,
        allowed_mentions: discord.AllowedMentions = NO_PINGS,
        **fields: Any,
    ) -> discord.Message:
        """Post within the bot's budgets; nobody is mentioned but whom a `_notice` names."""
        await self._pace(channel_id)
        return await self._channel(channel_id).send(content, allowed_mentions=allowed_mentions, **fields)


def _said(author: str, text: str) -> str:
    """A user's message as the desk shows it: their name in bold, then their words."""
    return f"**{escape_markdown(author)}:** {text}"


def _readable(message: discord.Message) -> str:
    """The text with mentions as @names, as a user on any platform can read it. clean_content also
    breaks @everyone with a zero-width space, which the user's side does not need (nothing it sends
    pings) and the transcript should not keep."""
    return message.clean_content.replace("@\u200b", "@")


def _thread_of(refs: Mapping[str, Any]) -> int:
    """The handoff's thread, or the moderator channel if no thread could be started."""
    return int(refs.get("thread") or refs["channel"])


def _card(view: HandoffView) -> dict[str, Any]:
    """The notification's embed and buttons, for posting and for every later edit."""
    status, colour = _status(view)
    url = view.jump_url if view.jump_url and view.jump_url.startswith(("https://", "http://")) else None
    embed = discord.Embed(
        title=f"Handoff #{view.handoff_id}", url=url, colour=colour, description=_recent(view)
    )
    embed.add_field(name="Platform", value=view.platform)
    embed.add_field(
        name="User", value=_clip(f"{escape_markdown(view.user_name)} ({view.user_id})", MAX_FIELD)
    )
    embed.add_field(name="Status", value=_clip(status, MAX_FIELD))
    if view.priority:
        embed.add_field(name="Priority", value=view.priority)
    reason = f"{view.intake_label}: {view.reason}" if view.intake_label else view.reason
    embed.add_field(name="Reason", value=_clip(reason or "-", MAX_FIELD), inline=False)
    buttons = discord.ui.View(timeout=None)
    for action in _ACTIONS.get(view.status, ()):
        buttons.add_item(HandoffButton(action, view.handoff_id))
    if url is not None:
        buttons.add_item(discord.ui.Button(label="Open the chat", url=url))
    return {"embed": embed, "view": buttons if buttons.children else None}


def _status(view: HandoffView) -> tuple[str, discord.Colour]:
    text, colour = _STATUS[view.status]
    if view.status == HandoffStatus.REQUESTED and view.escalated:
        text, colour = "Still waiting for a moderator (escalated)", discord.Colour.red()
    text = text.format(
        claimer=escape_markdown(view.claimed_by_name or "nobody"),
        closer=escape_markdown(view.closed_by or "nobody"),
    )
    if view.status in (HandoffStatus.RESOLVED, HandoffStatus.RETURNED) and view.claimed_by_name:
        text += f" (claimed by {escape_markdown(view.claimed_by_name)})"
    if view.overdue and view.status in OPEN_HANDOFF_STATUSES:
        text, colour = f"{text} · {SlaNotices.mark}", discord.Colour.red()
    return text, colour


def _recent(view: HandoffView) -> str:
    """The newest transcript entries that fit, oldest first."""
    lines: list[str] = []
    room = MAX_DESCRIPTION
    for role, text in reversed(view.recent):
        speaker = escape_markdown(view.user_name) if role == "user" else _SPEAKERS.get(role, role)
        line = f"**{speaker}:** {_clip(text, MAX_RECENT_ENTRY)}"
        room -= utf16_length(line) + 1
        if room < 0:
            break
        lines.append(line)
    return "\n".join(reversed(lines)) or "(no messages yet)"


def _clip(text: str, limit: int) -> str:
    """At most `limit` characters (counted as UTF-16, never fewer than Discord counts), cut at a word."""
    if utf16_length(text) <= limit:
        return text
    return split_text(text, limit - 1, utf16_length)[0].rstrip() + "…"
