"""The moderator desk's everyday tools, platform-neutral: notes, snippets, transfer, scheduled and silent
closes, a user's earlier cases and transcript search.

Everything lives in the database, so both desks and every process share it, and every change of hands
is one conditional UPDATE: two moderators acting at once (a transfer and a claim, a close and a reply)
cannot both win. Timers are recomputed from timestamps on each tick, so they hold across restarts.
Desks parse their commands and call these; what they answer comes from `DeskWords`, the same on both.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from agents.base import Attachment
from bridges.catalogue import Phrasebook, Strings
from bridges.copies import Origin
from bridges.durations import parse_duration
from models import (
    OPEN_HANDOFF_STATUSES,
    Conversation,
    ConversationStatus,
    Handoff,
    HandoffStatus,
    Role,
    Snippet,
    TranscriptEntry,
    User,
)
from models.queries import open_handoff_id_of

if TYPE_CHECKING:
    from bridges.handoff import HandoffService

log = logging.getLogger(__name__)

SNIPPET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
HISTORY_SHOWN = 3
"""Earlier cases listed on a notification."""
FOUND_SHOWN = 10
"""Cases a search lists."""


class DeskWords(Strings, key="cases.desk"):
    """What the desk tools answer a moderator, the same on every desk."""

    not_moderator = "Only moderators can do that here."
    not_in_case = "Use this in an open case's thread or topic."
    closed_already = "This case is already closed."
    failed = "Sorry, that did not work. Please try again in a moment."
    noted = "Note kept in the transcript; the user does not see it."
    note_shown = "📝 note by {name}: {text}"
    claim_first = "Claim this case first: only the moderator who holds it writes to the user."
    held_by_other = "{name} holds this case: only they write to the user."
    empty = "Say what: the command needs some text after it."
    snippet_usage = (
        "Snippets: add NAME TEXT, edit NAME TEXT, remove NAME, list; or send one with its name. "
        "A name is up to 32 lower-case letters, digits, - or _."
    )
    snippet_saved = "Snippet “{name}” saved."
    snippet_exists = "A snippet “{name}” exists already: use edit to change it."
    snippet_missing = "There is no snippet “{name}”. List them with: snippet list."
    snippet_removed = "Snippet “{name}” removed."
    snippet_none = "No snippets yet. Add one with: snippet add NAME TEXT."
    unclaimed = "You let go of case #{id}: it waits for a moderator again."
    not_holder = "Only the moderator who holds this case can let it go."
    transferred = "Case #{id} now belongs to {name}."
    transfer_lost = "{name} took this case in the meantime; nothing was changed."
    transfer_usage = "Say to whom: the moderator to hand this case to."
    not_a_moderator = "{name} is not a moderator here, so the case stays where it is."
    close_usage = "Usage: close [in DURATION] [REASON], for example: close in 30m waiting for their receipt."
    reason_needed = "Give a reason: this desk asks for one on every close."
    close_scheduled = "Case #{id} closes in {delay} unless the user writes first."
    bad_duration = "I could not read “{word}” as a duration: use for example 30m, 2h or 1d."
    closed = "Case #{id} is closed; the user is back with the assistant."
    history_none = "{user} has no earlier cases."
    history_head = "{user} had {count} earlier case(s):"
    found_none = "No case matches."
    found_head = "Cases that match:"
    search_usage = "Usage: search [PLATFORM ID] WORDS: find closed and open cases by user and by words."


class CaseNotices(Strings, key="cases"):
    """What the tools tell the user, and the desk, about their case."""

    transferred_to = "{name} (a moderator) is now helping you."
    close_cancelled = "The scheduled close of case #{id} is cancelled: the user wrote."
    silence_warning_user = (
        "This conversation closes in {minutes} minutes if nobody writes. Reply to keep it open."
    )
    silence_warning_desk = "Case #{id} closes in {minutes} minutes if nobody writes."
    silence_reason = "no message from either side for {minutes} minutes"
    left_reason = "the user {why}"


@dataclass(frozen=True)
class PastCase:
    """One case of a user, as history and search list it."""

    handoff_id: int
    requested_at: datetime
    status: HandoffStatus
    closed_by: str | None
    reason: str | None
    """Why it was closed, when a moderator said."""
    refs: dict[str, Any]
    """Where each desk showed it, for a link to its thread or topic."""
    user_name: str = ""
    platform: str = ""

    def outcome(self) -> str:
        said = f" by {self.closed_by}" if self.closed_by and self.status not in OPEN_HANDOFF_STATUSES else ""
        why = f": {self.reason}" if self.reason else ""
        return f"{self.status.value}{said}{why}"


@dataclass(frozen=True)
class CloseTerms:
    delay: timedelta | None
    reason: str


def close_terms(text: str, delay: str | None = None) -> CloseTerms:
    """`in 30m waiting for a receipt` -> (30 minutes, "waiting for a receipt"); no "in" closes now.
    With `delay` given apart (Discord's option), all of `text` is the reason. Raises ValueError with
    the word that is no duration."""
    words = text.split()
    if delay is None and words[:1] == ["in"]:
        if len(words) < 2:
            raise ValueError("")
        delay, words = words[1], words[2:]
    if delay is None:
        return CloseTerms(None, " ".join(words))
    try:
        parsed = parse_duration(delay.strip())
    except ValueError:  # zero, or over ten years
        parsed = None
    if parsed is None:
        raise ValueError(delay.strip() or "?")
    return CloseTerms(parsed, " ".join(words))


def say_delay(delay: timedelta) -> str:
    minutes = round(delay.total_seconds() / 60)
    if minutes < 120:
        return f"{minutes} minute{'s' * (minutes != 1)}"
    hours = round(minutes / 60)
    return f"{hours} hours" if hours < 48 else f"{round(hours / 24)} days"


class Cases:
    """The tools, over one `HandoffService` (its database, clock, desks and ways to reach users)."""

    def __init__(self, handoffs: HandoffService) -> None:
        self.handoffs = handoffs

    @property
    def desk(self) -> Phrasebook:
        """What the tools say to moderators, in the desks' language (read each time: a reload may
        change it)."""
        return self.handoffs.catalogue.desk

    @property
    def words(self) -> DeskWords:
        return self.desk(DeskWords)

    # -- notes and replies ---------------------------------------------------------------------------

    async def note(
        self, handoff_id: int, moderator_id: str, moderator_name: str, text: str, *, from_desk: str
    ) -> bool:
        """Keep `text` in the transcript as internal, and show it on every other desk. False if the case
        is closed."""
        async with self.handoffs.db.begin() as session:
            handoff = await session.get_one(Handoff, handoff_id)
            if handoff.status not in OPEN_HANDOFF_STATUSES:
                return False
            session.add(
                TranscriptEntry(
                    conversation_id=handoff.conversation_id,
                    role=Role.MODERATOR,
                    text=text,
                    author_id=moderator_id,
                    internal=True,
                )
            )
        log.info("case #%s: note by %s", handoff_id, moderator_id)
        shown = self.words.note_shown.format(name=moderator_name, text=text)
        await self.handoffs.tell_desks(handoff_id, shown, skip=from_desk)
        return True

    async def plain_message(
        self,
        handoff_id: int,
        moderator_id: str,
        moderator_name: str,
        text: str,
        files: Sequence[Attachment] = (),
        *,
        from_desk: str,
        origin: Origin | None = None,
    ) -> str | None:
        """A moderator's plain message in a case's thread or topic: with `plain_messages = "reply"` the
        holder's goes to the user; anything else is a note. Returns what to tell the moderator, if
        anything: nothing for a note or a reply, and nothing to other moderators writing while someone
        holds the case (their words are notes); only with nobody holding it are they told to claim."""
        policy = self.handoffs.policy
        if policy.plain_messages == "reply":
            if await self.handoffs.moderator_says(
                handoff_id, moderator_id, moderator_name, text, files, origin=origin
            ):
                return None
            view = await self.handoffs.view(handoff_id)
            if view.claimed_by_name is None:
                await self.note(handoff_id, moderator_id, moderator_name, text, from_desk=from_desk)
                return self.words.claim_first
        if not await self.note(handoff_id, moderator_id, moderator_name, text, from_desk=from_desk):
            return self.words.closed_already
        return None

    async def reply(
        self,
        handoff_id: int,
        moderator_id: str,
        moderator_name: str,
        text: str,
        *,
        anonymous: bool | None = None,
    ) -> str | None:
        """`/reply` and `/areply`: None once sent, else why not (in words for the moderator)."""
        if not text.strip():
            return self.words.empty
        if await self.handoffs.moderator_says(
            handoff_id, moderator_id, moderator_name, text, anonymous=anonymous
        ):
            return None
        view = await self.handoffs.view(handoff_id)
        if view.status not in OPEN_HANDOFF_STATUSES:
            return self.words.closed_already
        if view.claimed_by_name is None:
            return self.words.claim_first
        return self.words.held_by_other.format(name=view.claimed_by_name)

    # -- snippets ------------------------------------------------------------------------------------

    async def save_snippet(self, name: str, text: str, by: str, *, new: bool) -> str:
        """`add` (new=True) or `edit`; the answer for the moderator."""
        name = name.lower()
        if not SNIPPET_NAME.fullmatch(name) or not text.strip():
            return self.words.snippet_usage
        try:
            async with self.handoffs.db.begin() as session:
                if new:
                    session.add(Snippet(name=name, text=text.strip(), updated_by=by))
                else:
                    result = await session.execute(
                        update(Snippet)
                        .where(Snippet.name == name)
                        .values(text=text.strip(), updated_by=by, updated_at=self.handoffs.now())
                        .execution_options(synchronize_session=False)
                    )
                    if result.rowcount != 1:  # type: ignore[attr-defined]
                        return self.words.snippet_missing.format(name=name)
        except IntegrityError:
            return self.words.snippet_exists.format(name=name)
        await self.handoffs.audit(f"snippet {name} {'added' if new else 'edited'} by {by}")
        return self.words.snippet_saved.format(name=name)

    async def remove_snippet(self, name: str, by: str) -> str:
        name = name.lower()
        async with self.handoffs.db.begin() as session:
            result = await session.execute(delete(Snippet).where(Snippet.name == name))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return self.words.snippet_missing.format(name=name)
        await self.handoffs.audit(f"snippet {name} removed by {by}")
        return self.words.snippet_removed.format(name=name)

    async def snippet(self, name: str) -> str | None:
        async with self.handoffs.db() as session:
            return await session.scalar(select(Snippet.text).where(Snippet.name == name.lower()))

    async def snippets(self, starting: str = "", limit: int = 25) -> list[tuple[str, str]]:
        """(name, text) by name; those whose name starts with `starting` (Discord's autocomplete)."""
        async with self.handoffs.db() as session:
            rows = await session.execute(
                select(Snippet.name, Snippet.text)
                .where(Snippet.name.startswith(starting.lower(), autoescape=True))
                .order_by(Snippet.name)
                .limit(limit)
            )
            return [(name, text) for name, text in rows]

    async def snippet_command(self, words: Sequence[str], by: str) -> tuple[str | None, str]:
        """The text-command form, as Telegram types it: `add NAME TEXT`, `edit NAME TEXT`, `remove NAME`,
        `list`, or a NAME to send. Returns (the snippet's text to send, or None; the answer)."""
        head = words[0].lower() if words else ""
        if head in ("add", "edit") and len(words) >= 3:
            return None, await self.save_snippet(words[1], " ".join(words[2:]), by, new=head == "add")
        if head == "remove" and len(words) == 2:
            return None, await self.remove_snippet(words[1], by)
        if head == "list" and len(words) == 1:
            return None, await self.snippet_list()
        if len(words) == 1 and head not in ("add", "edit", "remove"):
            text = await self.snippet(head)
            return text, "" if text is not None else self.words.snippet_missing.format(name=head)
        return None, self.words.snippet_usage

    async def snippet_list(self) -> str:
        found = await self.snippets(limit=100)
        if not found:
            return self.words.snippet_none
        return "\n".join(f"• {name}: {_excerpt(text, 60)}" for name, text in found)

    # -- transfer ------------------------------------------------------------------------------------

    async def unclaim(self, handoff_id: int, moderator_id: str, moderator_name: str) -> str:
        """The holder lets go: the case waits for a moderator again (escalation starts over)."""
        now = self.handoffs.now()
        async with self.handoffs.db.begin() as session:
            result = await session.execute(
                update(Handoff)
                .where(
                    Handoff.id == handoff_id,
                    Handoff.status == HandoffStatus.CLAIMED,
                    Handoff.claimed_by == moderator_id,
                )
                .values(
                    status=HandoffStatus.REQUESTED,
                    claimed_by=None,
                    claimed_by_name=None,
                    claimed_at=None,
                    last_word_at=None,
                    requested_at=now,
                    escalated_at=None,
                    due_at=None,  # the timers set its deadlines afresh, from now
                    expire_at=None,
                    silence_warned_at=None,
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return self.words.not_holder
            await self._system_entry(session, handoff_id, f"unclaimed by {moderator_name}", moderator_id)
        await self.handoffs.changed(handoff_id, f"case #{handoff_id} unclaimed by {moderator_name}")
        return self.words.unclaimed.format(id=handoff_id)

    async def transfer(self, handoff_id: int, by_id: str, by_name: str, to_id: str, to_name: str) -> str:
        """Hand an open case to another moderator. Conditional on the holder the caller saw, so a claim or
        another transfer in the meantime wins and this one changes nothing."""
        async with self.handoffs.db() as session:
            seen = await session.get_one(Handoff, handoff_id)
        if seen.status not in OPEN_HANDOFF_STATUSES:
            return self.words.closed_already
        holder = (
            Handoff.claimed_by.is_(None) if seen.claimed_by is None else Handoff.claimed_by == seen.claimed_by
        )
        now = self.handoffs.now()
        async with self.handoffs.db.begin() as session:
            result = await session.execute(
                update(Handoff)
                .where(Handoff.id == handoff_id, Handoff.status == seen.status, holder)
                .values(
                    status=HandoffStatus.CLAIMED,
                    claimed_by=to_id,
                    claimed_by_name=to_name,
                    claimed_at=seen.claimed_at or now,
                    last_word_at=now,
                    silence_warned_at=None,
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                now_held = await session.scalar(
                    select(Handoff.claimed_by_name).where(Handoff.id == handoff_id)
                )
                return self.words.transfer_lost.format(name=now_held or "someone")
            await self._system_entry(session, handoff_id, f"transferred to {to_name} by {by_name}", by_id)
            if seen.status == HandoffStatus.REQUESTED:
                conversation = await session.get_one(Conversation, seen.conversation_id)
                conversation.status = ConversationStatus.HUMAN
        before = seen.claimed_by_name or "nobody"
        summary = f"case #{handoff_id} transferred from {before} to {to_name} by {by_name}"
        await self.handoffs.changed(handoff_id, summary)
        if not self.handoffs.policy.anonymous_replies:
            say = (await self.handoffs.user_words(handoff_id))(CaseNotices)
            await self.handoffs.tell_user(handoff_id, say.transferred_to.format(name=to_name))
        return self.words.transferred.format(id=handoff_id, name=to_name)

    # -- closing -------------------------------------------------------------------------------------

    async def close(
        self, handoff_id: int, by_id: str, by_name: str, text: str, *, delay: str | None = None
    ) -> str:
        """`/close [in DURATION] [REASON]` (or the reason `text` with a `delay` apart): now, or
        scheduled (cancelled if the user writes first)."""
        try:
            terms = close_terms(text, delay)
        except ValueError as exc:
            word = str(exc)
            return self.words.bad_duration.format(word=word[:40]) if word else self.words.close_usage
        if self.handoffs.policy.require_close_reason and not terms.reason.strip():
            return self.words.reason_needed
        reason = terms.reason.strip() or None
        if terms.delay is None:
            if await self.handoffs.close(handoff_id, HandoffStatus.RESOLVED, by_id, by_name, reason=reason):
                return self.words.closed.format(id=handoff_id)
            return self.words.closed_already
        async with self.handoffs.db.begin() as session:
            result = await session.execute(
                update(Handoff)
                .where(Handoff.id == handoff_id, Handoff.status.in_(OPEN_HANDOFF_STATUSES))
                .values(
                    close_at=self.handoffs.now() + terms.delay,
                    close_reason=reason,
                    close_scheduled_by=by_id,
                    close_scheduled_by_name=by_name,
                )
                .execution_options(synchronize_session=False)
            )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return self.words.closed_already
        answer = self.words.close_scheduled.format(id=handoff_id, delay=say_delay(terms.delay))
        await self.handoffs.tell_desks(handoff_id, answer)
        log.info("case #%s: close in %s scheduled by %s", handoff_id, terms.delay, by_id)
        return answer

    async def user_wrote(self, handoff_id: int) -> None:
        """The user wrote: a scheduled close is off, and the silence count starts again."""
        async with self.handoffs.db.begin() as session:
            result = await session.execute(
                update(Handoff)
                .where(Handoff.id == handoff_id, Handoff.close_at.is_not(None))
                .values(
                    close_at=None, close_scheduled_by=None, close_scheduled_by_name=None, close_reason=None
                )
                .execution_options(synchronize_session=False)
            )
            await session.execute(
                update(Handoff)
                .where(Handoff.id == handoff_id)
                .values(last_word_at=self.handoffs.now(), silence_warned_at=None)
                .execution_options(synchronize_session=False)
            )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            await self.handoffs.tell_desks(
                handoff_id, self.desk(CaseNotices).close_cancelled.format(id=handoff_id)
            )
            log.info("case #%s: scheduled close cancelled, the user wrote", handoff_id)

    async def user_gone(
        self, platform: str, user_id: str, why: str, *, where: Callable[[str], bool] | None = None
    ) -> bool:
        """The user left the server or blocked the bot: close their open case, without telling them.
        `where(chat_id)` says whether the case's chat is one they are gone from (a user who leaves one
        server still reads their DMs and the other servers)."""
        async with self.handoffs.db() as session:
            handoff_id = await session.scalar(open_handoff_id_of(platform, user_id))
            if handoff_id is not None and where is not None:
                handoff = await session.get_one(Handoff, handoff_id)
                conversation = await session.get_one(Conversation, handoff.conversation_id)
                if not where(conversation.chat_id):
                    return False
        if handoff_id is None:
            return False
        return await self.handoffs.close(
            handoff_id,
            HandoffStatus.RESOLVED,
            "system",
            "the system",
            reason=self.desk(CaseNotices).left_reason.format(why=why),
            notify_user=False,
        )

    async def tick(self, now: datetime) -> None:
        """Scheduled closes that are due; claimed cases silent long enough to warn, or to close."""
        async with self.handoffs.db() as session:
            due = list(
                await session.execute(
                    select(Handoff.id, Handoff.close_scheduled_by, Handoff.close_scheduled_by_name).where(
                        Handoff.close_at <= now, Handoff.status.in_(OPEN_HANDOFF_STATUSES)
                    )
                )
            )
        for handoff_id, by_id, by_name in due:  # unless the user wrote meanwhile (that cancels it)
            await self.handoffs.close(
                handoff_id,
                HandoffStatus.RESOLVED,
                by_id or "timer",
                by_name or "a scheduled close",
                only_if=Handoff.close_at <= now,
            )
        policy = self.handoffs.policy
        if policy.auto_close is None:
            return
        async with self.handoffs.db() as session:
            silent = list(
                await session.execute(self.silent_cases(now - policy.auto_close + policy.auto_close_warning))
            )
        minutes = round(policy.auto_close.total_seconds() / 60)
        for handoff_id, last, warned_at in silent:
            if (
                warned_at is not None
                and last <= now - policy.auto_close
                and warned_at <= now - policy.auto_close_warning
            ):
                reason = self.desk(CaseNotices).silence_reason.format(minutes=minutes)
                still_silent = (
                    func.coalesce(Handoff.last_word_at, Handoff.claimed_at) <= now - policy.auto_close
                )
                await self.handoffs.close(
                    handoff_id,
                    HandoffStatus.RESOLVED,
                    "timer",
                    "auto-close",
                    reason=reason,
                    only_if=still_silent,
                )
            elif warned_at is None:
                await self._warn(handoff_id, policy.auto_close_warning)

    @staticmethod
    def silent_cases(quiet_since: datetime) -> Select[int, datetime, datetime | None]:
        """Claimed cases with no word from the user or a moderator (notes do not count) since
        `quiet_since`: (id, the last word or the claim, when the warning went out)."""
        last = func.coalesce(Handoff.last_word_at, Handoff.claimed_at)
        return (
            select(Handoff.id, last, Handoff.silence_warned_at)
            .where(Handoff.status == HandoffStatus.CLAIMED, last <= quiet_since)
            .order_by(Handoff.id)
        )

    async def _warn(self, handoff_id: int, before: timedelta) -> None:
        async with self.handoffs.db.begin() as session:
            result = await session.execute(
                update(Handoff)
                .where(Handoff.id == handoff_id, Handoff.silence_warned_at.is_(None))
                .values(silence_warned_at=self.handoffs.now())
                .execution_options(synchronize_session=False)
            )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return  # another process warned
        minutes = round(before.total_seconds() / 60)
        log.info("case #%s: silent, warned before an auto-close", handoff_id)
        say = (await self.handoffs.user_words(handoff_id))(CaseNotices)
        await self.handoffs.tell_user(handoff_id, say.silence_warning_user.format(minutes=minutes))
        await self.handoffs.tell_desks(
            handoff_id, self.desk(CaseNotices).silence_warning_desk.format(id=handoff_id, minutes=minutes)
        )

    # -- history and search --------------------------------------------------------------------------

    async def history(self, handoff_id: int, limit: int | None = None) -> tuple[int, list[PastCase]]:
        """How many earlier cases this case's user had, and the newest `limit` of them."""
        async with self.handoffs.db() as session:
            user_id = await session.scalar(
                select(Conversation.user_id)
                .join(Handoff, Handoff.conversation_id == Conversation.id)
                .where(Handoff.id == handoff_id)
            )
            earlier = (
                select(Handoff)
                .join(Conversation, Conversation.id == Handoff.conversation_id)
                .where(Conversation.user_id == user_id, Handoff.id < handoff_id)
            )
            count = await session.scalar(select(func.count()).select_from(earlier.subquery())) or 0
            rows = await session.scalars(earlier.order_by(Handoff.id.desc()).limit(limit))
            return count, [_past(handoff) for handoff in rows]

    async def search(
        self, words: str, platform: str | None = None, user_id: str | None = None
    ) -> list[PastCase]:
        """Cases of a user (when named) whose conversation's transcript holds `words`, in any letter case:
        a conversation's words are matched as a whole, so each of its cases is found."""
        query = (
            select(Handoff, User)
            .join(Conversation, Conversation.id == Handoff.conversation_id)
            .join(User, User.id == Conversation.user_id)
            .order_by(Handoff.id.desc())
            .limit(FOUND_SHOWN)
        )
        if platform is not None and user_id is not None:
            query = query.where(User.platform == platform, User.external_id == user_id)
        if words.strip():
            pattern = f"%{_like_escape(words.strip().lower())}%"
            said = select(TranscriptEntry.id).where(
                TranscriptEntry.conversation_id == Handoff.conversation_id,
                func.lower(TranscriptEntry.text).like(pattern, escape="\\"),
            )
            query = query.where(said.exists())
        async with self.handoffs.db() as session:
            rows = await session.execute(query)
            return [_past(handoff, user) for handoff, user in rows]

    @staticmethod
    async def _system_entry(session: Any, handoff_id: int, text: str, author_id: str) -> None:
        conversation_id = await session.scalar(
            select(Handoff.conversation_id).where(Handoff.id == handoff_id)
        )
        session.add(
            TranscriptEntry(conversation_id=conversation_id, role=Role.SYSTEM, text=text, author_id=author_id)
        )


def past_lines(cases: Sequence[PastCase], link: Callable[[PastCase], str | None]) -> list[str]:
    """One line per case, as history and search list them: id, date, user, outcome, and a link to its
    thread or topic where the desk has one."""
    lines = []
    for case in cases:
        who = f" {case.user_name} ({case.platform})" if case.user_name else ""
        where = link(case)
        lines.append(
            f"#{case.handoff_id} {case.requested_at:%Y-%m-%d}{who}: {case.outcome()}"
            + (f" {where}" if where else "")
        )
    return lines


def _past(handoff: Handoff, user: User | None = None) -> PastCase:
    return PastCase(
        handoff.id,
        handoff.requested_at,
        handoff.status,
        handoff.closed_by_name,
        handoff.close_reason,
        dict(handoff.notification_refs),
        user.display_name if user is not None else "",
        user.platform if user is not None else "",
    )


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _excerpt(text: str, limit: int) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1].rstrip() + "…"
