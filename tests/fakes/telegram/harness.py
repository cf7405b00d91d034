"""The real Telegram bridge wired to the fake Bot API, with a scriptable agent: for end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import AgentEvent, BaseAgent, TextDelta, Turn, TurnEnd
from bridges.relay import Relay, RelayPolicy
from bridges.telegram import TelegramBridge, TelegramConfig
from tests.fakes.telegram.server import FakeTelegram
from tests.fakes.telegram.state import FakeChat, FakeMessage

ADMIN_ID = 4242
POLICY = RelayPolicy(
    default_agent="scripted",
    idle_timeout=timedelta(minutes=30),
    handoff_expiry=timedelta(minutes=10),
    bindings={},
    user_messages_per_minute=600.0,
    user_burst=50,
)


class ScriptedAgent(BaseAgent):
    """Answers "<name>: <text> (#n)" (n counts turns in provider state), unless the text is scripted.

    `script[text]` is a fixed list of events or an exception raised after a first fragment; `feed(text)`
    returns a queue the test fills event by event (None ends the turn), to stream at its own pace.
    """

    def __init__(self, name: str = "scripted") -> None:
        super().__init__(name)
        self.turns: list[Turn] = []
        self.script: dict[str, list[AgentEvent] | Exception] = {}
        self._live: dict[str, asyncio.Queue[AgentEvent | None]] = {}

    def feed(self, text: str) -> asyncio.Queue[AgentEvent | None]:
        queue = self._live[text] = asyncio.Queue()
        return queue

    async def stream(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        self.turns.append(turn)
        count = int(turn.provider_state.get("count", 0)) + 1
        scripted = self.script.get(turn.text)
        if turn.text in self._live:
            queue = self._live[turn.text]
            while (event := await queue.get()) is not None:
                yield event
        elif isinstance(scripted, Exception):
            yield TextDelta("partial answer")
            raise scripted
        elif scripted is not None:
            for event in scripted:
                yield event
        else:
            for piece in (f"{self.name}: ", turn.text, f" (#{count})"):
                yield TextDelta(piece)
        yield TurnEnd({"count": count})


@dataclass
class Telegram:
    """The fake Bot API, and the real bridge polling it."""

    fake: FakeTelegram
    base_url: str
    relay: Relay
    agent: ScriptedAgent
    bridge: TelegramBridge

    async def restart(self, **config: Any) -> None:
        """A new process: new bridge, new in-memory caches, same database."""
        await self.bridge.close(grace=5)
        self.bridge = bridge(self.fake, self.base_url, self.relay, **config)
        await self.bridge.start()

    async def replies(
        self, chat: FakeChat, count: int = 1, thread_id: int | None = None
    ) -> list[FakeMessage]:
        """Wait until the bot has posted `count` messages there and has nothing streaming in that chat."""
        await self.fake.wait_for(
            lambda: len(self.fake.bot_messages(chat, thread_id)) >= count, what=f"{count} bot messages"
        )
        return self.fake.bot_messages(chat, thread_id)

    async def final(self, chat: FakeChat, text: str, thread_id: int | None = None) -> FakeMessage:
        """Wait until a bot message there shows exactly `text`."""
        await self.fake.wait_for(
            lambda: any(m.text == text for m in self.fake.bot_messages(chat, thread_id)),
            within=10,
            what=f"a bot message reading {text[:60]!r}",
        )
        return next(m for m in self.fake.bot_messages(chat, thread_id) if m.text == text)


def bridge(fake: FakeTelegram, base_url: str, relay: Relay, **config: Any) -> TelegramBridge:
    settings = TelegramConfig(
        token=SecretStr(fake.token), base_url=base_url, admins=(ADMIN_ID,), poll_timeout=10, **config
    )
    return TelegramBridge(settings, relay, edit_interval=0.2)


@asynccontextmanager
async def running(
    db: async_sessionmaker[AsyncSession], fake: FakeTelegram | None = None, **config: Any
) -> AsyncIterator[Telegram]:
    fake = fake or FakeTelegram()
    agent = ScriptedAgent()
    relay = Relay(db, {"scripted": agent, "other": ScriptedAgent("other")}, POLICY)
    async with fake.running() as base_url:
        telegram = Telegram(fake, base_url, relay, agent, bridge(fake, base_url, relay, **config))
        await telegram.bridge.start()
        try:
            yield telegram
        finally:
            await telegram.bridge.close(grace=5)
