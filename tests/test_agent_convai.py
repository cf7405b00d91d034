"""The Convai backend against a loopback fake Interaction API, through real httpx."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from agents.base import (
    AgentAuthError,
    AgentError,
    AgentProtocolError,
    AgentRateLimited,
    AgentUnavailable,
    Button,
    TextDelta,
    TurnEnd,
)
from agents.convai import ConvaiAgent, ConvaiSettings
from fakes.convai import FakeConvai, llm_text, reply, rtvi, transcription
from fakes.http import Event, Gate, Hang, Raw
from tests.agent_support import FAST_RETRIES, checked, collect, failing, state_of, text_of, turn

SECRET = "convai-secret-do-not-log-5e81"


@pytest.fixture
async def fake() -> AsyncIterator[FakeConvai]:
    async with checked(FakeConvai(api_key=SECRET)) as server:
        yield server


def make_settings(fake: FakeConvai, **overrides: Any) -> ConvaiSettings:
    values: dict[str, Any] = {
        "url": fake.url,
        "character_id": fake.character_id,
        "api_key": SecretStr(SECRET),
    }
    return ConvaiSettings(**(values | FAST_RETRIES | overrides))


@pytest.fixture
def agent(fake: FakeConvai, http: httpx.AsyncClient) -> ConvaiAgent:
    return ConvaiAgent("guide", make_settings(fake), http)


# --- streaming and sessions -----------------------------------------------------------------------


async def test_text_streams_as_the_character_speaks(fake: FakeConvai, agent: ConvaiAgent) -> None:
    release = asyncio.Event()
    fake.script(rtvi("bot-llm-started"), llm_text("Hello "), Gate(release), *reply("world"))
    events = agent.stream(turn("hi there"))
    assert await asyncio.wait_for(anext(events), 2) == TextDelta("Hello ")
    assert not release.is_set()
    release.set()
    rest = [event async for event in events]
    assert rest[:-1] == [TextDelta("world")]
    (session,) = fake.sessions
    assert rest[-1] == TurnEnd({"character_session_id": session})
    assert fake.requests == [{"character_id": "char-1", "text_input": "hi there"}]


@pytest.mark.parametrize("stored", ["-1", "", None, 42])
async def test_a_placeholder_session_is_never_sent_back(
    fake: FakeConvai, agent: ConvaiAgent, stored: object
) -> None:
    events = await collect(agent, turn("hi", {"character_session_id": stored}))
    assert text_of(events) == "echo #1: hi"
    assert "character_session_id" not in fake.requests[0]
    assert state_of(events)["character_session_id"] in fake.sessions


async def test_a_button_press_sends_its_label(fake: FakeConvai, agent: ConvaiAgent) -> None:
    await collect(agent, turn("ignored", button=Button("Tell me more", {"intent": "more"})))
    assert fake.requests[0]["text_input"] == "Tell me more"


@pytest.mark.parametrize("stopped", ["connection-stoppped", "connection-stopped"])
async def test_both_stop_spellings_end_the_reply(fake: FakeConvai, agent: ConvaiAgent, stopped: str) -> None:
    # Anything after the stop event would be a second reply: the hang proves the client stopped reading.
    fake.script(llm_text("Done."), rtvi(stopped), Hang())
    events = await collect(agent, turn())
    assert events[:-1] == [TextDelta("Done.")] and isinstance(events[-1], TurnEnd)
    await asyncio.wait_for(fake.disconnected.wait(), 2)


async def test_end_of_stream_also_ends_the_reply(fake: FakeConvai, agent: ConvaiAgent) -> None:
    fake.script(rtvi("bot-llm-started"), llm_text("No stop event"))
    events = await collect(agent, turn())
    assert text_of(events) == "No stop event" and isinstance(events[-1], TurnEnd)


@pytest.mark.parametrize(
    ("steps", "shown"),
    [
        pytest.param(reply("Hello ", "world"), ["Hello ", "world"], id="transcription-repeats"),
        pytest.param(
            reply("Hello ", "world", transcript="Hello world!"), ["Hello ", "world", "!"], id="adds"
        ),
        pytest.param([transcription("Only the full text")], ["Only the full text"], id="transcription-only"),
        pytest.param(
            reply("Hello", "world", transcript="Hello world"), ["Hello", "world"], id="whitespace-differs"
        ),
        pytest.param(
            [llm_text("Hel"), transcription("Hello world"), llm_text("lo "), llm_text("world, again")],
            ["Hel", "lo world", ", again"],
            id="transcription-before-fragments",
        ),
    ],
)
async def test_fragments_and_transcription_are_reconciled(
    fake: FakeConvai, agent: ConvaiAgent, steps: list[Any], shown: list[str]
) -> None:
    fake.script(*steps)
    events = await collect(agent, turn())
    assert [event.text for event in events if isinstance(event, TextDelta)] == shown


async def test_a_transcription_that_contradicts_the_shown_text_is_logged(
    fake: FakeConvai, agent: ConvaiAgent, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script(*reply("Hello ", "world", transcript="Goodbye world"))
    events = await collect(agent, turn())
    assert text_of(events) == "Hello world"
    assert "changed after they were shown" in caplog.text


async def test_malformed_and_unknown_events_are_skipped(
    fake: FakeConvai, agent: ConvaiAgent, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script(
        llm_text("still "),
        Raw("data: {broken\n\n"),
        Event(["not", "an", "object"]),
        rtvi("bot-llm-text", {"no": "text"}),
        rtvi("user-transcription", {"text": "what the user said"}),
        Raw(": keep-alive\n\n"),
        Event({"data": {"text": "fine"}}, event="bot-llm-text"),  # type named by the SSE event line
        rtvi("connection-stoppped"),
    )
    events = await collect(agent, turn())
    assert text_of(events) == "still fine" and isinstance(events[-1], TurnEnd)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert "malformed" in warnings[0] and "not an object" in warnings[1] and "without text" in warnings[2]


async def test_an_error_event_ends_the_turn(fake: FakeConvai, agent: ConvaiAgent) -> None:
    fake.script(llm_text("partial"), rtvi("error", {"message": "LLM quota exhausted"}), Hang())
    assert await failing(agent, AgentError, "LLM quota exhausted") == [TextDelta("partial")]


# --- failures -------------------------------------------------------------------------------------


async def test_unknown_character_is_a_404(fake: FakeConvai, http: httpx.AsyncClient) -> None:
    agent = ConvaiAgent("guide", make_settings(fake, character_id="someone-else"), http)
    with pytest.raises(AgentProtocolError, match="404: Character not found") as caught:
        await collect(agent, turn())
    assert caught.value.user_message == AgentAuthError.default_user_message
    assert fake.rejections == ["Character not found"] and fake.hits == 1
    fake.rejections.clear()


@pytest.mark.parametrize("status", [400, 422])
async def test_refused_requests_are_protocol_errors(
    fake: FakeConvai, agent: ConvaiAgent, status: int
) -> None:
    fake.fail(status)
    with pytest.raises(AgentProtocolError, match=f"{status}: injected"):
        await collect(agent, turn())
    assert fake.hits == 1


async def test_429_backs_off_for_retry_after_then_succeeds(
    fake: FakeConvai, agent: ConvaiAgent, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail(429, headers={"Retry-After": "0.2"})
    started = time.monotonic()
    assert text_of(await collect(agent, turn())) == "echo #1: hi"
    assert time.monotonic() - started >= 0.2 and fake.hits == 2
    assert "HTTP 429" in caplog.text and "retry 1/2" in caplog.text
    fake.fail(429, times=3, headers={"Retry-After": "0"})
    with pytest.raises(AgentRateLimited) as caught:
        await collect(agent, turn())
    assert caught.value.retry_after == 0.0


async def test_first_event_timeout(http: httpx.AsyncClient) -> None:
    async with FakeConvai(api_key=SECRET, first_chunk_delay=5) as slow:
        agent = ConvaiAgent("guide", make_settings(slow, first_event_timeout=0.3), http)
        started = time.monotonic()
        assert await failing(agent, AgentUnavailable, "waited 0.3s for the reply to start") == []
        assert time.monotonic() - started < 2
        assert len(slow.requests) == 1, "a request the server accepted is never sent twice"


@pytest.mark.parametrize(
    "bad",
    [
        {"url": "not a url"},
        {"character_id": ""},
        {"api_key": None},
        {"idle_timeout": 0},
        {"max_attempts": 0},
        {"kind": "openai"},
        {"session": "abc"},
    ],
)
def test_invalid_config_is_rejected(fake: FakeConvai, bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        make_settings(fake, **bad)


def test_defaults() -> None:
    settings = ConvaiSettings(character_id="c", api_key=SecretStr("k"))
    assert settings.stream_url == "https://live.convai.com/connect/stream"
    with pytest.raises(ValidationError, match="api_key"):
        ConvaiSettings(character_id="c")  # type: ignore[call-arg]


# --- through the Relay, across a restart, on both databases ----------------------------------------
