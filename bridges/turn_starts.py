"""The start of a turn: everything it needs before the agent is called, in one transaction shared by
every turn that starts at the same moment (bridges/batches.py).

A hundred users writing at once start a hundred turns; each would read its user, conversation,
handoff and history and write its transcript entry in its own transaction, one after another on
SQLite's one writer. Here each read is one statement for all of them and each write one statement, so
a burst costs about as much as one message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from agents.base import HistoryEntry
from bridges.batches import Batched
from bridges.bindings import StoredBindings
from bridges.bursts import Follower
from bridges.controls import Key
from bridges.conversations import (
    Conversations,
    history_entry,
    live_conversation,
    request_expired,
    transcript_entry,
)
from bridges.inbox import Receipt
from bridges.outage import DatabaseUnavailable, survives_db_outage
from bridges.quotas import Keys
from bridges.replies import key_of
from bridges.surface import Inbound
from models import Conversation, ConversationStatus, Handoff, Role, TranscriptEntry, User
from models.handoff import OPEN_HANDOFF_STATUSES
from models.queries import insert_ignoring_duplicates


@dataclass(frozen=True)
class TurnPolicy:
    idle_timeout: timedelta
    history_length: int
    pending: dict[str, Any]
    """The pending-reply mark (who writes it); `asked` is added from the message."""
    asked_chars: int = 80


@dataclass(frozen=True)
class TurnStart:
    inbound: Inbound
    receipt: Receipt
    policy: TurnPolicy
    joined: Sequence[Follower] = ()
    """Messages of the same burst (bridges/bursts.py), taken with this one."""
    unrecorded: dict[str, Any] | None = None
    """The message's inbox row (`Inbox.row_of`) if its turn came the moment it arrived: recorded in
    the turn's own transaction instead of one of its own."""

    @property
    def receipts(self) -> tuple[Receipt, ...]:
        return (self.receipt, *(follower.receipt for follower in self.joined))


@dataclass(frozen=True)
class Begun:
    conversation: Conversation
    history: tuple[HistoryEntry, ...]
    """What the agent reads besides this message (empty unless the conversation is with the bot)."""


@dataclass(frozen=True)
class ExpiredRequest:
    handoff_id: int


@dataclass(frozen=True)
class OverQuota:
    notice: str
    """Which limit was reached and when it resets, for the user."""


@dataclass(frozen=True)
class Elsewhere:
    """The message is another process's to answer: it recorded the message first."""


Started = Begun | ExpiredRequest | OverQuota | Elsewhere | None


