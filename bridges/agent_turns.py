"""One turn with the agent, in steps: begin it (one transaction), call the agent, write its reply,
record it, finish the turn, and act on what the agent asked (a human, the end of the session).

The Relay decides *whether* a message goes to the agent; this module is how it goes. The turn is begun
before the agent is called, so the user's message is committed whatever the provider does next.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agents.base import Agent, HistoryEntry, Resumable, Turn
from bridges.attachments import Media
from bridges.bursts import Follower
from bridges.catalogue import Phrasebook
from bridges.conversations import Conversations, TurnEnd
from bridges.handoff import HandoffService
from bridges.inbox import Receipt
from bridges.intake import Intake
from bridges.notices import Notices
from bridges.quotas import spent
from bridges.relay_policy import RelayPolicy
from bridges.render import RenderResult
from bridges.replies import ReplyWriter
from bridges.surface import Inbound, Surface, send_notice
from bridges.turn_starts import (
    Begun,
    Elsewhere,
    ExpiredRequest,
    OverQuota,
    TurnPolicy,
    TurnStart,
    TurnStarts,
)
from models import Conversation, HandoffStatus

log = logging.getLogger(__name__)

HISTORY_LENGTH = 20
"""Transcript entries an agent is given with each turn."""


class AgentTurns:
    def __init__(
        self,
        agents: Mapping[str, Agent],
        conversations: Conversations,
        starts: TurnStarts,
        handoffs: HandoffService,
        media: Media,
        writer: ReplyWriter,
        intake: Intake,
        *,
        policy: Callable[[], RelayPolicy],
        run_id: str,
    ) -> None:
        self.agents = agents
        self.conversations = conversations
        self.starts = starts
        self.handoffs = handoffs
        self.media = media
        self.writer = writer
        self.intake = intake
        self._policy = policy
        """The Relay's policy as it is now: a reload replaces it."""
        self._run_id = run_id

    async def begin(
        self,
        inbound: Inbound,
        receipt: Receipt,
        surface: Surface,
        joined: Sequence[Follower],
        words: Phrasebook,
        *,
        unrecorded: dict[str, Any] | None = None,
    ) -> Begun | OverQuota | Elsewhere | None:
        """One transaction before the agent is called, shared with every turn starting now (see
        `TurnStarts.begin`); a request for a human found past its expiry is closed first (its timer had
        not run yet) and the user told."""
        policy = self._policy()
        turn_policy = TurnPolicy(
            idle_timeout=policy.idle_timeout,
            history_length=HISTORY_LENGTH,
            pending={"instance": policy.instance, "run": self._run_id},
        )
        while isinstance(
            begun := await self.starts.begin(TurnStart(inbound, receipt, turn_policy, joined, unrecorded)),
            ExpiredRequest,
        ):
            await self.expire(begun.handoff_id, surface, words)
        return begun

    async def expire(self, handoff_id: int, surface: Surface, words: Phrasebook) -> None:
        """Close a request for a human past its expiry (its timer had not run yet); tell the user."""
        if await self.handoffs.close(
            handoff_id, HandoffStatus.EXPIRED, "timer", "timeout", notify_user=False
        ):
            await send_notice(surface, words(Notices).handoff_expired)

    async def run(
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
        agent = self.agent_for(conversation)
        started = time.monotonic()
        say = words(Notices)
        offer = await self.media.offer(inbound, agent, words)
        if offer.notice:
            await send_notice(surface, offer.notice)
        if offer.empty and not resume:  # a file alone that it cannot take: the user was told
            return RenderResult()
        text = inbound.text
        max_input_chars = self._policy().max_input_chars
        if len(text) > max_input_chars:
            text = text[:max_input_chars]
            await send_notice(surface, say.input_shortened.format(limit=max_input_chars))
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
            await self.conversations.set_pending(conversation.id, self.pending(text))

        events = agent.resume(turn) if resume and isinstance(agent, Resumable) else agent.stream(turn)
        result = await self.writer.write(
            conversation.id, agent, inbound, surface, events, started=started, words=words
        )
        await self.conversations.finish_turn(
            TurnEnd(
                conversation.id,
                result.provider_state,
                ended=result.session_ended is not None and result.handoff is None,
                reply=result.text,
                message_ids=result.message_ids,
                spent=spent(inbound, turn, result),
            )
        )
        if result.cut:
            await send_notice(surface, say.reply_cut)
        # A reply its user stopped still hands over as the agent asked; one a takeover stopped is already
        # with a moderator.
        taken_over = result.stopped and await self.conversations.with_human(conversation.id)
        if result.handoff is not None and not taken_over:
            said = await self.intake.ask(
                conversation, inbound.user_id, result.handoff.reason, requested_by="agent", words=words
            )
            await send_notice(surface, said.text, said.buttons)
        elif result.session_ended is not None:
            await send_notice(surface, say.session_ended)
        return result

    def pending(self, asked: str) -> dict[str, str]:
        """The mark of a reply this process is writing (bridges/recovery.py reports it after a crash)."""
        return {"instance": self._policy().instance, "run": self._run_id, "asked": asked[:80]}

    def agent_for(self, conversation: Conversation) -> Agent:
        """The conversation's agent; the default one if its own is no longer configured."""
        agent = self.agents.get(conversation.agent_name)
        if agent is None:
            default = self._policy().default_agent
            log.warning(
                "conversation %s is bound to agent %r, which is no longer configured; using %r",
                conversation.id,
                conversation.agent_name,
                default,
            )
            agent = self.agents[default]
        return agent
