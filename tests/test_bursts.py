"""Bursts on SQLite and PostgreSQL: one user's messages in one place, within the window of each other
and before their turn starts, are answered as one turn; a started turn splits a burst; a crash before
the turn began leaves each message recorded, and the restart joins them again. Time moves only when a
test moves the clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Attachment, Button
from agents.openai_compat import OpenAICompatAgent, OpenAICompatSettings
from bridges.discord.bridge import DiscordBridge
from bridges.recovery import recover
from bridges.relay import Relay
from bridges.relay_policy import RelayPolicy
from bridges.surface import Inbound
from fakes.discord import FakeDiscord
from fakes.openai import FakeOpenAI
from fakes.telegram import FakeTelegram
from fakes.telegram.harness import POLICY, ScriptedAgent, running
from models import InboundMessage, Role, TranscriptEntry
from tests.agent_support import FAST_RETRIES, checked, relay_policy
from tests.clock import Clock, Sleeper
from tests.discord_support import discord_config
from tests.polling import eventually
from tests.surfaces import RecordingSurface

WINDOW = 1.5
NOON = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
BURSTS: RelayPolicy = replace(POLICY, burst_window=WINDOW)


def said(text: str, message_id: str, **extra: object) -> Inbound:
    return Inbound("telegram", "chat-1", "u1", "User u1", text, message_id=message_id, **extra)  # type: ignore[arg-type]


def document(name: str) -> Attachment:
    return Attachment(kind="document", mime="text/plain", size=3, name=name)


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.now = NOON
    return clock


@pytest.fixture
def sleeper(clock: Clock) -> Sleeper:
    return Sleeper(clock)


async def recorded(db: async_sessionmaker[AsyncSession], count: int) -> None:
    async def check() -> bool:
        async with db() as session:
            found = await session.scalar(
                select(func.count()).select_from(InboundMessage).where(InboundMessage.handled_at.is_(None))
            )
        return found == count

    await eventually(check, what=f"{count} messages recorded and waiting")


async def sleeping_until(sleeper: Sleeper, seconds: float) -> None:
    """Wait until the turn waits for its window to end `seconds` after noon."""
    deadline = NOON.timestamp() + seconds

    async def check() -> bool:
        return [moment.timestamp() for moment in sleeper.deadlines] == [deadline]

    await eventually(check, what=f"a turn waiting until noon + {seconds}s")


async def user_entries(db: async_sessionmaker[AsyncSession]) -> list[TranscriptEntry]:
    async with db() as session:
        rows = await session.scalars(
            select(TranscriptEntry).where(TranscriptEntry.role == Role.USER).order_by(TranscriptEntry.id)
        )
        return list(rows)


# --- the Relay, on both databases ------------------------------------------------------------------


async def test_a_burst_of_three_is_one_turn_with_the_texts_joined_and_the_files_in_order(
    db: async_sessionmaker[AsyncSession], clock: Clock, sleeper: Sleeper
) -> None:
    agent = ScriptedAgent()
    relay = Relay(db, {"scripted": agent}, BURSTS, now=clock, sleep=sleeper)
    surface = RecordingSurface()
    first = asyncio.create_task(relay.handle(said("hi", "1"), surface))
    await sleeping_until(sleeper, WINDOW)  # its turn has come: it waits out the window
    second = asyncio.create_task(
        relay.handle(said("I have a question", "2", attachments=(document("a"),)), surface)
    )
    await recorded(db, 2)
    await sleeper.advance(1.0)
    third = asyncio.create_task(
        relay.handle(said("about my order", "3", attachments=(document("b"),)), surface)
    )
    await recorded(db, 3)
    await sleeper.advance(0.5)  # the first window ends, but a message came within it: wait on
    await sleeping_until(sleeper, 1.0 + WINDOW)
    await sleeper.advance(1.0)
    answer, *stepped_aside = await asyncio.gather(first, second, third)

    assert [turn.text for turn in agent.turns] == ["hi\nI have a question\nabout my order"]
    assert answer is not None and stepped_aside == [None, None]
    assert surface.visible_texts()[-1] == "scripted: hi\nI have a question\nabout my order (#1)"
    (entry,) = await user_entries(db)
    assert entry.platform_message_ids == ["1", "2", "3"]
    assert [file["name"] for file in entry.attachments or []] == ["a", "b"]
    await recorded(db, 0)


async def test_a_started_turn_splits_a_burst(
    db: async_sessionmaker[AsyncSession], clock: Clock, sleeper: Sleeper
) -> None:
    gate = asyncio.Event()
    agent = ScriptedAgent(gate=gate)
    relay = Relay(db, {"scripted": agent}, BURSTS, now=clock, sleep=sleeper)
    surface = RecordingSurface()
    first = asyncio.create_task(relay.handle(said("hi", "1"), surface))
    await sleeping_until(sleeper, WINDOW)
    await sleeper.advance(WINDOW)
    await asyncio.wait_for(agent.entered.wait(), 5)  # the turn has started: the agent is answering
    later = [
        asyncio.create_task(relay.handle(said(text, str(number)), surface))
        for number, text in ((2, "and"), (3, "another thing"))
    ]  # within the window of "hi", but its turn has started
    await recorded(db, 2)
    gate.set()
    await first
    await sleeping_until(sleeper, 2 * WINDOW)
    await sleeper.advance(WINDOW)
    await asyncio.gather(*later)
    assert [turn.text for turn in agent.turns] == ["hi", "and\nanother thing"]


async def test_a_press_or_a_pause_longer_than_the_window_ends_a_burst(
    db: async_sessionmaker[AsyncSession], clock: Clock, sleeper: Sleeper
) -> None:
    gate = asyncio.Event()
    agent = ScriptedAgent(gate=gate)
    relay = Relay(db, {"scripted": agent}, BURSTS, now=clock, sleep=sleeper)
    surface = RecordingSurface()
    busy = asyncio.create_task(relay.handle(said("busy", "0"), surface))
    await sleeping_until(sleeper, WINDOW)
    await sleeper.advance(WINDOW)
    await asyncio.wait_for(agent.entered.wait(), 5)  # the rest line up behind a reply
    queued = [asyncio.create_task(relay.handle(said("one", "1"), surface))]
    await recorded(db, 1)
    await sleeper.advance(WINDOW + 1)  # longer than the window: a burst of its own
    queued.append(asyncio.create_task(relay.handle(said("two", "2"), surface)))
    await recorded(db, 2)
    queued.append(
        asyncio.create_task(relay.handle(said("Yes", "", button=Button("Yes", {"choice": "yes"})), surface))
    )
    queued.append(asyncio.create_task(relay.handle(said("three", "3"), surface)))
    await recorded(db, 4)
    await sleeper.advance(WINDOW)  # every window has passed by now
    gate.set()
    await asyncio.gather(busy, *queued)
    assert [turn.text for turn in agent.turns] == ["busy", "one", "two", "Yes", "three"]


async def test_a_crash_before_the_turn_began_leaves_each_message_and_the_restart_joins_them_again(
    db: async_sessionmaker[AsyncSession], clock: Clock, sleeper: Sleeper
) -> None:
    crashed = Relay(db, {"scripted": ScriptedAgent()}, BURSTS, now=clock, sleep=sleeper)
    surface = RecordingSurface()
    tasks = [asyncio.create_task(crashed.handle(said("hi", "1"), surface))]
    await sleeping_until(sleeper, WINDOW)
    tasks.append(asyncio.create_task(crashed.handle(said("are you there?", "2"), surface)))
    await recorded(db, 2)
    for task in tasks:  # kill -9 while the burst waits out its window: nothing else runs
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await recorded(db, 2)  # both recorded, neither taken

    clock.now = NOON.replace(minute=1)  # the restart takes a while: the window is long over
    agent = ScriptedAgent()
    restarted = Relay(db, {"scripted": agent}, BURSTS, now=clock, sleep=sleeper)
    assert await recover(restarted, lambda *_: surface) == 2
    assert [turn.text for turn in agent.turns] == ["hi\nare you there?"]
    assert surface.visible_texts()[-1] == "scripted: hi\nare you there? (#1)"
    await recorded(db, 0)


# --- Telegram and Discord --------------------------------------------------------------------------


async def test_telegram_burst_is_answered_once(
    db: async_sessionmaker[AsyncSession], clock: Clock, sleeper: Sleeper
) -> None:
    fake = FakeTelegram()
    async with running(db, fake, clock=clock, sleep=sleeper, policy=BURSTS) as telegram:
        bob = fake.user("Bob")
        chat = fake.private_chat(bob)
        for text in ("hi", "I have a question", "about my order"):
            fake.say(chat, bob, text)
        await recorded(db, 3)
        await sleeping_until(sleeper, WINDOW)
        await sleeper.advance(WINDOW)
        await telegram.final(chat, "scripted: hi\nI have a question\nabout my order (#1)")
        assert len(telegram.agent.turns) == 1 and len(fake.bot_messages(chat)) == 1


@pytest.fixture
async def openai() -> AsyncIterator[FakeOpenAI]:
    async with checked(FakeOpenAI(api_key="sk-burst")) as server:
        yield server


async def test_discord_burst_is_one_provider_request(
    db: async_sessionmaker[AsyncSession],
    clock: Clock,
    sleeper: Sleeper,
    openai: FakeOpenAI,
    http: httpx.AsyncClient,
) -> None:
    settings = OpenAICompatSettings(
        base_url=openai.url, api_key=SecretStr("sk-burst"), model=openai.model, **FAST_RETRIES
    )
    policy = replace(relay_policy("gpt"), burst_window=WINDOW)
    relay = Relay(db, {"gpt": OpenAICompatAgent("gpt", settings, http)}, policy, now=clock, sleep=sleeper)
    async with FakeDiscord() as fake:
        alice = fake.add_user("alice")
        dm = fake.dm_channel(alice)
        bridge = DiscordBridge(discord_config(fake), relay)
        await bridge.start()
        try:
            for text in ("hi", "I have a question", "about my order"):
                await fake.user_says(dm, alice, text)
            await recorded(db, 3)
            await sleeping_until(sleeper, WINDOW)
            await sleeper.advance(WINDOW)
            await fake.wait_for_texts(dm, ["echo #1: hi\nI have a question\nabout my order"])
        finally:
            await bridge.close(grace=1.0)
    (request,) = openai.requests
    assert request["messages"][-1] == {"role": "user", "content": "hi\nI have a question\nabout my order"}
