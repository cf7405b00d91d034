"""Words for a user, delivered in order whichever process serves their platform.

What the handoff says to a user (a moderator's words, a notice, a rating, the agent's return) goes out
now when this process reaches the user's platform and nothing for them is queued ahead; otherwise it
waits in `pending_deliveries` for a process that does. Each queued item is taken with a conditional
UPDATE, so two processes never deliver it twice. What cannot be delivered is given up, and the
moderators are told what the user did not get.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, or_, select, update

from bridges.budget import acquire_all
from bridges.catalogue import Strings
from bridges.copies import Origin, remember
from bridges.split import split_text
from bridges.surface import Surface, SurfaceError
from models import Conversation, DeliveryKind, Handoff, PendingDelivery

if TYPE_CHECKING:
    from bridges.handoff import HandoffService

log = logging.getLogger(__name__)

DELIVERY_TAKEOVER = timedelta(minutes=1)
"""An undelivered item taken this long ago was taken by a process that died; another takes it over."""
DELIVERY_GIVE_UP = timedelta(days=1)
"""Items no process could deliver for this long (no process serves the platform, or the platform kept
failing) are given up, and the moderators told."""
MAX_REFUSALS = 3
"""A queued item the platform refused this many times for good (a 403, a 400) is given up and reported;
a transient failure (network, 5xx, flood control) does not count and is simply retried."""
EXCERPT = 80
"""Characters of an undelivered message quoted back to the moderators."""


class ModeratorNotices(Strings, key="handoff.desk"):
    """What the handoff tells moderators in its thread or topic when the user could not be reached."""

    undelivered = "⚠️ {user} did not get {what}. {why} It is kept in the transcript."
    whole = "“{excerpt}”"
    rest = "the rest of a message, from “{excerpt}”"
    refused = "{platform} refused it: {detail}."
    refused_again = "{platform} refused it {times} times: {detail}."
    unreachable = "{platform} could not be reached for a day."


@dataclass(frozen=True)
class Shortfall:
    """A message that did not arrive whole: what was not shown, and the platform's refusal."""

    rest: str
    error: SurfaceError
    started: bool
    """Whether its first parts were shown."""


