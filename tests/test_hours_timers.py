"""Handoff timers in business time, in the service (SQLite and PostgreSQL): deadlines for requests that
have none (from before this schema, or let go with /unclaim), and desks with hours of their own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import HandoffRequested, Message, TurnEnd
from bridges.desk_hours import DeskHours, HoursNotices
from bridges.handoff import HandoffService
from bridges.handoff_policy import HandoffPolicy
from bridges.hours import BusinessHours, parse_range
from bridges.relay import Notices, Relay
from fakes.telegram.harness import ScriptedAgent
from models import Handoff
from tests.surfaces import RecordingSurface
from tests.test_handoff_service import RecordingDesk
from tests.test_relay import POLICY, Clock, inbound

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
WEEKDAYS_9_TO_5 = [(parse_range("09:00-17:00"),)] * 5 + [(), ()]


def berlin(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in November (day > 30: December) 2026, Berlin time, in UTC (27 November: a Friday)."""
    month, day = (12, day - 30) if day > 30 else (11, day)
    return datetime(2026, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


class Desks:
    """A Relay and a HandoffService with two recording desks, "discord" and "telegram"."""

    def __init__(self, db: async_sessionmaker[AsyncSession], hours: DeskHours, at: datetime) -> None:
        self.db, self.clock = db, Clock()
        self.clock.now = at
        self.desks = [RecordingDesk(name="discord"), RecordingDesk(name="telegram")]
        self.handoffs = HandoffService(
            db,
            HandoffPolicy(
                expire_after=timedelta(minutes=10), escalate_after=timedelta(minutes=3), hours=hours
            ),
            desks=self.desks,
            now=self.clock,
        )
        agent = ScriptedAgent()
        agent.script["help"] = [Message("Let me get a person."), HandoffRequested("billing"), TurnEnd({})]
        self.relay = Relay(db, {"scripted": agent}, POLICY, handoffs=self.handoffs, now=self.clock)
        self.user = RecordingSurface()

    async def ask(self) -> int:
        await self.relay.handle(inbound("help"), self.user)
        return self.desks[0].opened[-1].handoff_id

    async def handoff(self, handoff_id: int) -> Handoff:
        async with self.db() as session:
            return await session.get_one(Handoff, handoff_id)

    async def tick_at(self, at: datetime) -> None:
        self.clock.now = at
        await self.handoffs.tick()

    def escalated(self) -> list[int]:
        return [view.handoff_id for view in self.desks[0].updates if view.escalated]


async def test_a_waiting_request_without_deadlines_gets_them_from_the_timers_in_business_time(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """As the migration leaves a request that was waiting: the timers count from its request time."""
    world = Desks(db, DeskHours(BusinessHours(BERLIN, WEEKDAYS_9_TO_5)), berlin(27, 16, 58))
    handoff_id = await world.ask()
    assert world.user.visible_texts()[-1] == Notices.handoff_requested
    async with db.begin() as session:
        await session.execute(update(Handoff).values(due_at=None, expire_at=None))

    await world.tick_at(berlin(27, 17, 30))
    handoff = await world.handoff(handoff_id)
    assert (handoff.due_at, handoff.expire_at) == (berlin(30, 9, 1), berlin(30, 9, 8))
    assert world.escalated() == []
    await world.tick_at(berlin(30, 9, 1))
    assert world.escalated() == [handoff_id]


async def test_an_unclaimed_case_waits_again_with_its_timers_started_over_in_business_time(
    db: async_sessionmaker[AsyncSession],
) -> None:
    world = Desks(db, DeskHours(BusinessHours(BERLIN, WEEKDAYS_9_TO_5)), berlin(27, 16, 50))
    handoff_id = await world.ask()
    assert (await world.handoffs.claim(handoff_id, "discord:7", "Maya")).won
    world.clock.now = berlin(27, 16, 59)
    await world.handoffs.cases.unclaim(handoff_id, "discord:7", "Maya")
    await world.tick_at(berlin(27, 17, 0))
    handoff = await world.handoff(handoff_id)
    assert (handoff.due_at, handoff.expire_at) == (berlin(30, 9, 2), berlin(30, 9, 9))
    await world.tick_at(berlin(30, 9, 9))
    assert (await world.handoff(handoff_id)).status.value == "expired"


async def test_with_desks_on_their_own_hours_time_counts_while_either_is_open(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """Discord's desk keeps Berlin hours, Telegram's New York's (09:00-17:00 there is 15:00-23:00 in
    Berlin): a request waits only while both are closed, and is told when the first one opens."""
    hours = DeskHours(
        BusinessHours(BERLIN, WEEKDAYS_9_TO_5), {"telegram": BusinessHours(NEW_YORK, WEEKDAYS_9_TO_5)}
    )
    world = Desks(db, hours, berlin(30, 22, 58))  # Monday: Berlin is closed, New York open
    first = await world.ask()
    assert world.user.visible_texts()[-1] == Notices.handoff_requested
    handoff = await world.handoff(first)
    assert (handoff.due_at, handoff.expire_at) == (berlin(31, 9, 1), berlin(31, 9, 8))

    await world.relay.reset(inbound("/reset"), world.user)
    world.clock.now = berlin(30, 23, 30)  # both closed until Berlin opens on Tuesday
    await world.ask()
    when = "Tuesday 1 December, 09:00 (Europe/Berlin time)"
    assert world.user.visible_texts()[-1] == HoursNotices.waiting.format(when=when)
    assert world.handoffs.timers.deadline(berlin(31, 16, 0), timedelta(hours=7)) == berlin(31, 23, 0)
