"""One agent reply written to a surface: the Stop and Regenerate controls, metrics, and the user told
when the platform would not take it.

Both a turn (bridges/agent_turns.py) and a regeneration (bridges/regenerate.py) write replies this way; what
the transcript then records is theirs to decide.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from agents.base import Agent, AgentEvent, Regenerable
from bridges.catalogue import Phrasebook
from bridges.controls import Control, ControlNotices, Key, RepliesInProgress, control_button
from bridges.conversations import Conversations
from bridges.live_replies import TakeoverStops
from bridges.notices import Notices
from bridges.render import RenderFailed, RenderResult, ReplyControls, ReplyRenderer
from bridges.surface import Inbound, Surface, send_notice
from models import Role
from ops import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriterPolicy:
    max_reply_chars: int
    stop_button: bool = True
    """A Stop button on a reply while it streams (where the platform's message can carry one)."""
    regenerate_button: bool = True
    """A Regenerate button on the last reply of an agent that can be asked again (`Regenerable`)."""


class ReplyWriter:
    def __init__(self, conversations: Conversations, policy: WriterPolicy, takeovers: TakeoverStops) -> None:
        self.conversations = conversations
        self.policy = policy
        self.live = RepliesInProgress()
        """The replies being written now: what /stop and a Stop press stop."""
        self.takeovers = takeovers
        """The same replies by conversation: what a moderator taking one over stops."""

    async def write(
        self,
        conversation_id: int,
        agent: Agent,
        inbound: Inbound,
        surface: Surface,
        events: AsyncIterator[AgentEvent],
        *,
        started: float,
        words: Phrasebook,
    ) -> RenderResult:
        """Render `events` for `inbound`'s user, stoppable while it streams; what the reply itself says
        (its buttons, a stop mark, a notice) is in `words`, the user's language. An agent failure is
        recorded in the transcript; a platform that would not take the reply gets the user a notice."""
        with self.live.writing(key_of(inbound)) as live, self.takeovers.streaming(conversation_id, live.stop):

            async def posted(message_id: str) -> None:
                live.message_ids.add(message_id)
                await self.conversations.set_pending(conversation_id, message_id=message_id)

            renderer = ReplyRenderer(
                surface,
                max_chars=self.policy.max_reply_chars,
                on_posted=posted,
                controls=self._controls(agent, inbound, surface, live.stop, words(ControlNotices)),
            )
            delivered = True
            try:
                result = await renderer.render(events)
            except RenderFailed as exc:
                log.error("conversation %s: reply could not be delivered: %s", conversation_id, exc)
                result = RenderResult(text="", error=None)
                delivered = False
                await send_notice(surface, words(Notices).delivery_failed)
        _observe(inbound.platform, agent.name, started, result, delivered)
        if result.error is not None:
            log.warning("conversation %s: agent %s failed: %s", conversation_id, agent.name, result.error)
            await self.conversations.record(
                conversation_id, Role.SYSTEM, f"agent error: {type(result.error).__name__}"
            )
        return result

    def _controls(
        self, agent: Agent, inbound: Inbound, surface: Surface, stop: asyncio.Event, say: ControlNotices
    ) -> ReplyControls:
        offered = surface.control_buttons
        stop_button = self.policy.stop_button and Control.STOP in offered
        regenerate = (
            self.policy.regenerate_button and Control.REGENERATE in offered and isinstance(agent, Regenerable)
        )
        return ReplyControls(
            stop=stop,
            stop_button=control_button(Control.STOP, inbound.user_id, say) if stop_button else None,
            regenerate_button=control_button(Control.REGENERATE, inbound.user_id, say)
            if regenerate
            else None,
            stopped_mark=say.stopped_mark,
        )


def key_of(inbound: Inbound) -> Key:
    """The conversation a message belongs to: one per user per place."""
    return (inbound.platform, inbound.chat_id, inbound.thread_id, inbound.user_id)


def _observe(platform: str, agent: str, started: float, result: RenderResult, delivered: bool) -> None:
    if result.first_text_at is not None:
        metrics.FIRST_TEXT_SECONDS.labels(platform).observe(result.first_text_at - started)
    if result.error is not None:
        metrics.PROVIDER_ERRORS.labels(agent, type(result.error).__name__).inc()
        outcome = "agent_error"
    elif result.stopped:
        outcome = "stopped"
    else:
        outcome = "ok" if delivered else "undelivered"
    metrics.REPLIES.labels(platform, agent, outcome).inc()
    if result.usage is not None:
        metrics.AGENT_TOKENS.labels(agent, "prompt").inc(result.usage.prompt_tokens)
        metrics.AGENT_TOKENS.labels(agent, "completion").inc(result.usage.completion_tokens)
    metrics.REPLY_SECONDS.labels(platform).observe(time.monotonic() - started)