class TurnStarts:
    """The start of turns, in the conversation store's database and with its collaborators."""

    def __init__(self, store: Conversations) -> None:
        self.store = store
        self.outage_grace = store.outage_grace
        self._starting = Batched(self._begin_all, shared=(DatabaseUnavailable,))

    async def begin(self, start: TurnStart) -> Started:
        """The user not blocked (None if they are; the message is marked handled), their live
        conversation (opened or renewed), the message in the transcript and marked handled, and for a
        bot conversation the pending-reply mark and the history the agent reads. An unclaimed request
        for a human past its expiry is handed back first (`ExpiredRequest`), since closing it tells the
        desks; the message is not taken then. A message for the agent past a quota is refused
        (`OverQuota`, marked handled, nothing else). The messages joined to this one are marked handled
        with it."""
        return await self._starting(start)

    @survives_db_outage
    async def _begin_all(self, every: Sequence[TurnStart]) -> list[Started]:
        now = self.store.now()
        async with self.store.db.begin() as session:
            elsewhere = await self._record(session, every)
            starts = [start for start in every if id(start) not in elsewhere]
            read = await self._read(session, starts)
            decisions: list[Conversation | ExpiredRequest | OverQuota | None] = []
            handled: list[Receipt] = []
            taken: list[tuple[TurnStart, Conversation]] = []
            for start in starts:  # in arrival order: each decision sees the ones before it
                decided = await self._decide(session, start, read, now)
                if isinstance(decided, Conversation):
                    taken.append((start, decided))
                if not isinstance(decided, ExpiredRequest):
                    handled += start.receipts
                decisions.append(decided)
            await session.flush()  # new conversations' ids, for their transcript entries
            histories = await _histories(session, taken)
            if handled:
                await session.execute(self.store.inbox.handled(*handled))
            begun = iter(self._take(session, taken, histories))
        results = iter(next(begun) if isinstance(d, Conversation) else d for d in decisions)
        return [Elsewhere() if id(start) in elsewhere else next(results) for start in every]

    async def _read(self, session: AsyncSession, starts: Sequence[TurnStart]) -> _Read:
        """What every decision needs, one statement per table for all the messages."""
        inbounds = [start.inbound for start in starts]
        users = await _users(session, inbounds)
        current = await _open_conversations(session, users.values())
        handoffs = await _open_handoffs(session, [c.id for c in current.values()])
        return _Read(users, current, handoffs, await self.store.bindings.stored(session, inbounds))

    async def _decide(
        self, session: AsyncSession, start: TurnStart, read: _Read, now: datetime
    ) -> Conversation | ExpiredRequest | OverQuota | None:
        """The conversation the message is taken into; or None (a blocked user), an expired request
        to hand back first, or a refusal over a quota."""
        inbound, key = start.inbound, key_of(start.inbound)
        user, current = read.users[(inbound.platform, inbound.user_id)], read.current.get(key)
        if user.blocked_at_time(now):
            return None
        handoff = read.handoffs.get(current.id) if current is not None else None
        if handoff is not None and request_expired(handoff, now):
            return ExpiredRequest(handoff.id)
        if (refusal := await self._over_quota(session, start, current, now)) is not None:
            return OverQuota(refusal)
        agent = self.store.bindings.agent_for(inbound, read.stored)
        conversation = live_conversation(inbound, user, current, start.policy.idle_timeout, now, agent)
        session.add(conversation)
        read.current[key] = conversation
        return conversation

    async def _record(self, session: AsyncSession, starts: Sequence[TurnStart]) -> set[int]:
        """Record the messages that came to their turn unrecorded; those another process had recorded
        first are left to it (their `id`s are returned)."""
        rows = {id(start): start.unrecorded for start in starts if start.unrecorded is not None}
        if not rows:
            return set()
        mine = await self.store.inbox.record(session, list(rows.values()))
        return {key for key, ours in zip(rows, mine, strict=True) if not ours}

    def _take(
        self,
        session: AsyncSession,
        taken: Sequence[tuple[TurnStart, Conversation]],
        histories: dict[int, tuple[HistoryEntry, ...]],
    ) -> list[Begun]:
        """The messages in their transcripts; the pending-reply mark on bot conversations."""
        begun = []
        for start, conversation in taken:
            inbound, policy = start.inbound, start.policy
            history: tuple[HistoryEntry, ...] = ()
            if conversation.status == ConversationStatus.BOT:
                history = _last(histories.get(conversation.id, ()), policy.history_length)
                conversation.pending_reply = {**policy.pending, "asked": inbound.text[: policy.asked_chars]}
            message_ids = [inbound.message_id, *(follower.inbound.message_id for follower in start.joined)]
            session.add(
                transcript_entry(conversation.id, Role.USER, inbound.text, message_ids, inbound.attachments)
            )
            begun.append(Begun(conversation, history))
        return begun

    async def _over_quota(
        self, session: AsyncSession, start: TurnStart, current: Conversation | None, now: datetime
    ) -> str | None:
        """What to tell a user past a quota, for a message to the agent (counted otherwise)."""
        if current is not None and current.status != ConversationStatus.BOT:
            return None
        inbound = start.inbound
        return await self.store.quotas.take(session, Keys.of(inbound), now, locale=inbound.locale)


