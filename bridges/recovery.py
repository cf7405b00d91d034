"""What a crash of this process's instance left behind: replies cut off, messages never answered.

The messages are taken over and lined up in their conversations before the bridges start, so nothing
new overtakes them; they are answered, in arrival order, once the bridges can reach their chats.
"""

from __future__ import annotations

import asyncio
import logging

from bridges.inbox import LeftOver
from bridges.relay import Relay
from bridges.surface import SurfaceFactory
from bridges.turns import Place

log = logging.getLogger(__name__)


class Recovery:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self._queued: list[tuple[LeftOver, Place]] = []

    async def prepare(self) -> int:
        """Before the bridges start: take over the messages an earlier run recorded but never took, and
        give each its place in line. Returns how many."""
        left_overs = await self.relay.inbox.take_over_left_overs()
        self._queued = [(left, self.relay.line_up(left.inbound)) for left in left_overs]  # no await here
        return len(self._queued)

    async def run(self, surface_for: SurfaceFactory) -> int:
        """Once the bridges are up: report the replies a crash cut off, then answer what was prepared.
        Returns how many replies were reported and messages answered."""
        queued, self._queued = self._queued, []
        answers: list[asyncio.Task[None]] = []
        handed: set[int] = set()
        try:
            reported = await self.relay.report_interrupted(surface_for)
            for index, (left, place) in enumerate(queued):
                inbound = left.inbound
                surface = surface_for(inbound.platform, inbound.chat_id, inbound.thread_id)
                if surface is None:  # kept for a later start of this instance that serves the platform
                    log.warning(
                        "message %s:%s was left unanswered; no bridge here serves it",
                        inbound.platform,
                        left.receipt.message_id,
                    )
                    continue
                answers.append(asyncio.create_task(self.relay.answer_left_over(left, surface, place)))
                handed.add(index)
        finally:  # a place no answer took would hold its conversation's line forever
            for index, (_, place) in enumerate(queued):
                if index not in handed:
                    place.leave()
        await asyncio.gather(*answers)
        return reported + len(answers)


async def recover(relay: Relay, surface_for: SurfaceFactory) -> int:
    """Both steps at once, where nothing is served before (the console) or it does not matter (tests)."""
    recovery = Recovery(relay)
    await recovery.prepare()
    return await recovery.run(surface_for)
