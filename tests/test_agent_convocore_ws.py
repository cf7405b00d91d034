"""The Convocore Interact WebSocket backend against a loopback fake, through the real websockets client."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from agents.base import (
    AgentAuthError,
    AgentError,
    AgentEvent,
    AgentProtocolError,
    AgentRateLimited,
    AgentUnavailable,
    Button,
    Buttons,
    HandoffRequested,
    Message,
    SessionEnded,
    Sources,
    TextDelta,
    Turn,
    TurnEnd,
)
from agents.convocore_ws import ConvocoreWsAgent, ConvocoreWsSettings
from bridges.render import ReplyRenderer
from fakes.convocore_ws import (
    GREETING,
    SERVER_LOG,
    Chunk,
    Close,
    Drop,
    FakeConvocore,
    Frame,
    Gate,
    Hang,
    Snapshot,
    Step,
    choice_item,
    handoff,
    metadata,
    text_item,
    visual_item,
)
from tests.agent_support import FAST_RETRIES, checked, collect, text_of, turn
from tests.surfaces import RecordingSurface

SECRET = "cc-secret-do-not-log-7f3a"


@pytest.fixture
async def fake() -> AsyncIterator[FakeConvocore]:
    async with checked(FakeConvocore(secret=SECRET)) as server:
        yield server


def make_settings(fake: FakeConvocore, **overrides: Any) -> ConvocoreWsSettings:
    values: dict[str, Any] = {
        "agent_id": fake.agent_id,
        "owner_id": fake.owner_id,
        "api_key": SecretStr(fake.secret),
        "url": fake.url,
    }
    return ConvocoreWsSettings(**(values | FAST_RETRIES | overrides))


@pytest.fixture
def agent(fake: FakeConvocore) -> ConvocoreWsAgent:
    return ConvocoreWsAgent("cc", make_settings(fake))


async def reply_to(fake: FakeConvocore, agent: ConvocoreWsAgent, *steps: Step) -> list[AgentEvent]:
    fake.script(*steps)
    return await collect(agent, turn())


async def rendered(agent: ConvocoreWsAgent, t: Turn) -> RecordingSurface:
    """What a user would see: the events through the real renderer."""
    surface = RecordingSurface(edit_interval=0)
    result = await ReplyRenderer(surface).render(agent.stream(t))
    assert result.error is None
    return surface


# --- streaming and sessions ---------------------------------------------------------------------


async def test_text_streams_as_the_provider_sends_it(fake: FakeConvocore, agent: ConvocoreWsAgent) -> None:
    release = asyncio.Event()
    fake.script(Chunk("Hello "), Gate(release), Chunk("world"), Close())
    events = agent.stream(turn("hi there"))
    first = await asyncio.wait_for(anext(events), 2)
    assert first == TextDelta("Hello ") and not release.is_set()
    release.set()
    rest = [event async for event in events]
    assert rest[:-1] == [TextDelta("world")]
    (request,) = fake.requests
    assert rest[-1] == TurnEnd({"convoId": request["convoId"]})
    assert request == {
        "agentId": "agent-1",
        "convoId": request["convoId"],
        "prompt": "hi there",
        "bucket": "voiceglow-eu",
        "agentData": {"ownerID": "owner-1", "userID": "u1"},
        "lightConvoData": {"userName": "Ann", "origin": "discord"},
    }


async def test_start_command_opens_with_the_greeting(fake: FakeConvocore, agent: ConvocoreWsAgent) -> None:
    events = await collect(agent, turn("/start"))
    assert text_of(events) == GREETING and fake.requests[0]["prompt"] == "start"
    fresh = await collect(agent, turn("What are your hours?"))
    assert fake.requests[1]["prompt"] == "What are your hours?" and text_of(fresh).startswith("echo #1")
    state = fresh[-1].provider_state  # type: ignore[union-attr]
    await collect(agent, turn("/start", state))
    assert fake.requests[2]["prompt"] == "/start", "mid-conversation, the text goes through untouched"


async def test_region_picks_url_and_bucket(fake: FakeConvocore) -> None:
    na = make_settings(fake, region="na")
    await collect(ConvocoreWsAgent("cc", na), turn())
    assert fake.requests[0]["bucket"] == "(default)"
    assert make_settings(fake, url=None).interact_url == "wss://eu-gcp-api.vg-stuff.com/interact"
    assert make_settings(fake, url=None, region="na").interact_url == "wss://na-gcp-api.vg-stuff.com/interact"


async def test_out_of_order_chunks_are_put_back_in_order(
    fake: FakeConvocore, agent: ConvocoreWsAgent
) -> None:
    events = await reply_to(
        fake, agent, Chunk("b ", index=1), Chunk("c ", index=2), Chunk("a ", index=0), Chunk("d", index=3)
    )
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta(t) for t in ("a ", "b ", "c ", "d")]


async def test_a_missing_chunk_does_not_hold_back_the_rest(
    fake: FakeConvocore, agent: ConvocoreWsAgent, caplog: pytest.LogCaptureFixture
) -> None:
    events = await reply_to(fake, agent, Chunk("a ", index=0), Chunk("c", index=2), Close())
    assert text_of(events) == "a c" and "chunk 1 missing" in caplog.text


# --- ui_engine snapshots --------------------------------------------------------------------------


async def test_growing_snapshots_stream_only_what_is_new(
    fake: FakeConvocore, agent: ConvocoreWsAgent
) -> None:
    fake.script(
        Snapshot([text_item("Hel")]),
        Snapshot([text_item("Hello wor")]),
        Snapshot([text_item("Hello world")]),
        Snapshot([text_item("Hello world"), choice_item("Yes", "No")]),
        Close(),
    )
    events = await collect(agent, turn())
    assert events[:3] == [TextDelta("Hel"), TextDelta("lo wor"), TextDelta("ld")]
    assert isinstance(events[3], Buttons) and [b.label for b in events[3].buttons] == ["Yes", "No"]
    fake.script(
        Snapshot([text_item("Hello")]),
        Snapshot([text_item("Hello world"), choice_item("Yes", "No")]),
        Close(),
    )
    surface = await rendered(agent, turn())
    assert surface.visible_texts() == ["Hello world"]
    assert [b.label for b in surface.visible_buttons()[0]] == ["Yes", "No"]


async def test_snapshot_repeating_streamed_text_shows_it_once(
    fake: FakeConvocore, agent: ConvocoreWsAgent
) -> None:
    fake.script(
        Chunk("Here is "),
        Chunk("the  map. "),
        Snapshot([text_item("Here is the map."), visual_item("https://cdn.example/map.png")]),
        Close(),
    )
    surface = await rendered(agent, turn())
    assert surface.visible_texts() == ["Here is the  map."]
    assert [m.url for m in surface.visible_media()] == ["https://cdn.example/map.png"]


async def test_consecutive_text_items_and_a_rewrite(fake: FakeConvocore, agent: ConvocoreWsAgent) -> None:
    fake.script(
        Snapshot([text_item("First.")]),
        Snapshot([text_item("First."), text_item("Second")]),
        Snapshot([text_item("First."), text_item("Second part.")]),
        Close(),
    )
    events = await collect(agent, turn())
    assert events[:-1] == [TextDelta("First."), TextDelta("\n\nSecond"), TextDelta(" part.")]
    fake.script(
        Snapshot([text_item("Draft answer")]),
        Snapshot([text_item("Final answer"), choice_item("OK")]),
        Close(),
    )
    draft, final, buttons, _end = await collect(agent, turn())
    assert (draft, final) == (TextDelta("Draft answer"), Message("Final answer"))
    assert isinstance(buttons, Buttons), "the rewrite is sent whole, and its buttons attach to it"


async def test_rich_items_sources_and_session_end(fake: FakeConvocore, agent: ConvocoreWsAgent) -> None:
    card = {
        "type": "cardV2",
        "payload": {"title": "Plan", "description": {"text": "Pro"}, "imageUrl": "https://i/p.png"},
    }
    events = await reply_to(
        fake,
        agent,
        metadata("https://docs.example/a", {"url": "https://docs.example/b"}),
        Snapshot(
            [text_item("See:"), {"type": "card", "item": card}, {"type": "end", "item": {"type": "end"}}]
        ),
        metadata("https://docs.example/a"),
        Close(),
    )
    kinds = [type(event) for event in events]
    assert kinds == [TextDelta, Message, SessionEnded, Sources, TurnEnd]
    assert events[1].media[0].url == "https://i/p.png"  # type: ignore[union-attr]
    assert events[3] == Sources(("https://docs.example/a", "https://docs.example/b"))


async def test_request_handoff_action(fake: FakeConvocore, agent: ConvocoreWsAgent) -> None:
    events = await reply_to(
        fake,
        agent,
        Chunk("Connecting you."),
        Frame({"type": "action", "action": {"type": "tool_call", "payload": {"name": "crm"}}}),
        handoff("billing dispute"),
        Close(),
    )
    assert events[:-1] == [TextDelta("Connecting you."), HandoffRequested("billing dispute")]


async def test_button_press_goes_back_as_its_label(fake: FakeConvocore, agent: ConvocoreWsAgent) -> None:
    events = await reply_to(fake, agent, Snapshot([text_item("Pick"), choice_item("Yes please")]), Close())
    (buttons,) = [event for event in events if isinstance(event, Buttons)]
    state = events[-1].provider_state  # type: ignore[union-attr]
    await collect(agent, turn("Yes please", state, button=buttons.buttons[0]))
    path_button = Button("Buy", {"type": "path-1", "payload": {"label": "Buy now"}})
    await collect(agent, turn("Buy", state, button=path_button))
    assert [r["prompt"] for r in fake.requests[1:]] == ["Yes please", "Buy now"]
    assert {r["convoId"] for r in fake.requests} == {state["convoId"]}


async def test_ignored_and_malformed_frames_are_skipped_and_logged(
    fake: FakeConvocore, agent: ConvocoreWsAgent, caplog: pytest.LogCaptureFixture
) -> None:
    events = await reply_to(
        fake,
        agent,
        Frame("not json"),
        Frame({"no": "type"}),
        Frame({"type": "sync_chat_history", "turns": []}),
        Frame({"type": "debug", "message": "thinking"}),
        Frame({"type": "chunk", "chunk": "{broken", "ui_engine": True}),
        Frame({"type": "chunk", "chunk": None, "chunkIndex": 0}),
        Chunk("still ", index=1),
        Chunk("fine", index=2),
        Close(),
    )
    assert text_of(events) == "still fine" and isinstance(events[-1], TurnEnd)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("malformed" in message for message in warnings) == 3


# --- failures -------------------------------------------------------------------------------------


async def test_a_wrong_key_closes_4001_and_is_an_auth_error(fake: FakeConvocore) -> None:
    agent = ConvocoreWsAgent("cc", make_settings(fake, api_key=SecretStr("wrong-key")))
    with pytest.raises(AgentAuthError) as caught:
        await collect(agent, turn())
    assert "4001" in str(caught.value) and "wrong-key" not in str(caught.value)
    assert caught.value.user_message == AgentAuthError.default_user_message
    assert fake.handshakes == 1 and fake.auth_failures == 1 and fake.requests == []


@pytest.mark.parametrize(
    ("close", "error"),
    [
        (Close(4003, "Forbidden"), AgentAuthError),
        (Close(1008, "Invalid API key"), AgentAuthError),
        (Close(1008, "prompt too long"), AgentProtocolError),
    ],
)
async def test_auth_closes_are_auth_errors(
    fake: FakeConvocore, agent: ConvocoreWsAgent, close: Close, error: type[AgentError]
) -> None:
    fake.script(close)
    with pytest.raises(error, match=str(close.code)) as caught:
        await collect(agent, turn())
    assert type(caught.value) is error


@pytest.mark.parametrize(("status", "error"), [(404, AgentProtocolError), (422, AgentProtocolError)])
async def test_handshake_refusals(
    fake: FakeConvocore, agent: ConvocoreWsAgent, status: int, error: type[AgentError]
) -> None:
    fake.fail_handshake(status)
    with pytest.raises(error, match=str(status)):
        await collect(agent, turn())
    assert fake.handshakes == 1


async def test_wrong_path_is_a_404(fake: FakeConvocore) -> None:
    agent = ConvocoreWsAgent("cc", make_settings(fake, url=fake.url.replace("/interact", "/v2/interact")))
    with pytest.raises(AgentProtocolError, match="404") as caught:
        await collect(agent, turn())
    assert caught.value.user_message == AgentAuthError.default_user_message


async def test_429_backs_off_for_retry_after_then_succeeds(
    fake: FakeConvocore, agent: ConvocoreWsAgent, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_handshake(429, headers={"Retry-After": "0.2"})
    started = time.monotonic()
    events = await collect(agent, turn("hi"))
    assert time.monotonic() - started >= 0.2
    assert text_of(events) == "echo #1: hi" and fake.handshakes == 2
    assert "HTTP 429" in caplog.text and "retry 1/2" in caplog.text
    fake.fail_handshake(429, times=3, headers={"Retry-After": "0"})
    with pytest.raises(AgentRateLimited):
        await collect(agent, turn())


async def test_a_refused_request_is_a_protocol_error(fake: FakeConvocore) -> None:
    agent = ConvocoreWsAgent("cc", make_settings(fake, agent_id="someone-elses-agent"))
    with pytest.raises(AgentProtocolError, match="1008"):
        await collect(agent, turn())
    assert fake.rejections == ["unknown agentId"]
    fake.rejections.clear()


async def test_first_event_timeout(fake: FakeConvocore) -> None:
    agent = ConvocoreWsAgent("cc", make_settings(fake, first_event_timeout=0.3))
    fake.script(Hang())
    with pytest.raises(AgentUnavailable, match="reply to start"):
        await collect(agent, turn())
    await asyncio.wait_for(fake.closed.wait(), 2)
    assert len(fake.requests) == 1, "a turn the agent may have seen is never retried"


async def test_disconnect_mid_stream(fake: FakeConvocore, agent: ConvocoreWsAgent) -> None:
    fake.script(Chunk("partial"), Drop())
    seen: list[AgentEvent] = []
    with pytest.raises(AgentUnavailable, match="connection lost"):
        async for event in agent.stream(turn()):
            seen.append(event)
    assert seen == [TextDelta("partial")]


@pytest.mark.parametrize(
    ("code", "error"), [(1011, AgentUnavailable), (1001, AgentUnavailable), (4000, AgentProtocolError)]
)
async def test_a_close_other_than_1000_is_an_error(
    fake: FakeConvocore, agent: ConvocoreWsAgent, code: int, error: type[AgentError]
) -> None:
    fake.script(Chunk("partial"), Close(code, "server trouble"))
    with pytest.raises(error, match=str(code)):
        await collect(agent, turn())


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "debug:error", "message": "LLM provider failed"},
        {"type": "debug", "level": "error", "message": "LLM provider failed"},
    ],
)
async def test_debug_error_ends_the_turn(
    fake: FakeConvocore, agent: ConvocoreWsAgent, frame: dict[str, Any]
) -> None:
    fake.script(Chunk("partial"), Frame(frame), Hang())
    with pytest.raises(AgentError, match="LLM provider failed"):
        await collect(agent, turn())
    await asyncio.wait_for(fake.closed.wait(), 2)


async def test_the_secret_never_reaches_errors_or_logs(
    fake: FakeConvocore, agent: ConvocoreWsAgent, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await collect(agent, turn())
    fake.fail_handshake(503, times=3)
    with pytest.raises(AgentUnavailable) as caught:
        await collect(agent, turn())
    wrong = ConvocoreWsAgent("cc", make_settings(fake, api_key=SecretStr(SECRET + "-old")))
    with pytest.raises(AgentAuthError) as refused:
        await collect(wrong, turn())
    assert SECRET not in str(caught.value) and SECRET not in str(refused.value)
    assert SECRET not in repr(agent.settings)
    messages = [record.getMessage() for record in caplog.records if record.name != SERVER_LOG.name]
    assert any("Authorization: [redacted]" in message for message in messages), "wire log was captured"
    assert not [message for message in messages if SECRET in message]


@pytest.mark.parametrize(
    "bad",
    [
        {"region": "us"},
        {"url": "https://eu-gcp-api.vg-stuff.com/interact"},
        {"agent_id": ""},
        {"owner_id": ""},
        {"first_event_timeout": 0},
        {"unknown": 1},
    ],
)
def test_invalid_config_is_rejected(fake: FakeConvocore, bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        make_settings(fake, **bad)
    with pytest.raises(ValidationError, match="api_key"):
        ConvocoreWsSettings(agent_id="a", owner_id="o")  # type: ignore[call-arg]


# --- through the Relay, across a restart, on both databases ----------------------------------------
