"""The Relay: the one place that decides which session a message belongs to, where it goes, and what
the transcript records.

Turns run one at a time per conversation, in arrival order. The user's message is committed before the
agent is called, so nothing typed is lost whatever the provider or platform does next.
"""

from __future__ import annotations

import logging
import time
import unicodedata
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Agent, HistoryEntry, Resumable, Turn
from bridges.bindings import Bindings
from bridges.blocks import BlockService
from bridges.budget import RateBudget
from bridges.handoff import HandoffPolicy, HandoffService, open_handoff_of
from bridges.inbox import Inbox, LeftOver, Receipt
from bridges.outage import DatabaseUnavailable, survives_db_outage
from bridges.render import MAX_REPLY_CHARS, RenderFailed, RenderResult, ReplyRenderer
from bridges.surface import Inbound, Surface, SurfaceFactory, send_notice
from bridges.turns import Place, TurnOrder
from models import (
    OPEN_HANDOFF_STATUSES,
    Conversation,
    ConversationStatus,
    Handoff,
    HandoffStatus,
    Role,
    TranscriptEntry,
    User,
    utcnow,
)
from models.queries import user_row
from ops import metrics
from settings import Settings

log = logging.getLogger(__name__)

HISTORY_LENGTH = 20

Command = Literal["reset", "human"]
"""Commands that wait their turn in the conversation like messages do."""


class Notices:
    """Everything the Relay itself says to a user, in one place."""

    handoff_requested = "I've asked a human moderator to join. They'll see this conversation and reply here."
    handoff_pending = "A moderator has been asked to join; your message is saved and they will see it."
    handoff_already_open = "A moderator has already been asked to join this conversation."
    no_moderators = (
        "No human moderators are set up for this assistant, so I can't pass you to a person. "
        "The assistant is still here to help."
    )
    handoff_open_elsewhere = (
        "You already have an open request for a moderator. They will answer you where you asked."
    )
    handoff_too_often = (
        "Several requests for a moderator were opened for you in the last hour, so I can't open another "
        "one right now. Please try again later; the assistant is still here."
    )
    handoff_expired = "No moderator was available in time, so the assistant is back. Your message is below."
    reset = "Started a new conversation. What can I help you with?"
    session_ended = "This conversation has ended. Send a message any time to start a new one."
    delivery_failed = "Sorry, I couldn't post the whole reply here. Please try again."
    slow_down = (
        "You're sending messages faster than I can answer. Please wait {seconds} seconds, then send it again."
    )
    db_unavailable = (
        "I can't reach my database right now, so I couldn't take your message. "
        "Please send it again in a minute."
    )
    input_shortened = "Your message was very long, so the assistant only read the first {limit} characters."
    reply_cut = (
        "The assistant's reply was too long, so it was cut off here. You can ask it to go on, or to be brief."
    )
    interrupted = (
        "Sorry, I was restarted while answering “{asked}”. Your message is saved; please send it again."
    )
    press_not_answered = (
        "Sorry, I was restarted before I could act on your choice “{label}”. Please choose again or send a "
        "message."
    )


