"""The OpenAI-compatible backend against a loopback fake, through real httpx."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import (
    AgentAuthError,
    AgentError,
    AgentProtocolError,
    AgentRateLimited,
    AgentUnavailable,
    Button,
    HistoryEntry,
    TextDelta,
    TurnEnd,
    Usage,
)
from agents.openai_compat import OpenAICompatAgent, OpenAICompatSettings
from bridges.relay import Relay
from bridges.surface import Inbound
from fakes.http import Event, Gate, Hang, Raw
from fakes.openai import FakeOpenAI, content, stream_error
from tests.agent_support import FAST_RETRIES, checked, collect, failing, relay_policy, text_of, turn
from tests.surfaces import RecordingSurface

SECRET = "sk-openai-secret-do-not-log-91c2"


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with checked(FakeOpenAI(api_key=SECRET)) as server:
        yield server


def make_settings(fake: FakeOpenAI, **overrides: Any) -> OpenAICompatSettings:
    values: dict[str, Any] = {"base_url": fake.url, "api_key": SecretStr(SECRET), "model": fake.model}
    return OpenAICompatSettings(**(values | FAST_RETRIES | overrides))


@pytest.fixture
def agent(fake: FakeOpenAI, http: httpx.AsyncClient) -> OpenAICompatAgent:
    return OpenAICompatAgent("gpt", make_settings(fake), http)


# --- streaming and continuity ---------------------------------------------------------------------


async def test_text_streams_as_the_server_sends_it(fake: FakeOpenAI, agent: OpenAICompatAgent) -> None:
    release = asyncio.Event()
    fake.script(content("Hello "), Gate(release), content("world"))
    events = agent.stream(turn("hi there"))
    assert await asyncio.wait_for(anext(events), 2) == TextDelta("Hello ")
    assert not release.is_set()
    release.set()
    assert [event async for event in events] == [TextDelta("world"), TurnEnd({}, usage=Usage(2, 2))]
    assert fake.requests == [
        {
            "model": "fake-model",
            "messages": [{"role": "user", "content": "hi there"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ]
    headers = fake.headers[0]
    assert headers["Authorization"] == f"Bearer {SECRET}" and headers["Accept"] == "text/event-stream"


async def test_chunks_that_arrive_together_are_one_delta(fake: FakeOpenAI, agent: OpenAICompatAgent) -> None:
    """A busy process reads several chunks at once: they cost the renderer one delta, not one each."""
    release = asyncio.Event()
    together = "".join(f'data: {{"choices": [{{"delta": {{"content": "{word}"}}}}]}}\n\n' for word in "abc")
    fake.script(Raw(together), Gate(release), content("d"))
    events = agent.stream(turn())
    assert await asyncio.wait_for(anext(events), 2) == TextDelta("abc")
    release.set()
    assert [event async for event in events] == [TextDelta("d"), TurnEnd({}, usage=Usage(1, 1))]


async def test_history_is_replayed_with_mapped_roles(fake: FakeOpenAI, http: httpx.AsyncClient) -> None:
    settings = make_settings(fake, system_prompt="You are terse.", temperature=0.2, max_tokens=50)
    agent = OpenAICompatAgent("gpt", settings, http)
    history = [
        HistoryEntry("user", "hello"),
        HistoryEntry("agent", "Hi! How can I help?"),
        HistoryEntry("user", "a person please"),
        HistoryEntry("moderator", "Moderator here, what's up?"),
        HistoryEntry("agent", ""),
    ]
    events = await collect(agent, turn("thanks", history=history))
    assert text_of(events) == "echo #3: thanks"
    body = fake.requests[0]
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Hi! How can I help?"},
        {"role": "user", "content": "a person please"},
        {"role": "assistant", "content": "Moderator here, what's up?"},
        {"role": "user", "content": "thanks"},
    ]
    assert (body["temperature"], body["max_tokens"]) == (0.2, 50)


async def test_a_button_press_sends_its_label(fake: FakeOpenAI, agent: OpenAICompatAgent) -> None:
    await collect(agent, turn("ignored", button=Button("Yes please", {"intent": "yes"})))
    assert fake.requests[0]["messages"][-1] == {"role": "user", "content": "Yes please"}


async def test_a_local_server_needs_no_key(http: httpx.AsyncClient) -> None:
    async with FakeOpenAI(api_key=None, model="llama3") as local:
        agent = OpenAICompatAgent("local", make_settings(local, api_key=None, model="llama3"), http)
        assert text_of(await collect(agent, turn())) == "echo #1: hi"
        assert "Authorization" not in local.headers[0]


async def test_chunks_without_text_and_a_stream_without_done(
    fake: FakeOpenAI, agent: OpenAICompatAgent
) -> None:
    fake.script(
        Event({"id": "x", "object": "chat.completion.chunk", "choices": []}),
        Raw(": keep-alive comment\n\n"),
        content("one "),
        Event({"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]}),
        content("two"),
        finish=False,
    )
    assert await collect(agent, turn()) == [TextDelta("one "), TextDelta("two"), TurnEnd({})]


async def test_malformed_events_are_skipped_and_logged(
    fake: FakeOpenAI, agent: OpenAICompatAgent, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script(content("still "), Raw("data: {broken\n\n"), Event(["not", "an", "object"]), content("fine"))
    assert text_of(await collect(agent, turn())) == "still fine"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "malformed" in warnings[0]


# --- failures -------------------------------------------------------------------------------------


async def test_unknown_model_is_a_404(fake: FakeOpenAI, http: httpx.AsyncClient) -> None:
    agent = OpenAICompatAgent("gpt", make_settings(fake, model="gpt-9"), http)
    with pytest.raises(AgentProtocolError, match=r"404.*gpt-9") as caught:
        await collect(agent, turn())
    assert caught.value.user_message == AgentAuthError.default_user_message
    assert fake.rejections == ["The model `gpt-9` does not exist or you do not have access to it."]
    fake.rejections.clear()


@pytest.mark.parametrize("status", [400, 422])
async def test_refused_requests_are_protocol_errors(
    fake: FakeOpenAI, agent: OpenAICompatAgent, status: int
) -> None:
    fake.fail(status)
    with pytest.raises(AgentProtocolError, match=str(status)):
        await collect(agent, turn())
    assert fake.hits == 1


async def test_429_backs_off_for_retry_after_then_succeeds(
    fake: FakeOpenAI, agent: OpenAICompatAgent, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail(429, headers={"Retry-After": "0.2"})
    started = time.monotonic()
    assert text_of(await collect(agent, turn())) == "echo #1: hi"
    assert time.monotonic() - started >= 0.2 and fake.hits == 2
    assert "HTTP 429" in caplog.text and "retry 1/2" in caplog.text
    fake.fail(429, times=3, headers={"Retry-After": "0"})
    with pytest.raises(AgentRateLimited):
        await collect(agent, turn())


async def test_first_event_timeout(fake: FakeOpenAI, agent: OpenAICompatAgent) -> None:
    fake.script(Hang(), role=False)
    assert await failing(agent, AgentUnavailable, "reply to start") == []
    await asyncio.wait_for(fake.disconnected.wait(), 2)
    assert len(fake.requests) == 1, "a request the server accepted is never sent twice"


async def test_a_reply_that_stalls_midway_times_out_after_the_idle_limit(
    fake: FakeOpenAI, agent: OpenAICompatAgent
) -> None:
    """The idle limit (0.3 s here) is shorter than the first-event one (1 s) and applies once text came."""
    fake.script(content("partial"), Hang(), finish=False)
    started = time.monotonic()
    seen = await failing(agent, AgentUnavailable, "waited 0.3s for the reply to continue")
    assert seen == [TextDelta("partial")] and time.monotonic() - started < 0.9


async def test_a_long_reply_arms_one_timeout_timer_not_one_per_read(
    fake: FakeOpenAI, agent: OpenAICompatAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hundreds of streams read thousands of events a second: the timeouts must not cost a timer each."""
    fake.chunks_per_second = 1000  # every event its own read
    fake.script(*(content(f"w{i} ") for i in range(40)))
    loop = asyncio.get_running_loop()
    armed: list[str] = []
    call_at = loop.call_at

    def counted(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        armed.append(getattr(callback, "__module__", ""))
        return call_at(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counted)
    events = await collect(agent, turn())
    assert len([e for e in events if isinstance(e, TextDelta)]) > 20, "the events were read apart"
    assert text_of(events) == "".join(f"w{i} " for i in range(40))
    timeout_timers = armed.count("agents.remote") + armed.count("asyncio.timeouts")
    assert timeout_timers < 10, f"{timeout_timers} timeout timers for {len(events)} reads"


async def test_connection_dropped_before_an_answer_is_retried(
    fake: FakeOpenAI, agent: OpenAICompatAgent
) -> None:
    fake.drop_next()
    assert text_of(await collect(agent, turn())) == "echo #1: hi" and fake.hits == 2


@pytest.mark.parametrize(
    ("kind", "error"),
    [("server_error", AgentUnavailable), ("rate_limit_exceeded", AgentRateLimited), ("invalid", AgentError)],
)
async def test_an_error_chunk_mid_stream_ends_the_turn(
    fake: FakeOpenAI, agent: OpenAICompatAgent, kind: str, error: type[AgentError]
) -> None:
    fake.script(content("partial"), stream_error("The model crashed", kind), finish=False)
    seen = await failing(agent, error, "The model crashed")
    assert seen == [TextDelta("partial")]


async def test_text_read_together_with_an_error_chunk_is_shown_before_the_error(
    fake: FakeOpenAI, agent: OpenAICompatAgent
) -> None:
    """A busy bot reads several events at once: the text before the error chunk still reaches the user."""
    error = {"error": {"message": "The model crashed", "type": "server_error"}}
    one_read = (
        f"data: {json.dumps(content('partial').data)}\n\n"
        f"data: {json.dumps(content(' more').data)}\n\ndata: {json.dumps(error)}\n\n"
    )
    fake.script(Raw(one_read), finish=False)
    seen = await failing(agent, AgentUnavailable, "The model crashed")
    assert seen == [TextDelta("partial more")]


async def test_a_reply_that_is_not_an_event_stream(fake: FakeOpenAI, agent: OpenAICompatAgent) -> None:
    fake.fail(200, body={"choices": [{"message": {"content": "whole"}}]})
    with pytest.raises(AgentProtocolError, match="expected an event stream"):
        await collect(agent, turn())


@pytest.mark.parametrize(
    "bad",
    [
        {"base_url": "not a url"},
        {"model": ""},
        {"temperature": 3},
        {"max_tokens": 0},
        {"idle_timeout": -1},
        {"kind": "convai"},
        {"unknown": 1},
    ],
)
def test_invalid_config_is_rejected(fake: FakeOpenAI, bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        make_settings(fake, **bad)


async def test_usage_is_reported_only_when_asked_for(fake: FakeOpenAI, http: httpx.AsyncClient) -> None:
    """`include_usage` brings a closing chunk with the token counts (and `usage: null` on the others);
    without it the server sends none, for a server that refuses the option."""
    fake.script(content("two words"))
    asked = await collect(OpenAICompatAgent("gpt", make_settings(fake), http), turn("a b c"))
    assert asked[-1] == TurnEnd({}, usage=Usage(prompt_tokens=3, completion_tokens=2))
    fake.script(content("two words"))
    plain = OpenAICompatAgent("gpt", make_settings(fake, report_usage=False), http)
    assert await collect(plain, turn("a b c")) == [TextDelta("two words"), TurnEnd({})]
    assert "stream_options" not in fake.requests[-1]


def test_defaults() -> None:
    settings = OpenAICompatSettings(model="gpt-4o-mini")
    assert settings.completions_url == "https://api.openai.com/v1/chat/completions"
    assert settings.api_key is None


# --- through the Relay, across a restart, on both databases ----------------------------------------


async def test_relay_restart_replays_the_transcript(
    fake: FakeOpenAI, http: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    surface = RecordingSurface(edit_interval=0)
    first = Relay(db, {"gpt": OpenAICompatAgent("gpt", make_settings(fake), http)}, relay_policy("gpt"))
    await first.handle(Inbound("console", "c1", "u1", "Ann", "hello"), surface)

    restarted = Relay(db, {"gpt": OpenAICompatAgent("gpt", make_settings(fake), http)}, relay_policy("gpt"))
    await restarted.handle(Inbound("console", "c1", "u1", "Ann", "again"), surface)

    assert surface.visible_texts() == ["echo #1: hello", "echo #2: again"]
    assert fake.requests[1]["messages"] == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "echo #1: hello"},
        {"role": "user", "content": "again"},
    ]


async def test_a_request_left_unanswered_is_never_sent_twice(
    fake: FakeOpenAI, agent: OpenAICompatAgent
) -> None:
    fake.hang_next()  # no response headers at all: the server may be working on it
    assert await failing(agent, AgentUnavailable, "reply to start") == []
    assert fake.hits == 1, "the server may already be working on it"
