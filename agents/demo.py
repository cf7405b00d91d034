"""An offline, scripted agent so every feature can be shown and tested without provider credentials.

It streams its replies in word-sized chunks with provider-like pacing, offers buttons, asks for a human
when the user does, and can simulate an outage mid-stream (type "fail").
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Literal

from pydantic import Field

from agents.base import (
    AgentEvent,
    AgentSettings,
    AgentUnavailable,
    BaseAgent,
    Button,
    HandoffRequested,
    Message,
    SessionEnded,
    TextDelta,
    Turn,
    TurnEnd,
)


class DemoSettings(AgentSettings):
    kind: Literal["demo"] = "demo"
    first_chunk_delay: float = Field(0.3, ge=0, le=30, description="seconds before the first chunk")
    chunk_delay: float = Field(0.04, ge=0, le=5, description="seconds between chunks")


MENU = (
    Button("Tell me a joke", {"intent": "joke"}),
    Button("Show a long answer", {"intent": "long"}),
    Button("Talk to a human", {"intent": "human"}),
)

JOKES = (
    "Why do programmers prefer dark mode? Because light attracts bugs.",
    "There are 10 kinds of people: those who understand binary and those who don't.",
    "I told my bot a UDP joke. I'm not sure it got it.",
)

LONG_ANSWER = "\n\n".join(
    f"**Part {n}.** Switchboard streams a reply by posting a message as soon as the first words arrive, "
    "then editing it as more text comes in. Edits are coalesced, so a fast provider never floods the "
    "platform, and the newest text always wins. When a reply grows past the platform's length limit it is "
    "split at a paragraph, line or sentence boundary, and the rest continues in a follow-up message. "
    "Whatever happens along the way, the message ends on exactly the text the agent produced."
    for n in range(1, 9)
)

_WORDS = re.compile(r"\S+\s*|\s+")
_HUMAN = re.compile(r"\b(human|person|moderator|operator|real agent|someone real)\b", re.IGNORECASE)
_GREETING = re.compile(r"^\s*(hi|hello|hey|start|/start|yo|hiya)\b", re.IGNORECASE)


class DemoAgent(BaseAgent):
    def __init__(self, name: str, settings: DemoSettings) -> None:
        super().__init__(name)
        self.settings = settings

    async def stream(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        turns = int(turn.provider_state.get("turns", 0)) + 1
        state = {"turns": turns}
        pressed = turn.button.payload.get("intent") if turn.button else None
        intent = pressed if isinstance(pressed, str) else _intent(turn.text)
        await asyncio.sleep(self.settings.first_chunk_delay)

        if intent == "human":
            yield Message("Of course. I'm asking a human moderator to join this conversation.")
            yield HandoffRequested("the user asked for a human")
        elif intent == "fail":
            async for event in self._type_out("Let me look that up for you... "):
                yield event
            raise AgentUnavailable("demo agent: simulated outage (the user typed 'fail')")
        elif intent == "bye":
            yield Message("Goodbye! Say hello any time to start a new conversation.")
            yield SessionEnded("the user said goodbye")
        else:
            async for event in self._type_out(_reply_text(intent, turn, turns)):
                yield event
            if intent == "greeting":
                yield Message("What would you like to try?", buttons=MENU)
        yield TurnEnd(state)

    async def _type_out(self, text: str) -> AsyncIterator[AgentEvent]:
        for index, word in enumerate(_WORDS.findall(text)):
            if index:
                await asyncio.sleep(self.settings.chunk_delay)
            yield TextDelta(word)


def _intent(text: str) -> str:
    lowered = text.strip().lower()
    if _HUMAN.search(lowered):
        return "human"
    if lowered in {"fail", "/fail"}:
        return "fail"
    if lowered in {"bye", "goodbye", "/bye"}:
        return "bye"
    if "joke" in lowered:
        return "joke"
    if lowered in {"long", "/long"} or "long answer" in lowered:
        return "long"
    if _GREETING.match(lowered):
        return "greeting"
    return "echo"


def _reply_text(intent: str, turn: Turn, turns: int) -> str:
    name = turn.display_name or "there"
    if intent == "greeting":
        if turns > 1:
            return f"Welcome back, **{name}**! This is message #{turns} of our conversation."
        return (
            f"Hi **{name}**! I'm the Switchboard demo agent. I run offline, so you can try streaming, "
            "buttons and handoff to a human without any provider credentials."
        )
    if intent == "joke":
        return JOKES[turns % len(JOKES)]
    if intent == "long":
        return LONG_ANSWER
    quoted = turn.text.strip()
    if len(quoted) > 200:
        quoted = quoted[:200] + "…"
    return (
        f"You said: “{quoted}”. I'm only a demo, so I can't answer that for real, but this reply was "
        f"streamed to you in small chunks. This is message #{turns} of our conversation. "
        "Try “joke”, “long”, “fail” or “talk to a human”."
    )
