"""The Relay on SQLite and PostgreSQL: sessions, transcript, ordering, idle timeout, handoff, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import (
    AgentEvent,
    AgentUnavailable,
    Attachment,
    Button,
    HandoffRequested,
    Message,
    SessionEnded,
    TextDelta,
    Turn,
)
from agents.demo import DemoAgent, DemoSettings
from bridges.catalogue import Catalogue
from bridges.controls import Control, ControlNotices, control_button
from bridges.conversations import TurnEnd
from bridges.recovery import recover
from bridges.relay import Notices, Relay
from bridges.relay_policy import RelayPolicy
from bridges.surface import Inbound
from fakes.telegram.harness import ScriptedAgent
from models import (
    AgentBinding,
    Conversation,
    ConversationStatus,
    Handoff,
    HandoffStatus,
    InboundMessage,
    Role,
    TranscriptEntry,
    User,
)
from tests.surfaces import RecordingSurface


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


POLICY = RelayPolicy(
    default_agent="scripted",
    idle_timeout=timedelta(minutes=30),
    handoff_expiry=timedelta(minutes=10),
    bindings={("telegram_chat", "group-1"): "other"},
)


def inbound(
    text: str, *, user: str = "u1", chat: str = "c1", platform: str = "console", **extra: object
) -> Inbound:
    return Inbound(
        platform=platform, chat_id=chat, user_id=user, display_name=f"User {user}", text=text, **extra
    )  # type: ignore[arg-type]


@pytest.fixture
def agent() -> ScriptedAgent:
    return ScriptedAgent()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def relay(db: async_sessionmaker[AsyncSession], agent: ScriptedAgent, clock: Clock) -> Relay:
    return Relay(db, {"scripted": agent, "other": ScriptedAgent("other")}, POLICY, now=clock)


async def transcript(db: async_sessionmaker[AsyncSession]) -> list[tuple[int, Role, str]]:
    async with db() as session:
        rows = await session.scalars(select(TranscriptEntry).order_by(TranscriptEntry.id))
        return [(row.conversation_id, row.role, row.text) for row in rows]


async def conversations(db: async_sessionmaker[AsyncSession]) -> list[Conversation]:
    async with db() as session:
        return list(await session.scalars(select(Conversation).order_by(Conversation.id)))


async def test_turn_is_streamed_recorded_and_continues(
    relay: Relay, db: async_sessionmaker[AsyncSession]
) -> None:
    surface = RecordingSurface()
    await relay.handle(inbound("hello", message_id="m1"), surface)
    await relay.handle(inbound("again"), surface)
    assert surface.visible_texts() == ["scripted: hello (#1)", "scripted: again (#2)"]
    (conversation,) = await conversations(db)
    assert conversation.provider_state == {"count": 2} and conversation.status is ConversationStatus.BOT
    assert [(role, text) for _, role, text in await transcript(db)] == [
        (Role.USER, "hello"),
        (Role.AGENT, "scripted: hello (#1)"),
        (Role.USER, "again"),
        (Role.AGENT, "scripted: again (#2)"),
    ]
    async with db() as session:
        first = await session.scalar(select(TranscriptEntry).order_by(TranscriptEntry.id))
        assert first is not None and first.platform_message_ids == ["m1"]


async def test_state_survives_a_restart(
    db: async_sessionmaker[AsyncSession], agent: ScriptedAgent, clock: Clock
) -> None:
    await Relay(db, {"scripted": agent}, POLICY, now=clock).handle(inbound("one"), RecordingSurface())
    restarted = Relay(db, {"scripted": ScriptedAgent()}, POLICY, now=clock)
    surface = RecordingSurface()
    await restarted.handle(inbound("two"), surface)
    assert surface.visible_texts() == ["scripted: two (#2)"]


async def test_history_is_handed_to_the_agent(relay: Relay, agent: ScriptedAgent) -> None:
    surface = RecordingSurface()
    await relay.handle(inbound("first"), surface)
    await relay.handle(inbound("second"), surface)
    assert [(h.role, h.text) for h in agent.turns[1].history] == [
        ("user", "first"),
        ("agent", "scripted: first (#1)"),
    ]


async def test_messages_queue_in_order_one_turn_at_a_time(
    db: async_sessionmaker[AsyncSession], clock: Clock
) -> None:
    gate = asyncio.Event()
    agent = ScriptedAgent(gate=gate)
    relay = Relay(db, {"scripted": agent}, POLICY, now=clock)
    surface = RecordingSurface()
    tasks = [asyncio.create_task(relay.handle(inbound(f"m{n}"), surface)) for n in range(5)]
    await asyncio.wait_for(agent.entered.wait(), 5)
    assert len(agent.turns) == 1  # the rest wait for the first turn to finish
    gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert [turn.text for turn in agent.turns] == ["m0", "m1", "m2", "m3", "m4"]
    assert surface.visible_texts() == [f"scripted: m{n} (#{n + 1})" for n in range(5)]
    users = [text for _, role, text in await transcript(db) if role is Role.USER]
    assert users == ["m0", "m1", "m2", "m3", "m4"]


async def test_different_users_are_served_concurrently(
    relay: Relay, db: async_sessionmaker[AsyncSession]
) -> None:
    surfaces = [RecordingSurface() for _ in range(4)]
    await asyncio.gather(*(relay.handle(inbound("hi", user=f"u{n}"), s) for n, s in enumerate(surfaces)))
    assert all(s.visible_texts() == ["scripted: hi (#1)"] for s in surfaces)
    assert len(await conversations(db)) == 4


async def test_idle_timeout_starts_a_new_conversation(
    relay: Relay, db: async_sessionmaker[AsyncSession], clock: Clock
) -> None:
    surface = RecordingSurface()
    await relay.handle(inbound("one"), surface)
    clock.now += timedelta(minutes=29)
    await relay.handle(inbound("two"), surface)
    clock.now += timedelta(minutes=31)
    await relay.handle(inbound("three"), surface)
    assert surface.visible_texts()[-1] == "scripted: three (#1)"
    first, second = await conversations(db)
    assert first.status is ConversationStatus.CLOSED and first.closed_at is not None
    assert second.status is ConversationStatus.BOT


async def test_places_and_bindings(relay: Relay, db: async_sessionmaker[AsyncSession]) -> None:
    surface = RecordingSurface()

    def chat(name: str) -> tuple[tuple[str, str], ...]:
        return (("telegram_chat", name),)

    await relay.handle(
        inbound("a", platform="telegram", chat="group-1", binding_scopes=chat("group-1")), surface
    )
    await relay.handle(
        inbound("b", platform="telegram", chat="group-2", binding_scopes=chat("group-2")), surface
    )
    async with db.begin() as session:
        session.add(AgentBinding(scope="discord_guild", scope_id="g1", agent_name="other"))
    server = (("discord_channel", "chan"), ("discord_guild", "g1"))
    await relay.handle(inbound("c", platform="discord", chat="chan", binding_scopes=server), surface)
    await relay.handle(
        inbound("d", platform="discord", chat="chan", thread_id="t1", binding_scopes=server), surface
    )
    assert surface.visible_texts() == ["other: a (#1)", "scripted: b (#1)", "other: c (#1)", "other: d (#1)"]
    assert [(c.platform, c.chat_id, c.thread_id, c.agent_name) for c in await conversations(db)] == [
        ("telegram", "group-1", "", "other"),
        ("telegram", "group-2", "", "scripted"),
        ("discord", "chan", "", "other"),
        ("discord", "chan", "t1", "other"),
    ]


async def test_agent_failure_keeps_the_session_and_the_message(
    relay: Relay, agent: ScriptedAgent, db: async_sessionmaker[AsyncSession]
) -> None:
    surface = RecordingSurface()
    await relay.handle(inbound("one"), surface)
    agent.script["boom"] = AgentUnavailable("provider down: secret detail")
    result = await relay.handle(inbound("boom"), surface)
    assert result is not None and isinstance(result.error, AgentUnavailable)
    assert surface.visible_texts()[-1] == f"partial answer\n\n⚠️ {AgentUnavailable.default_user_message}"
    await relay.handle(inbound("after"), surface)
    assert surface.visible_texts()[-1] == "scripted: after (#2)"  # provider state untouched by the failure
    entries = await transcript(db)
    assert (Role.USER, "boom") in [(role, text) for _, role, text in entries]
    assert (Role.SYSTEM, "agent error: AgentUnavailable") in [(role, text) for _, role, text in entries]
    assert len({conversation_id for conversation_id, _, _ in entries}) == 1


async def test_agent_handoff_holds_messages_until_expiry(
    relay: Relay, agent: ScriptedAgent, db: async_sessionmaker[AsyncSession], clock: Clock
) -> None:
    surface = RecordingSurface()
    agent.script["help"] = [Message("Getting a human."), HandoffRequested("billing question")]
    await relay.handle(inbound("help"), surface)
    assert surface.visible_texts()[-2:] == ["Getting a human.", Notices.handoff_requested]

    await relay.handle(inbound("are you there?"), surface)
    assert surface.visible_texts()[-1] == Notices.handoff_pending
    assert [t.text for t in agent.turns] == ["help"]  # never reached the agent

    clock.now += timedelta(minutes=11)
    await relay.handle(inbound("hello?"), surface)
    assert surface.visible_texts()[-2:] == [Notices.handoff_expired, "scripted: hello? (#2)"]  # same session
    async with db() as session:
        handoff = await session.scalar(select(Handoff))
        assert handoff is not None
        assert (handoff.status, handoff.reason, handoff.requested_by) == (
            HandoffStatus.EXPIRED,
            "billing question",
            "agent",
        )
        assert handoff.closed_at is not None
    users = [text for _, role, text in await transcript(db) if role is Role.USER]
    assert users == ["help", "are you there?", "hello?"]


async def test_user_asks_for_human_once_and_reset_returns_to_the_bot(
    relay: Relay, db: async_sessionmaker[AsyncSession]
) -> None:
    surface = RecordingSurface()
    await relay.request_human(inbound("/human"), surface)
    await relay.request_human(inbound("/human"), surface)
    assert surface.visible_texts() == [Notices.handoff_requested, Notices.handoff_already_open]
    await relay.reset(inbound("/reset"), surface)
    await relay.handle(inbound("hi"), surface)
    assert surface.visible_texts()[-2:] == [Notices.reset, "scripted: hi (#1)"]
    async with db() as session:
        (handoff,) = await session.scalars(select(Handoff))
        assert handoff.status is HandoffStatus.RETURNED and handoff.closed_by == "user:u1"
    first, second = await conversations(db)
    assert first.status is ConversationStatus.CLOSED and second.status is ConversationStatus.BOT


async def test_only_one_open_handoff_per_conversation_is_enforced_by_the_database(
    relay: Relay, db: async_sessionmaker[AsyncSession]
) -> None:
    await relay.request_human(inbound("/human"), RecordingSurface())
    (conversation,) = await conversations(db)
    with pytest.raises(Exception, match=r"(?i)unique"):
        async with db.begin() as session:
            session.add(Handoff(conversation_id=conversation.id, requested_by="user"))


async def test_session_end_closes_the_conversation(
    relay: Relay, agent: ScriptedAgent, db: async_sessionmaker[AsyncSession]
) -> None:
    surface = RecordingSurface()
    agent.script["bye"] = [Message("Bye!"), SessionEnded("end_of_diagram")]
    await relay.handle(inbound("bye"), surface)
    await relay.handle(inbound("new"), surface)
    assert surface.visible_texts() == ["Bye!", Notices.session_ended, "scripted: new (#1)"]
    assert [c.status for c in await conversations(db)] == [ConversationStatus.CLOSED, ConversationStatus.BOT]


async def test_button_press_reaches_the_agent(relay: Relay, agent: ScriptedAgent) -> None:
    button = Button("Yes", {"type": "path-yes"})
    await relay.handle(inbound("Yes", button=button), RecordingSurface())
    assert agent.turns[0].button == button


async def test_demo_agent_end_to_end(db: async_sessionmaker[AsyncSession], clock: Clock) -> None:
    demo = DemoAgent("demo", DemoSettings(first_chunk_delay=0, chunk_delay=0.001))
    policy = RelayPolicy("demo", timedelta(hours=1), timedelta(minutes=10), {})
    relay = Relay(db, {"demo": demo}, policy, now=clock)
    surface = RecordingSurface()
    await relay.handle(inbound("hello"), surface)
    texts: Sequence[str] = surface.visible_texts()
    assert texts[0].startswith("Hi **User u1**!") and texts[1] == "What would you like to try?"
    assert [b.label for b in surface.visible_buttons()[1]] == [
        "Tell me a joke",
        "Show a long answer",
        "Talk to a human",
    ]
    await relay.handle(inbound("Talk to a human", button=surface.visible_buttons()[1][2]), surface)
    assert surface.visible_texts()[-1] == Notices.handoff_requested


async def test_bind_agent_routes_new_conversations_and_rejects_unknown_agents(
    relay: Relay, db: async_sessionmaker[AsyncSession]
) -> None:
    await relay.bindings.bind("discord_channel", "chan-9", "other", by="admin-1")
    await relay.bindings.bind("discord_channel", "chan-9", "other", by="admin-2")  # idempotent
    surface = RecordingSurface()
    here = (("discord_channel", "chan-9"),)
    await relay.handle(inbound("hi", platform="discord", chat="chan-9", binding_scopes=here), surface)
    assert surface.visible_texts() == ["other: hi (#1)"]
    with pytest.raises(ValueError, match="unknown agent 'nope'"):
        await relay.bindings.bind("discord_channel", "chan-9", "nope", by="admin-1")
    async with db() as session:
        (binding,) = await session.scalars(select(AgentBinding))
    assert (binding.agent_name, binding.created_by) == ("other", "admin-2")


async def test_user_over_the_message_rate_is_told_once_and_not_queued(
    db: async_sessionmaker[AsyncSession], agent: ScriptedAgent, clock: Clock
) -> None:
    policy = replace(POLICY, user_messages_per_minute=6, user_burst=3)
    relay = Relay(db, {"scripted": agent}, policy, now=clock)
    surface = RecordingSurface()
    for n in range(8):
        await relay.handle(inbound(f"spam {n}"), surface)
    assert [turn.text for turn in agent.turns] == ["spam 0", "spam 1", "spam 2"]
    assert surface.visible_texts().count(Notices.slow_down.format(seconds=10)) == 1
    await relay.handle(inbound("hi", user="u2"), surface)  # other users are not affected
    assert agent.turns[-1].text == "hi"


async def test_long_input_is_kept_whole_but_shortened_for_the_agent(
    db: async_sessionmaker[AsyncSession], agent: ScriptedAgent, clock: Clock
) -> None:
    relay = Relay(db, {"scripted": agent}, replace(POLICY, max_input_chars=4000), now=clock)
    surface = RecordingSurface()
    text = "ж" * 10_000
    await relay.handle(inbound(text), surface)
    assert len(agent.turns[0].text) == 4000
    assert surface.visible_texts()[0] == Notices.input_shortened.format(limit=4000)
    assert (await transcript(db))[0][2] == text  # nothing the user typed is lost
    await relay.handle(inbound("   "), surface)  # empty messages are not turns
    assert len(agent.turns) == 1


async def test_blocked_users_are_ignored_until_unblocked(relay: Relay, agent: ScriptedAgent) -> None:
    await relay.blocks.block("telegram", "u1", by="discord:mod")
    surface = RecordingSurface()
    await relay.handle(inbound("hello", platform="telegram"), surface)
    assert agent.turns == [] and surface.visible_texts() == []
    await relay.handle(inbound("hello", platform="discord"), surface)  # the same id elsewhere is someone else
    assert len(agent.turns) == 1
    assert await relay.blocks.unblock("telegram", "u1") is not None
    assert await relay.blocks.unblock("telegram", "u1") is None
    await relay.handle(inbound("hello again", platform="telegram"), surface)
    assert agent.turns[-1].text == "hello again"


async def test_reply_cut_off_by_a_crash_is_reported_once_by_its_own_instance(
    db: async_sessionmaker[AsyncSession], clock: Clock
) -> None:
    gate = asyncio.Event()
    agent = ScriptedAgent(gate=gate)
    agent.script["slow"] = [TextDelta("Half an ans")]
    crashed = Relay(db, {"scripted": agent}, POLICY, now=clock)
    surface = RecordingSurface()
    turn = asyncio.create_task(crashed.handle(inbound("slow"), surface))
    gate.set()
    await surface.wait_for(lambda: surface.visible_texts() == ["Half an ans"])
    turn.cancel()  # the process dies here
    with pytest.raises(asyncio.CancelledError):
        await turn
    other = Relay(db, {"scripted": agent}, replace(POLICY, instance="other"), now=clock)
    assert await recover(other, lambda *_: surface) == 0  # not its reply to recover
    restarted = Relay(db, {"scripted": agent}, POLICY, now=clock)
    places: list[tuple[str, str, str]] = []

    def surface_for(platform: str, chat_id: str, thread_id: str) -> RecordingSurface:
        places.append((platform, chat_id, thread_id))
        return surface

    assert await recover(restarted, surface_for) == 1
    assert places == [("console", "c1", "")]
    assert surface.visible_texts()[-1] == Notices.interrupted.format(asked="slow")
    assert await recover(restarted, surface_for) == 0  # reported once
    entries = await transcript(db)
    assert [(role, text) for _, role, text in entries] == [
        (Role.USER, "slow"),
        (Role.SYSTEM, "reply interrupted by a restart"),
    ]


async def test_a_new_users_first_messages_in_two_chats_at_once_make_one_user(
    db: async_sessionmaker[AsyncSession],
) -> None:
    demo = DemoAgent("demo", DemoSettings(first_chunk_delay=0, chunk_delay=0))
    relay = Relay(db, {"demo": demo}, replace(POLICY, default_agent="demo"))
    here, there = RecordingSurface(), RecordingSurface()
    await asyncio.gather(
        relay.handle(inbound("hello", chat="dm"), here),
        relay.handle(inbound("hello", chat="channel"), there),
    )
    async with db() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 1
    assert here.visible_texts() and there.visible_texts()


async def test_a_message_delivered_to_two_processes_is_answered_once(
    db: async_sessionmaker[AsyncSession],
) -> None:
    def process() -> Relay:
        demo = DemoAgent("demo", DemoSettings(first_chunk_delay=0, chunk_delay=0))
        return Relay(db, {"demo": demo}, replace(POLICY, default_agent="demo"))

    first, second = process(), process()
    here, there = RecordingSurface(), RecordingSurface()
    message = inbound("hello", message_id="42")
    results = await asyncio.gather(first.handle(message, here), second.handle(message, there))
    assert sorted(result is None for result in results) == [False, True]
    assert sorted(bool(surface.visible_texts()) for surface in (here, there)) == [False, True]

    # Redelivered after a restart (Telegram resends updates it has no acknowledgement for): dropped.
    again = RecordingSurface()
    assert await process().handle(message, again) is None and again.visible_texts() == []
    # A new message, and the same message id in another chat, are answered.
    assert await first.handle(inbound("more", message_id="43"), here) is not None
    assert await first.handle(inbound("hi", chat="c2", message_id="42"), here) is not None
    async with db() as session:
        users = await session.scalar(
            select(func.count()).select_from(TranscriptEntry).where(TranscriptEntry.role == Role.USER)
        )
    assert users == 3


async def test_blocked_users_cannot_reset_or_ask_for_a_human(
    db: async_sessionmaker[AsyncSession], agent: ScriptedAgent
) -> None:
    relay = Relay(db, {"scripted": agent, "other": ScriptedAgent()}, POLICY)
    surface = RecordingSurface()
    await relay.handle(inbound("hello"), surface)
    await relay.blocks.block("console", "u1", by="discord:mod")
    shown = surface.visible_texts()
    await relay.request_human(inbound("/human"), surface)
    await relay.reset(inbound("/reset"), surface)
    assert surface.visible_texts() == shown
    async with db() as session:
        assert await session.scalar(select(func.count()).select_from(Handoff)) == 0
    assert await relay.open_handoff_of_user("console", "u1") is None


async def test_a_timed_block_runs_out_by_itself(relay: Relay, agent: ScriptedAgent, clock: Clock) -> None:
    await relay.blocks.block(
        "console", "u1", by="discord:mod", until=clock.now + timedelta(hours=2), reason="spam"
    )
    block = await relay.blocks.active("console", "u1")
    assert block is not None and block.reason == "spam" and block.by == "discord:mod"
    surface = RecordingSurface()
    await relay.handle(inbound("hello"), surface)
    assert agent.turns == [] and surface.visible_texts() == []
    clock.now += timedelta(hours=2)
    assert await relay.blocks.active("console", "u1") is None
    await relay.handle(inbound("hello again"), surface)
    assert [turn.text for turn in agent.turns] == ["hello again"]


async def test_human_and_reset_pay_the_message_rate_and_one_handoff_per_user(
    db: async_sessionmaker[AsyncSession], agent: ScriptedAgent
) -> None:
    relay = Relay(db, {"scripted": agent}, replace(POLICY, user_burst=3, user_messages_per_minute=1))
    surface = RecordingSurface()
    await relay.request_human(inbound("/human"), surface)
    await relay.request_human(inbound("/human", chat="c2"), surface)  # another conversation
    await relay.request_human(inbound("/human"), surface)
    for _ in range(6):
        await relay.request_human(inbound("/human", chat="c3"), surface)
        await relay.reset(inbound("/reset", chat="c4"), surface)
    assert surface.visible_texts() == [
        Notices.handoff_requested,
        Notices.handoff_open_elsewhere,
        Notices.handoff_already_open,
        Notices.slow_down.format(seconds=60),  # once, and nothing else gets through
    ]
    async with db() as session:
        assert await session.scalar(select(func.count()).select_from(Handoff)) == 1


async def test_messages_queued_behind_a_reply_cut_off_by_a_crash_are_answered_on_the_next_start(
    db: async_sessionmaker[AsyncSession], clock: Clock
) -> None:
    gate = asyncio.Event()
    agent = ScriptedAgent(gate=gate)
    crashed = Relay(db, {"scripted": agent}, POLICY, now=clock)
    surface = RecordingSurface()
    first = asyncio.create_task(crashed.handle(inbound("slow", message_id="1"), surface))
    await asyncio.wait_for(agent.entered.wait(), 5)
    queued = [
        asyncio.create_task(crashed.handle(inbound(text, message_id=str(n)), surface))
        for n, text in enumerate(("and then?", "hello?", "anyone?"), start=2)
    ]

    async def all_recorded() -> None:
        while await unhandled(db) != 3:  # noqa: ASYNC110 - the database has no event to wait on
            await asyncio.sleep(0.01)

    await asyncio.wait_for(all_recorded(), 5)  # recorded while they wait behind "slow"
    for task in (first, *queued):  # the process dies here (kill -9: nothing else runs)
        task.cancel()
    await asyncio.gather(first, *queued, return_exceptions=True)
    assert agent.turns[0].text == "slow" and len(agent.turns) == 1

    gate.set()
    restarted = Relay(db, {"scripted": agent}, POLICY, now=clock)
    assert await recover(restarted, lambda *_: surface) == 4
    assert surface.visible_texts()[-4:] == [
        Notices.interrupted.format(asked="slow"),
        "scripted: and then? (#1)",
        "scripted: hello? (#2)",
        "scripted: anyone? (#3)",
    ]
    assert await unhandled(db) == 0
    assert await recover(restarted, lambda *_: surface) == 0  # answered once
    # Telegram redelivers the unconfirmed updates after the restart: they were answered already.
    again = RecordingSurface()
    assert await restarted.handle(inbound("hello?", message_id="3"), again) is None
    assert again.visible_texts() == []


async def test_files_of_messages_a_crash_left_unanswered_are_named_for_the_user_to_send_again(
    db: async_sessionmaker[AsyncSession], clock: Clock
) -> None:
    """The inbox keeps each file's metadata, not its download link: after a restart the user is told
    which files to send again, the text is answered, and a message of files only is not answered empty."""
    gate = asyncio.Event()
    agent = ScriptedAgent(gate=gate)
    crashed = Relay(db, {"scripted": agent}, POLICY, now=clock)
    surface = RecordingSurface()
    first = asyncio.create_task(crashed.handle(inbound("slow", message_id="1"), surface))
    await asyncio.wait_for(agent.entered.wait(), 5)
    shot = Attachment(kind="image", mime="image/png", size=2048, name="screen.png")
    pdf = Attachment(kind="document", mime="application/pdf", size=4096, name="bill.pdf")
    voice = Attachment(kind="voice", mime="audio/ogg", size=900, name="", duration=3)
    queued = [
        asyncio.create_task(
            crashed.handle(inbound("see this", message_id="2", attachments=(shot,)), surface)
        ),
        asyncio.create_task(crashed.handle(inbound("", message_id="3", attachments=(pdf, voice)), surface)),
    ]

    async def all_recorded() -> None:
        while await unhandled(db) != 2:  # noqa: ASYNC110 - the database has no event to wait on
            await asyncio.sleep(0.01)

    await asyncio.wait_for(all_recorded(), 5)
    for task in (first, *queued):  # the process dies here
        task.cancel()
    await asyncio.gather(first, *queued, return_exceptions=True)

    gate.set()
    restarted = Relay(db, {"scripted": agent}, POLICY, now=clock)
    await recover(restarted, lambda *_: surface)
    texts = surface.visible_texts()
    assert Notices.file_lost.format(files="your image screen.png") in texts
    both = Notices.files_lost.format(files="your file bill.pdf and your voice message")
    assert both in texts
    assert "scripted: see this (#1)" in texts
    assert [turn.text for turn in agent.turns] == ["slow", "see this"]  # nothing answered empty
    assert await unhandled(db) == 0
    async with db() as session:  # handled rows keep no metadata
        assert await session.scalar(select(func.count(InboundMessage.attachments))) == 0


async def unhandled(db: async_sessionmaker[AsyncSession]) -> int:
    async with db() as session:
        count = await session.scalar(
            select(func.count()).select_from(InboundMessage).where(InboundMessage.handled_at.is_(None))
        )
    return count or 0


async def test_reset_and_human_in_a_loop_open_at_most_the_hourly_handoff_limit(
    db: async_sessionmaker[AsyncSession], agent: ScriptedAgent, clock: Clock
) -> None:
    policy = replace(POLICY, handoffs_per_hour=3, user_burst=50, user_messages_per_minute=600)
    relay = Relay(db, {"scripted": agent}, policy, now=clock)
    surface = RecordingSurface()
    for _ in range(5):
        await relay.request_human(inbound("/human"), surface)
        await relay.reset(inbound("/reset"), surface)
    answers = [text for text in surface.visible_texts() if text != Notices.reset]
    assert answers == [Notices.handoff_requested] * 3 + [Notices.handoff_too_often] * 2
    clock.now += timedelta(hours=1)
    await relay.request_human(inbound("/human"), surface)
    assert surface.visible_texts()[-1] == Notices.handoff_requested
    async with db() as session:
        assert await session.scalar(select(func.count()).select_from(Handoff)) == 4


async def test_recovery_leaves_alone_the_replies_this_run_is_writing(
    db: async_sessionmaker[AsyncSession], clock: Clock
) -> None:
    """Recovery runs while the process already serves: a reply started meanwhile is no crash leftover."""
    gate = asyncio.Event()
    agent = ScriptedAgent(gate=gate)
    relay = Relay(db, {"scripted": agent}, POLICY, now=clock)
    surface = RecordingSurface()
    turn = asyncio.create_task(relay.handle(inbound("slow"), surface))
    await asyncio.wait_for(agent.entered.wait(), 5)
    assert await recover(relay, lambda *_: surface) == 0
    gate.set()
    await turn
    assert surface.visible_texts() == ["scripted: slow (#1)"]


async def test_two_requests_for_a_human_at_once_in_two_places_open_one(
    db: async_sessionmaker[AsyncSession], agent: ScriptedAgent
) -> None:
    relay = Relay(db, {"scripted": agent}, POLICY)
    here, there = RecordingSurface(), RecordingSurface()
    await relay.handle(inbound("hello", chat="dm"), here)  # the user's row exists, as it would
    await asyncio.gather(
        relay.request_human(inbound("/human", chat="dm"), here),
        relay.request_human(inbound("/human", chat="channel"), there),
    )
    async with db() as session:
        assert await session.scalar(select(func.count()).select_from(Handoff)) == 1
    answers = sorted([here.visible_texts()[-1], there.visible_texts()[-1]])
    assert answers == sorted([Notices.handoff_requested, Notices.handoff_open_elsewhere])


async def test_a_turn_writes_once_before_the_agent_is_called(db: async_sessionmaker[AsyncSession]) -> None:
    """A message whose turn comes at once is recorded in the one transaction that gives the turn
    everything it needs before the agent is called (conversation, transcript, pending mark, history)."""
    engine = db.kw["bind"].sync_engine
    commits: list[str] = []
    listener = lambda connection: commits.append("commit")  # noqa: E731
    event.listen(engine, "commit", listener)
    seen_at_call: list[int] = []

    class Counting(ScriptedAgent):
        async def stream(self, turn: Turn) -> AsyncIterator[AgentEvent]:
            seen_at_call.append(len(commits))
            async for agent_event in super().stream(turn):
                yield agent_event

    relay = Relay(db, {"scripted": Counting()}, POLICY)
    try:
        for text in ("hello", "again"):  # a new user and conversation, then an existing one
            commits.clear()
            await relay.handle(inbound(text), RecordingSurface())
            assert seen_at_call[-1] == 1, text
    finally:
        event.remove(engine, "commit", listener)


class AskedAgain(ScriptedAgent):
    """A scripted agent that can be asked a turn again (as an OpenAI-compatible one can)."""

    def regenerate(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        return self.stream(turn)


@pytest.mark.parametrize("offered", [True, False])
async def test_reply_control_buttons_follow_the_policy(
    db: async_sessionmaker[AsyncSession], offered: bool
) -> None:
    agent = AskedAgain()
    policy = replace(POLICY, bindings={}, stop_button=offered, regenerate_button=offered)
    relay = Relay(db, {"scripted": agent}, policy)
    surface = RecordingSurface()
    feed = agent.feed("hi")
    reply = asyncio.create_task(relay.handle(inbound("hi"), surface))
    await feed.put(TextDelta("Hel"))
    await surface.wait_for(lambda: surface.count("send") == 1)
    await feed.put(TextDelta("lo"))
    await feed.put(None)
    await reply
    english = ControlNotices()
    stop, again = (
        control_button(Control.STOP, "u1", english),
        control_button(Control.REGENERATE, "u1", english),
    )
    assert surface.requests[0].buttons == ((stop,) if offered else ())
    assert surface.visible_texts() == ["Hello"]
    assert surface.visible_buttons() == [(again,) if offered else ()]


ENGLISH = Catalogue().words()


async def test_regenerate_is_admitted_like_a_message(db: async_sessionmaker[AsyncSession]) -> None:
    """Regenerating asks the provider again: a blocked user's press does nothing."""
    agent = AskedAgain()
    relay = Relay(db, {"scripted": agent}, replace(POLICY, bindings={}))
    surface = RecordingSurface()
    await relay.handle(inbound("hi"), surface)
    (message_id,) = surface.posted
    answers: list[str | None] = []

    async def acknowledge(notice: str | None) -> None:
        answers.append(notice)

    await relay.blocks.block("console", "u1", by="test")
    await relay.regenerate(inbound("", message_id=message_id), surface, acknowledge, ENGLISH)
    assert answers == [None] and len(agent.turns) == 1
    await relay.blocks.unblock("console", "u1")
    await relay.regenerate(inbound("", message_id=message_id), surface, acknowledge, ENGLISH)
    assert answers == [None, None] and [turn.text for turn in agent.turns] == ["hi", "hi"]
    assert surface.visible_texts() == ["scripted: hi (#2)"] and len(surface.posted) == 1


