"""A burst of users writing at once, on SQLite and PostgreSQL: their turns start in a few shared
transactions (bridges/turn_starts.py), and each still gets its own conversation, history and limits."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bridges.quotas import QuotaNotices
from bridges.relay import Relay
from bridges.relay_policy import RelayPolicy
from bridges.surface import Inbound
from bridges.turn_starts import Begun, OverQuota, TurnPolicy, TurnStart
from fakes.telegram.harness import ScriptedAgent
from models import InboundMessage, Role, TranscriptEntry
from settings import QuotaLimits, QuotaSettings
from tests.polling import eventually, holds, queued_text
from tests.surfaces import RecordingSurface

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
POLICY = replace(
    RelayPolicy(
        default_agent="scripted",
        idle_timeout=timedelta(minutes=30),
        handoff_expiry=timedelta(minutes=10),
        bindings={},
    ),
    quotas=QuotaSettings(user=QuotaLimits(messages=2)),
    user_burst=1000,
)
NEW, RETURNING = 30, 5


def said(text: str, user: str, message_id: str) -> Inbound:
    return Inbound(
        platform="console",
        chat_id=f"chat-{user}",
        user_id=user,
        display_name=user,
        text=text,
        message_id=message_id,
    )


async def test_a_burst_of_users_starts_and_ends_in_a_few_transactions_each_with_its_own_history_and_limits(
    engine: AsyncEngine, db: async_sessionmaker[AsyncSession]
) -> None:
    gate = asyncio.Event()
    gate.set()
    agent = ScriptedAgent(gate=gate)
    relay = Relay(db, {"scripted": agent}, POLICY, now=lambda: NOON)
    for n in range(RETURNING):  # users who talked before: their history is theirs alone
        await relay.handle(said(f"before {n}", f"back-{n}", f"b{n}"), RecordingSurface())
    for n in range(2):  # a user who has used the day's two messages
        await relay.handle(said(f"spent {n}", "spent", f"s{n}"), RecordingSurface())
    earlier = len(agent.turns)

    commits = 0

    def count(_connection: object) -> None:
        nonlocal commits
        commits += 1

    event.listen(engine.sync_engine, "commit", count)
    gate.clear()  # every agent call waits, so the commits counted are those before the agent
    users = [f"new-{n}" for n in range(NEW)] + [f"back-{n}" for n in range(RETURNING)] + ["spent"]
    surfaces = {user: RecordingSurface() for user in users}
    burst = [
        asyncio.create_task(relay.handle(said(f"now {user}", user, f"m-{user}"), surfaces[user]))
        for user in users
    ]
    async with asyncio.timeout(10):
        while len(agent.turns) < earlier + NEW + RETURNING:
            await agent.entered.wait()
            agent.entered.clear()
    before_the_agent = commits
    gate.set()
    await asyncio.wait_for(asyncio.gather(*burst), 10)
    event.remove(engine.sync_engine, "commit", count)
    after_the_agent = commits - before_the_agent

    # Each message took two commits before (recorded on arrival, then its turn): 72 for the burst.
    assert before_the_agent <= 4, f"{before_the_agent} commits before the agent for {len(users)} messages"
    # And three per reply after it (its posted message marked, its text recorded, its turn finished).
    assert after_the_agent <= 6, f"{after_the_agent} commits after the agent for {NEW + RETURNING} replies"
    histories = {turn.user_id: [(h.role, h.text) for h in turn.history] for turn in agent.turns[earlier:]}
    assert set(histories) == {user for user in users if user != "spent"}
    for n in range(RETURNING):
        assert histories[f"back-{n}"] == [("user", f"before {n}"), ("agent", f"scripted: before {n} (#1)")]
    assert all(histories[f"new-{n}"] == [] for n in range(NEW))
    assert surfaces["new-0"].visible_texts() == ["scripted: now new-0 (#1)"]
    assert surfaces["back-1"].visible_texts() == ["scripted: now back-1 (#2)"]
    refusal = QuotaNotices.user_messages.format(limit=2, period="today", reset="at 00:00 UTC, in 12 h 0 min")
    assert surfaces["spent"].visible_texts() == [refusal]
    async with db() as session:
        asked = list(
            await session.scalars(select(TranscriptEntry.text).where(TranscriptEntry.role == Role.USER))
        )
        waiting = await session.scalar(
            select(InboundMessage.message_id).where(InboundMessage.handled_at.is_(None))
        )
    assert sorted(asked) == sorted(
        [f"before {n}" for n in range(RETURNING)]
        + ["spent 0", "spent 1"]
        + [f"now {user}" for user in users if user != "spent"]
    )
    assert waiting is None  # every message taken, the refused one too


async def test_a_message_whose_turn_comes_at_once_costs_one_transaction_and_one_that_waits_is_recorded_first(
    engine: AsyncEngine, db: async_sessionmaker[AsyncSession]
) -> None:
    gate = asyncio.Event()
    agent = ScriptedAgent(gate=gate)
    relay = Relay(db, {"scripted": agent}, POLICY, now=lambda: NOON)
    commits = 0

    def count(_connection: object) -> None:
        nonlocal commits
        commits += 1

    event.listen(engine.sync_engine, "commit", count)
    surface = RecordingSurface()
    first = asyncio.create_task(relay.handle(said("first", "ann", "m1"), surface))
    await asyncio.wait_for(agent.entered.wait(), 5)
    assert commits == 1  # recorded, in the transcript and marked handled, all at once

    second = asyncio.create_task(relay.handle(said("second", "ann", "m2"), surface))
    await eventually(lambda: holds(queued_text(db, "m2"), "second"), what="the waiting message recorded")
    assert commits == 2
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, second), 10)
    event.remove(engine.sync_engine, "commit", count)
    assert surface.visible_texts() == ["scripted: first (#1)", "scripted: second (#2)"]
    assert await queued_text(db, "m1") is None and await queued_text(db, "m2") is None


async def test_each_message_of_a_batch_gets_its_own_outcome(db: async_sessionmaker[AsyncSession]) -> None:
    """A user blocked while their message waited, one past a quota and plain ones, started together."""
    relay = Relay(db, {"scripted": ScriptedAgent()}, POLICY, now=lambda: NOON)
    for n in range(2):
        await relay.handle(said(f"spent {n}", "spent", f"s{n}"), RecordingSurface())
    await relay.blocks.block("console", "blocked", by="console:mod")
    policy = TurnPolicy(idle_timeout=timedelta(minutes=30), history_length=20, pending={})
    starts = []
    for user in ("first", "blocked", "spent", "second"):
        receipt = await relay.inbox.receive(said(f"hi {user}", user, f"m-{user}"), 0)
        assert receipt is not None
        starts.append(TurnStart(said(f"hi {user}", user, f"m-{user}"), receipt, policy))
    first, blocked, spent, second = await asyncio.gather(
        *(relay.agent_turns.starts.begin(start) for start in starts)
    )
    assert isinstance(first, Begun) and first.conversation.chat_id == "chat-first"
    assert blocked is None
    assert isinstance(spent, OverQuota)
    assert isinstance(second, Begun) and second.conversation.chat_id == "chat-second"
    async with db() as session:
        waiting = await session.scalar(
            select(InboundMessage.message_id).where(InboundMessage.handled_at.is_(None))
        )
    assert waiting is None
