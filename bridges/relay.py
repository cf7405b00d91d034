"""The Relay: the one place that decides which session a message belongs to, where it goes, and what
the transcript records.

Turns run one at a time per conversation, in arrival order. The user's message is committed before the
agent is called, so nothing typed is lost whatever the provider or platform does next.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Agent, HistoryEntry, Resumable, Turn
from bridges.budget import RateBudget
from bridges.handoff import HandoffPolicy, HandoffService, open_handoff_of
from bridges.render import MAX_REPLY_CHARS, RenderFailed, RenderResult, ReplyRenderer
from bridges.surface import Inbound, Surface, SurfaceFactory, send_notice
from models import (
    OPEN_HANDOFF_STATUSES,
    AgentBinding,
    Base,
    BindingScope,
    Conversation,
    ConversationStatus,
    Handoff,
    HandoffStatus,
    InboundMessage,
    Role,
    TranscriptEntry,
    User,
    utcnow,
)
from models.db import is_transient_db_error
from ops import metrics

log = logging.getLogger(__name__)

HISTORY_LENGTH = 20


class Notices:
    """Everything the Relay itself says to a user, in one place."""

    handoff_requested = "I've asked a human moderator to join. They'll see this conversation and reply here."
    handoff_pending = "A moderator has been asked to join; your message is saved and they will see it."
    handoff_already_open = "A moderator has already been asked to join this conversation."
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


@dataclass(frozen=True)
class RelayPolicy:
    default_agent: str
    idle_timeout: timedelta
    handoff_expiry: timedelta
    bindings: Mapping[tuple[BindingScope, str], str]
    """Bindings from configuration; bindings stored in the database take precedence."""
    user_messages_per_minute: float = 12.0
    user_burst: int = 5
    """A user may send this many messages at once, then `user_messages_per_minute`."""
    max_input_chars: int = 4000
    """Longer messages are kept whole in the transcript but shortened for the agent."""
    max_reply_chars: int = MAX_REPLY_CHARS
    """An agent's reply is cut before this many characters and its stream closed."""
    instance: str = "main"
    """This process's name: after a crash it finishes only the replies it had started itself."""
    db_outage_grace: float = 30.0
    """Seconds to keep retrying while the database is unreachable or locked, before telling the user."""


class DatabaseUnavailable(Exception):
    """The database stayed unreachable for longer than the grace period."""


P = ParamSpec("P")
T = TypeVar("T")


