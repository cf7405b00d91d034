"""The platform-neutral handoff service on SQLite and PostgreSQL: notify, claim race, relay, close, timers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Executable, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import migrations
from agents.base import AgentEvent, Attachment, HandoffRequested, Message, TextDelta, Turn, TurnEnd
from bridges.handoff import HandoffService
from bridges.handoff_notices import UserNotices
from bridges.handoff_policy import HandoffPolicy
from bridges.handoff_timers import HandoffTimers
from bridges.moderator_desk import HandoffView
from bridges.relay import Notices, Relay
from bridges.surface import SurfaceError
from fakes.telegram.harness import ScriptedAgent
from models import (
    Conversation,
    ConversationStatus,
    Handoff,
    HandoffPlace,
    HandoffStatus,
    PendingDelivery,
    Role,
    TranscriptEntry,
    User,
    create_engine,
    place_key,
    session_factory,
    utcnow,
)
from tests.surfaces import RecordingSurface
from tests.test_relay import POLICY, Clock, inbound


@dataclass
class RecordingDesk:
    name: str = "desk"
    place_keys: tuple[str, ...] = ("thread",)
    opened: list[HandoffView] = field(default_factory=list)
    updates: list[HandoffView] = field(default_factory=list)
    posts: list[tuple[Any, str, str]] = field(default_factory=list)
    logs: list[tuple[str, str | None]] = field(default_factory=list)
    notes: list[tuple[Any, str]] = field(default_factory=list)
    overdues: list[HandoffView] = field(default_factory=list)

    async def open(self, view: HandoffView) -> dict[str, Any]:
        self.opened.append(view)
        return {"thread": f"t{view.handoff_id}"}

    async def update(self, refs: Mapping[str, Any], view: HandoffView) -> None:
        self.updates.append(view)

    async def post(self, refs: Mapping[str, Any], author: str, text: str) -> None:
        self.posts.append((refs["thread"], author, text))

    upload_limit = 10 * 1024 * 1024

    async def post_file(self, refs: Mapping[str, Any], author: str, file: Attachment) -> None:
        self.posts.append((refs["thread"], author, f"[file {file.name}]"))

    async def note(self, refs: Mapping[str, Any], text: str) -> None:
        self.notes.append((refs["thread"], text))

    async def log(self, view: HandoffView, summary: str, transcript: str | None) -> None:
        self.logs.append((summary, transcript))

    async def overdue(self, refs: Mapping[str, Any], view: HandoffView) -> None:
        self.overdues.append(view)


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
    for words in ("one", "two", "three"):
        assert await elsewhere.moderator_says(handoff_id, "discord:7", "Maya", words)
    assert world.user.visible_texts() == []
    assert await elsewhere.deliveries.deliver_pending() == 0  # still nobody there to deliver

    twin = HandoffService(  # a second process that can also reach the user: no double delivery
        db, world.handoffs.policy, surfaces=lambda *place: world.user, now=world.clock
    )
    delivered = await asyncio.gather(
        world.handoffs.deliveries.deliver_pending(), twin.deliveries.deliver_pending()
    )
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
    assert await world.handoffs.deliveries.deliver_pending() == 0


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
    # taken, then the process died before delivering:
    assert await dead.deliveries.take(item_id, world.clock())
    assert await world.handoffs.deliveries.deliver_pending() == 0
    world.clock.now += timedelta(minutes=2)
    assert await world.handoffs.deliveries.deliver_pending() == 1
    assert world.user.visible_texts() == [UserNotices.claimed.format(name="Maya")]


async def test_a_queued_item_whose_send_fails_stays_and_holds_back_later_ones(
    db: async_sessionmaker[AsyncSession],
) -> None:
    world = World(db, Clock())
    await world.relay.handle(inbound("help"), RecordingSurface())
    handoff_id = await world.handoff_id()
    elsewhere = HandoffService(db, world.handoffs.policy, now=world.clock)  # cannot reach the user
    assert (await elsewhere.claim(handoff_id, "discord:7", "Maya")).won
    assert await elsewhere.moderator_says(handoff_id, "discord:7", "Maya", "one")
    world.user.fail_next("send", SurfaceError("network down"))
    assert await world.handoffs.deliveries.deliver_pending() == 0
    async with db() as session:
        kept = [
            (item.text, item.taken_by)
            for item in await session.scalars(select(PendingDelivery).order_by(PendingDelivery.id))
        ]
    assert kept == [(UserNotices.claimed.format(name="Maya"), None), ("Maya (moderator): one", None)]
    assert world.user.visible_texts() == []  # "one" did not jump ahead of the notice that failed
    assert await world.handoffs.deliveries.deliver_pending() == 2
    assert world.user.visible_texts() == [UserNotices.claimed.format(name="Maya"), "Maya (moderator): one"]


# -- lookups that scale ------------------------------------------------------------------------------

OPEN_HANDOFFS = 20_000


async def seed_open_handoffs(db: async_sessionmaker[AsyncSession], count: int, now: datetime) -> None:
    """`count` open handoffs (every other one claimed), each with a thread on "desk", by bulk insert."""
    async with db.begin() as session:
        user_id = await session.scalar(
            insert(User)
            .values(platform="console", external_id="bulk", display_name="Bulk")
            .returning(User.id)
        )
        await session.execute(
            insert(Conversation),
            [
                {"id": n, "user_id": user_id, "platform": "console", "chat_id": f"bulk{n}", "agent_name": "x"}
                for n in range(1, count + 1)
            ],
        )
        await session.execute(
            insert(Handoff),
            [
                {
                    "id": n,
                    "conversation_id": n,
                    "status": HandoffStatus.CLAIMED if n % 2 else HandoffStatus.REQUESTED,
                    "requested_by": "user",
                    "notification_refs": {"desk": {"thread": f"bulk-t{n}"}},
                    "requested_at": now,
                    "due_at": None if n % 2 else now + timedelta(minutes=3),
                    "expire_at": None if n % 2 else now + timedelta(minutes=10),
                }
                for n in range(1, count + 1)
            ],
        )
        await session.execute(
            insert(HandoffPlace),
            [
                {"desk": "desk", "place": place_key("thread", f"bulk-t{n}"), "handoff_id": n}
                for n in range(1, count + 1)
            ],
        )
        if session.bind.dialect.name == "postgresql":  # explicit ids: move the sequences past them
            for table in ("conversations", "handoffs"):
                sequence = f"pg_get_serial_sequence('{table}', 'id')"
                await session.execute(text(f"SELECT setval({sequence}, (SELECT max(id) FROM {table}))"))
    async with db() as session:  # fresh statistics, as autovacuum would have them on a live database
        await session.execute(text("ANALYZE"))


async def plan(db: async_sessionmaker[AsyncSession], query: Executable) -> Any:
    """SQLite: EXPLAIN QUERY PLAN's lines. PostgreSQL: the plan tree of EXPLAIN ANALYZE (it runs)."""
    async with db() as session:
        bind = session.bind
        compiled = query.compile(bind, compile_kwargs={"literal_binds": True})
        if bind.dialect.name == "sqlite":
            rows = await session.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
            return [row[-1] for row in rows]
        (document,) = (await session.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled}"))).scalar_one()
        return document["Plan"]


def scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of a PostgreSQL plan that reads a table or an index."""
    found = [node] if "Relation Name" in node or "Index Name" in node else []
    for child in node.get("Plans", []):
        found += scans(child)
    return found


async def assert_bounded(db: async_sessionmaker[AsyncSession], query: Executable, *, rows: int) -> None:
    """The query reads through indexes and no more than `rows` rows from any one of them, with
    `OPEN_HANDOFFS` open: SQLite SEARCHes (never SCANs a table); PostgreSQL has no sequential scan and
    each scan returns at most `rows` (as EXPLAIN ANALYZE counted them)."""
    found = await plan(db, query)
    if isinstance(found, list):
        assert found and all(line.startswith("SEARCH") for line in found), found
        return
    nodes = scans(found)
    assert nodes and all(node["Node Type"] != "Seq Scan" for node in nodes), nodes
    assert all(node["Actual Rows"] <= rows for node in nodes), nodes


@pytest.mark.slow
async def test_lookups_and_timers_stay_indexed_with_twenty_thousand_open_handoffs(
    db: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock()
    await seed_open_handoffs(db, OPEN_HANDOFFS, clock())
    desk = RecordingDesk()
    service = HandoffService(
        db,
        HandoffPolicy(expire_after=timedelta(minutes=10), escalate_after=timedelta(minutes=3)),
        desks=[desk],
        now=clock,
    )

    lookup = service.handoff_at("desk", "thread", "bulk-t12345")
    await assert_bounded(db, lookup, rows=1)
    assert await service.open_handoff_at("desk", "thread", "bulk-t12345") == 12345
    assert await service.open_handoff_at("desk", "thread", "no-such-thread") is None

    await assert_bounded(db, service.timers.due_requests(clock()), rows=0)
    await service.tick()  # nothing is due: no handoff touched, no desk told
    assert desk.updates == [] and desk.logs == []
    for status in ("requested", "claimed"):
        gauge = REGISTRY.get_sample_value("switchboard_open_handoffs", {"status": status})
        assert gauge == OPEN_HANDOFFS // 2

    async with db.begin() as session:  # three requests waited long enough to escalate, one to expire
        for handoff_id, waited in ((2, 4), (4, 5), (6, 6), (8, 11)):
            requested_at = clock() - timedelta(minutes=waited)
            due_at, expire_at = service.timers.for_request(requested_at)
            await session.execute(
                update(Handoff)
                .where(Handoff.id == handoff_id)
                .values(requested_at=requested_at, due_at=due_at, expire_at=expire_at)
            )
    await assert_bounded(db, service.timers.due_requests(clock()), rows=4)
    await service.tick()
    assert sorted(view.handoff_id for view in desk.updates if view.escalated) == [2, 4, 6]
    assert [view.handoff_id for view in desk.updates if view.status is HandoffStatus.EXPIRED] == [8]
    async with db() as session:
        assert [h for h, _ in await session.execute(service.timers.due_requests(clock()))] == []


@pytest.mark.slow
async def test_gauges_count_in_the_database(db: async_sessionmaker[AsyncSession]) -> None:
    """The open-handoff gauges load two numbers, not 20,000 rows; SQLite counts in the index alone."""
    await seed_open_handoffs(db, OPEN_HANDOFFS, utcnow())
    found = await plan(db, HandoffTimers.open_counts())
    if isinstance(found, list):
        assert found and all("COVERING INDEX ix_handoffs_status_" in line for line in found), found
    else:
        assert found["Node Type"] == "Aggregate" and found["Actual Rows"] == 2, found


async def test_a_moderators_thread_finds_its_handoff_until_it_closes_and_after_a_restart(
    db: async_sessionmaker[AsyncSession],
) -> None:
    world = World(db, Clock())
    await world.relay.handle(inbound("help"), RecordingSurface())
    handoff_id = await world.handoff_id()
    thread = f"t{handoff_id}"
    assert await world.handoffs.open_handoff_at("desk", "thread", thread) == handoff_id
    assert await world.handoffs.open_handoff_at("other desk", "thread", thread) is None
    assert await world.handoffs.claim(handoff_id, "discord:7", "Maya")
    world.restart()  # a new service: only the database remembers
    assert await world.handoffs.open_handoff_at("desk", "thread", thread) == handoff_id
    assert await world.handoffs.close(handoff_id, HandoffStatus.RESOLVED, "discord:7", "Maya")
    assert await world.handoffs.open_handoff_at("desk", "thread", thread) is None


async def test_migration_0004_indexes_the_places_of_existing_handoffs_and_downgrades_without_loss(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    db = session_factory(engine)
    try:
        await migrations.upgrade(engine, "0003")
        async with db.begin() as session:
            for n, refs in enumerate(
                (
                    {"discord": {"channel": "1", "message": "2", "thread": "900"}},
                    {"telegram": {"handoff_id": 2, "chat_id": -100, "message_id": 5, "topic": "-100:77"}},
                    {"telegram": {"handoff_id": 3, "chat_id": -100, "message_id": 6, "thread_id": None}},
                    {},  # no desk could be notified
                ),
                start=1,
            ):
                await session.execute(
                    text(
                        "INSERT INTO users (id, platform, external_id, display_name, created_at, updated_at) "
                        "VALUES (:n, 'console', :ext, 'U', :now, :now)"
                    ),
                    {"n": n, "ext": f"u{n}", "now": utcnow()},
                )
                await session.execute(
                    text(
                        "INSERT INTO conversations (id, user_id, platform, chat_id, thread_id, agent_name, "
                        "provider_state, status, created_at, updated_at, last_activity_at) VALUES "
                        "(:n, :n, 'console', :chat, '', 'x', '{}', 'human', :now, :now, :now)"
                    ),
                    {"n": n, "chat": f"c{n}", "now": utcnow()},
                )
                await session.execute(
                    text(
                        "INSERT INTO handoffs (id, conversation_id, status, reason, requested_by, "
                        "notification_refs, requested_at) VALUES (:n, :n, 'claimed', '', 'user', :refs, :now)"
                    ),
                    {"n": n, "refs": json.dumps(refs), "now": utcnow()},
                )
            await session.execute(
                text(
                    "INSERT INTO pending_deliveries (conversation_id, platform, kind, text, created_at) "
                    "VALUES (1, 'console', 'notice', 'queued words', :now)"
                ),
                {"now": utcnow()},
            )

        await migrations.upgrade(engine)
        async with db() as session:
            rows = await session.execute(
                select(HandoffPlace.desk, HandoffPlace.place, HandoffPlace.handoff_id)
            )
            places = {tuple(row) for row in rows}
            queued = (await session.execute(select(PendingDelivery.text, PendingDelivery.refusals))).one()
        assert places == {
            ("discord", "thread:900", 1),
            ("telegram", "handoff_id:2", 2),
            ("telegram", "topic:-100:77", 2),
            ("telegram", "handoff_id:3", 3),
        }
        assert tuple(queued) == ("queued words", 0)
        service = HandoffService(db, HandoffPolicy(expire_after=timedelta(minutes=10), escalate_after=None))
        assert await service.open_handoff_at("discord", "thread", "900") == 1
        assert await service.open_handoff_at("telegram", "topic", "-100:77") == 2
        assert await service.open_handoff_at("telegram", "handoff_id", 3) == 3

        await migrations.downgrade(engine, "0003")
        async with engine.connect() as conn:
            refs = (
                await conn.execute(text("SELECT notification_refs FROM handoffs WHERE id = 2"))
            ).scalar_one()
            words = (await conn.execute(text("SELECT text FROM pending_deliveries"))).scalar_one()
        assert (json.loads(refs) if isinstance(refs, str) else refs)["telegram"]["topic"] == "-100:77"
        assert words == "queued words"
        await migrations.upgrade(engine)  # and up again, the places rebuilt from the same refs
        async with db() as session:
            assert await session.scalar(select(func.count()).select_from(HandoffPlace)) == 4
    finally:
        await engine.dispose()
