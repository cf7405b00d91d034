"""The Voiceflow socket.io backend against a loopback fake, through the real python-socketio client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

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
    AgentUnavailable,
    Button,
    Buttons,
    HandoffRequested,
    Media,
    Message,
    Resumable,
    Rewind,
    SessionEnded,
    TextDelta,
    TurnEnd,
)
from agents.voiceflow import BUSY, LOST, REJECTED, WIRE_LOG, VoiceflowAgent, VoiceflowSettings
from bridges.relay import Notices, Relay
from bridges.render import ReplyRenderer
from bridges.surface import Inbound
from fakes.voiceflow import (
    GREETING,
    SERVER_LOG,
    WELCOME_BACK,
    Disconnect,
    Drop,
    Emit,
    EndSession,
    Fail,
    FakeVoiceflow,
    Gate,
    Hang,
    Reject,
    Restart,
    Step,
    Trace,
    button,
    choice,
    completion,
    old_completion,
    text,
)
from models import Handoff, HandoffStatus
from tests.agent_support import (
    FAST_RETRIES,
    checked,
    collect,
    failing,
    relay_policy,
    state_of,
    text_of,
    turn,
    until_error,
)
from tests.surfaces import RecordingSurface

SECRET = "VF.DM.0123abcd.never-log-this-key"


@pytest.fixture
async def fake() -> AsyncIterator[FakeVoiceflow]:
    async with checked(FakeVoiceflow(api_key=SECRET)) as server:
        yield server


def make_settings(fake: FakeVoiceflow, **overrides: Any) -> VoiceflowSettings:
    values: dict[str, Any] = {
        "runtime_url": fake.url,
        "socketio_path": fake.path,
        "api_key": SecretStr(fake.api_key),
        "project_id": fake.project_id,
        **FAST_RETRIES,
    }
    return VoiceflowSettings(**(values | overrides))


@pytest.fixture
def agent(fake: FakeVoiceflow) -> VoiceflowAgent:
    return VoiceflowAgent("vf", make_settings(fake))


async def session_state(agent: VoiceflowAgent) -> dict[str, Any]:
    """Open a session (launch only) and return its provider state."""
    return state_of(await collect(agent, turn("/start")))


async def reply(
    fake: FakeVoiceflow, agent: VoiceflowAgent, state: dict[str, Any], *steps: Step | list[Trace]
) -> list[AgentEvent]:
    """The events of one scripted action on an open session."""
    fake.script(*steps)
    return await collect(agent, turn("hi", state))


async def until(fake: FakeVoiceflow, condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(2):
        await fake.wait_for(condition)


# --- streaming and sessions ---------------------------------------------------------------------


async def test_text_streams_as_the_provider_sends_it(fake: FakeVoiceflow, agent: VoiceflowAgent) -> None:
    release = asyncio.Event()
    start, hello, world, end = completion("Hello ", "world")
    fake.script(text("Welcome!"))
    fake.script(start, hello, Gate(release), world, end)
    events = agent.stream(turn("hi there"))
    first = [await asyncio.wait_for(anext(events), 2) for _ in range(2)]
    assert first == [Message("Welcome!"), TextDelta("Hello ")] and not release.is_set()
    release.set()
    rest = [event async for event in events]
    assert rest[:-1] == [TextDelta("world")]
    state = state_of(rest)
    assert state["userID"].startswith("discord-u1-") and state["sessionKey"] in fake.sessions
    assert fake.received == [
        (
            "client.start",
            {
                "userID": state["userID"],
                "projectID": "project-1",
                "authorization": SECRET,
                "config": {"completionEvents": True, "audioEvents": False},
            },
        ),
        ("session.create", {}),
        ("action.send", {"action": {"type": "launch"}}),
        ("action.send", {"action": {"type": "text", "payload": "hi there"}}),
    ]


async def test_an_expired_session_is_replaced(fake: FakeVoiceflow, agent: VoiceflowAgent) -> None:
    state = await session_state(agent)
    fake.expire(state["sessionKey"])
    events = await collect(agent, turn("still there?", state))
    assert events[0] == Message(GREETING) and text_of(events) == "echo #1: still there?"
    fresh = state_of(events)
    assert fresh["userID"] == state["userID"] and fresh["sessionKey"] != state["sessionKey"]
    assert list(fake.sessions) == [fresh["sessionKey"]]


async def test_start_command_launches(fake: FakeVoiceflow, agent: VoiceflowAgent) -> None:
    events = await collect(agent, turn("/start"))
    assert events[:-1] == [Message(GREETING)]
    await collect(agent, turn("start", state_of(events)))
    assert fake.actions == [{"type": "launch"}, {"type": "launch"}], "on a running session it relaunches"


async def test_both_completion_shapes_stream(fake: FakeVoiceflow, agent: VoiceflowAgent) -> None:
    state = await session_state(agent)
    current = await reply(fake, agent, state, completion("Hel", "lo"), old_completion("Wor", "ld"))
    assert current[:-1] == [TextDelta("Hel"), TextDelta("lo"), TextDelta("\n\nWor"), TextDelta("ld")]
    surface = RecordingSurface(edit_interval=0)
    fake.script(old_completion("Pick ", "one"), choice("Red", "Blue"), completion("Then more."))
    result = await ReplyRenderer(surface).render(agent.stream(turn("hi", state)))
    assert result.error is None
    assert surface.visible_texts() == ["Pick one", "Then more."]
    assert [b.label for b in surface.visible_buttons()[0]] == ["Red", "Blue"]


async def test_without_completion_events_text_comes_whole(fake: FakeVoiceflow) -> None:
    agent = VoiceflowAgent("vf", make_settings(fake, completion_events=False, user_timezone="Europe/Paris"))
    events = await collect(agent, turn("hi"))
    assert events[:-1] == [Message(GREETING), Message("echo #1: hi")]
    assert fake.sent("client.start")[0]["config"] == {
        "completionEvents": False,
        "audioEvents": False,
        "userTimezone": "Europe/Paris",
    }


async def test_environment_id_is_sent(fake: FakeVoiceflow) -> None:
    await collect(VoiceflowAgent("vf", make_settings(fake, environment_id="development")), turn("/start"))
    assert fake.sent("client.start")[0]["environmentID"] == "development"


# --- rich output, buttons, handoff, session end ----------------------------------------------------


async def test_rich_traces(fake: FakeVoiceflow, agent: VoiceflowAgent) -> None:
    state = await session_state(agent)
    card = {"title": "Pro", "description": {"text": "All features"}, "imageUrl": "https://cdn/p.png"}
    events = await reply(
        fake,
        agent,
        state,
        *(Trace(kind, {}) for kind in ("path", "debug", "flow", "block", "log")),
        Trace("no-reply", {"timeout": 30}),
        Trace("speak", {"message": "<speak>Hello <break/>there</speak>", "type": "message"}),
        Trace("visual", {"image": "https://cdn/map.png", "dimensions": None, "visualType": "image"}),
        Trace("cardV2", {**card, "buttons": [button("Buy")]}),
        Trace("carousel", {"layout": "Carousel", "cards": [card, {**card, "title": "Max"}]}),
        Trace("end"),
    )
    speak, visual, card_message, first, second, ended, _end = events
    assert speak == Message("Hello there") and visual == Media("https://cdn/map.png", "image")
    assert isinstance(card_message, Message) and card_message.text == "**Pro**\nAll features"
    assert [b.label for b in card_message.buttons] == ["Buy"] and card_message.media[
        0
    ].url == "https://cdn/p.png"
    assert isinstance(first, Message) and isinstance(second, Message) and second.text.startswith("**Max**")
    assert ended == SessionEnded("the agent ended the conversation")


async def test_buttons_send_back_their_request(fake: FakeVoiceflow, agent: VoiceflowAgent) -> None:
    state = await session_state(agent)
    link = {"type": "path-docs", "payload": {"label": "Docs", "actions": [
        {"type": "open_url", "payload": {"url": "https://docs.example"}}
    ]}}  # fmt: skip
    events = await reply(fake, agent, state, text("Pick one"), choice("Pricing", button("Docs", link)))
    buttons = next(event for event in events if isinstance(event, Buttons)).buttons
    assert [(b.label, b.url) for b in buttons] == [("Pricing", None), ("Docs", "https://docs.example")]
    await collect(agent, turn("Pricing", state, button=buttons[0]))
    assert fake.actions[-1] == {"type": "path-pricing", "payload": {"label": "Pricing"}}
    await collect(agent, turn("Docs", state, button=buttons[1]))
    assert fake.actions[-1] == link
    await collect(agent, turn("Stale", state, button=Button("Stale", {})))
    assert fake.actions[-1] == {"type": "text", "payload": "Stale"}, (
        "a button without a request sends its label"
    )


@pytest.mark.parametrize(
    ("handoff_actions", "trace", "reason"),
    [
        (
            ("talk_to_agent",),
            Trace("live-agent-handoff", {"conversationID": "c-1", "message": "billing", "event": {}}),
            "billing",
        ),
        (("talk_to_agent",), Trace("talk_to_agent", '{"topic":"refund"}'), "the agent asked for a human"),
        (("escalate",), Trace("escalate", {"reason": "angry customer"}), "angry customer"),
    ],
)
async def test_handoff_signals(
    fake: FakeVoiceflow, handoff_actions: tuple[str, ...], trace: Trace, reason: str
) -> None:
    agent = VoiceflowAgent("vf", make_settings(fake, handoff_actions=handoff_actions))
    state = await session_state(agent)
    events = await reply(fake, agent, state, text("One moment."), trace, Trace("talk_to_agent", {}))
    handoffs = [event for event in events if isinstance(event, HandoffRequested)]
    assert events[0] == Message("One moment.") and handoffs[0].reason.startswith(reason)
    assert len(handoffs) == (2 if "talk_to_agent" in handoff_actions else 1)


async def test_resume_continues_after_a_handoff(fake: FakeVoiceflow, agent: VoiceflowAgent) -> None:
    assert isinstance(agent, Resumable)
    state = await session_state(agent)
    await reply(fake, agent, state, Trace("talk_to_agent", {}))
    events = [event async for event in agent.resume(turn("", state))]
    assert events == [Message(WELCOME_BACK), TurnEnd(state)]
    assert fake.actions[-1] == {"type": "continue"}
    fresh = [event async for event in agent.resume(turn("", {}))]
    assert fresh[0] == Message(GREETING) and fake.actions[-1] == {"type": "launch"}, "no session: launch"


async def test_session_ended_event_ends_the_turn(fake: FakeVoiceflow, agent: VoiceflowAgent) -> None:
    state = await session_state(agent)
    events = await reply(fake, agent, state, text("Bye."), Trace("end"), EndSession("inactivity_timeout"))
    assert events == [Message("Bye."), SessionEnded("the agent ended the conversation"), TurnEnd(state)]
    fake.script(EndSession("end_of_diagram"))
    events = await collect(agent, turn("hello"))
    assert events[:-1] == [SessionEnded("end_of_diagram")]
    assert [a["type"] for a in fake.actions][-2:] == ["text", "launch"], "nothing is sent after the end"


# --- failures ---------------------------------------------------------------------------------------


async def test_wrong_api_key_is_an_auth_error_and_not_retried(fake: FakeVoiceflow) -> None:
    agent = VoiceflowAgent("vf", make_settings(fake, api_key=SecretStr("VF.DM.wrong")))
    with pytest.raises(AgentAuthError, match="401") as caught:
        await collect(agent, turn())
    assert caught.value.user_message == AgentAuthError.default_user_message
    assert fake.auth_failures == 1 and fake.connections == 1 and fake.actions == []


@pytest.mark.parametrize(
    ("message", "data", "error", "connections"),
    [
        ("unauthorized", None, AgentAuthError, 1),
        ("not allowed", {"code": 403}, AgentAuthError, 1),
        ("overloaded", {"code": 503}, AgentUnavailable, 3),
    ],
)
async def test_a_refused_socketio_connection(
    fake: FakeVoiceflow,
    agent: VoiceflowAgent,
    message: str,
    data: Any,
    error: type[AgentError],
    connections: int,
) -> None:
    fake.refuse_connections(message, data)
    with pytest.raises(error, match=message):
        await collect(agent, turn())
    assert fake.connections == connections


async def test_first_event_timeout(fake: FakeVoiceflow) -> None:
    agent = VoiceflowAgent("vf", make_settings(fake, first_event_timeout=0.3))
    fake.script(Hang())
    with pytest.raises(AgentUnavailable, match="reply to start"):
        await collect(agent, turn())
    assert fake.actions == [{"type": "launch"}], "an action the agent may have seen is never retried"
    await until(fake, lambda: fake.connected == 0)


async def test_idle_timeout_after_partial_text(fake: FakeVoiceflow, agent: VoiceflowAgent) -> None:
    state = await session_state(agent)
    fake.script(completion("partial")[:2], Hang())
    seen = await failing(agent, AgentUnavailable, "reply to continue", turn("hi", state))
    assert seen == [TextDelta("partial")]


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (401, AgentAuthError),
        ("FORBIDDEN", AgentAuthError),
        (429, AgentRateLimited),
        (503, AgentUnavailable),
        ("internal error", AgentUnavailable),
        ("QUOTA", AgentError),
        (None, AgentError),
    ],
)
async def test_error_event_ends_the_turn(
    fake: FakeVoiceflow, agent: VoiceflowAgent, code: int | str | None, error: type[AgentError]
) -> None:
    state = await session_state(agent)
    fake.script(text("partial"), Fail("LLM provider failed", code))
    seen: list[AgentEvent] = []
    with pytest.raises(error, match="LLM provider failed") as caught:
        await until_error(agent.stream(turn("hi", state)), seen)
    assert type(caught.value) is error and seen == [Message("partial")]


@pytest.mark.parametrize(
    ("reason", "message"),
    [("invalid action type", REJECTED), ("action in progress", BUSY)],
)
async def test_a_rejection_tells_the_user_what_to_do_and_logs_the_reason(
    fake: FakeVoiceflow, agent: VoiceflowAgent, reason: str, message: str
) -> None:
    state = await session_state(agent)
    fake.script(Reject(reason))
    surface = RecordingSurface(edit_interval=0)
    result = await ReplyRenderer(surface).render(agent.stream(turn("hi", state)))
    assert isinstance(result.error, AgentProtocolError) and reason in str(result.error)
    assert surface.visible_texts() == [f"⚠️ {message}"] and reason not in message
    assert result.provider_state == state, "a rejected turn keeps the session"


@pytest.mark.parametrize("replay", [True, False])
async def test_server_restart_before_any_text_replays_the_action(
    fake: FakeVoiceflow, agent: VoiceflowAgent, replay: bool
) -> None:
    state = await session_state(agent)
    fake.script(Trace("debug", {"message": "thinking"}), Restart(replay=replay))
    fake.script(text("after the restart"))
    events = await collect(agent, turn("hi", state))
    assert events == [Message("after the restart"), TurnEnd(state)]
    assert fake.actions[-2:] == [{"type": "text", "payload": "hi"}] * 2
    assert [start["sessionKey"] for start in fake.sent("client.start")[1:]] == [state["sessionKey"]] * 2
    assert fake.connections == 3 and len(fake.sessions) == 1


async def test_server_restart_mid_reply_replays_into_the_same_message(
    fake: FakeVoiceflow, agent: VoiceflowAgent
) -> None:
    """The replayed reply replaces the partial text, in the same platform message."""
    state = await session_state(agent)
    fake.script(text("Let me check."), completion("half an ", "ans")[:3], Restart())
    fake.script(text("Let me check."), completion("half an ", "answer, then all of it."))
    events = await collect(agent, turn("hi", state))
    assert events[:4] == [Message("Let me check."), TextDelta("half an "), TextDelta("ans"), Rewind(11)]
    assert text_of(events[4:]) == "half an answer, then all of it."
    assert fake.actions[-2:] == [{"type": "text", "payload": "hi"}] * 2 and state_of(events) == state

    fake.script(completion("Gone ", "half")[:3], Restart())
    fake.script(completion("Gone ", "whole."))
    surface = RecordingSurface(edit_interval=0)
    result = await ReplyRenderer(surface).render(agent.stream(turn("again", state)))
    assert result.error is None and surface.visible_texts() == ["Gone whole."]
    assert surface.count("send") == 1, "the replay edits the message the partial text was in"


async def test_a_restart_that_loses_the_session_says_so_and_keeps_nothing_stale(
    fake: FakeVoiceflow, agent: VoiceflowAgent
) -> None:
    state = await session_state(agent)
    fake.script(Restart(lose_session=True))
    with pytest.raises(AgentUnavailable, match="session was lost") as caught:
        await collect(agent, turn("hi", state))
    assert caught.value.user_message == LOST
    assert caught.value.provider_state == {"userID": state["userID"]}, "the stale sessionKey is dropped"
    assert len(fake.actions) == 2, "the action is not replayed into a session that never saw the rest"
    events = await collect(agent, turn("hello again", caught.value.provider_state))
    assert events[0] == Message(GREETING), "the next message launches a new session"


async def test_restarts_without_end_give_up(fake: FakeVoiceflow, agent: VoiceflowAgent) -> None:
    state = await session_state(agent)
    for _ in range(3):
        fake.script(Restart())
    with pytest.raises(AgentUnavailable, match="restarted 3 times"):
        await collect(agent, turn("hi", state))


@pytest.mark.parametrize("cut", [Drop(), Disconnect()])
async def test_disconnect_mid_stream(fake: FakeVoiceflow, agent: VoiceflowAgent, cut: Step) -> None:
    state = await session_state(agent)
    shown = asyncio.Event()
    fake.script(completion("partial")[:2], Gate(shown), cut)
    events = agent.stream(turn("hi", state))
    assert await anext(events) == TextDelta("partial")
    shown.set()
    with pytest.raises(AgentUnavailable, match="connection lost"):
        await anext(events)
    assert len(fake.actions) == 2


async def test_malformed_events_are_skipped_and_logged(
    fake: FakeVoiceflow, agent: VoiceflowAgent, caplog: pytest.LogCaptureFixture
) -> None:
    state = await session_state(agent)
    events = await reply(
        fake,
        agent,
        state,
        Emit("action.trace", "not an object"),
        Emit("action.trace", {"trace": {"no": "type"}}),
        Emit(
            "action.trace", {"trace": {"type": "text", "payload": {"message": "stale"}}, "messageID": "old"}
        ),
        Emit("action.status", {"status": "pondering"}),
        Emit("mystery.event", {"x": 1}),
        Trace("completion", {"state": "sideways", "content": "?"}),
        Trace("visual", "not a mapping"),
        Trace("carousel", {"cards": "nope"}),
        text("still fine"),
    )
    assert events == [Message("still fine"), TurnEnd(state)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("malformed" in message for message in warnings) == 2
    assert any("sideways" in message for message in warnings) and any("pondering" in m for m in warnings)


async def test_one_action_in_flight_per_session(fake: FakeVoiceflow) -> None:
    agent = VoiceflowAgent("vf", make_settings(fake, idle_timeout=5))
    state = await session_state(agent)
    release = asyncio.Event()
    fake.script(text("first"), Gate(release))
    first = asyncio.create_task(collect(agent, turn("one", state)))
    await until(fake, lambda: len(fake.actions) == 2)
    second = asyncio.create_task(collect(agent, turn("two", state)))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await fake.wait_for(lambda: fake.connections > 2)
    other = await collect(agent, turn("other session"))
    assert text_of(other) == "echo #1: other session", "other sessions are not held up"
    release.set()
    assert (await first)[:-1] == [Message("first")]
    assert text_of(await second) == "echo #1: two"
    assert [a.get("payload") for a in fake.sessions[state["sessionKey"]].actions] == [None, "one", "two"]


async def test_the_api_key_never_reaches_logs_or_errors(
    fake: FakeVoiceflow, agent: VoiceflowAgent, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger=WIRE_LOG.name)
    state = state_of(await collect(agent, turn()))
    errors: list[AgentError] = []
    for script in ([Fail(f"bad key {SECRET}", 500)], [Reject(f"key {SECRET} revoked")]):
        fake.script(*script)
        with pytest.raises(AgentError) as caught:
            await collect(agent, turn("hi", state))
        errors.append(caught.value)
    wrong = VoiceflowAgent("vf", make_settings(fake, api_key=SecretStr(SECRET + "-old")))
    with pytest.raises(AgentAuthError) as refused:
        await collect(wrong, turn())
    errors.append(refused.value)
    assert all(SECRET not in f"{error} {error.user_message}" for error in errors)
    assert "[redacted]" in str(errors[0]) and SECRET not in repr(agent.settings)
    messages = [r.getMessage() for r in caplog.records if not r.name.startswith(SERVER_LOG.name)]
    assert any("client.start" in m and "[redacted]" in m for m in messages), "the wire log was captured"
    assert not [message for message in messages if SECRET in message]


@pytest.mark.parametrize(
    "bad",
    [
        {"runtime_url": "ftp://runtime.example"},
        {"runtime_url": "not a url"},
        {"runtime_url": "https://general-runtime.voiceflow.com/v4/interact/socket"},
        {"socketio_path": "v4/interact/socket"},
        {"socketio_path": "/v4/inter act"},
        {"project_id": ""},
        {"environment_id": ""},
        {"api_key": SecretStr("")},
        {"user_timezone": "Mars/Olympus_Mons"},
        {"first_event_timeout": 0},
        {"handoff_actions": "talk_to_agent"},
        {"unknown": 1},
    ],
)
def test_invalid_config_is_rejected(fake: FakeVoiceflow, bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        make_settings(fake, **bad)


def test_config_defaults() -> None:
    with pytest.raises(ValidationError, match="api_key"):
        VoiceflowSettings(project_id="p")  # type: ignore[call-arg]
    settings = VoiceflowSettings(project_id="p", api_key=SecretStr("VF.DM.x"))
    assert str(settings.runtime_url) == "https://general-runtime.voiceflow.com/"
    assert settings.socketio_path == "/v4/interact/socket" and settings.kind == "voiceflow"
    assert settings.handoff_actions == ("talk_to_agent",) and settings.completion_events


# --- through the Relay, across a restart, on both databases ----------------------------------------


async def test_relay_restart_and_handoff_keep_the_session(
    fake: FakeVoiceflow, db: async_sessionmaker[AsyncSession]
) -> None:
    def relay() -> Relay:
        return Relay(db, {"vf": VoiceflowAgent("vf", make_settings(fake))}, relay_policy("vf"))

    surface = RecordingSurface(edit_interval=0)
    await relay().handle(Inbound("console", "c1", "u1", "Ann", "hello"), surface)

    restarted = relay()
    fake.script(text("Connecting you."), Trace("talk_to_agent", {}))
    await restarted.handle(Inbound("console", "c1", "u1", "Ann", "a person please"), surface)
    async with db() as session:
        handoff = (await session.scalars(select(Handoff))).one()
    assert handoff.requested_by == "agent"
    await restarted.handoffs.close(handoff.id, HandoffStatus.RETURNED, "m1", "Mo", notify_user=False)
    await restarted.resume_after_handoff(handoff.conversation_id, surface)
    await relay().handle(Inbound("console", "c1", "u1", "Ann", "again"), surface)

    assert surface.visible_texts() == [
        GREETING,
        "echo #1: hello",
        "Connecting you.",
        Notices.handoff_requested,
        WELCOME_BACK,
        "echo #2: again",
    ]
    (session_,) = fake.sessions.values()
    assert [(a["type"], a.get("payload")) for a in session_.actions] == [
        ("launch", None),
        ("text", "hello"),
        ("text", "a person please"),
        ("continue", None),
        ("text", "again"),
    ]
    assert [start.get("sessionKey") for start in fake.sent("client.start")] == [None] + [session_.key] * 3
    assert session_.user_id.startswith("console-u1-")