async def test_a_reply_its_user_stops_still_hands_over_as_the_agent_asked(
    db: async_sessionmaker[AsyncSession], agent: ScriptedAgent
) -> None:
    """The agent said it would fetch a human, then kept talking; the user stops the rest. Only a stop
    by a moderator taking over skips the request (the conversation is with them already)."""
    relay = Relay(db, {"scripted": agent}, POLICY)
    surface = RecordingSurface()
    feed = agent.feed("refund")
    reply = asyncio.create_task(relay.handle(inbound("refund"), surface))
    await feed.put(HandoffRequested("refund"))
    await feed.put(TextDelta("Let me explain while you wait"))
    await surface.wait_for(lambda: surface.count("send") == 1)
    assert relay.stop(inbound(""))
    await reply
    assert Notices.handoff_requested in surface.visible_texts()


async def test_a_session_the_agent_ends_as_a_moderator_takes_over_stays_with_the_moderator(
    db: async_sessionmaker[AsyncSession], agent: ScriptedAgent
) -> None:
    relay = Relay(db, {"scripted": agent}, POLICY)
    await relay.handle(inbound("hi"), RecordingSurface())
    conversation, _ = await relay.conversations.current(inbound("hi"))
    assert conversation is not None
    async with db.begin() as session:  # a takeover commits while the turn is still finishing
        (await session.get_one(Conversation, conversation.id)).status = ConversationStatus.HUMAN
    await relay.conversations.finish_turn(TurnEnd(conversation.id, None, ended=True))
    async with db() as session:
        assert (await session.get_one(Conversation, conversation.id)).status == ConversationStatus.HUMAN
