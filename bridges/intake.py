"""The intake menu ([handoff.intake]): before a request for a human opens, the user picks why.

With reasons configured, `/human` and an agent's handoff answer with one button per reason (and, with
`confirm`, a Yes/No step after the choice); the press opens the request with that reason, on its desks,
with its priority and pings. Without reasons nothing changes: the request opens at once.

The buttons are ordinary stored buttons (bridges/buttons.py): everything a press needs is in its payload
(who was asked, in which conversation, when, and the reason), so a press works after a restart. A press
by someone else, of a menu from an earlier conversation, of a reason no longer configured, or of a menu
that already led to a request, is answered and opens nothing; one request at a time per user is kept by
`HumanRequests` itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import select

from agents.base import Button
from bridges.catalogue import Phrasebook, Strings
from bridges.conversations import Conversations
from bridges.human_requests import HumanRequests
from bridges.surface import Inbound
from models import Conversation, Handoff
from settings import IntakeSettings

log = logging.getLogger(__name__)

PAYLOAD_KEY = "switchboard_intake"
"""The key of an intake button's payload, which no provider's button payload uses."""

Step = Literal["reason", "yes", "no"]


class IntakeNotices(Strings, key="intake"):
    """What the intake menu says to the user."""

    choose = "What do you need a moderator for? Choose one:"
    confirm = "Open a request to the moderators about “{label}”?"
    yes = "Yes, ask a moderator"
    no = "No, stay with the assistant"
    cancelled = "OK, no request was opened. The assistant is still here."
    not_yours = "These buttons are for the person who asked for a moderator. To ask yourself, use /human."
    stale = "This menu is out of date, so nothing was opened. To ask for a moderator, use /human again."


@dataclass(frozen=True)
class Say:
    """An answer to the user: words, and buttons to go with them."""

    text: str
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True)
class Press:
    """What an intake button carries."""

    step: Step
    label: str
    user_id: str
    """The user the menu was shown to; nobody else's press counts."""
    conversation_id: int
    shown_at: datetime
    requested_by: str
    """"user" (/human) or "agent" (the agent's handoff)."""
    reason: str
    """The free-text reason the request was started with (the agent's, or /human's)."""

    def button(self, label: str) -> Button:
        """The button that sends this press back."""
        fields = {
            "step": self.step,
            "label": self.label,
            "user": self.user_id,
            "conversation": self.conversation_id,
            "shown": self.shown_at.isoformat(),
            "by": self.requested_by,
            "reason": self.reason,
        }
        return Button(label, {PAYLOAD_KEY: fields})

    @classmethod
    def of(cls, button: Button | None) -> Press | None:
        """The press of an intake button, or None for any other button (or none)."""
        data = button.payload.get(PAYLOAD_KEY) if button is not None else None
        if not isinstance(data, dict):
            return None
        try:
            step = data["step"]
            if step not in get_args(Step):
                return None
            return cls(
                step=step,
                label=str(data["label"]),
                user_id=str(data["user"]),
                conversation_id=int(data["conversation"]),
                shown_at=datetime.fromisoformat(data["shown"]),
                requested_by=str(data["by"]),
                reason=str(data["reason"]),
            )
        except (KeyError, TypeError, ValueError):
            log.warning("an intake button with a payload this version cannot read")
            return None


class Intake:
    """Asks why before a request for a human opens, when reasons are configured."""

    def __init__(
        self,
        settings: IntakeSettings,
        requests: HumanRequests,
        conversations: Conversations,
        *,
        now: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.requests = requests
        self.conversations = conversations
        self._now = now

    async def ask(
        self, conversation: Conversation, user_id: str, reason: str, *, requested_by: str, words: Phrasebook
    ) -> Say:
        """Open the request now (no reasons configured), or show the reasons: unless it would be refused
        anyway, then say why at once. Said with `words`, in the user's language."""
        if not self.settings.reasons:
            return Say(await self.requests.open(conversation, reason, requested_by=requested_by, words=words))
        refused = await self.requests.refusal(conversation.id, words)
        if refused is not None:
            return Say(refused)
        shown = self._now()
        buttons = tuple(
            Press("reason", choice.label, user_id, conversation.id, shown, requested_by, reason).button(
                choice.label
            )
            for choice in self.settings.reasons
        )
        return Say(words(IntakeNotices).choose, buttons)

    async def pressed(self, inbound: Inbound, press: Press, words: Phrasebook) -> Say:
        """A press of a reason, or of Yes or No after one."""
        say = words(IntakeNotices)
        if inbound.user_id != press.user_id:
            return Say(say.not_yours)
        if press.step == "no":
            return Say(say.cancelled)
        choice = self.settings.reason(press.label)
        conversation, _ = await self.conversations.current(inbound)  # a stale press changes nothing
        if choice is None or conversation is None or conversation.id != press.conversation_id:
            log.info("a stale intake press in conversation %s (%r)", press.conversation_id, press.label[:80])
            return Say(say.stale)
        refused = await self.requests.refusal(conversation.id, words)
        if refused is not None:
            return Say(refused)
        if await self._menu_used(press):
            return Say(say.stale)
        if press.step == "reason" and self.settings.confirm:
            answers: tuple[tuple[str, Step], ...] = ((say.yes, "yes"), (say.no, "no"))
            buttons = tuple(replace(press, step=step).button(label) for label, step in answers)
            return Say(say.confirm.format(label=choice.label), buttons)
        answer = await self.requests.open(
            conversation, press.reason, requested_by=press.requested_by, words=words, choice=choice
        )
        return Say(answer)

    async def _menu_used(self, press: Press) -> bool:
        """Whether a request was opened in the conversation since the menu was shown: its first press
        (or another way of asking) used it up."""
        async with self.conversations.db() as session:
            since = await session.scalar(
                select(Handoff.id)
                .where(
                    Handoff.conversation_id == press.conversation_id,
                    Handoff.requested_at >= press.shown_at,
                )
                .limit(1)
            )
        return since is not None
