"""The platform-neutral handoff service on SQLite and PostgreSQL: notify, claim race, relay, close, timers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import AgentEvent, HandoffRequested, Message, TextDelta, Turn, TurnEnd
from bridges.handoff import HandoffPolicy, HandoffService, HandoffView, UserNotices
from bridges.relay import Notices, Relay
from models import (
    Conversation,
    ConversationStatus,
    Handoff,
    HandoffStatus,
    PendingDelivery,
    Role,
    TranscriptEntry,
)
from tests.surfaces import RecordingSurface
from tests.test_relay import POLICY, Clock, ScriptedAgent, inbound


@dataclass
class RecordingDesk:
    name: str = "desk"
    place_keys: tuple[str, ...] = ("thread",)
    opened: list[HandoffView] = field(default_factory=list)
    updates: list[HandoffView] = field(default_factory=list)
    posts: list[tuple[Any, str, str]] = field(default_factory=list)
    logs: list[tuple[str, str | None]] = field(default_factory=list)
    notes: list[tuple[Any, str]] = field(default_factory=list)

    async def open(self, view: HandoffView) -> dict[str, Any]:
        self.opened.append(view)
        return {"thread": f"t{view.handoff_id}"}

    async def update(self, refs: Mapping[str, Any], view: HandoffView) -> None:
        self.updates.append(view)

    async def post(self, refs: Mapping[str, Any], author: str, text: str) -> None:
        self.posts.append((refs["thread"], author, text))

    async def note(self, refs: Mapping[str, Any], text: str) -> None:
        self.notes.append((refs["thread"], text))

    async def log(self, view: HandoffView, summary: str, transcript: str | None) -> None:
        self.logs.append((summary, transcript))


class World:
    """A relay with a scripted agent, one desk and a way to reach console users; rebuildable for restarts."""

    def __init__(self, db: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self.db, self.clock = db, clock
        self.desk, self.user = RecordingDesk(), RecordingSurface()
        self.agent = ScriptedAgent()
        self.agent.script["help"] = [
            Message("Let me get a person."),
            HandoffRequested("billing question"),
            TurnEnd({}),
        ]
        self.restart()

    def restart(self) -> None:
        self.handoffs = HandoffService(
            self.db,
            HandoffPolicy(expire_after=timedelta(minutes=10), escalate_after=timedelta(minutes=3)),
            desks=[self.desk],
            surfaces=lambda platform, chat_id, thread_id: self.user if chat_id == "c1" else None,
            now=self.clock,
        )
        self.relay = Relay(self.db, {"scripted": self.agent}, POLICY, handoffs=self.handoffs, now=self.clock)

    async def handoff_id(self) -> int:
        async with self.db() as session:
            return (await session.scalars(select(Handoff.id).order_by(Handoff.id.desc()))).first() or 0


async def test_agent_handoff_notifies_desks_and_holds_user_messages(
    db: async_sessionmaker[AsyncSession],
) -> None:
    world = World(db, Clock())
    surface = RecordingSurface()
    await world.relay.handle(inbound("hello"), surface)
    await world.relay.handle(inbound("help"), surface)
    (view,) = world.desk.opened
    assert (view.reason, view.user_name, view.platform, view.status) == (
        "billing question",
        "User u1",
        "console",
        HandoffStatus.REQUESTED,
    )
    assert view.recent[-2:] == (("user", "help"), ("agent", "Let me get a person."))
    await world.relay.handle(inbound("are you there?"), surface)
    await world.relay.handle(inbound("hello??"), surface)
    assert [post[2] for post in world.desk.posts] == ["are you there?", "hello??"]
    assert [turn.text for turn in world.agent.turns] == ["hello", "help"]  # never reached the agent
    assert surface.visible_texts()[-1] == Notices.handoff_pending
    async with db() as session:
        handoff = await session.get_one(Handoff, view.handoff_id)
        assert handoff.notification_refs == {"desk": {"thread": f"t{view.handoff_id}"}}


async def test_simultaneous_claims_have_exactly_one_winner(db: async_sessionmaker[AsyncSession]) -> None:
    world = World(db, Clock())
    await world.relay.handle(inbound("help"), RecordingSurface())
    handoff_id = await world.handoff_id()
    # Separate service instances, as if every moderator pressed Claim in a different process.
    services = [HandoffService(db, world.handoffs.policy, now=world.clock) for _ in range(8)]
    outcomes = await asyncio.gather(
        *(service.claim(handoff_id, f"discord:{n}", f"Mod {n}") for n, service in enumerate(services))
    )
    winners = [outcome for outcome in outcomes if outcome.won]
    assert len(winners) == 1
    assert {outcome.claimer_name for outcome in outcomes} == {winners[0].claimer_name}
    async with db() as session:
        handoff = await session.get_one(Handoff, handoff_id)
        conversation = await session.get_one(Conversation, handoff.conversation_id)
    assert handoff.status is HandoffStatus.CLAIMED and handoff.claimed_by_name == winners[0].claimer_name
    assert conversation.status is ConversationStatus.HUMAN


async def test_claim_relay_and_resolve_round_trip(db: async_sessionmaker[AsyncSession]) -> None:
    world = World(db, Clock())
    surface = RecordingSurface()
    await world.relay.handle(inbound("help"), surface)
    handoff_id = await world.handoff_id()
    assert (await world.handoffs.claim(handoff_id, "discord:7", "Maya")).won
    assert world.user.visible_texts()[-1] == UserNotices.claimed.format(name="Maya")
    assert world.desk.updates[-1].claimed_by_name == "Maya"
    assert not await world.handoffs.moderator_says(handoff_id, "discord:8", "Intruder", "hi")
    assert await world.handoffs.moderator_says(
        handoff_id, "discord:7", "Maya", "Hi, I can help with billing."
    )
    assert world.user.visible_texts()[-1] == "Maya (moderator): Hi, I can help with billing."
    await world.relay.handle(inbound("thanks, refund please"), surface)
    assert world.desk.posts[-1] == (f"t{handoff_id}", "User u1", "thanks, refund please")
    assert surface.visible_texts()[-1] != Notices.handoff_pending  # claimed: no "waiting" notice
    assert await world.handoffs.close(handoff_id, HandoffStatus.RESOLVED, "discord:7", "Maya")
    assert not await world.handoffs.close(handoff_id, HandoffStatus.RETURNED, "discord:7", "Maya")
    assert world.user.visible_texts()[-1] == UserNotices.resolved
    summary, transcript = world.desk.logs[-1]
    assert "resolved by Maya" in summary and "claimed by Maya" in summary
    assert transcript is not None
    for line in ("user: help", "moderator discord:7: Hi, I can help with billing.", "thanks, refund please"):
        assert line in transcript
    await world.relay.handle(inbound("one more thing"), surface)
    assert world.agent.turns[-1].text == "one more thing"  # back to the bot, same conversation
    async with db() as session:
        roles = [
            row.role for row in await session.scalars(select(TranscriptEntry).order_by(TranscriptEntry.id))
        ]
    assert Role.MODERATOR in roles


async def test_unclaimed_request_escalates_then_expires(db: async_sessionmaker[AsyncSession]) -> None:
    clock = Clock()
    world = World(db, clock)
    await world.relay.handle(inbound("help"), RecordingSurface())
    handoff_id = await world.handoff_id()
    clock.now += timedelta(minutes=2)
    await world.handoffs.tick()
    assert not world.desk.updates
    clock.now += timedelta(minutes=2)
    await world.handoffs.tick()
    await world.handoffs.tick()  # escalation happens once
    assert [view.escalated for view in world.desk.updates] == [True]
    world.restart()  # timers resume from the database after a restart
    clock.now += timedelta(minutes=7)
    await world.handoffs.tick()
    async with db() as session:
        handoff = await session.get_one(Handoff, handoff_id)
    assert handoff.status is HandoffStatus.EXPIRED and handoff.closed_by == "timer"
    assert world.user.visible_texts()[-1] == UserNotices.expired


async def test_restart_while_claimed_keeps_the_claim(db: async_sessionmaker[AsyncSession]) -> None:
    world = World(db, Clock())
    await world.relay.handle(inbound("help"), RecordingSurface())
    handoff_id = await world.handoff_id()
    await world.handoffs.claim(handoff_id, "telegram:5", "Sam")
    world.restart()
    await world.relay.handle(inbound("still there?"), RecordingSurface())
    assert world.desk.posts[-1][2] == "still there?"
    assert await world.handoffs.moderator_says(handoff_id, "telegram:5", "Sam", "Yes!")
    assert await world.handoffs.close(handoff_id, HandoffStatus.RETURNED, "telegram:5", "Sam")
    assert world.user.visible_texts()[-1] == UserNotices.returned


class ResumableAgent(ScriptedAgent):
    """Says something when the bot takes over again, as Voiceflow does on a `continue` action."""

    def __init__(self) -> None:
        super().__init__()
        self.resumed: list[Turn] = []

    async def resume(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        self.resumed.append(turn)
        yield TextDelta("I'm back. ")
        yield TextDelta("Anything else?")
        yield TurnEnd({**turn.provider_state, "resumed": True})


async def test_handing_back_tells_a_resumable_agent_and_shows_its_reply(
    db: async_sessionmaker[AsyncSession],
) -> None:
    world = World(db, Clock())
    world.agent = ResumableAgent()
    world.agent.script["help"] = [HandoffRequested("stuck"), TurnEnd({"count": 1})]
    world.restart()
    await world.relay.handle(inbound("help"), RecordingSurface())
    handoff_id = await world.handoff_id()
    await world.handoffs.claim(handoff_id, "discord:7", "Maya")
    await world.handoffs.close(handoff_id, HandoffStatus.RETURNED, "discord:7", "Maya")
    assert world.user.visible_texts()[-2:] == [UserNotices.returned, "I'm back. Anything else?"]
    (turn,) = world.agent.resumed
    assert turn.text == "" and turn.provider_state == {"count": 1}
    async with db() as session:
        conversation = (await session.scalars(select(Conversation))).one()
    assert conversation.provider_state == {"count": 1, "resumed": True}


async def test_agents_that_cannot_resume_are_left_alone(db: async_sessionmaker[AsyncSession]) -> None:
    world = World(db, Clock())
    await world.relay.handle(inbound("help"), RecordingSurface())
    handoff_id = await world.handoff_id()
    await world.handoffs.close(handoff_id, HandoffStatus.RESOLVED, "discord:7", "Maya")
    assert world.user.visible_texts()[-1] == UserNotices.resolved
    assert [turn.text for turn in world.agent.turns] == ["help"]


async def test_a_process_that_cannot_reach_the_user_queues_for_one_that_can(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """A moderator claims and answers in a process without the user's platform (say Telegram runs
    elsewhere): the words wait in the database and reach the user in order, exactly once."""
    world = World(db, Clock())  # "process A": serves the user (console chat c1)
    await world.relay.handle(inbound("help"), RecordingSurface())
    handoff_id = await world.handoff_id()
    elsewhere = HandoffService(db, world.handoffs.policy, now=world.clock)  # "process B": cannot reach
    assert (await elsewhere.claim(handoff_id, "discord:7", "Maya")).won
    for text in ("one", "two", "three"):
        assert await elsewhere.moderator_says(handoff_id, "discord:7", "Maya", text)
    assert world.user.visible_texts() == []
    assert await elsewhere.deliver_pending() == 0  # still nobody there to deliver

    twin = HandoffService(  # a second process that can also reach the user: no double delivery
        db, world.handoffs.policy, surfaces=lambda *place: world.user, now=world.clock
    )
    delivered = await asyncio.gather(world.handoffs.deliver_pending(), twin.deliver_pending())
    assert sum(delivered) == 4
    assert world.user.visible_texts() == [
        UserNotices.claimed.format(name="Maya"),
        "Maya (moderator): one",
        "Maya (moderator): two",
        "Maya (moderator): three",
    ]
    # Handed back elsewhere too: the notice waits for the timers that every process runs.
    assert await elsewhere.close(handoff_id, HandoffStatus.RETURNED, "discord:7", "Maya")
    await world.handoffs.tick()  # the timers every process runs deliver it
    assert world.user.visible_texts()[-1] == UserNotices.returned
    assert await world.handoffs.deliver_pending() == 0


async def test_an_item_taken_by_a_process_that_died_is_taken_over(
    db: async_sessionmaker[AsyncSession],
) -> None:
    world = World(db, Clock())
    await world.relay.handle(inbound("help"), RecordingSurface())
    handoff_id = await world.handoff_id()
    elsewhere = HandoffService(db, world.handoffs.policy, now=world.clock)
    assert (await elsewhere.claim(handoff_id, "discord:7", "Maya")).won
    async with db() as session:
        (item_id,) = (await session.scalars(select(PendingDelivery.id))).all()
    dead = HandoffService(db, world.handoffs.policy, now=world.clock)
    assert await dead._take(item_id, world.clock())  # taken, then the process died before delivering
    assert await world.handoffs.deliver_pending() == 0
    world.clock.now += timedelta(minutes=2)
    assert await world.handoffs.deliver_pending() == 1
    assert world.user.visible_texts() == [UserNotices.claimed.format(name="Maya")]
