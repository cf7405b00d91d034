"""The timers of a request for a human, and the business hours they count in.

A request is due first at its escalation, then at its expiry, each counted in the business hours of the
desks it went to (`[handoff.hours]`; wall-clock time without them). The deadlines are stored on the row
(`due_at`, `expire_at`), so a tick reads only the due ones with one index range, a restart loses none,
and every action is a conditional UPDATE, safe when several processes tick at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Select, and_, func, select, update

from bridges.desk_hours import ENGLISH_HOURS, Closed, HoursNotices, schedule_of
from models import OPEN_HANDOFF_STATUSES, Handoff, HandoffStatus
from ops import metrics

if TYPE_CHECKING:
    from bridges.handoff import HandoffService


class HandoffTimers:
    def __init__(self, service: HandoffService) -> None:
        self.service = service

    async def tick(self, now: datetime) -> None:
        """Give waiting requests their deadlines, update the gauges, and escalate or expire the unclaimed
        requests whose time has come (`now`)."""
        await self._set_timers()
        async with self.service.db() as session:
            due = list(await session.execute(self.due_requests(now)))
            counts = {status: n for status, n in await session.execute(self.open_counts())}
        for status in OPEN_HANDOFF_STATUSES:
            metrics.OPEN_HANDOFFS.labels(status.value).set(counts.get(status, 0))
        for handoff_id, expire_at in due:
            if expire_at is not None and expire_at <= now:
                still_due = and_(Handoff.status == HandoffStatus.REQUESTED, Handoff.expire_at <= now)
                await self.service.close(
                    handoff_id, HandoffStatus.EXPIRED, "timer", "timeout", only_if=still_due
                )
            else:
                await self._escalate(handoff_id)

    def due_requests(self, now: datetime) -> Select[int, datetime | None]:
        """Unclaimed requests whose escalation or expiry has come: one range on (status, due_at), so a
        tick reads only those, however many handoffs are open or waiting outside business hours."""
        return (
            select(Handoff.id, Handoff.expire_at)
            .where(Handoff.status == HandoffStatus.REQUESTED, Handoff.due_at <= now)
            .order_by(Handoff.due_at)
        )

    def desk_names(self) -> list[str]:
        """The desks a request goes to: every desk this process serves."""
        return [desk.name for desk in self.service.desks]

    def closed(
        self, at: datetime, desks: Iterable[str] | None = None, *, words: HoursNotices = ENGLISH_HOURS
    ) -> Closed | None:
        """Whether every desk of `desks` (by default every desk) is outside business hours at `at`, and
        what follows (said with `words`, the user's language); None while one is open, or when no hours
        are configured."""
        hours = self.service.policy.hours
        if hours is None:
            return None
        return hours.closed(self.desk_names() if desks is None else desks, at, words)

    def deadline(self, start: datetime, duration: timedelta, desks: Iterable[str] | None = None) -> datetime:
        """`duration` after `start`, counting only the business hours of `desks` (by default every desk;
        open while any is), or wall-clock time when no hours are configured. For every timer of a case:
        escalation, expiry, a first-response target."""
        names = self.desk_names() if desks is None else desks
        return schedule_of(self.service.policy.hours, names).add_business_time(start, duration)

    def for_request(
        self, requested_at: datetime, desks: Iterable[str] | None = None
    ) -> tuple[datetime, datetime]:
        """(due_at, expire_at) of a request made at `requested_at`: due first at its escalation when that
        comes before its expiry."""
        desks = self.desk_names() if desks is None else list(desks)
        expire_at = self.deadline(requested_at, self.service.policy.expire_after, desks)
        escalate = self.service.policy.escalate_after
        if escalate is None or escalate >= self.service.policy.expire_after:
            return expire_at, expire_at
        return self.deadline(requested_at, escalate, desks), expire_at

    async def _set_timers(self) -> None:
        """Give each waiting request that has no deadlines its deadlines, counted from its request time
        for the desks it went to: one from before they were stored, or one let go again (/unclaim)."""
        async with self.service.db() as session:
            unset = list(
                await session.execute(
                    select(Handoff.id, Handoff.requested_at, Handoff.escalated_at, Handoff.notification_refs)
                    .where(Handoff.status == HandoffStatus.REQUESTED, Handoff.due_at.is_(None))
                    .order_by(Handoff.id)
                )
            )
        if not unset:
            return
        async with self.service.db.begin() as session:
            for handoff_id, requested_at, escalated_at, refs in unset:
                due_at, expire_at = self.for_request(requested_at, list(refs) or None)
                await session.execute(
                    update(Handoff)
                    .where(Handoff.id == handoff_id, Handoff.due_at.is_(None))
                    .values(due_at=expire_at if escalated_at else due_at, expire_at=expire_at)
                    .execution_options(synchronize_session=False)
                )

    @staticmethod
    def open_counts() -> Select[HandoffStatus, int]:
        """Open handoffs per status, for the gauges: counted in the index, no rows loaded."""
        return (
            select(Handoff.status, func.count())
            .where(Handoff.status.in_(OPEN_HANDOFF_STATUSES))
            .group_by(Handoff.status)
        )

    async def _escalate(self, handoff_id: int) -> None:
        """Mark a request still unclaimed at its escalation time, once; it is due next at its expiry."""
        async with self.service.db.begin() as session:
            result = await session.execute(
                update(Handoff)
                .where(
                    Handoff.id == handoff_id,
                    Handoff.status == HandoffStatus.REQUESTED,
                    Handoff.escalated_at.is_(None),
                )
                .values(escalated_at=self.service.now(), due_at=Handoff.expire_at)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return
        await self.service.changed(handoff_id, f"handoff #{handoff_id} still unclaimed: escalating")
