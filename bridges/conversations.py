"""The conversations and their transcripts, as the named steps the Relay takes on them.

Each step is its own transaction and outlives a database restart (`survives_db_outage`), so a retry
repeats only work that did not commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Attachment, HistoryEntry, Usage
from bridges.batches import Batched
from bridges.bindings import Bindings
from bridges.controls import ControlNotices
from bridges.handoff import open_handoff_of
from bridges.inbox import Inbox, Receipt
from bridges.outage import DatabaseUnavailable, survives_db_outage
from bridges.quotas import Keys, Quotas
from bridges.surface import Inbound
from models import Conversation, ConversationStatus, Handoff, HandoffStatus, Role, TranscriptEntry, User
from models.queries import user_row


class Conversations:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        *,
        inbox: Inbox,
        bindings: Bindings,
        quotas: Quotas,
        now: Callable[[], datetime],
        outage_grace: float,
    ) -> None:
        self.db = db
        self.inbox = inbox
        self.bindings = bindings
        self.quotas = quotas
        self.now = now
        self.outage_grace = outage_grace
        self._marking = Batched(self._mark_all, shared=(DatabaseUnavailable,))
        self._finishing = Batched(self._finish_all, shared=(DatabaseUnavailable,))

    @survives_db_outage
    async def current(self, inbound: Inbound) -> tuple[Conversation | None, Handoff | None]:
        """The user's open conversation in this place, and its open handoff, as they are now."""
        async with self.db() as session:
            conversation: Conversation | None = await session.scalar(_open_conversation(inbound))
            handoff = await open_handoff_of(session, conversation.id) if conversation else None
        return conversation, handoff

    @survives_db_outage
    async def open_for(self, inbound: Inbound, idle_timeout: timedelta) -> Conversation:
        """The live conversation for this user in this place (see `live_conversation`)."""
        async with self.db.begin() as session:
            user = await user_row(session, inbound.platform, inbound.user_id, inbound.display_name)
            current = await session.scalar(_open_conversation(inbound))
            stored = await self.bindings.stored(session, [inbound])
            conversation = live_conversation(
                inbound, user, current, idle_timeout, self.now(), self.bindings.agent_for(inbound, stored)
            )
            session.add(conversation)
            return conversation

    @survives_db_outage
    async def close(self, conversation_id: int) -> None:
        async with self.db.begin() as session:
            close(await session.get_one(Conversation, conversation_id), self.now())

    @survives_db_outage
    async def history(self, conversation_id: int, length: int) -> tuple[HistoryEntry, ...]:
        """The `length` entries before the newest (the message being answered), oldest first."""
        async with self.db() as session:
            return await _history(session, conversation_id, length, skip_newest=True)

    @survives_db_outage
    async def record(
        self,
        conversation_id: int,
        role: Role,
        text: str,
        message_ids: Sequence[str] = (),
        author_id: str = "",
        *,
        handled: Receipt | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> None:
        """Add a transcript entry (with its files' metadata, never their bytes); with `handled`, mark
        that inbound message as taken by its turn in the same transaction, so a crash can neither lose
        it nor answer it twice."""
        async with self.db.begin() as session:
            if handled is not None:
                await session.execute(self.inbox.handled(handled))
            session.add(transcript_entry(conversation_id, role, text, message_ids, attachments, author_id))

    async def set_pending(
        self, conversation_id: int, pending: dict[str, Any] | None = None, *, message_id: str = ""
    ) -> None:
        """Mark a reply as being written (who writes it, what was asked, the messages posted so far), so
        a crash leaves a trace its next start reports. The marks of every reply posting meanwhile are
        written in the same transaction (bridges/batches.py)."""
        await self._marking(_Mark(conversation_id, pending, message_id))

    @survives_db_outage
    async def _mark_all(self, marks: Sequence[_Mark]) -> list[None]:
        async with self.db.begin() as session:
            rows = await _by_id(session, {mark.conversation_id for mark in marks})
            for mark in marks:  # in order: two messages of one reply are both kept
                conversation = rows[mark.conversation_id]
                current = mark.pending if mark.pending is not None else dict(conversation.pending_reply or {})
                if mark.message_id:
                    current["message_ids"] = [*current.get("message_ids", []), mark.message_id]
                conversation.pending_reply = current
        return [None] * len(marks)

    async def finish_turn(self, end: TurnEnd) -> None:
        """Record the agent's reply, keep the provider state, clear the pending mark, and count the
        tokens spent (as reported), in one transaction shared with every turn ending meanwhile."""
        await self._finishing(end)

    @survives_db_outage
    async def _finish_all(self, ends: Sequence[TurnEnd]) -> list[None]:
        async with self.db.begin() as session:
            rows = await _by_id(session, {end.conversation_id for end in ends})
            now = self.now()
            for end in ends:
                if end.reply:
                    session.add(transcript_entry(end.conversation_id, Role.AGENT, end.reply, end.message_ids))
                if end.spent is not None:
                    await self.quotas.spend(session, *end.spent, now)
                conversation = rows[end.conversation_id]
                conversation.last_activity_at = now
                conversation.pending_reply = None
                if end.provider_state is not None:
                    conversation.provider_state = end.provider_state
                if end.ended and conversation.status == ConversationStatus.BOT:  # not one taken over
                    close(conversation, now)
        return [None] * len(ends)

    @survives_db_outage
    async def with_human(self, conversation_id: int) -> bool:
        """Whether a moderator holds the conversation now (a takeover may stop a reply mid-turn)."""
        async with self.db() as session:
            status = await session.scalar(
                select(Conversation.status).where(Conversation.id == conversation_id)
            )
        return status == ConversationStatus.HUMAN

    @survives_db_outage
    async def begin_regeneration(
        self, inbound: Inbound, conversation_id: int, pending: dict[str, str]
    ) -> str | None:
        """A regeneration asks the provider again: it counts against the quotas like a message, and its
        reply is marked as being written, in one transaction. What to tell the user if a limit is
        reached (then nothing changed)."""
        async with self.db.begin() as session:
            refusal = await self.quotas.take(session, Keys.of(inbound), self.now(), locale=inbound.locale)
            if refusal is None:
                conversation = await session.get_one(Conversation, conversation_id)
                conversation.pending_reply = pending
        return refusal

    @survives_db_outage
    async def last_reply(self, inbound: Inbound, message_id: str, length: int) -> LastReply | None:
        """The reply that posted `message_id`, if it is the latest word in the user's live conversation
        with the bot and answered a message of theirs: what regenerating it needs. None otherwise."""
        async with self.db() as session:
            conversation: Conversation | None = await session.scalar(_open_conversation(inbound))
            if conversation is None or conversation.status != ConversationStatus.BOT:
                return None
            rows = list(await session.scalars(_newest(conversation.id, length + 2)))
        if len(rows) < 2 or rows[0].role != Role.AGENT or message_id not in rows[0].platform_message_ids:
            return None
        if rows[1].role != Role.USER:
            return None
        history = tuple(history_entry(row) for row in reversed(rows[2:]))
        return LastReply(
            conversation, rows[0].id, rows[0].text, rows[0].platform_message_ids, rows[1].text, history
        )

    @survives_db_outage
    async def replace_reply(self, entry_id: int, text: str, message_ids: Sequence[str]) -> None:
        """Give a regenerated reply's entry its new text and messages; the text it had is kept beside it,
        as a system line (agents never read those)."""
        async with self.db.begin() as session:
            entry = await session.get_one(TranscriptEntry, entry_id)
            session.add(
                transcript_entry(
                    entry.conversation_id, Role.SYSTEM, ControlNotices.regenerated.format(text=entry.text)
                )
            )
            entry.text, entry.platform_message_ids = text, [mid for mid in message_ids if mid]

    @survives_db_outage
    async def stranded(self) -> list[Conversation]:
        """Conversations with a reply marked as being written (by any process, this run included)."""
        async with self.db() as session:
            return list(
                await session.scalars(select(Conversation).where(Conversation.pending_reply.is_not(None)))
            )

    @survives_db_outage
    async def clear_pending(self, conversation_id: int) -> None:
        async with self.db.begin() as session:
            (await session.get_one(Conversation, conversation_id)).pending_reply = None


@dataclass(frozen=True)
class TurnEnd:
    conversation_id: int
    provider_state: dict[str, Any] | None
    """The provider's state after the turn; None keeps the one stored."""
    ended: bool
    """The agent ended the session: a bot conversation is closed."""
    reply: str = ""
    """The agent's reply, for the transcript (none if it said nothing, or replaced an earlier one)."""
    message_ids: Sequence[str] = ()
    spent: tuple[Keys, Usage] | None = None
    """The tokens the provider reported, counted against the quotas."""


@dataclass(frozen=True)
class _Mark:
    conversation_id: int
    pending: dict[str, Any] | None
    message_id: str


@dataclass(frozen=True)
class LastReply:
    conversation: Conversation
    entry_id: int
    text: str
    message_ids: list[str]
    asked: str
    """The user's message it answered."""
    history: tuple[HistoryEntry, ...]
    """What came before that message."""


async def _by_id(session: AsyncSession, ids: set[int]) -> dict[int, Conversation]:
    found = await session.scalars(select(Conversation).where(Conversation.id.in_(ids)))
    return {conversation.id: conversation for conversation in found}


def transcript_entry(
    conversation_id: int,
    role: Role,
    text: str,
    message_ids: Sequence[str] = (),
    attachments: Sequence[Attachment] = (),
    author_id: str = "",
) -> TranscriptEntry:
    return TranscriptEntry(
        conversation_id=conversation_id,
        role=role,
        text=text,
        author_id=author_id,
        platform_message_ids=[mid for mid in message_ids if mid],
        attachments=[attachment.metadata() for attachment in attachments] or None,
    )


async def _history(
    session: AsyncSession, conversation_id: int, length: int, *, skip_newest: bool
) -> tuple[HistoryEntry, ...]:
    """The last `length` entries before the message being answered, oldest first; `skip_newest` when
    that message is already among them."""
    entries = list(await session.scalars(_newest(conversation_id, length + (1 if skip_newest else 0))))
    rows = entries[1:] if skip_newest else entries
    return tuple(history_entry(row) for row in reversed(rows))


def _newest(conversation_id: int, limit: int) -> Select[TranscriptEntry]:
    """The conversation's newest `limit` entries that agents read (system lines are not), newest first."""
    return (
        select(TranscriptEntry)
        .where(TranscriptEntry.conversation_id == conversation_id, TranscriptEntry.role != Role.SYSTEM)
        .order_by(TranscriptEntry.id.desc())
        .limit(limit)
    )


def history_entry(row: TranscriptEntry) -> HistoryEntry:
    return HistoryEntry(role=row.role.value, text=row.text)  # type: ignore[arg-type]


def request_expired(handoff: Handoff, now: datetime) -> bool:
    """An unclaimed request for a human past its expiry (stored in business time), which its timer may
    not have closed yet."""
    return (
        handoff.status == HandoffStatus.REQUESTED
        and handoff.expire_at is not None
        and handoff.expire_at <= now
    )


def live_conversation(
    inbound: Inbound,
    user: User,
    conversation: Conversation | None,
    idle_timeout: timedelta,
    now: datetime,
    agent_name: str,
) -> Conversation:
    """`conversation`, unless it is a bot conversation idle for `idle_timeout` (then closed); else a
    new one (add it to the session), with `agent_name`, the agent bound to the place."""
    if (
        conversation is not None
        and conversation.status == ConversationStatus.BOT
        and conversation.last_activity_at + idle_timeout <= now
    ):
        close(conversation, now)
        conversation = None
    if conversation is None:
        conversation = Conversation(
            user_id=user.id,
            platform=inbound.platform,
            chat_id=inbound.chat_id,
            thread_id=inbound.thread_id,
            agent_name=agent_name,
            provider_state={},
            status=ConversationStatus.BOT,
            last_activity_at=now,
        )
    conversation.last_activity_at = now
    if inbound.locale and conversation.locale != inbound.locale:
        conversation.locale = inbound.locale[:35]
    return conversation


def close(conversation: Conversation, now: datetime) -> None:
    conversation.status = ConversationStatus.CLOSED
    conversation.closed_at = now


def _open_conversation(inbound: Inbound) -> Any:
    return (
        select(Conversation)
        .join(User)
        .where(
            User.platform == inbound.platform,
            User.external_id == inbound.user_id,
            Conversation.platform == inbound.platform,
            Conversation.chat_id == inbound.chat_id,
            Conversation.thread_id == inbound.thread_id,
            Conversation.status != ConversationStatus.CLOSED,
        )
        .order_by(Conversation.id.desc())
        .limit(1)
    )
