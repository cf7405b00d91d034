"""Whether a message may have any effect at all, asked first at every entry point (messages, presses,
`/ask`, `/reset`, `/human`, `/start`) before anything visible happens: not blocked, within the rate."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bridges.blocks import BlockService
from bridges.budget import RateBudget
from bridges.catalogue import Catalogue
from bridges.notices import Notices
from bridges.outage import survives_db_outage
from bridges.surface import Inbound

log = logging.getLogger(__name__)

GATES_KEPT = 10_000
"""Per-user rate state kept in memory; past this, users whose budget has fully refilled are forgotten."""


@dataclass
class _UserGate:
    budget: RateBudget
    warned: bool = False


@dataclass(frozen=True)
class Refusal:
    """Why a message may have no effect at all, checked before anything visible happens."""

    notice: str | None
    """What to tell the user: None for a blocked user, or one already asked to slow down."""


class Admission:
    def __init__(
        self,
        blocks: BlockService,
        *,
        per_minute: float,
        burst: int,
        outage_grace: float,
        catalogue: Catalogue,
    ) -> None:
        self.blocks = blocks
        self.catalogue = catalogue
        self.per_minute = per_minute
        self.burst = burst
        self.outage_grace = outage_grace
        self._gates: dict[tuple[str, str], _UserGate] = {}

    def retune(self, *, per_minute: float, burst: int) -> None:
        """Take reloaded limits: every user's budget changes now, keeping what they have spent."""
        self.per_minute, self.burst = per_minute, burst
        for gate in self._gates.values():
            gate.budget.retune(per_minute, per=60.0, burst=burst)

    async def check(self, inbound: Inbound) -> Refusal | None:
        """None if the message may go ahead; else why not. Counts against the user's message rate, so
        every entry point (messages, presses, /reset, /human) calls it once, first."""
        if not self._within_rate(inbound):
            gate = self._gates[(inbound.platform, inbound.user_id)]
            if gate.warned or await self.is_blocked(inbound.platform, inbound.user_id):
                return Refusal(None)
            gate.warned = True
            seconds = max(1, round(60 / self.per_minute))
            slow_down = self.catalogue.words(inbound.locale)(Notices).slow_down
            return Refusal(slow_down.format(seconds=seconds))
        if await self.is_blocked(inbound.platform, inbound.user_id):
            log.info("ignoring a message from blocked user %s:%s", inbound.platform, inbound.user_id)
            return Refusal(None)
        return None

    @survives_db_outage
    async def is_blocked(self, platform: str, user_id: str) -> bool:
        return await self.blocks.active(platform, user_id) is not None

    def _within_rate(self, inbound: Inbound) -> bool:
        key = (inbound.platform, inbound.user_id)
        gate = self._gates.get(key)
        if gate is None:
            if len(self._gates) >= GATES_KEPT:  # forget users whose budget has fully refilled
                self._gates = {k: g for k, g in self._gates.items() if not g.budget.full()}
            gate = self._gates[key] = _UserGate(RateBudget(self.per_minute, per=60.0, burst=self.burst))
        if not gate.budget.available():
            return False
        gate.budget.take()
        gate.warned = False
        return True
