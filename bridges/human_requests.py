"""Opening a request for a human, within limits: one open per user (in any conversation), at most
`per_hour` an hour, and only where a desk exists to take it. Outside the desks' business hours the
user is told when moderators are back, and the request waits for them or is not opened (configured)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridges.catalogue import Phrasebook
from bridges.desk_hours import HoursNotices
from bridges.handoff import HandoffService, open_handoff_of
from bridges.notices import Notices
from bridges.outage import survives_db_outage
from bridges.turns import TurnOrder
from models import (
    OPEN_HANDOFF_STATUSES,
    Conversation,
    ConversationStatus,
    Handoff,
    HandoffStatus,
    User,
)
from settings import IntakeReason

log = logging.getLogger(__name__)

ASKED = ("user", "agent")
"""Who opens a request for a human (`Handoff.requested_by`); moderators open cases of their own."""


class HumanRequests:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        handoffs: HandoffService,
        turns: TurnOrder,
        *,
        moderators: bool,
        per_hour: int,
        now: Callable[[], datetime],
        outage_grace: float,
    ) -> None:
        self.db = db
        self.handoffs = handoffs
        self._turns = turns
        self.moderators = moderators
        self.per_hour = per_hour
        self._now = now
        self.outage_grace = outage_grace

    async def open(
        self,
        conversation: Conversation,
        reason: str,
        *,
        requested_by: str,
        words: Phrasebook,
        choice: IntakeReason | None = None,
    ) -> str:
        """Open a handoff unless the user already has one open or opened too many this hour; one at a
        time per user in this process (their row is locked too, for the other processes). With an intake
        `choice`, it goes to that reason's desks with its priority. Returns what to tell the user, in
        the language of `words`."""
        if not self.moderators:
            log.info(
                "conversation %s: %s asked for a human, but no desk is set up", conversation.id, requested_by
            )
            return words(Notices).no_moderators
        with self._turns.line_up(("handoff", conversation.user_id)) as place:
            await place.turn()
            return await self._open_now(
                conversation.id, reason, requested_by=requested_by, words=words, choice=choice
            )

    @survives_db_outage
    async def refusal(self, conversation_id: int, words: Phrasebook) -> str | None:
        """Why a request for a human would be refused now (what to tell the user), or None: asked before
        the intake menu is shown, so nobody picks a reason only to hear no."""
        if not self.moderators:
            return words(Notices).no_moderators
        closed = self.handoffs.timers.closed(self._now(), words=words(HoursNotices))
        if closed is not None and not closed.waits:  # no desk is open, and requests do not wait
            return closed.notice
        async with self.db() as session:
            conversation = await session.get_one(Conversation, conversation_id)
            return await self._refused(session, conversation, words(Notices))

    async def _refused(self, session: AsyncSession, conversation: Conversation, say: Notices) -> str | None:
        if await open_handoff_of(session, conversation.id) is not None:
            return say.handoff_already_open
        if await session.scalar(_open_handoff_of_user(conversation.user_id)) is not None:
            return say.handoff_open_elsewhere
        since = self._now() - timedelta(hours=1)
        if await session.scalar(_handoffs_of_user_since(conversation.user_id, since)) >= self.per_hour:
            log.info("conversation %s: handoff refused, too many this hour", conversation.id)
            return say.handoff_too_often
        return None

    @survives_db_outage
    async def _open_now(
        self,
        conversation_id: int,
        reason: str,
        *,
        requested_by: str,
        words: Phrasebook,
        choice: IntakeReason | None,
    ) -> str:
        now = self._now()
        priority = choice.priority if choice is not None else None
        async with self.db.begin() as session:
            conversation = await session.get_one(Conversation, conversation_id)
            # one request at a time per user: their row is locked until this one is in (PostgreSQL; SQLite
            # has one writer at a time anyway, and a stale read fails to write and is retried)
            await session.execute(select(User.id).where(User.id == conversation.user_id).with_for_update())
            if (refused := await self._refused(session, conversation, words(Notices))) is not None:
                return refused
            desks = (
                list(choice.desks)
                if choice is not None and choice.desks
                else self.handoffs.timers.desk_names()
            )
            closed = self.handoffs.timers.closed(now, desks, words=words(HoursNotices))
            if closed is not None and not closed.waits:
                log.info("conversation %s: handoff not opened, outside business hours", conversation_id)
                return closed.notice
            due_at, expire_at = self.handoffs.timers.for_request(now, desks)
            handoff = Handoff(
                conversation_id=conversation_id,
                status=HandoffStatus.REQUESTED,
                reason=reason,
                requested_by=requested_by,
                requested_at=now,
                due_at=due_at,
                expire_at=expire_at,
                intake_label=choice.label if choice is not None else None,
                priority=priority,
                first_response_due_at=self.handoffs.sla.due(priority, now, desks),
            )
            session.add(handoff)
            conversation.status = ConversationStatus.HANDOFF_REQUESTED
            conversation.closed_at = None
        log.info("conversation %s: handoff %s requested by %s", conversation_id, handoff.id, requested_by)
        await self.handoffs.opened(handoff.id, choice.desks if choice is not None else ())
        return closed.notice if closed is not None else words(Notices).handoff_requested


def _handoffs_of_user_since(user_row_id: int, since: datetime) -> Any:
    return (
        select(func.count())
        .select_from(Handoff)
        .join(Conversation, Conversation.id == Handoff.conversation_id)
        .where(
            Conversation.user_id == user_row_id,
            Handoff.requested_at > since,
            Handoff.requested_by.in_(ASKED),  # cases moderators opened are not the user's requests
        )
    )


def _open_handoff_of_user(user_row_id: int) -> Any:
    return (
        select(Handoff.id)
        .join(Conversation, Conversation.id == Handoff.conversation_id)
        .where(Conversation.user_id == user_row_id, Handoff.status.in_(OPEN_HANDOFF_STATUSES))
        .limit(1)
    )
