"""The Convocore REST backend against a loopback fake interact endpoint, through real httpx."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import (
    AgentAuthError,
    AgentError,
    AgentEvent,
    AgentProtocolError,
    AgentRateLimited,
    AgentRequestRefused,
    AgentUnavailable,
    Buttons,
    HandoffRequested,
    Media,
    Message,
    SessionEnded,
    TurnEnd,
)
from agents.convocore_rest import ConvocoreRestAgent, ConvocoreRestSettings
from bridges.relay import Notices, Relay
from bridges.render import ReplyRenderer
from bridges.surface import Inbound
from fakes.convocore_rest import (
    GREETING,
    FakeConvocoreRest,
    choice_item,
    text_item,
    visual_item,
)
from fakes.http import Drop, Hang
from models import Handoff, HandoffStatus
from tests.agent_support import FAST_RETRIES, checked, collect, failing, relay_policy, state_of, turn
from tests.surfaces import RecordingSurface

SECRET = "cc-rest-secret-do-not-log-3d9b"


@pytest.fixture
async def fake() -> AsyncIterator[FakeConvocoreRest]:
    async with checked(FakeConvocoreRest(secret=SECRET)) as server:
        yield server


def make_settings(fake: FakeConvocoreRest, **overrides: Any) -> ConvocoreRestSettings:
    values: dict[str, Any] = {"agent_id": fake.agent_id, "api_key": SecretStr(SECRET), "base_url": fake.url}
    return ConvocoreRestSettings(**(values | FAST_RETRIES | overrides))


@pytest.fixture
def agent(fake: FakeConvocoreRest, http: httpx.AsyncClient) -> ConvocoreRestAgent:
    return ConvocoreRestAgent("desk", make_settings(fake), http)


def messages(events: list[AgentEvent]) -> list[str]:
    return [event.text for event in events if isinstance(event, Message)]


# --- turns and sessions ---------------------------------------------------------------------------


async def test_a_reply_comes_back_as_whole_messages(
    fake: FakeConvocoreRest, agent: ConvocoreRestAgent
) -> None:
    fake.script(text_item("Hello!"), visual_item("https://img.example/a.png"), choice_item("Yes", "No"))
    events = await collect(agent, turn("hi there"))
    assert events[:2] == [Message("Hello!"), Media("https://img.example/a.png", "image")]
    assert isinstance(events[2], Buttons) and [b.label for b in events[2].buttons] == ["Yes", "No"]
    (seen,) = fake.requests
    assert state_of(events) == {"user_id": seen.user_id, "chat_state": "ai-chatting"}
    assert uuid.UUID(seen.user_id)
    assert seen.body == {
        "action": {"type": "text", "payload": "hi there"},
        "transcriptMetadata": {"userName": "Ann", "origin": "discord"},
        "origin": "discord",
    }
    assert seen.headers["Authorization"] == f"Bearer {SECRET}"


async def test_a_start_command_opens_with_the_greeting(
    fake: FakeConvocoreRest, agent: ConvocoreRestAgent
) -> None:
    opened = await collect(agent, turn("/start", platform="telegram"))
    later = await collect(agent, turn("/start", state_of(opened), platform="telegram"))
    assert messages(opened) == [GREETING] and messages(later) == ["echo #2: /start"]
    assert fake.requests[0].body["action"] == {"type": "launch"}
    assert fake.requests[0].body["origin"] == "web-chat", "Telegram is not a Convocore origin"


async def test_a_button_press_sends_its_label_as_text(
    fake: FakeConvocoreRest, agent: ConvocoreRestAgent
) -> None:
    """The endpoint takes only text and launch actions: a button's own `request` would be a 400."""
    fake.script(text_item("Pick one"), choice_item("Yes please", "No"))
    offered = await collect(agent, turn())
    (buttons,) = [event for event in offered if isinstance(event, Buttons)]
    assert buttons.buttons[0].payload["type"].startswith("path-")
    pressed = await collect(agent, turn("Yes please", state_of(offered), button=buttons.buttons[0]))
    assert messages(pressed) == ["echo #2: Yes please"]
    assert fake.requests[1].body["action"] == {"type": "text", "payload": "Yes please"}


async def test_a_request_the_endpoint_refuses_is_our_bug_not_the_agents(
    fake: FakeConvocoreRest, http: httpx.AsyncClient
) -> None:
    agent = ConvocoreRestAgent("cc", make_settings(fake, max_attempts=1), http)
    surface = RecordingSurface(edit_interval=0)
    result = await ReplyRenderer(surface).render(agent.stream(turn("")))
    assert isinstance(result.error, AgentRequestRefused) and "400" in str(result.error)
    assert surface.visible_texts() == [f"⚠️ {AgentRequestRefused.default_user_message}"]
    assert "could not understand" not in surface.visible_texts()[0] and fake.hits == 1
    fake.rejections.clear()