@dataclass(frozen=True)
class RelayPolicy:
    default_agent: str
    idle_timeout: timedelta
    handoff_expiry: timedelta
    bindings: Mapping[tuple[str, str], str]
    """Bindings from configuration; bindings stored in the database take precedence."""
    user_messages_per_minute: float = 12.0
    user_burst: int = 5
    """A user may send this many messages at once, then `user_messages_per_minute`."""
    max_input_chars: int = 4000
    """Longer messages are kept whole in the transcript but shortened for the agent."""
    handoffs_per_hour: int = 3
    """Requests for a human one user may open in an hour, so /reset and /human in a loop cannot flood
    the moderators with topics and pings."""
    max_reply_chars: int = MAX_REPLY_CHARS
    """An agent's reply is cut before this many characters and its stream closed."""
    instance: str = "main"
    """This process's name: after a crash it finishes only the replies it had started itself."""
    db_outage_grace: float = 30.0
    """Seconds to keep retrying while the database is unreachable or locked, before telling the user."""
    moderators: bool = True
    """Whether any moderator desk is set up. Without one a request for a human is declined, honestly,
    and the conversation stays with the agent."""

    @classmethod
    def from_settings(cls, settings: Settings) -> RelayPolicy:
        limits = settings.limits
        return cls(
            default_agent=settings.routing.default_agent,
            idle_timeout=timedelta(minutes=settings.routing.idle_timeout_minutes),
            handoff_expiry=timedelta(minutes=settings.handoff.expire_after_minutes),
            bindings={(b.scope, b.id): b.agent for b in settings.routing.bindings},
            user_messages_per_minute=limits.user_messages_per_minute,
            user_burst=limits.user_burst,
            max_input_chars=limits.max_input_chars,
            handoffs_per_hour=limits.handoffs_per_hour,
            max_reply_chars=limits.max_reply_chars,
            instance=settings.ops.instance,
            moderators=any(config.has_desk for config in settings.platforms().values()),
        )


@dataclass
class _UserGate:
    budget: RateBudget
    warned: bool = False


@dataclass(frozen=True)
class Refusal:
    """Why a message may have no effect at all, checked before anything visible happens."""

    notice: str | None
    """What to tell the user: None for a blocked user, or one already asked to slow down."""


