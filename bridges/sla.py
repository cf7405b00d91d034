"""First-response targets ([handoff.sla]): when a moderator should first answer a case, and the one
escalation of a case that passed it.

The due time is stored on the handoff when it opens (`first_response_due_at`), so a restart recomputes
nothing; escalation is one conditional UPDATE of `sla_escalated_at`, so it happens once, whichever
process's timer sees it first. A case counts as answered once a moderator's reply reached the user
(`first_response_at`); a claim alone does not stop the clock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from bridges.catalogue import Strings
from models import OPEN_HANDOFF_STATUSES, Handoff

if TYPE_CHECKING:
    from bridges.handoff import HandoffService

log = logging.getLogger(__name__)

UNLISTED_PRIORITY = "normal"
"""The priority of a request that did not come through the intake menu."""


class SlaNotices(Strings, key="sla"):
    """What the desks are told of a case past its first-response target."""

    mark = "⏰ past first-response target"
    logged = "handoff #{id} is past its first-response target ({priority}): escalating"


class Sla:
    """The first-response targets of one `HandoffService`, by priority."""

    def __init__(self, handoffs: HandoffService) -> None:
        self.handoffs = handoffs

    @property
    def targets(self) -> Mapping[str, float]:
        """Minutes to the first reply, by priority; a priority not listed has no target. Read from the
        service's policy each time, so a reload changes them for cases opened after it."""
        return self.handoffs.policy.first_response_minutes

    def due(
        self, priority: str | None, start: datetime, desks: Iterable[str] | None = None
    ) -> datetime | None:
        """The due time of a case of `priority` opened at `start` for `desks`, counted in their business
        hours like every timer of a case, or None if it has no target."""
        minutes = self.targets.get(priority or UNLISTED_PRIORITY)
        return (
            None
            if minutes is None
            else self.handoffs.timers.deadline(start, timedelta(minutes=minutes), desks)
        )

    async def tick(self, now: datetime) -> None:
        """Escalate, once each, the open cases not yet answered whose due time has come."""
        async with self.handoffs.db() as session:
            due = list(
                await session.scalars(
                    select(Handoff.id).where(
                        Handoff.first_response_due_at <= now,
                        Handoff.sla_escalated_at.is_(None),
                        Handoff.first_response_at.is_(None),
                        Handoff.status.in_(OPEN_HANDOFF_STATUSES),
                    )
                )
            )
        for handoff_id in due:
            await self._escalate(handoff_id, now)

    async def _escalate(self, handoff_id: int, now: datetime) -> None:
        async with self.handoffs.db.begin() as session:
            result = await session.execute(
                update(Handoff)
                .where(
                    Handoff.id == handoff_id,
                    Handoff.sla_escalated_at.is_(None),
                    Handoff.first_response_at.is_(None),
                    Handoff.status.in_(OPEN_HANDOFF_STATUSES),
                )
                .values(sla_escalated_at=now)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return  # answered, closed or escalated by another process meanwhile
        await self.handoffs.overdue(handoff_id)