async def test_requested_chat_raises_a_handoff_and_the_next_turn_hands_back(
    fake: FakeConvocoreRest, agent: ConvocoreRestAgent
) -> None:
    fake.script(text_item("Let me find a colleague."), state="requested_chat")
    asked = await collect(agent, turn("a person please"))
    assert asked[:-1] == [
        Message("Let me find a colleague."),
        HandoffRequested("the agent asked for a human"),
    ]
    assert state_of(asked)["chat_state"] == "requested_chat"

    back = await collect(agent, turn("thanks", state_of(asked)))  # the Relay calls once the handoff is over
    assert fake.requests[1].body["transcriptMetadata"]["state"] == "ai-chatting"
    assert back[:-1] == [Message("echo #2: thanks")]
    assert state_of(back)["chat_state"] == "ai-chatting"
    later = await collect(agent, turn("more", state_of(back)))
    assert "state" not in fake.requests[2].body["transcriptMetadata"] and messages(later) == ["echo #3: more"]


@pytest.mark.parametrize(
    ("items", "fields"),
    [
        pytest.param((), {"chatState": "requested_chat"}, id="chatState-string"),
        pytest.param((), {"chatState": {}, "state": "requested_chat"}, id="top-level-state"),
        pytest.param(
            ({"type": "live-agent-handoff", "payload": {"message": "billing dispute"}},),
            {},
            id="handoff-item-and-state",
        ),
    ],
)
async def test_handoff_variants_raise_exactly_one_request(
    fake: FakeConvocoreRest,
    agent: ConvocoreRestAgent,
    items: tuple[dict[str, Any], ...],
    fields: dict[str, Any],
) -> None:
    fake.script(*items, state="requested_chat", fields=fields)
    events = await collect(agent, turn())
    assert [type(event) for event in events] == [HandoffRequested, TurnEnd]
    assert state_of(events)["chat_state"] == "requested_chat"
    if items:
        assert events[0] == HandoffRequested("billing dispute")


async def test_human_chatting_is_kept_and_left_alone(
    fake: FakeConvocoreRest, agent: ConvocoreRestAgent, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script(text_item("An operator joined."), state="human-chatting")
    first = await collect(agent, turn())
    second = await collect(agent, turn("hello?", state_of(first)))
    assert messages(second) == [] and state_of(second)["chat_state"] == "human-chatting"
    assert "state" not in fake.requests[1].body["transcriptMetadata"]
    assert "dashboard" in caplog.text


async def test_rich_items_and_the_end_of_the_conversation(
    fake: FakeConvocoreRest, agent: ConvocoreRestAgent
) -> None:
    card = {
        "type": "cardV2",
        "payload": {"title": "Plan", "description": {"text": "Monthly"}, "imageUrl": "https://i/p.png"},
    }
    fake.script(text_item("Here you go"), card, {"type": "end"})
    events = await collect(agent, turn())
    assert [type(event) for event in events] == [Message, Message, SessionEnded, TurnEnd]
    assert events[1] == Message("**Plan**\nMonthly", media=(Media("https://i/p.png"),))


async def test_malformed_turns_and_items_are_skipped_and_logged(
    fake: FakeConvocoreRest, agent: ConvocoreRestAgent, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script(
        fields={
            "turns": [
                "not a turn",
                {"from": "human", "messages": [text_item("the user's own words")]},
                {"from": "bot", "messages": [text_item("one"), 42, {"item": {"no": "type"}}]},
                {"from": "bot", "messages": {"type": "text", "item": text_item("two")}},
                {
                    "from": "bot",
                    "messages": [{"from": "human", "item": text_item("echo")}, text_item("three")],
                },
                {"from": "bot"},
            ]
        }
    )
    events = await collect(agent, turn())
    assert messages(events) == ["one", "two", "three"] and isinstance(events[-1], TurnEnd)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and all("skipping" in warning for warning in warnings)


# --- failures -------------------------------------------------------------------------------------


async def test_unknown_agent_is_a_404(fake: FakeConvocoreRest, http: httpx.AsyncClient) -> None:
    agent = ConvocoreRestAgent("desk", make_settings(fake, agent_id="someone-elses"), http)
    with pytest.raises(AgentProtocolError, match="404: Agent not found") as caught:
        await collect(agent, turn())
    assert caught.value.user_message == AgentAuthError.default_user_message
    assert fake.rejections == ["Agent not found"] and fake.hits == 1
    fake.rejections.clear()


@pytest.mark.parametrize("status", [400, 422])
async def test_refused_requests_are_protocol_errors(
    fake: FakeConvocoreRest, agent: ConvocoreRestAgent, status: int
) -> None:
    fake.fail(status)
    await failing(agent, AgentProtocolError, f"{status}: injected")
    assert fake.hits == 1


async def test_429_backs_off_for_retry_after_then_succeeds(
    fake: FakeConvocoreRest, agent: ConvocoreRestAgent, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail(429, headers={"Retry-After": "0.2"})
    started = time.monotonic()
    assert messages(await collect(agent, turn())) == ["echo #1: hi"]
    assert time.monotonic() - started >= 0.2 and fake.hits == 2
    assert "HTTP 429" in caplog.text and "retry 1/2" in caplog.text
    fake.fail(429, times=3, headers={"Retry-After": "0"})
    with pytest.raises(AgentRateLimited) as caught:
        await collect(agent, turn())
    assert caught.value.retry_after == 0.0


async def test_a_connection_dropped_before_the_answer_is_retried(
    fake: FakeConvocoreRest, agent: ConvocoreRestAgent, caplog: pytest.LogCaptureFixture
) -> None:
    fake.drop_next()
    assert messages(await collect(agent, turn())) == ["echo #1: hi"] and fake.hits == 2
    assert "connection lost before the answer" in caplog.text


async def test_an_unanswered_request_times_out_and_is_never_repeated(
    fake: FakeConvocoreRest, http: httpx.AsyncClient
) -> None:
    agent = ConvocoreRestAgent("desk", make_settings(fake, first_event_timeout=0.3), http)
    fake.hang_next()
    await failing(agent, AgentUnavailable, "waited 0.3s for the reply to start")
    assert fake.hits == 1, "the agent may already be working on it"


@pytest.mark.parametrize(
    ("cut", "match"),
    [
        pytest.param(Drop(), "connection lost mid-reply", id="dropped"),
        pytest.param(Hang(), "stalled for 0.3s", id="stalled"),
    ],
)
async def test_an_answer_cut_off_midway_is_an_error_and_not_repeated(
    fake: FakeConvocoreRest, agent: ConvocoreRestAgent, cut: Drop | Hang, match: str
) -> None:
    fake.script(text_item("a long answer " * 50), cut=cut)
    await failing(agent, AgentUnavailable, match)
    assert fake.hits == 1


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"success": False, "message": "Agent is disabled"}, "the agent failed: Agent is disabled"),
        ({"appError": "Voiceflow runtime error"}, "the agent failed: Voiceflow runtime error"),
    ],
)
async def test_a_failed_interaction_is_an_error(
    fake: FakeConvocoreRest, agent: ConvocoreRestAgent, fields: dict[str, Any], match: str
) -> None:
    fake.script(text_item("ignored"), fields=fields)
    await failing(agent, AgentError, match)
    assert fake.hits == 1