class Deliveries:
    def __init__(self, service: HandoffService) -> None:
        self.service = service
        self.run_id = uuid.uuid4().hex[:16]
        """Marks the items this process took (`take`)."""

    @property
    def _to_desk(self) -> ModeratorNotices:
        """What the desks are told about deliveries, in their language."""
        return self.service.catalogue.desk(ModeratorNotices)

    async def reach(
        self, handoff_id: int, kind: DeliveryKind, text: str = "", *, origin: Origin | None = None
    ) -> None:
        """Deliver now if this process serves the user's platform and nothing for them is queued ahead;
        otherwise queue it (`pending_deliveries`) for a process that does, so order is kept. What the
        platform refuses for good is reported to the moderators; what fails for now is queued. A
        moderator's message (`origin`) shown whole in one message is remembered, so its edits follow."""
        async with self.service.db() as session:
            handoff = await session.get_one(Handoff, handoff_id)
            conversation = await session.get_one(Conversation, handoff.conversation_id)
            queued_ahead = await session.scalar(
                select(PendingDelivery.id).where(PendingDelivery.conversation_id == conversation.id).limit(1)
            )
        surface = self.service.surface_for(
            conversation.platform, conversation.chat_id, conversation.thread_id
        )
        if surface is not None and queued_ahead is None:
            sent: list[str] = []
            shortfall = await self._deliver(conversation.id, surface, kind, text, sent)
            if shortfall is None:
                if origin is not None and len(sent) == 1:
                    await remember(self.service.db, handoff_id, origin, [(conversation.platform, sent[0])])
                return
            if shortfall.error.permanent:
                why = self._to_desk.refused.format(platform=conversation.platform, detail=shortfall.error)
                await self._report_undelivered(handoff_id, shortfall.rest, why, started=shortfall.started)
                return
            log.warning(
                "conversation %s: delivery failed (%s); queued for a retry", conversation.id, shortfall.error
            )
            text = shortfall.rest
        async with self.service.db.begin() as session:
            session.add(
                PendingDelivery(
                    conversation_id=conversation.id, platform=conversation.platform, kind=kind, text=text
                )
            )

    async def _deliver(
        self,
        conversation_id: int,
        surface: Surface,
        kind: DeliveryKind,
        text: str,
        sent: list[str] | None = None,
    ) -> Shortfall | None:
        """Show it to the user; None once all of it arrived. The ids of the messages posted go to `sent`."""
        if kind == DeliveryKind.NOTICE:
            return await post_in_parts(surface, text, sent)
        if kind == DeliveryKind.RATING:
            error = await self.service.ratings.post(conversation_id, surface)
            return None if error is None else Shortfall(text, error, started=False)
        if self.service.on_return is not None:
            try:
                await self.service.on_return(conversation_id, surface)
            except Exception:
                log.exception("conversation %s: telling the agent it is back failed", conversation_id)
        return None

    async def deliver_pending(self) -> int:
        """Deliver what was queued for users this process can reach, in order per conversation. Each item
        is taken with a conditional UPDATE, so two processes never deliver it twice; an item taken by a
        process that died is taken over after `DELIVERY_TAKEOVER`. An item is deleted only once shown;
        one that failed keeps what is left of it and holds back its conversation's later items, until
        it arrives or is given up (`MAX_REFUSALS`, `DELIVERY_GIVE_UP`). Returns how many were delivered."""
        now = self.service.now()
        async with self.service.db() as session:
            queued = list(
                await session.execute(
                    select(PendingDelivery, Conversation)
                    .join(Conversation, Conversation.id == PendingDelivery.conversation_id)
                    .order_by(PendingDelivery.id)
                )
            )
        held: set[int] = set()  # conversations with an earlier item not delivered by us in this pass
        delivered = 0
        for item, conversation in queued:
            if conversation.id in held:
                continue
            surface = self.service.surface_for(
                conversation.platform, conversation.chat_id, conversation.thread_id
            )
            stale = item.created_at < now - DELIVERY_GIVE_UP
            if (surface is None and not stale) or not await self.take(item.id, now):
                held.add(conversation.id)
                continue
            if surface is None or stale:
                why = self._to_desk.unreachable.format(platform=conversation.platform)
                await self._give_up(item, item.text, why, started=False)
                continue
            shortfall = await self._deliver(conversation.id, surface, item.kind, item.text)
            if shortfall is None:
                async with self.service.db.begin() as session:
                    await session.execute(delete(PendingDelivery).where(PendingDelivery.id == item.id))
                delivered += 1
                continue
            refusals = item.refusals + (1 if shortfall.error.permanent else 0)
            if refusals >= MAX_REFUSALS:
                why = self._to_desk.refused_again.format(
                    platform=conversation.platform, times=refusals, detail=shortfall.error
                )
                await self._give_up(item, shortfall.rest, why, started=shortfall.started)
                continue
            log.warning("queued delivery %s failed (%s); will retry", item.id, shortfall.error)
            held.add(conversation.id)
            async with self.service.db.begin() as session:
                await session.execute(
                    update(PendingDelivery)
                    .where(PendingDelivery.id == item.id)
                    .values(text=shortfall.rest, refusals=refusals, taken_by=None, taken_at=None)
                    .execution_options(synchronize_session=False)
                )
        return delivered

    async def _give_up(self, item: PendingDelivery, rest: str, why: str, *, started: bool) -> None:
        """Drop a queued item that cannot be delivered, and tell the moderators what of it (`rest`) the
        user did not get."""
        async with self.service.db.begin() as session:
            await session.execute(delete(PendingDelivery).where(PendingDelivery.id == item.id))
            handoff_id = await session.scalar(
                select(Handoff.id)
                .where(Handoff.conversation_id == item.conversation_id)
                .order_by(Handoff.id.desc())
                .limit(1)
            )
        log.warning("queued delivery %s given up: %s", item.id, why)
        if handoff_id is not None and item.kind == DeliveryKind.NOTICE:
            await self._report_undelivered(handoff_id, rest, why, started=started)

    async def _report_undelivered(self, handoff_id: int, text: str, why: str, *, started: bool) -> None:
        """Tell the moderators, in the handoff's thread or topic on every desk, what the user did not get."""
        view = await self.service.view(handoff_id)
        excerpt = text if len(text) <= EXCERPT else text[:EXCERPT].rstrip() + "…"
        what = (self._to_desk.rest if started else self._to_desk.whole).format(excerpt=excerpt)
        line = self._to_desk.undelivered.format(user=view.user_name, what=what, why=why)
        log.warning("handoff %s: a message did not reach the user: %s", handoff_id, why)
        await self.service.tell_desks(handoff_id, line)

    async def take(self, item_id: int, now: datetime) -> bool:
        """Take a queued item for this process, unless another live one has it."""
        async with self.service.db.begin() as session:
            result = await session.execute(
                update(PendingDelivery)
                .where(
                    PendingDelivery.id == item_id,
                    or_(
                        PendingDelivery.taken_by.is_(None),
                        PendingDelivery.taken_at < now - DELIVERY_TAKEOVER,
                    ),
                )
                .values(taken_by=self.run_id, taken_at=now)
                .execution_options(synchronize_session=False)
            )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


async def post_in_parts(surface: Surface, text: str, sent: list[str] | None = None) -> Shortfall | None:
    """Post `text` cut to the surface's limit the way replies are cut, part after part, each paid from
    the surface's budgets, the ids of the parts going to `sent`. At the first refusal, stop and return
    what is left: never silently lost."""
    shown = 0
    for part in split_text(text, surface.max_length, surface.measure):
        if part.strip():  # whitespace alone between two cuts: platforms refuse an empty message
            await acquire_all(surface.budgets)
            try:
                message_id = await surface.send(part)
            except SurfaceError as exc:
                return Shortfall(text[shown:], exc, started=shown > 0)
            if sent is not None:
                sent.append(message_id)
        shown += len(part)
    return None
