"""Business hours end to end, on both platforms' desks, with the clock injected: a request outside hours
waits for the moderators (told when they are back) or stays with the agent, and escalation and expiry
count only open time, across a closed night or weekend and a restart. On SQLite and PostgreSQL.

The desks are open 09:00-17:00 on weekdays in Europe/Berlin (UTC+1 in November).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridges.desk_hours import DeskHours, HoursNotices
from bridges.handoff_notices import UserNotices
from bridges.handoff_policy import HandoffPolicy
from bridges.hours import BusinessHours, parse_range
from bridges.relay import Notices
from fakes.telegram import FakeChat, FakeTelegram, FakeUser
from fakes.telegram.harness import Telegram, running
from models import Handoff, HandoffStatus
from tests.clock import Clock
from tests.test_discord_desk import App, World, fields
from tests.test_discord_desk import world as world  # the fixture
from tests.test_telegram_desk import QUICK, ROOMY

pytestmark = pytest.mark.e2e

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = BusinessHours(BERLIN, [(parse_range("09:00-17:00"),)] * 5 + [(), ()])
MONDAY_MORNING = "Monday 30 November, 09:00 (Europe/Berlin time)"


def berlin(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in November 2026, Berlin time, as the UTC the clock keeps (27th: a Friday)."""
    return datetime(2026, 11, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


def policy(outside: Literal["wait", "agent"]) -> HandoffPolicy:
    return HandoffPolicy(
        expire_after=timedelta(minutes=10),
        escalate_after=timedelta(minutes=3),
        hours=DeskHours(OFFICE, outside=outside),
    )


@asynccontextmanager
async def discord_app(
    world: World, db: async_sessionmaker[AsyncSession], outside: Literal["wait", "agent"], at: datetime
) -> AsyncIterator[App]:
    app = App(world, db)
    app.policy = policy(outside)
    app.clock.now = at
    await app.start()
    try:
        yield app
    finally:
        await app.bridge.close(grace=1.0)


async def handoffs(db: async_sessionmaker[AsyncSession]) -> int:
    async with db() as session:
        return await session.scalar(select(func.count()).select_from(Handoff)) or 0


async def test_discord_a_request_on_friday_evening_waits_and_times_out_in_monday_business_time(
    world: World, db: async_sessionmaker[AsyncSession]
) -> None:
    fake = world.fake
    async with discord_app(world, db, "wait", berlin(27, 18)) as app:
        dm = fake.dm_channel(world.alice)
        await fake.user_says(dm, world.alice, "help")
        seen = ["Let me get a person.", HoursNotices.waiting.format(when=MONDAY_MORNING)]
        await fake.wait_for_texts(dm, seen)
        notification = await app.notification()  # the moderators see it when they are back
        handoff = await app.handoff()
        assert handoff.status is HandoffStatus.REQUESTED
        assert handoff.due_at == berlin(30, 9, 3) and handoff.expire_at == berlin(30, 9, 10)

        for moment in (berlin(27, 18, 4), berlin(28, 12), berlin(30, 9, 2)):  # weekend minutes do not count
            app.clock.now = moment
            await app.handoffs.tick()
        assert len(fake.bot_messages(world.mods)) == 1  # no escalation ping yet
        assert fields(notification)["Status"] == "Waiting for a moderator"

        await app.restart()  # the deadlines are in the database
        app.clock.now = berlin(30, 9, 3)
        await app.handoffs.tick()
        assert fields(notification)["Status"] == "Still waiting for a moderator (escalated)"
        assert len(fake.bot_messages(world.mods)) == 2

        app.clock.now = berlin(30, 9, 9)
        await app.handoffs.tick()
        assert (await app.handoff()).status is HandoffStatus.REQUESTED
        app.clock.now = berlin(30, 9, 10)
        await app.handoffs.tick()
        assert fields(notification)["Status"] == "Expired: nobody claimed it in time"
        await fake.wait_for_texts(dm, [*seen, UserNotices.expired])


async def test_discord_outside_hours_with_agent_opens_nothing_and_the_assistant_answers(
    world: World, db: async_sessionmaker[AsyncSession]
) -> None:
    fake = world.fake
    async with discord_app(world, db, "agent", berlin(28, 12)) as app:
        dm = fake.dm_channel(world.alice)
        await fake.user_says(dm, world.alice, "help")
        seen = ["Let me get a person.", HoursNotices.with_agent.format(when=MONDAY_MORNING)]
        await fake.wait_for_texts(dm, seen)
        await fake.user_says(dm, world.alice, "what are your prices?")
        seen.append("scripted: what are your prices?")
        await fake.wait_for_texts(dm, seen)
        assert await handoffs(db) == 0 and fake.bot_messages(world.mods) == []

        app.clock.now = berlin(30, 10)  # open: the same request goes through
        await fake.user_says(dm, world.alice, "help")
        await fake.wait_for_texts(dm, [*seen, "Let me get a person.", Notices.handoff_requested])
        await app.notification()
        assert await handoffs(db) == 1


@asynccontextmanager
async def telegram_desk(
    db: async_sessionmaker[AsyncSession], outside: Literal["wait", "agent"], at: datetime
) -> AsyncIterator[tuple[Telegram, FakeChat, Clock]]:
    fake = FakeTelegram(limits=ROOMY)
    mods = fake.group("Moderators", forum=True)
    fake.join(mods, fake.user("Maya", "maya_mod"), "administrator")
    clock = Clock()
    clock.now = at
    desk = {"chat_id": mods.id, "mention": ("@maya_mod",), "log_chat_id": fake.group("Log").id}
    async with running(
        db, fake, clock=clock, handoff=desk, handoff_policy=policy(outside), **QUICK
    ) as telegram:
        yield telegram, mods, clock


def asks(telegram: Telegram, name: str, text: str) -> tuple[FakeUser, FakeChat]:
    user = telegram.fake.user(name)
    chat = telegram.fake.private_chat(user)
    telegram.fake.say(chat, user, text)
    return user, chat


async def test_telegram_escalation_counts_only_business_time_across_a_closed_night(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with telegram_desk(db, "wait", berlin(24, 16, 58)) as (telegram, mods, clock):  # a Tuesday
        fake = telegram.fake
        uma, chat = asks(telegram, "Uma", "/human")
        await telegram.final(chat, Notices.handoff_requested)  # open now: nothing about hours
        (note,) = await telegram.replies(mods)
        handoff = await telegram.handoffs.view(1)
        assert handoff.status is HandoffStatus.REQUESTED

        for moment in (berlin(24, 17, 5), berlin(24, 23), berlin(25, 9, 0)):  # two minutes that evening
            clock.now = moment
            await telegram.handoffs.tick()
        assert "escalated" not in note.text

        fake.say(chat, uma, "still there?")  # at night her words reach the topic, and the request waits
        assert note.thread_id is not None
        await telegram.final(mods, "💬 Uma: still there?", note.thread_id)

        clock.now = berlin(25, 9, 1)  # the third business minute
        await telegram.handoffs.tick()
        assert "Status: ⏰ still waiting, escalated" in note.text
        clock.now = berlin(25, 9, 8)  # ten business minutes: 2 on Tuesday, 8 on Wednesday
        await telegram.handoffs.tick()
        assert "Status: ⌛ expired: nobody claimed it in time" in note.text
        await telegram.final(chat, UserNotices.expired)


async def test_telegram_outside_hours_with_wait_opens_the_request_and_says_when(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with telegram_desk(db, "wait", berlin(25, 22)) as (telegram, mods, _):  # Wednesday night
        _, chat = asks(telegram, "Uma", "/human")
        when = "Thursday 26 November, 09:00 (Europe/Berlin time)"
        await telegram.final(chat, HoursNotices.waiting.format(when=when))
        (note,) = await telegram.replies(mods)
        assert note.text.startswith("🆘 Handoff #1 ")
        handoff = await telegram.handoffs.view(1)
        assert handoff.status is HandoffStatus.REQUESTED


async def test_telegram_outside_hours_with_agent_opens_nothing_and_the_assistant_answers(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with telegram_desk(db, "agent", berlin(25, 22)) as (telegram, mods, _):
        uma, chat = asks(telegram, "Uma", "/human")
        when = "Thursday 26 November, 09:00 (Europe/Berlin time)"
        await telegram.final(chat, HoursNotices.with_agent.format(when=when))
        telegram.fake.say(chat, uma, "ok, a question then")
        await telegram.final(chat, "scripted: ok, a question then (#1)")
        assert await handoffs(db) == 0 and telegram.fake.bot_messages(mods) == []