class Relay:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        agents: Mapping[str, Agent],
        policy: RelayPolicy,
        *,
        handoffs: HandoffService | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        if policy.default_agent not in agents:
            raise ValueError(f"default agent {policy.default_agent!r} is not configured")
        self.db = db
        self.agents = agents
        self.policy = policy
        self._now = now
        self.handoffs = handoffs or HandoffService(
            db, HandoffPolicy(expire_after=policy.handoff_expiry, escalate_after=None), now=now
        )
        self.handoffs.on_return = self.resume_after_handoff
        self.blocks = BlockService(db, now=now)
        self.bindings = Bindings(db, agents, policy.default_agent, policy.bindings)
        self.inbox = Inbox(
            db,
            run_id=f"{policy.instance}:{uuid.uuid4().hex[:12]}",
            instance=policy.instance,
            now=now,
            outage_grace=policy.db_outage_grace,
        )
        self._turns = TurnOrder()
        self._gates: dict[tuple[str, str], _UserGate] = {}

    @property
    def outage_grace(self) -> float:
        return self.policy.db_outage_grace

    def line_up(self, inbound: Inbound) -> Place:
        """Take the message's place in its conversation's line, now, before any await. A bridge that
        must ask `admission` before anything visible happens (a public "thinking…", a new thread) takes
        its place first with this, and passes it on; everyone else lets `handle` do both."""
        return self._turns.line_up(_conversation_key(inbound))

    async def handle(
        self, inbound: Inbound, surface: Surface, *, place: Place | None = None
    ) -> RenderResult | None:
        """Route one user message: to the agent (returning the rendered reply) or, during a handoff, aside.

        Blocked users are ignored, and a user over the message rate is asked to slow down, before
        anything is queued, so one user cannot hold up others or burn the provider's budget. With a
        `place` (see `line_up`) the bridge has asked `admission` itself.

        The message is recorded before it waits for its turn, so a crash while it waits loses nothing
        (bridges/recovery.py answers it on the next start).
        """
        if inbound.button is None and _invisible(inbound.text):
            return None
        if place is not None:
            return await self._take_turn(inbound, surface, place)
        with self.line_up(inbound) as place:  # no await before this, so turns keep their order
            if not await self._admitted(inbound, surface):
                return None
            return await self._take_turn(inbound, surface, place)

    async def _take_turn(
        self, inbound: Inbound, surface: Surface, place: Place, receipt: Receipt | None = None
    ) -> RenderResult | None:
        """Record the message (unless a recovery brings it recorded), wait for its turn, route it. A turn
        that fails is marked handled, since its user is told (here, or by the bridge)."""
        try:
            with place:
                receipt = receipt or await self.inbox.receive(inbound, place.number)
                if receipt is None:
                    log.info("message %s:%s taken by another process", inbound.platform, inbound.message_id)
                    return None
                await place.turn()
                try:
                    return await self._route(inbound, surface, receipt)
                except Exception:
                    await self.inbox.give_up(receipt)
                    raise
        except DatabaseUnavailable as exc:
            log.error("dropping a turn for %s:%s: %s", inbound.platform, inbound.user_id, exc)
            await send_notice(surface, Notices.db_unavailable)
            return None

    async def admission(self, inbound: Inbound) -> Refusal | None:
        """None if the message may go ahead; else why not. Counts against the user's message rate, so
        every entry point (messages, presses, /reset, /human) calls it once, first."""
        if not self._within_rate(inbound):
            gate = self._gates[(inbound.platform, inbound.user_id)]
            if gate.warned or await self.is_blocked(inbound.platform, inbound.user_id):
                return Refusal(None)
            gate.warned = True
            seconds = max(1, round(60 / self.policy.user_messages_per_minute))
            return Refusal(Notices.slow_down.format(seconds=seconds))
        if await self.is_blocked(inbound.platform, inbound.user_id):
            log.info("ignoring a message from blocked user %s:%s", inbound.platform, inbound.user_id)
            return Refusal(None)
        return None

    async def _admitted(self, inbound: Inbound, surface: Surface) -> bool:
        refusal = await self.admission(inbound)
        if refusal is not None and refusal.notice is not None:
            await send_notice(surface, refusal.notice)
        return refusal is None

    async def _route(self, inbound: Inbound, surface: Surface, receipt: Receipt) -> RenderResult | None:
        if await self.is_blocked(inbound.platform, inbound.user_id):  # blocked while it waited
            log.info("ignoring a message from blocked user %s:%s", inbound.platform, inbound.user_id)
            await self.inbox.mark_handled(receipt)
            return None
        conversation, notice = await self._conversation_for(inbound)
        if notice:
            await send_notice(surface, notice)
        await self._record(conversation.id, Role.USER, inbound.text, [inbound.message_id], handled=receipt)
        if conversation.status in (ConversationStatus.HANDOFF_REQUESTED, ConversationStatus.HUMAN):
            if conversation.status == ConversationStatus.HANDOFF_REQUESTED:
                await send_notice(surface, Notices.handoff_pending)
            await self.handoffs.user_says(conversation.id, inbound.display_name, inbound.text)
            return None
        return await self._agent_turn(conversation, inbound, surface)

    async def reset(self, inbound: Inbound, surface: Surface, *, place: Place | None = None) -> None:
        """Close the current conversation (and any open handoff); the next message starts afresh."""
        await self._command(inbound, surface, place, "reset")

    async def request_human(
        self,
        inbound: Inbound,
        surface: Surface,
        reason: str = "the user asked for a human",
        *,
        place: Place | None = None,
    ) -> None:
        """Open a request for a human moderator (the user's `/human`)."""
        await self._command(inbound, surface, place, "human", reason=reason)

    async def _command(
        self,
        inbound: Inbound,
        surface: Surface,
        place: Place | None,
        command: Command,
        receipt: Receipt | None = None,
        *,
        reason: str = "the user asked for a human",
    ) -> None:
        """A command waits its turn like a message, recorded first (a crash while it waits loses it
        not), and is marked handled when its turn comes: a crash while it runs does not repeat it."""
        with place or self.line_up(inbound) as taken:
            if place is None and not await self._admitted(inbound, surface):
                return
            try:
                receipt = receipt or await self.inbox.receive(inbound, taken.number, command)
                if receipt is None:
                    return
                await taken.turn()
                await self.inbox.mark_handled(receipt)
                if command == "reset":
                    answer = await self._reset(inbound)
                else:
                    answer = await self._human(inbound, surface, reason)
            except DatabaseUnavailable as exc:
                log.error("dropping /%s of %s:%s: %s", command, inbound.platform, inbound.user_id, exc)
                answer = Notices.db_unavailable
        await send_notice(surface, answer)

    async def _reset(self, inbound: Inbound) -> str:
        async with self.db() as session:
            conversation = await self._open_conversation(session, inbound)
            handoff = await open_handoff_of(session, conversation.id) if conversation else None
        if handoff is not None:
            await self.handoffs.close(
                handoff.id,
                HandoffStatus.RETURNED,
                f"user:{inbound.user_id}",
                f"{inbound.display_name} (the user, with /reset)",
                notify_user=False,
            )
        if conversation is not None:
            async with self.db.begin() as session:
                _close(await session.get_one(Conversation, conversation.id), self._now())
        return Notices.reset

    async def _human(self, inbound: Inbound, surface: Surface, reason: str) -> str:
        conversation, notice = await self._conversation_for(inbound)
        if notice:
            await send_notice(surface, notice)
        return await self._open_handoff(conversation, reason, requested_by="user")

    async def answer_left_over(self, left: LeftOver, surface: Surface, place: Place) -> None:
        """Answer a message a crash left unanswered (see bridges/recovery.py), in its place in line. A
        pressed button is reported instead: its message may be long gone."""
        inbound, receipt = left.inbound, left.receipt
        log.warning("answering %s:%s, left unanswered by a restart", inbound.platform, inbound.message_id)
        if left.command is not None:
            await self._command(inbound, surface, place, cast(Command, left.command), receipt)
        elif inbound.button is None:
            await self._take_turn(inbound, surface, place, receipt)
        else:
            with place:
                await place.turn()
                await self.inbox.give_up(receipt)
                await send_notice(surface, Notices.press_not_answered.format(label=inbound.text[:80]))

    @survives_db_outage
    async def open_handoff_of_user(self, platform: str, user_id: str) -> int | None:
        """The user's open handoff in any conversation, if any (what a moderator blocking them learns)."""
        async with self.db() as session:
            return await session.scalar(
                select(Handoff.id)
                .join(Conversation, Conversation.id == Handoff.conversation_id)
                .join(User, User.id == Conversation.user_id)
                .where(
                    User.platform == platform,
                    User.external_id == user_id,
                    Handoff.status.in_(OPEN_HANDOFF_STATUSES),
                )
                .limit(1)
            )

    @survives_db_outage
    async def is_blocked(self, platform: str, user_id: str) -> bool:
        return await self.blocks.active(platform, user_id) is not None

    def _within_rate(self, inbound: Inbound) -> bool:
        key = (inbound.platform, inbound.user_id)
        gate = self._gates.get(key)
        if gate is None:
            if len(self._gates) >= 10_000:  # forget users whose budget has fully refilled
                self._gates = {k: g for k, g in self._gates.items() if not g.budget.full()}
            gate = self._gates[key] = _UserGate(
                RateBudget(self.policy.user_messages_per_minute, per=60.0, burst=self.policy.user_burst)
            )
        if not gate.budget.available():
            return False
        gate.budget.take()
        gate.warned = False
        return True

    async def resume_after_handoff(self, conversation_id: int, surface: Surface) -> None:
        """Tell the agent the bot is back (if its provider can hear it) and show what it says."""
        async with self.db() as session:
            conversation = await session.get_one(Conversation, conversation_id)
            user = await session.get_one(User, conversation.user_id)
        if not isinstance(self._agent_for(conversation), Resumable):
            return
        inbound = Inbound(
            conversation.platform,
            conversation.chat_id,
            user.external_id,
            user.display_name,
            "",
            thread_id=conversation.thread_id,
        )
        with self.line_up(inbound) as place:
            await place.turn()
            await self._agent_turn(conversation, inbound, surface, resume=True)

    async def _agent_turn(
        self, conversation: Conversation, inbound: Inbound, surface: Surface, *, resume: bool = False
    ) -> RenderResult:
        agent = self._agent_for(conversation)
        started = time.monotonic()
        text = inbound.text
        if len(text) > self.policy.max_input_chars:
            text = text[: self.policy.max_input_chars]
            await send_notice(surface, Notices.input_shortened.format(limit=self.policy.max_input_chars))
        turn = Turn(
            text=text,
            user_id=inbound.user_id,
            display_name=inbound.display_name,
            platform=inbound.platform,
            provider_state=conversation.provider_state,
            button=inbound.button,
            history=await self._history(conversation.id),
        )
        pending = {"instance": self.policy.instance, "run": self.inbox.run_id, "asked": text[:80]}
        await self._set_pending(conversation.id, pending)

        async def posted(message_id: str) -> None:
            await self._set_pending(conversation.id, message_id=message_id)

        delivered = True
        try:
            events = agent.resume(turn) if resume and isinstance(agent, Resumable) else agent.stream(turn)
            renderer = ReplyRenderer(surface, max_chars=self.policy.max_reply_chars, on_posted=posted)
            result = await renderer.render(events)
        except RenderFailed as exc:
            log.error("conversation %s: reply could not be delivered: %s", conversation.id, exc)
            result = RenderResult(text="", error=None)
            delivered = False
            await send_notice(surface, Notices.delivery_failed)
        _observe(inbound.platform, agent.name, started, result, delivered)
        if result.error is not None:
            log.warning("conversation %s: agent %s failed: %s", conversation.id, agent.name, result.error)
            await self._record(conversation.id, Role.SYSTEM, f"agent error: {type(result.error).__name__}")
        if result.text:
            await self._record(conversation.id, Role.AGENT, result.text, result.message_ids)
        if result.cut:
            await send_notice(surface, Notices.reply_cut)
        await self._finish_turn(conversation.id, result)
        if result.handoff is not None:
            answer = await self._open_handoff(conversation, result.handoff.reason, requested_by="agent")
            await send_notice(surface, answer)
        elif result.session_ended is not None:
            await send_notice(surface, Notices.session_ended)
        return result

    def _agent_for(self, conversation: Conversation) -> Agent:
        agent = self.agents.get(conversation.agent_name)
        if agent is None:
            log.warning(
                "conversation %s is bound to agent %r, which is no longer configured; using %r",
                conversation.id,
                conversation.agent_name,
                self.policy.default_agent,
            )
            agent = self.agents[self.policy.default_agent]
        return agent

    @survives_db_outage
    async def _conversation_for(self, inbound: Inbound) -> tuple[Conversation, str | None]:
        """The live conversation for this user in this place, after idle and handoff timeouts."""
        now = self._now()
        notice = None
        async with self.db() as session:
            conversation = await self._open_conversation(session, inbound)
            handoff = await open_handoff_of(session, conversation.id) if conversation else None
        if handoff is not None and handoff.status == HandoffStatus.REQUESTED:
            # Timers expire requests too; this catches one whose timer has not run yet.
            if handoff.requested_at + self.policy.handoff_expiry <= now:
                expired = await self.handoffs.close(
                    handoff.id, HandoffStatus.EXPIRED, "timer", "timeout", notify_user=False
                )
                notice = Notices.handoff_expired if expired else None
        async with self.db.begin() as session:
            user = await user_row(session, inbound.platform, inbound.user_id, inbound.display_name)
            conversation = await self._open_conversation(session, inbound)
            if (
                conversation is not None
                and conversation.status == ConversationStatus.BOT
                and conversation.last_activity_at + self.policy.idle_timeout <= now
            ):
                _close(conversation, now)
                conversation = None
            if conversation is None:
                conversation = Conversation(
                    user_id=user.id,
                    platform=inbound.platform,
                    chat_id=inbound.chat_id,
                    thread_id=inbound.thread_id,
                    agent_name=await self.bindings.agent_for(session, inbound),
                    provider_state={},
                    status=ConversationStatus.BOT,
                    last_activity_at=now,
                )
                session.add(conversation)
            conversation.last_activity_at = now
        return conversation, notice

    async def _open_conversation(self, session: AsyncSession, inbound: Inbound) -> Conversation | None:
        return await session.scalar(
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

    @survives_db_outage
    async def _history(self, conversation_id: int) -> tuple[HistoryEntry, ...]:
        async with self.db() as session:
            entries = await session.scalars(
                select(TranscriptEntry)
                .where(
                    TranscriptEntry.conversation_id == conversation_id, TranscriptEntry.role != Role.SYSTEM
                )
                .order_by(TranscriptEntry.id.desc())
                .limit(HISTORY_LENGTH + 1)
            )
            rows = list(entries)[1:]  # the newest is the message being answered now
        return tuple(HistoryEntry(role=row.role.value, text=row.text) for row in reversed(rows))  # type: ignore[arg-type]

    @survives_db_outage
    async def _record(
        self,
        conversation_id: int,
        role: Role,
        text: str,
        message_ids: Sequence[str] = (),
        author_id: str = "",
        *,
        handled: Receipt | None = None,
    ) -> None:
        """Add a transcript entry; with `handled`, mark that inbound message as taken by its turn in the
        same transaction, so a crash can neither lose it nor answer it twice."""
        async with self.db.begin() as session:
            if handled is not None:
                await session.execute(self.inbox.handled(handled))
            session.add(
                TranscriptEntry(
                    conversation_id=conversation_id,
                    role=role,
                    text=text,
                    author_id=author_id,
                    platform_message_ids=[mid for mid in message_ids if mid],
                )
            )

    @survives_db_outage
    async def _set_pending(
        self, conversation_id: int, pending: dict[str, Any] | None = None, *, message_id: str = ""
    ) -> None:
        async with self.db.begin() as session:
            conversation = await session.get_one(Conversation, conversation_id)
            current = pending if pending is not None else dict(conversation.pending_reply or {})
            if message_id:
                current["message_ids"] = [*current.get("message_ids", []), message_id]
            conversation.pending_reply = current

    async def report_interrupted(self, surface_for: SurfaceFactory) -> int:
        """After a crash: tell each user whose reply this instance left half-written (by an earlier run)
        to send it again, and note it in the transcript. The turn is not re-run: the provider may have
        acted on it. `surface_for` returns None for a platform this process has no bridge for (the note
        is still made). Returns how many there were."""
        async with self.db() as session:
            stranded = list(
                await session.scalars(select(Conversation).where(Conversation.pending_reply.is_not(None)))
            )
        found = 0
        for conversation in stranded:
            pending = conversation.pending_reply or {}
            if pending.get("instance") != self.policy.instance or pending.get("run") == self.inbox.run_id:
                continue  # another process's, or a reply this run is writing right now
            found += 1
            surface = surface_for(conversation.platform, conversation.chat_id, conversation.thread_id)
            if surface is not None:
                await send_notice(surface, Notices.interrupted.format(asked=pending.get("asked", "")))
            await self._record(
                conversation.id,
                Role.SYSTEM,
                "reply interrupted by a restart",
                [str(mid) for mid in pending.get("message_ids", [])],
            )
            async with self.db.begin() as session:
                (await session.get_one(Conversation, conversation.id)).pending_reply = None
            log.warning("conversation %s: a reply was interrupted by a restart", conversation.id)
        return found

    @survives_db_outage
    async def _finish_turn(self, conversation_id: int, result: RenderResult) -> None:
        async with self.db.begin() as session:
            conversation = await session.get_one(Conversation, conversation_id)
            now = self._now()
            conversation.last_activity_at = now
            conversation.pending_reply = None
            if result.provider_state is not None:
                conversation.provider_state = result.provider_state
            if result.session_ended is not None and result.handoff is None:
                _close(conversation, now)

    async def _open_handoff(self, conversation: Conversation, reason: str, *, requested_by: str) -> str:
        """Open a handoff unless the user already has one open or opened too many this hour; one at a
        time per user in this process (their row is locked too, for the other processes)."""
        if not self.policy.moderators:
            log.info(
                "conversation %s: %s asked for a human, but no desk is set up", conversation.id, requested_by
            )
            return Notices.no_moderators
        with self._turns.line_up(("handoff", conversation.user_id)) as place:
            await place.turn()
            return await self._open_handoff_now(conversation.id, reason, requested_by=requested_by)

    @survives_db_outage
    async def _open_handoff_now(self, conversation_id: int, reason: str, *, requested_by: str) -> str:
        """Open a handoff unless the user already has one open (here or in another conversation), and
        notify the moderators. Returns what to tell the user."""
        async with self.db.begin() as session:
            conversation = await session.get_one(Conversation, conversation_id)
            # one request at a time per user: their row is locked until this one is in (PostgreSQL; SQLite
            # has one writer at a time anyway, and a stale read fails to write and is retried)
            await session.execute(select(User.id).where(User.id == conversation.user_id).with_for_update())
            if await open_handoff_of(session, conversation_id) is not None:
                return Notices.handoff_already_open
            if await session.scalar(_open_handoff_of_user(conversation.user_id)) is not None:
                return Notices.handoff_open_elsewhere
            since = self._now() - timedelta(hours=1)
            if await session.scalar(_handoffs_of_user_since(conversation.user_id, since)) >= (
                self.policy.handoffs_per_hour
            ):
                log.info("conversation %s: handoff refused, too many this hour", conversation_id)
                return Notices.handoff_too_often
            handoff = Handoff(
                conversation_id=conversation_id,
                status=HandoffStatus.REQUESTED,
                reason=reason,
                requested_by=requested_by,
                requested_at=self._now(),
            )
            session.add(handoff)
            conversation.status = ConversationStatus.HANDOFF_REQUESTED
            conversation.closed_at = None
        log.info("conversation %s: handoff %s requested by %s", conversation_id, handoff.id, requested_by)
        await self.handoffs.opened(handoff.id)
        return Notices.handoff_requested


def _conversation_key(inbound: Inbound) -> tuple[str, str, str, str]:
    return (inbound.platform, inbound.chat_id, inbound.thread_id, inbound.user_id)


def _handoffs_of_user_since(user_row_id: int, since: datetime) -> Any:
    return (
        select(func.count())
        .select_from(Handoff)
        .join(Conversation, Conversation.id == Handoff.conversation_id)
        .where(Conversation.user_id == user_row_id, Handoff.requested_at > since)
    )


def _open_handoff_of_user(user_row_id: int) -> Any:
    return (
        select(Handoff.id)
        .join(Conversation, Conversation.id == Handoff.conversation_id)
        .where(Conversation.user_id == user_row_id, Handoff.status.in_(OPEN_HANDOFF_STATUSES))
        .limit(1)
    )


def _invisible(text: str) -> bool:
    """Nothing a person could see: whitespace and format characters (zero-width space and joiners,
    bidi marks, the BOM) only. Such a message would cost a provider turn for nothing."""
    return all(char.isspace() or unicodedata.category(char) == "Cf" for char in text)


def _close(conversation: Conversation, now: datetime) -> None:
    conversation.status = ConversationStatus.CLOSED
    conversation.closed_at = now


def _observe(platform: str, agent: str, started: float, result: RenderResult, delivered: bool) -> None:
    if result.first_text_at is not None:
        metrics.FIRST_TEXT_SECONDS.labels(platform).observe(result.first_text_at - started)
    if result.error is not None:
        metrics.PROVIDER_ERRORS.labels(agent, type(result.error).__name__).inc()
        outcome = "agent_error"
    else:
        outcome = "ok" if delivered else "undelivered"
    metrics.REPLIES.labels(platform, agent, outcome).inc()
    metrics.REPLY_SECONDS.labels(platform).observe(time.monotonic() - started)
