"""Handoff to moderators, platform-neutral: notify every desk, claim atomically, relay both ways, close.

The database is the only source of truth: every transition is one conditional UPDATE, so two moderators
(or two processes) pressing Claim at once cannot both win, and timers are recomputed from timestamps,
so a restart at any state loses nothing. Platform views (a Discord channel, a Telegram forum) implement
`ModeratorDesk` (bridges/moderator_desk.py); bridges give a `SurfaceFactory` to reach a user outside of a
reply. The service's helpers are each a module: what reaches the user (bridges/deliveries.py), a
request's timers (bridges/handoff_timers.py), the desks' tools (cases.py), first-response targets
(sla.py), ratings (ratings.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Select, func, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Attachment
from bridges.budget import acquire_all
from bridges.cases import HISTORY_SHOWN, Cases
from bridges.catalogue import Catalogue, Phrasebook
from bridges.copies import Origin, desk_side, remember
from bridges.deliveries import Deliveries
from bridges.handoff_files import FileNotices, listed, pass_on
from bridges.handoff_notices import UserNotices
from bridges.handoff_policy import HandoffPolicy
from bridges.handoff_timers import HandoffTimers
from bridges.moderator_desk import ClaimOutcome, HandoffView, JumpLink, ModeratorDesk
from bridges.ratings import Ratings
from bridges.sla import Sla, SlaNotices
from bridges.surface import Surface, SurfaceFactory
from models import (
    OPEN_HANDOFF_STATUSES,
    Conversation,
    ConversationStatus,
    DeliveryKind,
    Handoff,
    HandoffPlace,
    HandoffStatus,
    Role,
    TranscriptEntry,
    User,
    place_key,
    utcnow,
)
from ops import metrics

log = logging.getLogger(__name__)


class HandoffService:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        policy: HandoffPolicy,
        *,
        desks: Sequence[ModeratorDesk] = (),
        surfaces: SurfaceFactory = lambda platform, chat_id, thread_id: None,
        jump_link: JumpLink = lambda conversation: None,
        catalogue: Catalogue | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.policy = policy
        self.catalogue = catalogue or Catalogue()
        self.desks = list(desks)
        self.surface_for = surfaces
        self._jump_link = jump_link
        self.on_return: Callable[[int, Surface], Awaitable[None]] | None = None
        """Called with (conversation id, the user's surface) when the bot takes over again; the Relay
        sets it, since only it knows the agents."""
        self._now = now
        self.timers = HandoffTimers(self)
        """The requests' deadlines (escalation, expiry) in business hours, and acting on them."""
        self.deliveries = Deliveries(self)
        """Words for the user, now or queued for the process that serves their platform."""
        self.cases = Cases(self)
        """Notes, snippets, transfer, scheduled closes, history: the desks' everyday tools."""
        self.also_on_tick: list[Callable[[], Awaitable[None]]] = []
        """Other timers that run with these (the Relay stops replies a moderator took over elsewhere)."""
        self.sla = Sla(self)
        """First-response targets, and the escalation of a case past its own."""
        self.ratings = Ratings(self)
        """The user's rating of a resolved case (`[handoff.ratings]`)."""

    def now(self) -> datetime:
        return self._now()

    # -- transitions ---------------------------------------------------------------------------------

    async def opened(self, handoff_id: int, desks: Collection[str] = ()) -> None:
        """Notify every desk (or only those named in `desks`, an intake reason's) of a new request and
        remember where each notification is."""
        view = await self.view(handoff_id)
        refs: dict[str, Any] = {}
        for desk in self.desks:
            if desks and desk.name not in desks:
                continue
            try:
                refs[desk.name] = await desk.open(view)
            except Exception:
                log.exception("handoff %s: could not notify desk %s", handoff_id, desk.name)
        async with self.db.begin() as session:
            handoff = await session.get_one(Handoff, handoff_id)
            handoff.notification_refs = {**handoff.notification_refs, **refs}
            session.add_all(
                HandoffPlace(
                    desk=desk.name, place=place_key(key, refs[desk.name][key]), handoff_id=handoff.id
                )
                for desk in self.desks
                if desk.name in refs
                for key in desk.place_keys
                if refs[desk.name].get(key) is not None
            )
        metrics.HANDOFF_TRANSITIONS.labels(HandoffStatus.REQUESTED.value).inc()
        await self._log(view, f"handoff #{handoff_id} requested: {view.reason}")

    async def claim(self, handoff_id: int, moderator_id: str, moderator_name: str) -> ClaimOutcome:
        """One conditional UPDATE decides the winner; everyone else learns who won."""
        now = self._now()
        async with self.db.begin() as session:
            result = await session.execute(
                update(Handoff)
                .where(Handoff.id == handoff_id, Handoff.status == HandoffStatus.REQUESTED)
                .values(
                    status=HandoffStatus.CLAIMED,
                    claimed_by=moderator_id,
                    claimed_by_name=moderator_name,
                    claimed_at=now,
                    last_word_at=None,
                )
                .execution_options(synchronize_session=False)
            )
            won = result.rowcount == 1  # type: ignore[attr-defined]
            handoff = await session.get_one(Handoff, handoff_id, populate_existing=True)
            if won:
                conversation = await session.get_one(Conversation, handoff.conversation_id)
                conversation.status = ConversationStatus.HUMAN
                session.add(
                    TranscriptEntry(
                        conversation_id=conversation.id,
                        role=Role.SYSTEM,
                        text=f"claimed by {moderator_name}",
                        author_id=moderator_id,
                    )
                )
            holder = handoff.claimed_by_name if handoff.status == HandoffStatus.CLAIMED else None
        if won:
            metrics.HANDOFF_TRANSITIONS.labels(HandoffStatus.CLAIMED.value).inc()
            view = await self.view(handoff_id)
            await self._update_desks(view)
            say = await self.user_words(handoff_id)
            await self._tell_user(handoff_id, say(UserNotices).claimed.format(name=moderator_name))
            await self._log(view, f"handoff #{handoff_id} claimed by {moderator_name}")
        return ClaimOutcome(won, holder)

    async def close(
        self,
        handoff_id: int,
        outcome: HandoffStatus,
        moderator_id: str,
        moderator_name: str,
        *,
        reason: str | None = None,
        notify_user: bool = True,
        only_if: Any = None,
    ) -> bool:
        """Resolve, return or expire an open handoff. Returns False if it was already closed (or
        `only_if`, a condition on the handoff row checked in the same UPDATE, no longer holds: a timer's
        reason to close can be gone by the time it acts).

        `reason` is for moderators (kept, logged, shown in history); a scheduled close's own reason
        stands when none is given. `notify_user=False` is for callers that are answering the user
        themselves (the Relay), or who cannot be reached (they left).
        """
        if outcome not in (HandoffStatus.RESOLVED, HandoffStatus.RETURNED, HandoffStatus.EXPIRED):
            raise ValueError(f"{outcome} does not close a handoff")
        async with self.db.begin() as session:
            result = await session.execute(
                update(Handoff)
                .where(Handoff.id == handoff_id, Handoff.status.in_(OPEN_HANDOFF_STATUSES))
                .where(only_if if only_if is not None else true())
                .values(
                    status=outcome,
                    closed_by=moderator_id,
                    closed_by_name=moderator_name,
                    closed_at=self._now(),
                    close_at=None,
                    close_reason=func.coalesce(reason, Handoff.close_reason),
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return False
            handoff = await session.get_one(Handoff, handoff_id, populate_existing=True)
            conversation = await session.get_one(Conversation, handoff.conversation_id)
            conversation.status = ConversationStatus.BOT
            conversation.last_activity_at = self._now()
            said = f"handoff {outcome.value} by {moderator_name}"
            session.add(
                TranscriptEntry(
                    conversation_id=conversation.id,
                    role=Role.SYSTEM,
                    text=f"{said}: {handoff.close_reason}" if handoff.close_reason else said,
                    author_id=moderator_id,
                )
            )
        metrics.HANDOFF_TRANSITIONS.labels(outcome.value).inc()
        metrics.CASE_TIME_TO_CLOSE_SECONDS.labels(outcome.value).observe(
            max((self._now() - handoff.requested_at).total_seconds(), 0.0)
        )
        view = await self.view(handoff_id)
        await self._update_desks(view)
        say = (await self.user_words(handoff_id))(UserNotices)
        custom = self.policy.closing_message != UserNotices.resolved  # the operator's own, as written
        notice = {
            HandoffStatus.RESOLVED: self.policy.closing_message if custom else say.resolved,
            HandoffStatus.RETURNED: say.returned,
            HandoffStatus.EXPIRED: say.expired,
        }[outcome]
        if notify_user:
            await self._tell_user(handoff_id, notice)
            if await self.ratings.ask(handoff_id):
                await self.deliveries.reach(handoff_id, DeliveryKind.RATING)
            await self._resume_agent(handoff_id)
        claimer = view.claimed_by_name or "nobody"
        why = f": {handoff.close_reason}" if handoff.close_reason else ""
        await self._log(
            view,
            f"handoff #{handoff_id} {outcome.value} by {moderator_name} (claimed by {claimer}){why}",
            transcript=await self.transcript(handoff_id),
        )
        return True

    async def moderator_says(
        self,
        handoff_id: int,
        moderator_id: str,
        moderator_name: str,
        text: str,
        files: Sequence[Attachment] = (),
        *,
        anonymous: bool | None = None,
        origin: Origin | None = None,
    ) -> bool:
        """Deliver the claiming moderator's words, then files, to the user, under their name or
        (anonymous, by default as the policy says) the staff name; the transcript keeps who wrote it
        either way. Returns False if they do not hold the claim."""
        now = self._now()
        async with self.db.begin() as session:
            # A conditional UPDATE, not a read: it holds the row until this commits, so a close or a
            # transfer at the same moment either comes first (and this is refused) or waits for it.
            held = await session.execute(
                update(Handoff)
                .where(
                    Handoff.id == handoff_id,
                    Handoff.status == HandoffStatus.CLAIMED,
                    Handoff.claimed_by == moderator_id,
                )
                .values(last_word_at=now, silence_warned_at=None)
                .execution_options(synchronize_session=False)
            )
            if held.rowcount != 1:  # type: ignore[attr-defined]
                return False
            first = await session.execute(
                update(Handoff)
                .where(Handoff.id == handoff_id, Handoff.first_response_at.is_(None))
                .values(first_response_at=now)
                .execution_options(synchronize_session=False)
            )
            handoff = await session.get_one(Handoff, handoff_id, populate_existing=True)
            session.add(
                TranscriptEntry(
                    conversation_id=handoff.conversation_id,
                    role=Role.MODERATOR,
                    text=text,
                    author_id=moderator_id,
                    attachments=[file.metadata() for file in files] or None,
                )
            )
        if first.rowcount == 1:  # type: ignore[attr-defined]
            seconds = max((now - handoff.requested_at).total_seconds(), 0.0)
            metrics.CASE_FIRST_RESPONSE_SECONDS.observe(seconds)
            log.info("handoff #%s: first response after %.0fs", handoff_id, seconds)
        anonymous = self.policy.anonymous_replies if anonymous is None else anonymous
        if text.strip() or not files:
            if anonymous:
                await self.deliveries.reach(
                    handoff_id,
                    DeliveryKind.NOTICE,
                    (await self.user_words(handoff_id))(UserNotices).from_staff.format(
                        name=self.policy.staff_name, text=text
                    ),
                    origin=origin,
                )
            else:
                await self._tell_user(handoff_id, text, author=moderator_name, origin=origin)
        if files:
            await self._send_files(handoff_id, self.policy.staff_name if anonymous else moderator_name, files)
        return True

    async def _send_files(self, handoff_id: int, author: str, files: Sequence[Attachment]) -> None:
        """A moderator's files to the user, when this process reaches the user's platform; the desks
        are told of any that could not go (too large there, refused, or only another process serves it)."""
        async with self.db() as session:
            conversation = await session.get_one(
                Conversation, (await session.get_one(Handoff, handoff_id)).conversation_id
            )
        surface = self.surface_for(conversation.platform, conversation.chat_id, conversation.thread_id)

        async def note(text: str) -> None:
            await self.tell_desks(handoff_id, text)

        if surface is None:
            await note(self.catalogue.desk(FileNotices).elsewhere.format(count=len(files)))
            return
        reach = surface

        async def post(file: Attachment) -> None:
            await acquire_all(reach.budgets)
            await reach.send_file(file)

        await pass_on(files, author, surface.max_upload, post, note, self.catalogue.desk(FileNotices))

    async def user_says(
        self,
        conversation_id: int,
        author: str,
        text: str,
        files: Sequence[Attachment] = (),
        *,
        origin: Origin | None = None,
    ) -> None:
        """Pass a user's message (already in the transcript) and its files to every desk's thread or
        topic; with its `origin`, remember the copies, so its edits can follow (bridges/mirror.py)."""
        async with self.db() as session:
            handoff = await open_handoff_of(session, conversation_id)
        if handoff is None:
            return
        await self.cases.user_wrote(handoff.id)
        copies: list[tuple[str, str]] = []
        for desk in self.desks:
            refs = handoff.notification_refs.get(desk.name)
            if refs is None:
                continue
            try:
                if text.strip() or not files:
                    copy = await desk.post(refs, author, text)
                    if copy is not None:
                        copies.append((desk_side(desk.name), copy))
                await pass_on(
                    files,
                    author,
                    desk.upload_limit,
                    partial(desk.post_file, refs, author),
                    partial(desk.note, refs),
                    self.catalogue.desk(FileNotices),
                )
            except Exception:
                log.exception("handoff %s: could not relay a user message to %s", handoff.id, desk.name)
        if origin is not None:
            await remember(self.db, handoff.id, origin, copies)

    # -- timers --------------------------------------------------------------------------------------

    async def tick(self) -> None:
        """Deliver what other processes queued for this one; run every timer whose time has come: the
        requests' (escalate, expire), the cases', the first-response targets', and `also_on_tick`. Safe
        to run in several processes."""
        await self.deliveries.deliver_pending()
        now = self._now()
        await self.timers.tick(now)
        await self.cases.tick(now)
        await self.sla.tick(now)
        for timer in self.also_on_tick:
            await timer()

    async def run_timers(self, every: float = 2.0) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("handoff timers failed; retrying")
            await asyncio.sleep(every)

    async def overdue(self, handoff_id: int) -> None:
        """Tell every desk with the case that it passed its first-response target (`Sla` calls this
        once per case)."""
        view = await self.view(handoff_id)
        async with self.db() as session:
            refs = (await session.get_one(Handoff, handoff_id)).notification_refs
        for desk in self.desks:
            if desk.name in refs:
                try:
                    await desk.overdue(refs[desk.name], view)
                except Exception:
                    log.exception("handoff %s: could not escalate on desk %s", handoff_id, desk.name)
        priority = view.priority or "no priority"
        await self._log(view, SlaNotices.logged.format(id=handoff_id, priority=priority))

    # -- reading -------------------------------------------------------------------------------------

    async def view(self, handoff_id: int) -> HandoffView:
        async with self.db() as session:
            handoff = await session.get_one(Handoff, handoff_id)
            conversation = await session.get_one(Conversation, handoff.conversation_id)
            user = await session.get_one(User, conversation.user_id)
            entries = list(
                await session.scalars(
                    select(TranscriptEntry)
                    .where(
                        TranscriptEntry.conversation_id == conversation.id,
                        TranscriptEntry.role != Role.SYSTEM,
                        TranscriptEntry.internal.is_(False),
                    )
                    .order_by(TranscriptEntry.id.desc())
                    .limit(self.policy.recent_entries)
                )
            )
            earlier, history = await self.cases.history(handoff_id, HISTORY_SHOWN)
            return HandoffView(
                handoff_id=handoff.id,
                status=handoff.status,
                platform=conversation.platform,
                user_name=user.display_name,
                user_id=user.external_id,
                reason=handoff.reason,
                recent=tuple((entry.role.value, entry.text) for entry in reversed(entries)),
                jump_url=self._jump_link(conversation),
                claimed_by_name=handoff.claimed_by_name,
                closed_by=handoff.closed_by_name,
                escalated=handoff.escalated_at is not None,
                earlier_cases=earlier,
                history=tuple(history),
                requested_by=handoff.requested_by,
                intake_label=handoff.intake_label,
                priority=handoff.priority,
                pings=self.policy.pings.get(handoff.intake_label or "", {}),
                overdue=handoff.sla_escalated_at is not None,
            )

    async def transcript(self, handoff_id: int) -> str:
        """The conversation from the request to now, as a plain-text file body."""
        async with self.db() as session:
            handoff = await session.get_one(Handoff, handoff_id)
            entries = await session.scalars(
                select(TranscriptEntry)
                .where(
                    TranscriptEntry.conversation_id == handoff.conversation_id,
                    TranscriptEntry.created_at >= handoff.requested_at - timedelta(minutes=30),
                )
                .order_by(TranscriptEntry.id)
            )
            lines = [
                f"[{entry.created_at:%Y-%m-%d %H:%M:%S}] {entry.role.value}"
                f"{' ' + entry.author_id if entry.author_id else ''}"
                f"{' (internal note)' if entry.internal else ''}: {entry.text}{listed(entry.attachments)}"
                for entry in entries
            ]
        header = (
            f"Handoff #{handoff.id}: {handoff.reason}\n"
            f"requested {handoff.requested_at:%Y-%m-%d %H:%M:%S} UTC by {handoff.requested_by}; "
            f"claimed by {handoff.claimed_by_name or 'nobody'}; "
            f"{handoff.status.value} by {handoff.closed_by_name or 'nobody'}"
            f"{': ' + handoff.close_reason if handoff.close_reason else ''}\n\n"
        )
        return header + "\n".join(lines) + "\n"

    async def open_handoff_at(self, desk: str, key: str, value: object) -> int | None:
        """The open handoff whose notification on `desk` has `refs[key] == value` (a thread or topic id,
        one of the desk's `place_keys`), so a desk can tell which handoff a moderator is writing in."""
        async with self.db() as session:
            return await session.scalar(self.handoff_at(desk, key, value))

    @staticmethod
    def handoff_at(desk: str, key: str, value: object) -> Select[int]:
        """One primary-key lookup in `handoff_places`, then the handoff by its id."""
        return (
            select(HandoffPlace.handoff_id)
            .join(Handoff, Handoff.id == HandoffPlace.handoff_id)
            .where(
                HandoffPlace.desk == desk,
                HandoffPlace.place == place_key(key, value),
                Handoff.status.in_(OPEN_HANDOFF_STATUSES),
            )
        )

    # -- helpers -------------------------------------------------------------------------------------

    async def changed(self, handoff_id: int, summary: str) -> None:
        """A change of hands made elsewhere (`Cases`): redraw every desk's notification, and log it."""
        view = await self.view(handoff_id)
        await self._update_desks(view)
        await self._log(view, summary)

    async def log_case(self, handoff_id: int, summary: str) -> None:
        """Write a line about the case (its rating, say) to every desk's log."""
        await self._log(await self.view(handoff_id), summary)

    async def user_words(self, handoff_id: int) -> Phrasebook:
        """What to say to the case's user: in the language of their conversation."""
        async with self.db() as session:
            handoff = await session.get_one(Handoff, handoff_id)
            locale = await session.scalar(
                select(Conversation.locale).where(Conversation.id == handoff.conversation_id)
            )
        return self.catalogue.words(locale)

    async def tell_user(self, handoff_id: int, text: str) -> None:
        """Say something to the case's user, in order with what was queued for them."""
        await self._tell_user(handoff_id, text)

    async def tell_desks(self, handoff_id: int, text: str, *, skip: str | None = None) -> None:
        """Say something in the case's thread or topic on every desk (but `skip`, where it was said)."""
        async with self.db() as session:
            refs = (await session.get_one(Handoff, handoff_id)).notification_refs
        for desk in self.desks:
            if desk.name in refs and desk.name != skip:
                try:
                    await desk.note(refs[desk.name], text)
                except Exception:
                    log.exception("handoff %s: could not tell desk %s", handoff_id, desk.name)

    async def _update_desks(self, view: HandoffView) -> None:
        async with self.db() as session:
            refs = (await session.get_one(Handoff, view.handoff_id)).notification_refs
        for desk in self.desks:
            if desk.name in refs:
                try:
                    await desk.update(refs[desk.name], view)
                except Exception:
                    log.exception("handoff %s: could not update desk %s", view.handoff_id, desk.name)

    async def _resume_agent(self, handoff_id: int) -> None:
        """The bot is back: let the agent say so, where its provider supports that (`on_return`)."""
        await self.deliveries.reach(handoff_id, DeliveryKind.RESUME)

    async def _tell_user(
        self, handoff_id: int, text: str, *, author: str | None = None, origin: Origin | None = None
    ) -> None:
        if author:
            said = (await self.user_words(handoff_id))(UserNotices).from_moderator
            text = said.format(name=author, text=text)
        await self.deliveries.reach(handoff_id, DeliveryKind.NOTICE, text, origin=origin)

    async def audit(self, summary: str) -> None:
        """Record a moderator action (a block, an unblock) in the log and on every desk's log."""
        log.info(summary)
        for desk in self.desks:
            try:
                await desk.audit(summary)
            except Exception:
                log.exception("could not write to the log of desk %s", desk.name)

    async def _log(self, view: HandoffView, summary: str, transcript: str | None = None) -> None:
        log.info(summary)
        for desk in self.desks:
            try:
                await desk.log(view, summary, transcript)
            except Exception:
                log.exception("handoff %s: could not log to %s", view.handoff_id, desk.name)


async def open_handoff_of(session: AsyncSession, conversation_id: int) -> Handoff | None:
    return await session.scalar(
        select(Handoff).where(
            Handoff.conversation_id == conversation_id, Handoff.status.in_(OPEN_HANDOFF_STATUSES)
        )
    )
