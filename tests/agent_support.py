"""Helpers the backend tests share: a checked fake, building turns, draining a reply
(or a failed one), and a Relay policy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any, Protocol, TypeVar

import pytest

from agents.base import Agent, AgentError, AgentEvent, Button, HistoryEntry, TextDelta, Turn, TurnEnd
from bridges.relay_policy import RelayPolicy

FAST_RETRIES: dict[str, Any] = {
    "first_event_timeout": 1.0,
    "idle_timeout": 0.3,
    "max_attempts": 3,
    "backoff_base": 0.01,
    "backoff_cap": 0.05,
}
"""Retry and timeout settings small enough to keep every failure test well under a second."""


class _Fake(AbstractAsyncContextManager[Any], Protocol):
    rejections: list[str]


FakeT = TypeVar("FakeT", bound=_Fake)


@asynccontextmanager
async def checked(fake: FakeT) -> AsyncIterator[FakeT]:
    """Run `fake`; on the way out, fail if the client sent anything the real service would refuse."""
    async with fake:
        yield fake
        assert fake.rejections == [], "the client sent a request the real server would refuse"


def relay_policy(agent: str) -> RelayPolicy:
    return RelayPolicy(
        default_agent=agent,
        idle_timeout=timedelta(minutes=30),
        handoff_expiry=timedelta(minutes=10),
        bindings={},
    )


def turn(
    text: str = "hi",
    state: dict[str, Any] | None = None,
    *,
    button: Button | None = None,
    history: Sequence[HistoryEntry] = (),
    platform: str = "discord",
) -> Turn:
    return Turn(
        text=text,
        user_id="u1",
        display_name="Ann",
        platform=platform,
        provider_state=state or {},
        button=button,
        history=tuple(history),
    )


async def collect(agent: Agent, t: Turn) -> list[AgentEvent]:
    return [event async for event in agent.stream(t)]


async def until_error(events: AsyncIterator[AgentEvent], seen: list[AgentEvent]) -> None:
    """Drain `events` into `seen`; whatever the stream raises propagates, with `seen` kept for asserts."""
    async for event in events:
        seen.append(event)


async def failing(
    agent: Agent, error: type[AgentError], match: str, t: Turn | None = None
) -> list[AgentEvent]:
    """The events shown before the turn (by default `turn()`) failed with `error` matching `match`."""
    seen: list[AgentEvent] = []
    with pytest.raises(error, match=match):
        await until_error(agent.stream(t or turn()), seen)
    return seen


def text_of(events: Sequence[AgentEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def state_of(events: Sequence[AgentEvent]) -> dict[str, Any]:
    end = events[-1]
    assert isinstance(end, TurnEnd), f"the reply must end with TurnEnd, not {end!r}"
    return end.provider_state
