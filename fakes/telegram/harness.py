"""The real Telegram bridge wired to the fake Bot API, with a scriptable agent and the handoff service:
for end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Agent, AgentEvent, BaseAgent, TextDelta, Turn, TurnEnd
from bridges.attachments import Media
from bridges.catalogue import Catalogue
from bridges.handoff import HandoffService
from bridges.handoff_policy import HandoffPolicy
from bridges.relay import Relay
from bridges.relay_policy import RelayPolicy
from bridges.surface import Surface
from bridges.telegram.bridge import TelegramBridge
from bridges.telegram.config import TelegramConfig
from bridges.telegram.desk import jump_link
from fakes.telegram.server import FakeTelegram
from fakes.telegram.state import FakeChat, FakeMessage
from models import utcnow

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
    `entered` is set once a turn arrives; with a `gate`, every turn waits for it before answering.
    """

    def __init__(self, name: str = "scripted", *, gate: asyncio.Event | None = None) -> None:
        super().__init__(name)
        self.turns: list[Turn] = []
        self.entered = asyncio.Event()
        self.gate = gate
        self.script: dict[str, list[AgentEvent] | Exception] = {}
        self._live: dict[str, asyncio.Queue[AgentEvent | None]] = {}

    def feed(self, text: str) -> asyncio.Queue[AgentEvent | None]:
        queue = self._live[text] = asyncio.Queue()
        return queue

    async def stream(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        self.turns.append(turn)
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
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


HANDOFF_POLICY = HandoffPolicy(expire_after=timedelta(minutes=10), escalate_after=timedelta(minutes=3))


@dataclass
class Telegram:
    """The fake Bot API, and the real bridge polling it, with the Relay and handoff service bot.py
    builds around it (the desk registered once the bridge has started, when one is configured)."""

    fake: FakeTelegram
    base_url: str
    db: async_sessionmaker[AsyncSession]
    agent: ScriptedAgent
    config: dict[str, Any]
    clock: Callable[[], datetime] = utcnow
    others: dict[str, Surface] = field(default_factory=dict)
    """Users on other platforms by chat id, for handoffs served across platforms."""
    agents: dict[str, Agent] = field(default_factory=dict)
    """Agents beside the scripted ones (a name here replaces one of those)."""
    media: Media | None = None
    handoff_policy: HandoffPolicy = HANDOFF_POLICY
    policy: RelayPolicy = POLICY
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    """What the Relay waits with (a burst's window): a test's clock may move it on."""
    catalogue: Catalogue | None = None
    handoffs: HandoffService = field(init=False)
    relay: Relay = field(init=False)
    bridge: TelegramBridge = field(init=False)

    def __post_init__(self) -> None:
        self._build()

    def _build(self) -> None:
        self.handoffs = HandoffService(
            self.db,
            self.handoff_policy,
            surfaces=self.surface_for,
            jump_link=jump_link,
            catalogue=self.catalogue,
            now=self.clock,
        )
        agents = {"scripted": self.agent, "other": ScriptedAgent("other"), **self.agents}
        self.relay = Relay(
            self.db,
            agents,
            self.policy,
            handoffs=self.handoffs,
            media=self.media,
            now=self.clock,
            sleep=self.sleep,
            catalogue=self.catalogue,
        )
        self.bridge = bridge(self.fake, self.base_url, self.relay, now=self.clock, **self.config)

    async def start(self) -> None:
        await self.bridge.start()
        if self.bridge.desk is not None:
            self.handoffs.desks.append(self.bridge.desk)

    async def restart(self, **config: Any) -> None:
        """A new process: new bridge, relay and handoff service (new in-memory caches), same database."""
        await self.bridge.close(grace=5)
        self.config = {**self.config, **config}
        self._build()
        await self.start()

    def surface_for(self, platform: str, chat_id: str, thread_id: str) -> Surface | None:
        if platform == "telegram":
            return self.bridge.surface_for(platform, chat_id, thread_id)
        return self.others.get(chat_id)

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


def bridge(
    fake: FakeTelegram,
    base_url: str,
    relay: Relay,
    *,
    now: Callable[[], datetime] = utcnow,
    **config: Any,
) -> TelegramBridge:
    settings = TelegramConfig(
        token=SecretStr(fake.token),
        base_url=base_url,
        base_file_url=base_url.removesuffix("/bot") + "/file/bot",
        admins=(ADMIN_ID,),
        poll_timeout=10,
        **{"edit_interval": 0.2, **config},
    )
    return TelegramBridge(settings, relay, now=now)


@asynccontextmanager
async def running(
    db: async_sessionmaker[AsyncSession],
    fake: FakeTelegram | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
    agents: dict[str, Agent] | None = None,
    media: Media | None = None,
    handoff_policy: HandoffPolicy = HANDOFF_POLICY,
    policy: RelayPolicy = POLICY,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    catalogue: Catalogue | None = None,
    **config: Any,
) -> AsyncIterator[Telegram]:
    fake = fake or FakeTelegram()
    async with fake.running() as base_url:
        telegram = Telegram(
            fake,
            base_url,
            db,
            ScriptedAgent(),
            config,
            clock,
            agents=agents or {},
            media=media,
            handoff_policy=handoff_policy,
            policy=policy,
            sleep=sleep,
            catalogue=catalogue,
        )
        await telegram.start()
        try:
            yield telegram
        finally:
            await telegram.bridge.close(grace=5)
