"""kill -9 mid-reply with messages queued behind it: the real `bot.py` process against the fake Bot API.

Telegram confirms an update once the bot asks for the next ones, so messages a user sent while a reply was
streaming are already gone from Telegram when the process dies. They were recorded the moment they
arrived; the next start reports the reply that was cut off and then answers each of them, in order.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from agents.demo import JOKES
from fakes.telegram import FakeTelegram
from models import InboundMessage, create_engine, session_factory
from tests.test_bot_platforms import drain_stderr, start_bot

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture
async def telegram() -> AsyncIterator[tuple[FakeTelegram, str]]:
    fake = FakeTelegram()
    async with fake.running() as url:
        yield fake, url


async def unhandled(database: Path) -> int:
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        async with session_factory(engine)() as session:
            count = await session.scalar(
                select(func.count()).select_from(InboundMessage).where(InboundMessage.handled_at.is_(None))
            )
    finally:
        await engine.dispose()
    return count or 0


async def test_messages_queued_behind_a_reply_survive_kill_9_and_are_answered_in_order(
    tmp_path: Path, telegram: tuple[FakeTelegram, str]
) -> None:
    fake, url = telegram
    (tmp_path / "switchboard.toml").write_text(
        f'[telegram]\nbase_url = "{url}"\npoll_timeout = 0\npoll_interval = 0.05\ndrafts = false\n'
    )
    env = {"SWITCHBOARD_TELEGRAM__TOKEN": fake.token, "SWITCHBOARD_LOGGING__LEVEL": "INFO"}
    bob = fake.user("Bob")
    chat = fake.private_chat(bob)
    first = await start_bot(tmp_path, {**env, "SWITCHBOARD_AGENTS__DEMO__CHUNK_DELAY": "0.5"})
    first_log = drain_stderr(first)
    try:
        await fake.wait_for(lambda: fake.count("setMyCommands") > 0, within=30, what="start")
        fake.say(chat, bob, "long")
        await fake.wait_for(lambda: bool(fake.bot_messages(chat)), within=20, what="the reply to start")
        fake.say(chat, bob, "tell me a joke")
        fake.say(chat, bob, "hello")
        async with asyncio.timeout(20):
            while await unhandled(tmp_path / "switchboard.db") < 2:  # noqa: ASYNC110 - another process's database
                await asyncio.sleep(0.05)
        await fake.wait_for(lambda: fake.unconfirmed == 0, what="Telegram to forget them")
    finally:
        first.send_signal(signal.SIGKILL)  # no chance to clean up
        await first.wait()
        await first_log
    shown = len(fake.bot_messages(chat))

    second = await start_bot(tmp_path, env)
    stderr = drain_stderr(second)
    try:
        expected = [
            "Sorry, I was restarted while answering “long”. Your message is saved; please send it again.",
            JOKES,
            "Welcome back, Bob!",
        ]

        def answered() -> bool:
            texts = [m.text for m in fake.bot_messages(chat)[shown:]]
            return (
                len(texts) == 3
                and texts[0] == expected[0]
                and texts[1] in JOKES
                and texts[2].startswith("Welcome back, Bob!")
            )

        await fake.wait_for(answered, within=30, what=f"in this order: {expected}")
        assert await unhandled(tmp_path / "switchboard.db") == 0
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.wait(), 30)
    logs = (await stderr).decode()
    assert second.returncode == 0, logs
    assert logs.count("left unanswered by a restart") == 2
