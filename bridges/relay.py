"""The Relay: the one place that decides which session a message belongs to, where it goes, and what
the transcript records.

Turns run one at a time per conversation, in arrival order. The user's message is committed before the
agent is called, so nothing typed is lost whatever the provider or platform does next.
"""

from __future__ import annotations

import asyncio
import logging
import time
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal, cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Agent, HistoryEntry, Resumable, Turn
from bridges.admission import Admission, Refusal
from bridges.attachments import Media, lost_files_notice
from bridges.bindings import Bindings
from bridges.blocks import BlockService
from bridges.bursts import Bursts, Follower
from bridges.catalogue import Catalogue, Phrasebook
from bridges.conversations import (
    Begun,
    Conversations,
    ExpiredRequest,
    OverQuota,
    TurnPolicy,
    request_expired,
)
from bridges.copies import Origin, origin_of
from bridges.edits import Edits
from bridges.handoff import HandoffPolicy, HandoffService
from bridges.human_requests import HumanRequests
from bridges.inbox import Inbox, LeftOver, Receipt
from bridges.intake import Intake, Press, Say
from bridges.live_replies import TakeoverStops
from bridges.notices import Notices
from bridges.outage import DatabaseUnavailable, survives_db_outage
from bridges.quotas import Keys, Quotas
from bridges.regenerate import Acknowledge, Regenerations
from bridges.render import MAX_REPLY_CHARS, RenderResult
from bridges.replies import ReplyWriter, WriterPolicy, key_of
from bridges.surface import Inbound, Surface, send_notice
from bridges.triggers import TriggerPolicy
from bridges.turns import Place, TurnOrder
from models import (
    Conversation,
    ConversationStatus,
    HandoffStatus,
    Role,
    User,
    utcnow,
)
from models.queries import open_handoff_id_of
from settings import IntakeSettings, QuotaSettings, Settings

log = logging.getLogger(__name__)

HISTORY_LENGTH = 20

Command = Literal["reset", "human"]
"""Commands that wait their turn in the conversation like messages do."""


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
    intake: IntakeSettings = field(default_factory=IntakeSettings)
    """The reasons a user picks from before a request for a human opens; none opens it at once."""
    triggers: TriggerPolicy = field(default_factory=TriggerPolicy)
    """When bridges answer messages not addressed to the bot (`[[triggers]]`)."""
    quotas: QuotaSettings = field(default_factory=QuotaSettings)
    burst_window: float = 0.0
    """Seconds within which one user's messages in one place join one turn (bridges/bursts.py); 0: off."""
    stop_button: bool = True
    regenerate_button: bool = True
    """Reply controls (bridges/replies.py `WriterPolicy`)."""

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
            intake=settings.handoff.intake,
            triggers=TriggerPolicy(settings.triggers),
            quotas=settings.quotas,
            burst_window=limits.burst_window_seconds,
            stop_button=settings.controls.stop_button,
            regenerate_button=settings.controls.regenerate_button,
        )