@pytest.mark.parametrize("raw", ["<html>502 Bad Gateway</html>", '["not", "an", "object"]', ""])
async def test_a_malformed_answer_is_a_protocol_error(
    fake: FakeConvocoreRest, agent: ConvocoreRestAgent, raw: str
) -> None:
    fake.script_raw(raw)
    await failing(agent, AgentProtocolError, "not a JSON object")


@pytest.mark.parametrize(
    "bad",
    [
        {"region": "us"},
        {"base_url": "not a url"},
        {"agent_id": ""},
        {"api_key": None},
        {"first_event_timeout": 0},
        {"kind": "convocore"},
        {"url": "https://eu-gcp-api.vg-stuff.com/v3"},
    ],
)
def test_invalid_config_is_rejected(fake: FakeConvocoreRest, bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        make_settings(fake, **bad)


def test_region_picks_the_base_url_and_an_override_wins() -> None:
    eu = ConvocoreRestSettings(agent_id="a/1", api_key=SecretStr("k"))
    na = ConvocoreRestSettings(agent_id="a", api_key=SecretStr("k"), region="na")
    custom = ConvocoreRestSettings(
        agent_id="a", api_key=SecretStr("k"), region="na", base_url="http://h:1/x/"
    )
    assert eu.interact_url("u 1") == "https://eu-gcp-api.vg-stuff.com/v3/agents/a%2F1/interact/u%201"
    assert na.interact_url("u") == "https://na-gcp-api.vg-stuff.com/v3/agents/a/interact/u"
    assert custom.interact_url("u") == "http://h:1/x/agents/a/interact/u"


# --- through the Relay: handoff, return and a restart, on both databases ---------------------------


async def test_relay_handoff_and_restart_keep_the_session(
    fake: FakeConvocoreRest, http: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    def relay() -> Relay:
        return Relay(
            db, {"desk": ConvocoreRestAgent("desk", make_settings(fake), http)}, relay_policy("desk")
        )

    surface = RecordingSurface(edit_interval=0)
    first = relay()
    await first.handle(Inbound("console", "c1", "u1", "Ann", "hello"), surface)
    fake.script(text_item("Let me find a colleague."), state="requested_chat")
    await first.handle(Inbound("console", "c1", "u1", "Ann", "a person please"), surface)
    await first.handle(Inbound("console", "c1", "u1", "Ann", "are you there?"), surface)
    assert len(fake.requests) == 2, "during a handoff the user's words go to moderators, not the agent"
    async with db() as session:
        handoff = (await session.scalars(select(Handoff))).one()
    assert handoff.requested_by == "agent"
    await first.handoffs.close(handoff.id, HandoffStatus.RETURNED, "m1", "Mo", notify_user=False)

    await relay().handle(Inbound("console", "c1", "u1", "Ann", "thanks"), surface)

    texts = surface.visible_texts()
    assert texts[:3] == ["echo #1: hello", "Let me find a colleague.", Notices.handoff_requested]
    assert texts[-1] == "echo #3: thanks"
    assert len({seen.user_id for seen in fake.requests}) == 1
    assert fake.requests[2].body["transcriptMetadata"]["state"] == "ai-chatting"
