"""The Relay: the one place that decides which session a message belongs to, where it goes, and what
the transcript records.

Turns run one at a time per conversation, in arrival order. The user's message is committed before the
agent is called, so nothing typed is lost whatever the provider or platform does next. The turn with
the agent is bridges/agent_turns.py; the commands /reset and /human are bridges/commands.py.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Agent, Resumable
from bridges.admission import Admission, Refusal
from bridges.agent_turns import HISTORY_LENGTH, AgentTurns
from bridges.attachments import Media, lost_files_notice
from bridges.bindings import Bindings
from bridges.blocks import BlockService
from bridges.bursts import Bursts, Follower
from bridges.catalogue import Catalogue, Phrasebook
from bridges.commands import HUMAN_ASKED, Command, Commands
from bridges.conversations import Conversations
from bridges.copies import Origin, origin_of
from bridges.edits import Edits
from bridges.handoff import HandoffService
from bridges.handoff_policy import HandoffPolicy
from bridges.human_requests import HumanRequests
from bridges.inbox import Inbox, LeftOver, Receipt
from bridges.intake import Intake, Press
from bridges.live_replies import TakeoverStops
from bridges.notices import Notices
from bridges.outage import DatabaseUnavailable, survives_db_outage
from bridges.quotas import Quotas
from bridges.regenerate import Acknowledge, Regenerations
from bridges.relay_policy import RelayPolicy
from bridges.render import RenderResult
from bridges.replies import ReplyWriter, WriterPolicy, key_of
from bridges.surface import Inbound, Surface, send_notice
from bridges.turn_starts import Elsewhere, OverQuota, TurnStarts
from bridges.turns import Place, TurnOrder
from models import Conversation, ConversationStatus, User, utcnow
from models.queries import open_handoff_id_of

log = logging.getLogger(__name__)


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
        self.intake = Intake(policy.intake, self.requests, self.conversations, now=now)
        self.agent_turns = AgentTurns(
            agents,
            self.conversations,
            TurnStarts(self.conversations),
            self.handoffs,
            self.media,
            self.writer,
            self.intake,
            policy=lambda: self.policy,
            run_id=self.inbox.run_id,
        )
        self.regenerations = Regenerations(
            self.conversations,
            self.writer,
            line_up=self.line_up,
            agent_for=self.agent_turns.agent_for,
            history_length=HISTORY_LENGTH,
            max_input_chars=policy.max_input_chars,
            pending=self.agent_turns.pending,
        )
        self.gate = Admission(
            self.blocks,
            per_minute=policy.user_messages_per_minute,
            burst=policy.user_burst,
            outage_grace=policy.db_outage_grace,
            catalogue=self.catalogue,
        )
        self.commands = Commands(
            self.inbox,
            self.conversations,
            self.handoffs,
            self.intake,
            self.agent_turns,
            line_up=self.line_up,
            admitted=self._admitted,
            words=self.words,
            policy=lambda: self.policy,
            now=now,
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
        self.intake.settings = policy.intake

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
        message whose turn comes at once is recorded by the turn's own transaction instead. A turn that
        fails is marked handled, since its user is told (here, or by the bridge)."""
        self.bursts.arrived(place, inbound)
        unrecorded: dict[str, Any] | None = None
        try:
            with place:
                if receipt is None and self._starts_at_once(inbound, place):
                    receipt, unrecorded = self.inbox.row_of(inbound, place.number)
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
                    async with self.bursts.started(
                        inbound, receipt, followers, recorded=unrecorded is None
                    ) as (latest, joined):
                        return await self._route(latest, surface, receipt, joined, unrecorded)
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

    def _starts_at_once(self, inbound: Inbound, place: Place) -> bool:
        """Whether the message goes straight to its turn's one transaction: nothing ahead of it in its
        line, no burst window to wait out, no voice note to listen to first. Anything that waits is
        recorded on arrival, so a crash while it waits loses nothing."""
        return place.come() and not self.bursts.window and not self.media.must_hear(inbound)

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
        self,
        inbound: Inbound,
        surface: Surface,
        receipt: Receipt,
        joined: Sequence[Follower] = (),
        unrecorded: dict[str, Any] | None = None,
    ) -> RenderResult | None:
        words = self.words(inbound)
        if (press := Press.of(inbound.button)) is not None:  # the intake menu's, not the agent's
            if unrecorded is None:  # like a command: a crash while it runs repeats it not
                await self.inbox.mark_handled(receipt)
            said = await self.intake.pressed(inbound, press, words)
            await send_notice(surface, said.text, said.buttons)
            return None
        inbound, heard = await self.media.hear(inbound, words)  # first: what was heard is the turn's text
        if heard:
            await send_notice(surface, heard)
        begun = await self.agent_turns.begin(inbound, receipt, surface, joined, words, unrecorded=unrecorded)
        if begun is None:  # blocked while it waited
            log.info("ignoring a message from blocked user %s:%s", inbound.platform, inbound.user_id)
            return None
        if isinstance(begun, Elsewhere):
            log.info("message %s:%s taken by another process", inbound.platform, inbound.message_id)
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
        return await self.agent_turns.run(conversation, inbound, surface, words, history=begun.history)

    async def reset(self, inbound: Inbound, surface: Surface, *, place: Place | None = None) -> None:
        """Close the current conversation (and any open handoff); the next message starts afresh."""
        await self.commands.run(inbound, surface, place, "reset")

    async def request_human(
        self,
        inbound: Inbound,
        surface: Surface,
        reason: str = HUMAN_ASKED,
        *,
        place: Place | None = None,
    ) -> None:
        """Open a request for a human moderator (the user's `/human`)."""
        await self.commands.run(inbound, surface, place, "human", reason=reason)

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
            await self.commands.run(inbound, surface, place, cast(Command, left.command), receipt)
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
        if not isinstance(self.agent_turns.agent_for(conversation), Resumable):
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
            await self.agent_turns.run(conversation, inbound, surface, self.words(inbound), resume=True)

    def stop(self, inbound: Inbound, *, on_message: str | None = None) -> bool:
        """Stop the reply being written for `inbound`'s user in its place (their /stop, or a Stop press
        on `on_message`, by them or a moderator: the bridge checked which); False if there is none."""
        return self.writer.live.stop(key_of(inbound), on_message)

    async def regenerate(
        self, inbound: Inbound, surface: Surface, acknowledge: Acknowledge, words: Phrasebook
    ) -> None:
        """A Regenerate press by the reply's user on `inbound.message_id` (bridges/regenerate.py). It asks
        the provider again, so it is admitted like a message: a blocked user or one over the rate is not."""
        try:
            refusal = await self.admission(inbound)
            if refusal is not None:
                await acknowledge(refusal.notice)
                return
            await self.regenerations.regenerate(inbound, surface, acknowledge, words)
        except DatabaseUnavailable:
            await send_notice(surface, words(Notices).db_unavailable)


def _invisible(text: str) -> bool:
    """Nothing a person could see: whitespace and format characters (zero-width space and joiners,
    bidi marks, the BOM) only. Such a message would cost a provider turn for nothing."""
    return all(char.isspace() or unicodedata.category(char) == "Cf" for char in text)
