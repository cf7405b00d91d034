"""What a crash of this process's instance left behind: replies cut off, messages never answered.

The messages are taken over and lined up in their conversations before the bridges start, so nothing
new overtakes them; they are answered, in arrival order, once the bridges can reach their chats.
"""

from __future__ import annotations

import asyncio
import logging

from bridges.inbox import LeftOver
from bridges.notices import Notices
from bridges.relay import Relay
from bridges.surface import SurfaceFactory, send_notice
from bridges.turns import Place
from models import Role

log = logging.getLogger(__name__)


class Recovery:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self._queued: list[tuple[LeftOver, Place]] = []

    async def prepare(self) -> int:
        """Before the bridges start: take over the messages an earlier run recorded but never took, and
        give each its place in line. Returns how many."""
        left_overs = await self.relay.inbox.take_over_left_overs()
        self._queued = [(left, self.relay.line_up_left_over(left)) for left in left_overs]  # no await here
        return len(self._queued)

    async def run(self, surface_for: SurfaceFactory) -> int:
        """Once the bridges are up: report the replies a crash cut off, then answer what was prepared.
        Returns how many replies were reported and messages answered."""
        queued, self._queued = self._queued, []
        answers: list[asyncio.Task[None]] = []
        handed: set[int] = set()
        try:
            reported = await self._report_interrupted(surface_for)
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

    async def _report_interrupted(self, surface_for: SurfaceFactory) -> int:
        """After a crash: tell each user whose reply this instance left half-written (by an earlier run)
        to send it again, and note it in the transcript. The turn is not re-run: the provider may have
        acted on it. `surface_for` returns None for a platform this process has no bridge for (the note
        is still made). Returns how many there were."""
        found = 0
        for conversation in await self.relay.conversations.stranded():
            pending = conversation.pending_reply or {}
            if (
                pending.get("instance") != self.relay.policy.instance
                or pending.get("run") == self.relay.inbox.run_id
            ):
                continue  # another process's, or a reply this run is writing right now
            found += 1
            surface = surface_for(conversation.platform, conversation.chat_id, conversation.thread_id)
            if surface is not None:
                say = self.relay.catalogue.words(conversation.locale)(Notices)
                await send_notice(surface, say.interrupted.format(asked=pending.get("asked", "")))
            await self.relay.conversations.record(
                conversation.id,
                Role.SYSTEM,
                "reply interrupted by a restart",
                [str(mid) for mid in pending.get("message_ids", [])],
            )
            await self.relay.conversations.clear_pending(conversation.id)
            log.warning("conversation %s: a reply was interrupted by a restart", conversation.id)
        return found


async def recover(relay: Relay, surface_for: SurfaceFactory) -> int:
    """Both steps at once, where nothing is served before (the console) or it does not matter (tests)."""
    recovery = Recovery(relay)
    await recovery.prepare()
    return await recovery.run(surface_for)
