"""The contract every networked backend must meet, run against each provider's loopback fake.

Each case is parametrized over `ADAPTERS`; per-provider files keep only what is specific to a provider.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import (
    AgentAuthError,
    AgentError,
    AgentEvent,
    AgentRateLimited,
    AgentUnavailable,
    Button,
    Buttons,
    HandoffRequested,
    Message,
    Regenerable,
    TextDelta,
    TurnEnd,
)
from bridges.relay import Relay
from bridges.surface import Inbound
from models import Conversation
from tests.agent_support import collect, relay_policy, state_of, turn, until_error
from tests.agents.adapters import ADAPTERS, PARTIAL, SECRET, Adapter, shown, started
from tests.surfaces import RecordingSurface


@pytest.fixture(params=sorted(ADAPTERS))
async def provider(request: pytest.FixtureRequest) -> AsyncIterator[Adapter]:
    async with started(request.param) as adapter:
        yield adapter


async def failing(
    adapter: Adapter, error: type[AgentError], state: dict[str, object] | None = None
) -> tuple[AgentError, list[AgentEvent]]:
    seen: list[AgentEvent] = []
    with pytest.raises(error) as caught:
        await until_error(adapter.agent().stream(turn("hi", state)), seen)
    return caught.value, seen


# --- replies and sessions -------------------------------------------------------------------------


async def test_a_turn_streams_and_ends_with_the_state(provider: Adapter) -> None:
    state = state_of(await collect(provider.agent(), turn("/start")))
    provider.script_text("Hello ", "world")
    events = await collect(provider.agent(), turn("hi", state))
    assert shown(events) == "Hello world" and isinstance(events[-1], TurnEnd)
    if provider.streams:
        assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("Hello "), TextDelta("world")]


async def test_the_second_turn_continues_the_session(provider: Adapter) -> None:
    agent = provider.agent()
    first = await collect(agent, turn("one"))
    second = await collect(agent, turn("two", state_of(first)))
    assert "echo #1: one" in shown(first) and state_of(second) == state_of(first)
    if provider.stateful:
        assert shown(second).endswith("echo #2: two") and state_of(first)


async def test_only_a_provider_without_a_session_of_its_own_can_regenerate(provider: Adapter) -> None:
    """Regenerate asks the same turn again with the history before it: only a provider that keeps no
    state of its own (the history is ours) can answer that honestly."""
    agent = provider.agent()
    assert isinstance(agent, Regenerable) is not provider.stateful
    if isinstance(agent, Regenerable):
        provider.script_text("Once ", "more")
        events = [event async for event in agent.regenerate(turn("hi"))]
        assert shown(events) == "Once more" and isinstance(events[-1], TurnEnd)


async def test_a_restarted_bot_continues_the_session(provider: Adapter) -> None:
    """The stored state alone, given to a new agent instance, continues the conversation."""
    if not provider.stateful:
        pytest.skip(f"{provider.kind} keeps no session: the Relay replays the transcript")
    state = state_of(await collect(provider.agent(), turn("before")))
    events = await collect(provider.agent(), turn("after", state))
    assert shown(events).endswith("echo #2: after") and state_of(events) == state


async def test_the_session_is_kept_after_a_failed_first_turn(provider: Adapter) -> None:
    if not provider.stateful:
        pytest.skip(f"{provider.kind} keeps no session: history comes from the transcript")
    provider.script_failure_after_session()
    error, _ = await failing(provider, AgentError)
    assert error.provider_state, "the session the provider opened comes with the error"
    events = await collect(provider.agent(), turn("again", error.provider_state))
    assert "again" in shown(events)
    assert error.provider_state.items() <= state_of(events).items(), "the same session continues"


async def test_the_relay_keeps_the_session_after_a_failed_first_turn(
    provider: Adapter, db: async_sessionmaker[AsyncSession]
) -> None:
    if not provider.stateful:
        pytest.skip(f"{provider.kind} keeps no session")
    relay = Relay(db, {"a": provider.agent()}, relay_policy("a"))
    provider.script_failure_after_session()
    surface = RecordingSurface(edit_interval=0)
    await relay.handle(Inbound("console", "c1", "u1", "Ann", "hello"), surface)
    async with db() as session:
        saved = (await session.scalars(select(Conversation))).one().provider_state
    assert saved, "the failed turn's session was saved"
    await relay.handle(Inbound("console", "c1", "u1", "Ann", "again"), surface)
    async with db() as session:
        kept = (await session.scalars(select(Conversation))).one().provider_state
    assert saved.items() <= kept.items() and surface.visible_texts()[-1].endswith("again")


async def test_a_button_press_goes_back_in_the_form_the_provider_accepts(provider: Adapter) -> None:
    state = state_of(await collect(provider.agent(), turn("/start")))
    provider.script_buttons("Yes please", "No")
    offered = await collect(provider.agent(), turn("hi", state))
    buttons = [b for e in offered for b in (e.buttons if isinstance(e, Buttons | Message) else ())]
    press = buttons[0] if buttons else Button("Yes please")
    assert press.label == "Yes please"
    await collect(provider.agent(), turn(press.label, state, button=press))
    assert provider.pressed() == provider.accepted_press(press)


async def test_the_agent_asks_for_a_human(provider: Adapter) -> None:
    if not provider.handoff:
        pytest.skip(f"{provider.kind} has no handoff: only the user's /human raises one")
    state = state_of(await collect(provider.agent(), turn("/start")))
    provider.script_handoff()
    events = await collect(provider.agent(), turn("a person please", state))
    assert "One moment." in shown(events)
    assert len([e for e in events if isinstance(e, HandoffRequested)]) == 1


# --- failures -------------------------------------------------------------------------------------


async def test_401_is_an_auth_error_and_not_retried(provider: Adapter) -> None:
    provider.fail(401)
    error, _ = await failing(provider, AgentAuthError)
    assert error.user_message == AgentAuthError.default_user_message and provider.attempts() == 1


async def test_an_unknown_agent_says_misconfigured(provider: Adapter) -> None:
    with pytest.raises(AgentError) as caught:
        await collect(provider.unknown_agent(), turn())
    assert caught.value.user_message == AgentAuthError.default_user_message and provider.attempts() == 1


async def test_429_is_retried_then_gives_up_rate_limited(provider: Adapter) -> None:
    provider.fail(429, retry_after="0")
    assert shown(await collect(provider.agent(), turn())).endswith("echo #1: hi")
    provider.fail(429, times=3, retry_after="0")
    await failing(provider, AgentRateLimited)
    assert provider.attempts() == 5


async def test_5xx_is_retried_until_it_works_or_attempts_run_out(provider: Adapter) -> None:
    provider.fail(503, times=2)
    assert shown(await collect(provider.agent(), turn())).endswith("echo #1: hi")
    provider.fail(500, times=3)
    await failing(provider, AgentUnavailable)
    assert provider.attempts() == 6 and provider.requests() >= 1


async def test_connect_refused_names_the_host_once(
    provider: Adapter, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(AgentUnavailable, match=re.escape("127.0.0.1:9")) as caught:
        await collect(provider.dead_agent(), turn())
    name = str(caught.value).split(":", 1)[0]
    assert "retry 2/2" in caplog.text and f"{name}: {name}" not in caplog.text


async def test_first_event_timeout_and_the_request_is_not_sent_again(provider: Adapter) -> None:
    provider.script_silence()
    started_at = time.monotonic()
    with pytest.raises(AgentUnavailable, match="reply to start"):
        await collect(provider.agent(first_event_timeout=0.3), turn())
    assert time.monotonic() - started_at < 2 and provider.requests() <= 2  # Voiceflow: launch, then text
    requests = provider.requests()
    await asyncio.sleep(0)  # let a (wrong) retry reach the fake before counting again
    assert provider.requests() == requests


@pytest.mark.parametrize("cut", ["hang", "drop"])
async def test_a_reply_cut_midway_is_unavailable_and_not_sent_again(provider: Adapter, cut: str) -> None:
    state = state_of(await collect(provider.agent(), turn("/start")))
    before = provider.requests()
    provider.script_cut(cut)
    _, seen = await failing(provider, AgentUnavailable, state)
    assert seen == ([TextDelta(PARTIAL)] if provider.streams else [])
    assert provider.requests() == before + 1


async def test_malformed_frames_are_skipped_and_logged(
    provider: Adapter, caplog: pytest.LogCaptureFixture
) -> None:
    state = state_of(await collect(provider.agent(), turn("/start")))
    provider.script_malformed_then("still fine")
    events = await collect(provider.agent(), turn("hi", state))
    assert shown(events) == "still fine"
    assert any(r.levelno == logging.WARNING and "skipping" in r.getMessage() for r in caplog.records)


async def test_the_key_never_reaches_errors_or_logs(
    provider: Adapter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await collect(provider.agent(), turn())
    errors: list[AgentError] = []
    for status in (401, 503):
        provider.fail(status, times=3)
        with pytest.raises(AgentError) as caught:
            await collect(provider.agent(), turn())
        errors.append(caught.value)
    with pytest.raises(AgentError) as refused:
        await collect(provider.dead_agent(), turn())
    errors.append(refused.value)
    assert all(SECRET not in f"{error} {error.user_message}" for error in errors)
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith(("fakes", "aiohttp"))]
    assert ours and not [message for message in ours if SECRET in message]