def _survives_db_outage(
    step: Callable[Concatenate[Relay, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[Relay, P], Coroutine[Any, Any, T]]:
    """Retry a database step through a restart or a lock, with backoff, within the policy's grace.

    Each step is its own transaction, so a retry repeats only work that did not commit.
    """

    @functools.wraps(step)
    async def retrying(relay: Relay, /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + relay.policy.db_outage_grace
        delay = 0.1
        while True:
            try:
                return await step(relay, *args, **kwargs)
            except (DBAPIError, PoolTimeout, OSError) as exc:
                if not is_transient_db_error(exc):
                    raise
                if loop.time() + delay > deadline:
                    raise DatabaseUnavailable(f"{step.__name__}: {type(exc).__name__}") from exc
                log.warning("database unavailable in %s (%s); retrying in %.1fs", step.__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    return retrying


@dataclass
class _UserGate:
    budget: RateBudget
    warned: bool = False


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
        self._locks: dict[tuple[str, str, str, str], tuple[asyncio.Lock, int]] = {}
        self._gates: dict[tuple[str, str], _UserGate] = {}
        self._run_id = f"{policy.instance}:{uuid.uuid4().hex[:12]}"
        self._taken = 0

    async def handle(self, inbound: Inbound, surface: Surface) -> RenderResult | None:
        """Route one user message: to the agent (returning the rendered reply) or, during a handoff, aside.

        Blocked users are ignored, and a user over the message rate is asked to slow down, before
        anything is queued, so one user cannot hold up others or burn the provider's budget.
        """
        if inbound.button is None and _invisible(inbound.text):
            return None
        if not self._within_rate(inbound):
            gate = self._gates[(inbound.platform, inbound.user_id)]
            if not gate.warned:
                gate.warned = True
                seconds = max(1, round(60 / self.policy.user_messages_per_minute))
                await send_notice(surface, Notices.slow_down.format(seconds=seconds))
            return None
        try:
            async with self._turn_lock(inbound):  # taken before any await, so turns keep their order
                if not await self._first_to_take(inbound):
                    log.info("message %s:%s taken by another process", inbound.platform, inbound.message_id)
                    return None
                return await self._route(inbound, surface)
        except DatabaseUnavailable as exc:
            log.error("dropping a turn for %s:%s: %s", inbound.platform, inbound.user_id, exc)
            await send_notice(surface, Notices.db_unavailable)
            return None

    async def _route(self, inbound: Inbound, surface: Surface) -> RenderResult | None:
        if await self.is_blocked(inbound.platform, inbound.user_id):
            log.info("ignoring a message from blocked user %s:%s", inbound.platform, inbound.user_id)
            return None
        conversation, notice = await self._conversation_for(inbound)
        if notice:
            await send_notice(surface, notice)
        await self._record(conversation.id, Role.USER, inbound.text, [inbound.message_id])
        if conversation.status in (ConversationStatus.HANDOFF_REQUESTED, ConversationStatus.HUMAN):
            if conversation.status == ConversationStatus.HANDOFF_REQUESTED:
                await send_notice(surface, Notices.handoff_pending)
            await self.handoffs.user_says(conversation.id, inbound.display_name, inbound.text)
            return None
        return await self._agent_turn(conversation, inbound, surface)

    async def reset(self, inbound: Inbound, surface: Surface) -> None:
        """Close the current conversation (and any open handoff); the next message starts afresh."""
        if await self.is_blocked(inbound.platform, inbound.user_id):
            log.info("ignoring /reset from blocked user %s:%s", inbound.platform, inbound.user_id)
            return
        async with self._turn_lock(inbound):
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
        await send_notice(surface, Notices.reset)

    async def request_human(
        self, inbound: Inbound, surface: Surface, reason: str = "the user asked for a human"
    ) -> None:
        if await self.is_blocked(inbound.platform, inbound.user_id):
            log.info("ignoring /human from blocked user %s:%s", inbound.platform, inbound.user_id)
            return
        async with self._turn_lock(inbound):
            conversation, notice = await self._conversation_for(inbound)
            if notice:
                await send_notice(surface, notice)
            opened = await self._open_handoff(conversation.id, reason, requested_by="user")
        await send_notice(surface, Notices.handoff_requested if opened else Notices.handoff_already_open)

    async def bind_agent(self, scope: BindingScope, scope_id: str, agent_name: str, *, by: str) -> None:
        """Store which agent answers in a scope (an admin's `/agent`); new conversations there use it."""
        if agent_name not in self.agents:
            known = ", ".join(sorted(self.agents))
            raise ValueError(f"unknown agent {agent_name!r}; configured agents: {known}")
        async with self.db.begin() as session:
            binding = await session.scalar(
                select(AgentBinding).where(AgentBinding.scope == scope, AgentBinding.scope_id == scope_id)
            )
            if binding is None:
                session.add(
                    AgentBinding(scope=scope, scope_id=scope_id, agent_name=agent_name, created_by=by)
                )
            else:
                binding.agent_name, binding.created_by = agent_name, by

    async def block(self, platform: str, user_id: str, *, by: str) -> None:
        """Ignore everything this user sends from now on, in every process sharing the database."""
        async with self.db.begin() as session:
            user = await self._user(session, Inbound(platform, "", user_id, "", ""))
            user.blocked_at, user.blocked_by = self._now(), by
        log.info("user %s:%s blocked by %s", platform, user_id, by)

    async def unblock(self, platform: str, user_id: str, *, by: str) -> bool:
        """Returns whether the user was blocked."""
        async with self.db.begin() as session:
            user = await session.scalar(
                select(User).where(User.platform == platform, User.external_id == user_id)
            )
            if user is None or user.blocked_at is None:
                return False
            user.blocked_at, user.blocked_by = None, None
        log.info("user %s:%s unblocked by %s", platform, user_id, by)
        return True

    @_survives_db_outage
    async def _first_to_take(self, inbound: Inbound) -> bool:
        """Whether this process answers the message; see models/inbound.py. A retry after a lost
        acknowledgement finds its own row, so it is never mistaken for another process's."""
        if not inbound.message_id or inbound.button is not None:
            return True  # presses and slash commands reach exactly one process already
        key = {"platform": inbound.platform, "chat_id": inbound.chat_id, "message_id": inbound.message_id}
        async with self.db.begin() as session:
            await session.execute(
                _insert(session, InboundMessage)
                .values(**key, taken_by=self._run_id, received_at=self._now())
                .on_conflict_do_nothing()
            )
            taken_by = await session.scalar(select(InboundMessage.taken_by).filter_by(**key))
            self._taken += 1
            if self._taken % 1000 == 0:
                cutoff = self._now() - timedelta(days=2)
                await session.execute(delete(InboundMessage).where(InboundMessage.received_at < cutoff))
        return taken_by == self._run_id

    @_survives_db_outage
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

    @_survives_db_outage
    async def is_blocked(self, platform: str, user_id: str) -> bool:
        async with self.db() as session:
            blocked_at = await session.scalar(
                select(User.blocked_at).where(User.platform == platform, User.external_id == user_id)
            )
        return blocked_at is not None

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
        async with self._turn_lock(inbound):
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
        await self._set_pending(conversation.id, {"instance": self.policy.instance, "asked": text[:80]})

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
            opened = await self._open_handoff(conversation.id, result.handoff.reason, requested_by="agent")
            await send_notice(surface, Notices.handoff_requested if opened else Notices.handoff_already_open)
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

    @_survives_db_outage
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
            user = await self._user(session, inbound)
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
                    agent_name=await self._bound_agent(session, inbound),
                    provider_state={},
                    status=ConversationStatus.BOT,
                    last_activity_at=now,
                )
                session.add(conversation)
            conversation.last_activity_at = now
        return conversation, notice

    async def _user(self, session: AsyncSession, inbound: Inbound) -> User:
        """The user's row, created on first contact. The insert ignores a duplicate, since the same new
        user's first messages can arrive in two chats (a DM and a channel) at the same moment."""
        where = (User.platform == inbound.platform, User.external_id == inbound.user_id)
        user = await session.scalar(select(User).where(*where))
        if user is None:
            await session.execute(
                _insert(session, User)
                .values(
                    platform=inbound.platform,
                    external_id=inbound.user_id,
                    display_name=inbound.display_name,
                )
                .on_conflict_do_nothing(index_elements=["platform", "external_id"])
            )
            user = await session.scalar(select(User).where(*where))
            assert user is not None
        elif inbound.display_name and user.display_name != inbound.display_name:
            user.display_name = inbound.display_name
        return user

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

    async def _bound_agent(self, session: AsyncSession, inbound: Inbound) -> str:
        scopes = list(_binding_scopes(inbound))
        stored = {
            (binding.scope, binding.scope_id): binding.agent_name
            for binding in await session.scalars(
                select(AgentBinding).where(AgentBinding.scope.in_({scope for scope, _ in scopes}))
            )
        }
        for scope in scopes:
            for source in (stored, self.policy.bindings):
                name = source.get(scope)
                if name is not None and name in self.agents:
                    return name
        return self.policy.default_agent

    @_survives_db_outage
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

    @_survives_db_outage
    async def _record(
        self,
        conversation_id: int,
        role: Role,
        text: str,
        message_ids: Sequence[str] = (),
        author_id: str = "",
    ) -> None:
        async with self.db.begin() as session:
            session.add(
                TranscriptEntry(
                    conversation_id=conversation_id,
                    role=role,
                    text=text,
                    author_id=author_id,
                    platform_message_ids=[mid for mid in message_ids if mid],
                )
            )

    @_survives_db_outage
    async def _set_pending(
        self, conversation_id: int, pending: dict[str, Any] | None = None, *, message_id: str = ""
    ) -> None:
        async with self.db.begin() as session:
            conversation = await session.get_one(Conversation, conversation_id)
            current = pending if pending is not None else dict(conversation.pending_reply or {})
            if message_id:
                current["message_ids"] = [*current.get("message_ids", []), message_id]
            conversation.pending_reply = current

    async def recover_interrupted(self, surface_for: SurfaceFactory) -> int:
        """After a crash: tell each user whose reply this instance left half-written, and note it.

        `surface_for(platform, chat_id, thread_id)` reaches the chat, or returns None if this process
        has no bridge for that platform (the note is still made). Returns how many were found.
        """
        async with self.db() as session:
            stranded = list(
                await session.scalars(select(Conversation).where(Conversation.pending_reply.is_not(None)))
            )
        found = 0
        for conversation in stranded:
            pending = conversation.pending_reply or {}
            if pending.get("instance") != self.policy.instance:
                continue
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

    @_survives_db_outage
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

    @_survives_db_outage
    async def _open_handoff(self, conversation_id: int, reason: str, *, requested_by: str) -> bool:
        """Open a handoff unless one is already open, and notify the moderators. Returns whether it opened."""
        async with self.db.begin() as session:
            conversation = await session.get_one(Conversation, conversation_id)
            if await open_handoff_of(session, conversation_id) is not None:
                return False
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
        return True

    @asynccontextmanager
    async def _turn_lock(self, inbound: Inbound) -> AsyncIterator[None]:
        """Serialise turns per conversation. asyncio.Lock wakes waiters first in, first out, and the
        lock is taken before the first await, so turns run in the order the bridge received them."""
        key = (inbound.platform, inbound.chat_id, inbound.thread_id, inbound.user_id)
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


def _binding_scopes(inbound: Inbound) -> Iterator[tuple[BindingScope, str]]:
    """Most specific first."""
    if inbound.platform == "discord":
        yield BindingScope.DISCORD_CHANNEL, inbound.chat_id
        if inbound.guild_id:
            yield BindingScope.DISCORD_GUILD, inbound.guild_id
    elif inbound.platform == "telegram":
        yield BindingScope.TELEGRAM_CHAT, inbound.chat_id
    yield BindingScope.GLOBAL, ""


def _insert(session: AsyncSession, table: type[Base]) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can ignore duplicates (`on_conflict_do_nothing`) on SQLite and PostgreSQL alike."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


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