@dataclass(frozen=True)
class _Read:
    users: dict[tuple[str, str], User]
    current: dict[Key, Conversation]
    """Each user's open conversation in each place; a decision that opens one puts it here."""
    handoffs: dict[int, Handoff]
    stored: StoredBindings


def _last(entries: tuple[HistoryEntry, ...], length: int) -> tuple[HistoryEntry, ...]:
    return entries[len(entries) - length :] if length < len(entries) else entries


async def _users(session: AsyncSession, inbounds: Sequence[Inbound]) -> dict[tuple[str, str], User]:
    """The messages' users, created on first contact (a duplicate insert from another process is
    ignored); a non-empty display name refreshes the stored one."""
    names = {(inbound.platform, inbound.user_id): inbound.display_name for inbound in inbounds}
    users = await _users_by_key(session, names)
    if missing := [key for key in names if key not in users]:
        await session.execute(
            insert_ignoring_duplicates(session, User).on_conflict_do_nothing(
                index_elements=["platform", "external_id"]
            ),
            [{"platform": p, "external_id": u, "display_name": names[(p, u)]} for p, u in missing],
        )
        users |= await _users_by_key(session, missing)
    for key, user in users.items():
        if names[key] and user.display_name != names[key]:
            user.display_name = names[key]
    return users


async def _users_by_key(
    session: AsyncSession, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], User]:
    found = await session.scalars(select(User).where(tuple_(User.platform, User.external_id).in_(list(keys))))
    return {(user.platform, user.external_id): user for user in found}


async def _open_conversations(session: AsyncSession, users: Iterable[User]) -> dict[Key, Conversation]:
    """Each user's open conversation in each place, the newest if there were ever two."""
    by_id = {user.id: user for user in users}
    found = await session.scalars(
        select(Conversation)
        .where(Conversation.user_id.in_(list(by_id)), Conversation.status != ConversationStatus.CLOSED)
        .order_by(Conversation.id)
    )
    return {
        (c.platform, c.chat_id, c.thread_id, by_id[c.user_id].external_id): c
        for c in found
        if by_id[c.user_id].platform == c.platform
    }


async def _open_handoffs(session: AsyncSession, conversation_ids: Sequence[int]) -> dict[int, Handoff]:
    if not conversation_ids:
        return {}
    found = await session.scalars(
        select(Handoff).where(
            Handoff.conversation_id.in_(conversation_ids), Handoff.status.in_(OPEN_HANDOFF_STATUSES)
        )
    )
    return {handoff.conversation_id: handoff for handoff in found}


async def _histories(
    session: AsyncSession, taken: Sequence[tuple[TurnStart, Conversation]]
) -> dict[int, tuple[HistoryEntry, ...]]:
    """The last entries agents read (system lines are not) of every bot conversation taken, oldest
    first, in one statement."""
    lengths = {
        conversation.id: start.policy.history_length
        for start, conversation in taken
        if conversation.status == ConversationStatus.BOT
    }
    if not lengths:
        return {}
    newest_first = func.row_number().over(
        partition_by=TranscriptEntry.conversation_id, order_by=TranscriptEntry.id.desc()
    )
    ranked = (
        select(TranscriptEntry.id, TranscriptEntry.conversation_id, newest_first.label("rank"))
        .where(TranscriptEntry.conversation_id.in_(list(lengths)), TranscriptEntry.role != Role.SYSTEM)
        .subquery()
    )
    rows = await session.scalars(
        select(TranscriptEntry)
        .join(ranked, ranked.c.id == TranscriptEntry.id)
        .where(ranked.c.rank <= max(lengths.values()))
        .order_by(TranscriptEntry.id)
    )
    histories: dict[int, list[HistoryEntry]] = {}
    for row in rows:
        histories.setdefault(row.conversation_id, []).append(history_entry(row))
    return {conversation_id: tuple(entries) for conversation_id, entries in histories.items()}
