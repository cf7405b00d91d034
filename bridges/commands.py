"""The user's commands that act on their conversation: /reset and /human.

A command waits its turn in the conversation like a message, so it never overtakes what the user sent
before it. It is recorded first (a crash while it waits loses it not) and marked handled when its turn
comes (a crash while it runs does not repeat it).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Literal

from bridges.agent_turns import AgentTurns
from bridges.catalogue import Phrasebook
from bridges.conversations import Conversations, request_expired
from bridges.handoff import HandoffService
from bridges.inbox import Inbox, Receipt
from bridges.intake import Intake, Say
from bridges.notices import Notices
from bridges.outage import DatabaseUnavailable
from bridges.relay_policy import RelayPolicy
from bridges.surface import Inbound, Surface, send_notice
from bridges.turns import Place
from models import HandoffStatus

log = logging.getLogger(__name__)

Command = Literal["reset", "human"]
"""Commands that wait their turn in the conversation like messages do."""

HUMAN_ASKED = "the user asked for a human"
"""The reason a request for a human opened by the user's `/human` is shown with."""


class Commands:
    def __init__(
        self,
        inbox: Inbox,
        conversations: Conversations,
        handoffs: HandoffService,
        intake: Intake,
        agent_turns: AgentTurns,
        *,
        line_up: Callable[[Inbound], Place],
        admitted: Callable[[Inbound, Surface], Awaitable[bool]],
        words: Callable[[Inbound], Phrasebook],
        policy: Callable[[], RelayPolicy],
        now: Callable[[], datetime],
    ) -> None:
        self.inbox = inbox
        self.conversations = conversations
        self.handoffs = handoffs
        self.intake = intake
        self.agent_turns = agent_turns
        self._line_up = line_up
        self._admitted = admitted
        """Asks admission and tells a refused user why (the Relay's)."""
        self._words = words
        self._policy = policy
        """The Relay's policy as it is now: a reload replaces it."""
        self._now = now

    async def run(
        self,
        inbound: Inbound,
        surface: Surface,
        place: Place | None,
        command: Command,
        receipt: Receipt | None = None,
        *,
        reason: str = HUMAN_ASKED,
    ) -> None:
        """Run `command` in its turn. With a `place` the bridge has asked admission itself; with a
        `receipt` (a recovery) the command was recorded before a crash."""
        words = self._words(inbound)
        with place or self._line_up(inbound) as taken:
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
            await self.agent_turns.expire(handoff.id, surface, words)
        conversation = await self.conversations.open_for(inbound, self._policy().idle_timeout)
        return await self.intake.ask(conversation, inbound.user_id, reason, requested_by="user", words=words)