class Relay:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        agents: Mapping[str, Agent],
        policy: RelayPolicy,
        *,
        handoffs: HandoffService | None = None,
        media: Media | None = None,
        catalogue: Catalogue | None = None,
        now: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if policy.default_agent not in agents:
            raise ValueError(f"default agent {policy.default_agent!r} is not configured")
        self.db = db
        self.agents = agents
        self.policy = policy
        self.media = media or Media()
        self._now = now
        self.handoffs = handoffs or HandoffService(
            db,
            HandoffPolicy(expire_after=policy.handoff_expiry, escalate_after=None),
            catalogue=catalogue,
            now=now,
        )
        self.catalogue = catalogue or self.handoffs.catalogue
        """What users are told, in their language; the handoff service's too."""
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
        self.quotas = Quotas(
            db, policy.quotas, now=now, outage_grace=policy.db_outage_grace, catalogue=self.catalogue
        )
        self.conversations = Conversations(
            db,
            inbox=self.inbox,
            bindings=self.bindings,
            quotas=self.quotas,
            now=now,
            outage_grace=policy.db_outage_grace,
        )
        self.edits = Edits(self.inbox, self.conversations, self.handoffs)
        self.takeovers = TakeoverStops(db)
        """Replies streaming now in this process, which a moderator taking over stops."""
        self.handoffs.also_on_tick.append(self.takeovers.stop_taken_over)
        self.writer = ReplyWriter(
            self.conversations,
            WriterPolicy(policy.max_reply_chars, policy.stop_button, policy.regenerate_button),
            self.takeovers,
        )
        self.regenerations = Regenerations(
            self.conversations,
            self.writer,
            line_up=self.line_up,
            agent_for=self._agent_for,
            history_length=HISTORY_LENGTH,
            max_input_chars=policy.max_input_chars,
            pending=self._pending,
        )
        self._turns = TurnOrder()
        self.bursts = Bursts(self._turns, self.inbox, policy.burst_window, now=now, sleep=sleep)
        self.requests = HumanRequests(
            db,
            self.handoffs,
            self._turns,
            moderators=policy.moderators,
            per_hour=policy.handoffs_per_hour,
            now=now,
            outage_grace=policy.db_outage_grace,
        )
        self.intake = Intake(
            policy.intake, self.requests, self.conversations, idle_timeout=policy.idle_timeout, now=now
        )
        self.gate = Admission(
            self.blocks,
            per_minute=policy.user_messages_per_minute,
            burst=policy.user_burst,
            outage_grace=policy.db_outage_grace,
            catalogue=self.catalogue,
        )

    def reconfigure(self, policy: RelayPolicy) -> None:
        """Take a reloaded policy (ops/reload.py) for the next message: bindings, limits, timeouts,
        triggers, quotas, bursts and the intake menu. What only a restart changes (the agents, this
        process's name, the desks) stays as it started."""
        for agent in {policy.default_agent, *policy.bindings.values()}:
            if agent not in self.agents:
                raise ValueError(f"agent {agent!r} is not running (agents are added by a restart)")
        started = self.policy
        self.policy = replace(
            policy,
            instance=started.instance,
            db_outage_grace=started.db_outage_grace,
            moderators=started.moderators,
        )
        self.bindings.default_agent, self.bindings.configured = policy.default_agent, policy.bindings
        self.requests.per_hour = policy.handoffs_per_hour
        self.gate.retune(per_minute=policy.user_messages_per_minute, burst=policy.user_burst)
        self.quotas.settings = policy.quotas
        self.writer.policy = WriterPolicy(
            policy.max_reply_chars, policy.stop_button, policy.regenerate_button
        )
        self.regenerations.max_input_chars = policy.max_input_chars
        self.bursts.window = timedelta(seconds=policy.burst_window)
        self.intake.settings, self.intake.idle_timeout = policy.intake, policy.idle_timeout

    def words(self, inbound: Inbound) -> Phrasebook:
        """What to say to this message's user, in their language."""
        return self.catalogue.words(inbound.locale)

    @property
    def outage_grace(self) -> float:
        return self.policy.db_outage_grace

    def line_up(self, inbound: Inbound) -> Place:
        """Take the message's place in its conversation's line, now, before any await. A bridge that
        must ask `admission` before anything visible happens (a public "thinking…", a new thread) takes
        its place first with this, and passes it on; everyone else lets `handle` do both."""
        return self._turns.line_up(key_of(inbound))

    def line_up_left_over(self, left: LeftOver) -> Place:
        """`line_up` for a message a crash left unanswered: a message keeps its arrival time, so the
        burst it was part of is joined again."""
        place = self.line_up(left.inbound)
        if left.command is None:
            self.bursts.arrived(place, left.inbound, left.received_at)
            self.bursts.recorded(place, left.receipt)
        return place

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
        if inbound.button is None and not inbound.attachments and _invisible(inbound.text):
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
        """Record the message (unless a recovery brings it recorded), wait for its turn, route it with
        the burst that joined it (bridges/bursts.py); a message an earlier turn joined steps aside. A
        turn that fails is marked handled, since its user is told (here, or by the bridge)."""
        self.bursts.arrived(place, inbound)
        try:
            with place:
                receipt = receipt or await self.inbox.receive(inbound, place.number)
                if receipt is None:
                    log.info("message %s:%s taken by another process", inbound.platform, inbound.message_id)
                    return None
                self.bursts.recorded(place, receipt)
                await place.turn()
                if self.bursts.joined(place):
                    return None
                followers = await self.bursts.gather(place)
                try:
                    async with self.bursts.started(inbound, receipt, followers) as (latest, joined):
                        return await self._route(latest, surface, receipt, joined)
                except Exception:
                    for taken in (receipt, *(follower.receipt for follower in followers)):
                        await self.inbox.give_up(taken)
                    raise
        except DatabaseUnavailable as exc:
            log.error("dropping a turn for %s:%s: %s", inbound.platform, inbound.user_id, exc)
            await send_notice(surface, self.words(inbound)(Notices).db_unavailable)
            return None
        finally:
            self.bursts.forget(place)

    async def edited(self, inbound: Inbound) -> None:
        """A user edited a message they sent (bridges/edits.py); a blocked user's edits change nothing."""
        if not await self.is_blocked(inbound.platform, inbound.user_id):
            await self.edits.edited(inbound)

    async def deleted(self, origin: Origin) -> None:
        """A user deleted a message (where the platform says so): its copies in a handoff are marked."""
        await self.edits.deleted(origin)

    async def admission(self, inbound: Inbound) -> Refusal | None:
        """None if the message may go ahead; else why not (see bridges/admission.py)."""
        return await self.gate.check(inbound)

    async def is_blocked(self, platform: str, user_id: str) -> bool:
        return await self.gate.is_blocked(platform, user_id)

    async def _admitted(self, inbound: Inbound, surface: Surface) -> bool:
        refusal = await self.admission(inbound)
        if refusal is not None and refusal.notice is not None:
            await send_notice(surface, refusal.notice)
        return refusal is None

    async def _route(
        self, inbound: Inbound, surface: Surface, receipt: Receipt, joined: Sequence[Follower] = ()
    ) -> RenderResult | None:
        words = self.words(inbound)
        if (press := Press.of(inbound.button)) is not None:  # the intake menu's, not the agent's
            await self.inbox.mark_handled(receipt)  # like a command: a crash while it runs repeats it not
            said = await self.intake.pressed(inbound, press, words)
            await send_notice(surface, said.text, said.buttons)
            return None
        inbound, heard = await self.media.hear(inbound, words)  # first: what was heard is the turn's text
        if heard:
            await send_notice(surface, heard)
        begun = await self._begin_turn(inbound, receipt, surface, joined, words)
        if begun is None:  # blocked while it waited
            log.info("ignoring a message from blocked user %s:%s", inbound.platform, inbound.user_id)
            return None
        if isinstance(begun, OverQuota):
            await send_notice(surface, begun.notice)
            return None
        conversation = begun.conversation
        if conversation.status in (ConversationStatus.HANDOFF_REQUESTED, ConversationStatus.HUMAN):
            if conversation.status == ConversationStatus.HANDOFF_REQUESTED:
                await send_notice(surface, words(Notices).handoff_pending)
            await self.handoffs.user_says(
                conversation.id,
                inbound.display_name,
                inbound.text,
                inbound.attachments,
                origin=origin_of(inbound),
            )
            return None
        return await self._agent_turn(conversation, inbound, surface, words, history=begun.history)

    async def _begin_turn(
        self,
        inbound: Inbound,
        receipt: Receipt,
        surface: Surface,
        joined: Sequence[Follower],
        words: Phrasebook,
    ) -> Begun | OverQuota | None:
        """One transaction before the agent is called (see `Conversations.begin_turn`); a request for a
        human found past its expiry is closed first (its timer had not run yet) and the user told."""
        policy = TurnPolicy(
            idle_timeout=self.policy.idle_timeout,
            history_length=HISTORY_LENGTH,
            pending={"instance": self.policy.instance, "run": self.inbox.run_id},
        )
        while isinstance(
            begun := await self.conversations.begin_turn(inbound, receipt, policy, joined), ExpiredRequest
        ):
            await self._expire(begun.handoff_id, surface, words)
        return begun

    async def _expire(self, handoff_id: int, surface: Surface, words: Phrasebook) -> None:
        """Close a request for a human past its expiry (its timer had not run yet); tell the user."""
        if await self.handoffs.close(
            handoff_id, HandoffStatus.EXPIRED, "timer", "timeout", notify_user=False
        ):
            await send_notice(surface, words(Notices).handoff_expired)

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
        words = self.words(inbound)
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
                    answer = Say(await self._reset(inbound, words))
                else:
                    answer = await self._human(inbound, surface, reason, words)
            except DatabaseUnavailable as exc:
                log.error("dropping /%s of %s:%s: %s", command, inbound.platform, inbound.user_id, exc)
                answer = Say(words(Notices).db_unavailable)
        await send_notice(surface, answer.text, answer.buttons)

    async def _reset(self, inbound: Inbound, words: Phrasebook) -> str:
        conversation, handoff = await self.conversations.current(inbound)
        if handoff is not None:
            await self.handoffs.close(
                handoff.id,
                HandoffStatus.RETURNED,
                f"user:{inbound.user_id}",
                f"{inbound.display_name} (the user, with /reset)",
                notify_user=False,
            )
        if conversation is not None:
            await self.conversations.close(conversation.id)
        return words(Notices).reset

    async def _human(self, inbound: Inbound, surface: Surface, reason: str, words: Phrasebook) -> Say:
        _, handoff = await self.conversations.current(inbound)
        if handoff is not None and request_expired(handoff, self._now()):
            await self._expire(handoff.id, surface, words)
        conversation = await self.conversations.open_for(inbound, self.policy.idle_timeout)
        return await self.intake.ask(conversation, inbound.user_id, reason, requested_by="user", words=words)

    async def answer_left_over(self, left: LeftOver, surface: Surface, place: Place) -> None:
        """Answer a message a crash left unanswered (see bridges/recovery.py), in its place in line. A
        pressed button is reported instead: its message may be long gone."""
        inbound, receipt = left.inbound, left.receipt
        words = self.words(inbound)
        log.warning("answering %s:%s, left unanswered by a restart", inbound.platform, inbound.message_id)
        if left.lost_files:
            await send_notice(surface, lost_files_notice(left.lost_files, words))
        if left.command is None and inbound.button is None and not inbound.text.strip():
            with place:  # only files, all lost: nothing is left to answer
                await place.turn()
                await self.inbox.give_up(receipt)
        elif left.command is not None:
            await self._command(inbound, surface, place, cast(Command, left.command), receipt)
        elif inbound.button is None:
            await self._take_turn(inbound, surface, place, receipt)
        else:
            with place:
                await place.turn()
                await self.inbox.give_up(receipt)
                label = inbound.text[:80]
                await send_notice(surface, words(Notices).press_not_answered.format(label=label))

    @survives_db_outage
    async def open_handoff_of_user(self, platform: str, user_id: str) -> int | None:
        """The user's open handoff in any conversation, if any (what a moderator blocking them learns)."""
        async with self.db() as session:
            return await session.scalar(open_handoff_id_of(platform, user_id))

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
            locale=conversation.locale or "",
        )
        with self.line_up(inbound) as place:
            await place.turn()
            await self._agent_turn(conversation, inbound, surface, self.words(inbound), resume=True)

    async def _agent_turn(
        self,
        conversation: Conversation,
        inbound: Inbound,
        surface: Surface,
        words: Phrasebook,
        *,
        resume: bool = False,
        history: tuple[HistoryEntry, ...] | None = None,
    ) -> RenderResult:
        """Call the agent and render its reply. `history` comes with a turn begun in one transaction (it
        also set the pending mark); without it (the bot resuming after a handoff) both are done here."""
        agent = self._agent_for(conversation)
        started = time.monotonic()
        say = words(Notices)
        offer = await self.media.offer(inbound, agent, words)
        if offer.notice:
            await send_notice(surface, offer.notice)
        if offer.empty and not resume:  # a file alone that it cannot take: the user was told
            return RenderResult()
        text = inbound.text
        if len(text) > self.policy.max_input_chars:
            text = text[: self.policy.max_input_chars]
            await send_notice(surface, say.input_shortened.format(limit=self.policy.max_input_chars))
        turn = Turn(
            text=text,
            user_id=inbound.user_id,
            display_name=inbound.display_name,
            platform=inbound.platform,
            provider_state=conversation.provider_state,
            button=inbound.button,
            history=history
            if history is not None
            else await self.conversations.history(conversation.id, HISTORY_LENGTH),
            attachments=offer.attachments,
        )
        if history is None:
            await self.conversations.set_pending(conversation.id, self._pending(text))

        events = agent.resume(turn) if resume and isinstance(agent, Resumable) else agent.stream(turn)
        result = await self.writer.write(
            conversation.id, agent, inbound, surface, events, started=started, words=words
        )
        if result.text:
            await self.conversations.record(conversation.id, Role.AGENT, result.text, result.message_ids)
        if result.cut:
            await send_notice(surface, say.reply_cut)
        ended = result.session_ended is not None and result.handoff is None
        spent = (Keys.of(inbound), result.usage) if result.usage is not None else None
        await self.conversations.finish_turn(conversation.id, result.provider_state, ended=ended, spent=spent)
        if result.handoff is not None and not result.stopped:
            said = await self.intake.ask(
                conversation, inbound.user_id, result.handoff.reason, requested_by="agent", words=words
            )
            await send_notice(surface, said.text, said.buttons)
        elif result.session_ended is not None:
            await send_notice(surface, say.session_ended)
        return result

    def _pending(self, asked: str) -> dict[str, str]:
        """The mark of a reply this process is writing (bridges/recovery.py reports it after a crash)."""
        return {"instance": self.policy.instance, "run": self.inbox.run_id, "asked": asked[:80]}

    def stop(self, inbound: Inbound, *, on_message: str | None = None) -> bool:
        """Stop the reply being written for `inbound`'s user in its place (their /stop, or a Stop press
        on `on_message`, by them or a moderator: the bridge checked which); False if there is none."""
        return self.writer.live.stop(key_of(inbound), on_message)

    async def regenerate(
        self, inbound: Inbound, surface: Surface, acknowledge: Acknowledge, words: Phrasebook
    ) -> None:
        """A Regenerate press by the reply's user on `inbound.message_id` (bridges/regenerate.py). It asks
        the provider again, so it is admitted like a message: a blocked user or one over the rate is not."""
        refusal = await self.admission(inbound)
        if refusal is not None:
            await acknowledge(refusal.notice)
            return
        await self.regenerations.regenerate(inbound, surface, acknowledge, words)

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


def _invisible(text: str) -> bool:
    """Nothing a person could see: whitespace and format characters (zero-width space and joiners,
    bidi marks, the BOM) only. Such a message would cost a provider turn for nothing."""
    return all(char.isspace() or unicodedata.category(char) == "Cf" for char in text)
