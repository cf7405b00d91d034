"""Two real `bot.py run` processes on one PostgreSQL database, as "Running at scale" deploys them.

Process A runs Discord shard 0 of 2 and Telegram by webhook; process B runs shard 1 and no Telegram.
Both have the Discord moderator desk, whose channel is in a server routed to shard 1: a Telegram user's
handoff is posted there by A over REST, while the moderator's presses and messages reach B, which cannot
reach Telegram, so what it says to the user travels through the database (`pending_deliveries`) to A.
The processes are checked from outside only: the fakes, the shared database and each one's /metrics.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agents.demo import LONG_ANSWER
from bridges.handoff_notices import UserNotices
from bridges.relay import Notices
from fakes.discord import FakeChannel, FakeDiscord, FakeMessage, FakeUser
from fakes.telegram import FakeChat, FakeTelegram
from models import Handoff, PendingDelivery
from tests.conftest import free_port
from tests.test_bot_platforms import start_bot
from tests.test_discord_desk import EPHEMERAL
from tests.test_scale import guild_id_on

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),  # one database, two processes
]

WEBHOOK_SECRET = "multi-process_webhook-secret"
GRACE = 15.0
"""ops.shutdown_grace_seconds: longer than the long reply, so SIGTERM lets it finish."""
CHUNK_DELAY = 0.005
"""Seconds between the demo agent's words: its long answer streams for about three seconds."""
START_WITHIN = 60.0
Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


class BotProcess:
    """One `bot.py run`: its output is read as it comes, so the pipes never fill, and kept for asserts."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, ops_url: str) -> None:
        self.name, self.process, self.ops_url = name, process, ops_url
        self.lines: list[str] = []
        self._news = asyncio.Condition()
        assert process.stdout is not None and process.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(stream)) for stream in (process.stdout, process.stderr)
        ]

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            async with self._news:
                self.lines.append(raw.decode(errors="replace"))
                self._news.notify_all()
        async with self._news:
            self._news.notify_all()

    @property
    def logs(self) -> str:
        return "".join(self.lines)

    async def serving(self) -> None:
        """Wait for the line bot.py logs once every bridge has started; fail at once if it exits."""

        def settled() -> bool:
            return "serving " in self.logs or all(reader.done() for reader in self._readers)

        async with asyncio.timeout(START_WITHIN), self._news:
            await self._news.wait_for(settled)
        assert "serving " in self.logs, f"process {self.name} did not start:\n{self.logs}"

    async def stop(self, within: float = GRACE + 10) -> int:
        """SIGTERM (unless it has exited), then wait for the exit code; kill it if it hangs."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(within):
                code = await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(f"process {self.name} ignored SIGTERM for {within}s:\n{self.logs}") from None
        await asyncio.gather(*self._readers)
        return code


@dataclass
class World:
    """The fakes both processes talk to, and everyone on them (set up before the processes connect)."""

    discord: FakeDiscord
    telegram: FakeTelegram
    telegram_url: str
    rooms: tuple[list[FakeChannel], list[FakeChannel]]
    """Text channels in a server routed to each shard, one per member; the desk is in shard 1's."""
    members: list[FakeUser]
    """Members of both servers, each with a DM channel (DMs arrive on shard 0)."""
    mods: FakeChannel
    """The desk channel, in the shard-1 server."""
    moderators: int
    maya: FakeUser
    """A moderator."""


@pytest.fixture
async def world() -> AsyncIterator[World]:
    telegram = FakeTelegram()
    async with FakeDiscord(shards=2) as discord, telegram.running() as telegram_url:
        owner = discord.add_user("owner")
        guilds = (
            discord.add_guild("Shard zero", owner, guild_id=guild_id_on(0, 2)),
            discord.add_guild("Support", owner, guild_id=guild_id_on(1, 2)),
        )
        members = [discord.add_user(name) for name in ("alice", "bob", "carol")]
        moderators = discord.add_role(guilds[1], "Moderators")
        maya = discord.add_user("maya")
        discord.add_member(guilds[1], maya, (moderators,))
        rooms: tuple[list[FakeChannel], list[FakeChannel]] = ([], [])
        for guild, channels in zip(guilds, rooms, strict=True):
            for member in members:
                discord.add_member(guild, member)
                channels.append(discord.add_text_channel(guild, f"room-{member.username}"))
        for member in members:
            discord.dm_channel(member)
        mods = discord.add_text_channel(guilds[1], "mods")
        yield World(discord, telegram, telegram_url, rooms, members, mods, moderators, maya)
        assert discord.rate_limited == 0 and not telegram.refusals(429)


def config(
    world: World, database_url: str, *, instance: str, shard: int, ops_port: int, webhook_port: int | None
) -> str:
    """One process's switchboard.toml (secrets come from the environment)."""
    text = f"""
[database]
url = "{database_url}"

[ops]
instance = "{instance}"
listen = "127.0.0.1:{ops_port}"
shutdown_grace_seconds = {GRACE}

[streaming]
telegram_edit_interval = 0.2

[discord]
api_base = "{world.discord.api_base}"
shard_count = 2
shard_ids = [{shard}]
sync_commands = {"true" if shard == 0 else "false"}
message_content_intent = true
guild_ready_timeout = 0.05
global_requests_per_second = 25

[discord.handoff]
channel = {world.mods.id}
moderator_roles = [{world.moderators}]
"""
    if webhook_port is not None:
        text += f"""
[telegram]
base_url = "{world.telegram_url}"
webhook_url = "http://127.0.0.1:{webhook_port}/telegram/updates"
webhook_listen = "127.0.0.1:{webhook_port}"
"""
    return text


async def launch(
    tmp_path: Path, world: World, database_url: str, *, instance: str, shard: int, telegram: bool
) -> BotProcess:
    home = tmp_path / instance
    home.mkdir()
    ops_port = free_port()
    (home / "switchboard.toml").write_text(
        config(
            world,
            database_url,
            instance=instance,
            shard=shard,
            ops_port=ops_port,
            webhook_port=free_port() if telegram else None,
        )
    )
    env = {
        "SWITCHBOARD_LOGGING__LEVEL": "INFO",
        "SWITCHBOARD_AGENTS__DEMO__CHUNK_DELAY": str(CHUNK_DELAY),
        "SWITCHBOARD_DISCORD__TOKEN": world.discord.token,
    }
    if telegram:
        env |= {
            "SWITCHBOARD_TELEGRAM__TOKEN": world.telegram.token,
            "SWITCHBOARD_TELEGRAM__WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
    return BotProcess(instance, await start_bot(home, env), f"http://127.0.0.1:{ops_port}")


@dataclass
class Bots:
    a: BotProcess
    """Discord shard 0 (DMs and the shard-0 server) and Telegram by webhook."""
    b: BotProcess
    """Discord shard 1 (the support server with the desk), no Telegram."""


@pytest.fixture
async def bots(tmp_path: Path, world: World, database_url: str, engine: AsyncEngine) -> AsyncIterator[Bots]:
    """Both processes serving; `engine` has migrated the database, as `bot.py migrate` would first."""
    started: list[BotProcess] = []
    try:
        for instance, shard, telegram in (("a", 0, True), ("b", 1, False)):
            started.append(
                await launch(tmp_path, world, database_url, instance=instance, shard=shard, telegram=telegram)
            )
        await asyncio.gather(*(bot.serving() for bot in started))
        assert sorted(world.discord.identified_shards) == [(0, 2), (1, 2)]
        assert world.telegram.webhook is not None
        yield Bots(*started)
    finally:
        for bot in started:
            await bot.stop()
            print(f"--- process {bot.name} ---\n{bot.logs}")  # pytest shows it when a test fails


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 10.0, what: str) -> None:
    """Poll `check` until it holds: a scrape of another process, which nothing here can signal."""
    try:
        async with asyncio.timeout(within):
            while not await check():  # noqa: ASYNC110 - there is no event to wait on across processes
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out after {within}s waiting for {what}") from None


async def scrape(bot: BotProcess) -> Metrics:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{bot.ops_url}/metrics")
    response.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float:
    """The sample with exactly these labels; 0 when absent, as a counter never touched is."""
    return metrics.get((name, frozenset(labels.items())), 0.0)


def total(metrics: Metrics, name: str) -> float:
    return sum(v for (sample, _), v in metrics.items() if sample == name)


async def replies_counted(bot: BotProcess, expected: dict[str, float]) -> None:
    """Until the process reports exactly `expected` ok demo replies by platform and none failed."""

    async def counted() -> bool:
        metrics = await scrape(bot)
        ok = {
            platform: value(
                metrics, "switchboard_replies_total", platform=platform, agent="demo", outcome="ok"
            )
            for platform in ("discord", "telegram")
        }
        return ok == expected and total(metrics, "switchboard_replies_total") == sum(expected.values())

    await eventually(counted, what=f"{bot.name} counting {expected}")


def echo(text: str, turn: int = 1) -> str:
    """The demo agent's answer to words it has no script for."""
    return (
        f"You said: “{text}”. I'm only a demo, so I can't answer that for real, but this reply was "
        f"streamed to you in small chunks. This is message #{turn} of our conversation. "
        "Try “joke”, “long”, “fail” or “talk to a human”."
    )


def texts(telegram: FakeTelegram, chat: FakeChat) -> list[str]:
    return [m.text for m in telegram.bot_messages(chat)]


async def telegram_shows(
    telegram: FakeTelegram, chat: FakeChat, expected: list[str], *, within: float = 10.0
) -> None:
    """Until the bot's messages in `chat` are exactly `expected` (a queued delivery waits for A's timer,
    which runs every two seconds)."""
    await telegram.wait_for(lambda: texts(telegram, chat) == expected, within=within, what=f"{expected}")


async def test_concurrent_users_on_both_shards_and_telegram_are_each_answered_once(
    world: World, bots: Bots
) -> None:
    discord, telegram = world.discord, world.telegram
    asked = [
        (room, member, f"question from {member.username} on shard {shard}")
        for shard, rooms in enumerate(world.rooms)
        for room, member in zip(rooms, world.members, strict=True)
    ]
    asked += [(discord.dm_channel(m), m, f"private question from {m.username}") for m in world.members[:2]]
    chats = [(telegram.user(name), f"telegram question from {name}") for name in ("Tom", "Tia", "Ted")]

    for user, words in chats:
        telegram.say(telegram.private_chat(user), user, words)
    mention = f"<@{discord.bot.id}> "
    await asyncio.gather(
        *(
            discord.user_says(room, author, words if room.guild_id is None else mention + words)
            for room, author, words in asked
        )
    )

    for room, _, words in asked:
        await discord.wait_for_texts(room, [echo(words)], within=20)
    for user, words in chats:
        await telegram_shows(telegram, telegram.private_chat(user), [echo(words)], within=20)
    await replies_counted(bots.a, {"discord": 5, "telegram": 3})  # shard 0's server, the DMs, Telegram
    await replies_counted(bots.b, {"discord": 3, "telegram": 0})  # shard 1's server only
    for bot in (bots.a, bots.b):
        assert total(await scrape(bot), "switchboard_platform_429_total") == 0
    for room, _, words in asked:  # still once each, now that both processes have finished everything
        assert [m.content for m in discord.bot_messages(room)] == [echo(words)]
    assert all(status == 200 for _, status in telegram.deliveries) and telegram.count("getUpdates") == 0


async def press(discord: FakeDiscord, note: FakeMessage, action: str, handoff_id: int, user: FakeUser) -> str:
    """Press a desk button; returns what only the presser is told."""
    answer = await discord.answer(await discord.press(note, f"sbh:{action}:{handoff_id}", user), within=10)
    assert answer.flags & EPHEMERAL
    return answer.content


async def test_a_telegram_handoff_is_claimed_and_served_from_the_other_process(
    world: World, bots: Bots, db: async_sessionmaker[AsyncSession]
) -> None:
    discord, telegram, maya = world.discord, world.telegram, world.maya
    uma = telegram.user("Uma")
    chat = telegram.private_chat(uma)
    telegram.say(chat, uma, "I want to talk to a human")
    seen = ["Of course. I'm asking a human moderator to join this conversation.", Notices.handoff_requested]
    await telegram_shows(telegram, chat, seen)

    note = await discord.wait_until(
        lambda: next((m for m in discord.bot_messages(world.mods) if m.embeds), None),
        within=10,
        what="the notification A posts in the desk channel of shard 1's server",
    )
    thread = await discord.wait_until(lambda: discord.channels.get(note.id), what="the handoff thread")
    async with db() as session:
        handoff_id = (await session.scalars(select(Handoff.id))).one()

    claimed = await press(discord, note, "claim", handoff_id, maya)  # a press only B receives
    assert claimed.startswith(f"You claimed handoff #{handoff_id}.")
    seen.append(UserNotices.claimed.format(name="maya"))
    await telegram_shows(telegram, chat, seen)

    await discord.user_says(thread, maya, "Hi Uma, Maya here.")
    seen.append(UserNotices.from_moderator.format(name="maya", text="Hi Uma, Maya here."))
    await telegram_shows(telegram, chat, seen)

    telegram.say(chat, uma, "thanks, it's about my invoice")
    await discord.wait_until(
        lambda: (
            [m.content for m in discord.bot_messages(thread)][-1:]
            == ["**Uma:** thanks, it's about my invoice"]
        ),
        within=10,
        what="Uma's words in the thread",
    )

    returned = await press(discord, note, "return", handoff_id, maya)
    assert "is handed back to the assistant" in returned
    seen.append(UserNotices.returned)
    await telegram_shows(telegram, chat, seen)
    telegram.say(chat, uma, "is it sorted?")
    seen.append(echo("is it sorted?", turn=2))
    await telegram_shows(telegram, chat, seen)

    a, b = await scrape(bots.a), await scrape(bots.b)
    transitions = "switchboard_handoff_transitions_total"
    assert value(a, transitions, status="requested") == 1 and value(b, transitions, status="requested") == 0
    assert value(b, transitions, status="claimed") == 1 and value(a, transitions, status="claimed") == 0
    assert value(b, transitions, status="returned") == 1
    await replies_counted(bots.a, {"discord": 0, "telegram": 2})  # the handoff request and the last answer
    await replies_counted(bots.b, {"discord": 0, "telegram": 0})
    assert total(a, "switchboard_platform_429_total") == total(b, "switchboard_platform_429_total") == 0
    async with httpx.AsyncClient() as client:
        for bot in (bots.a, bots.b):
            assert (await client.get(f"{bot.ops_url}/healthz")).status_code == 200
    async with db() as session:  # everything B queued for Uma was delivered by A, and nothing is left
        assert await session.scalar(select(func.count()).select_from(PendingDelivery)) == 0


async def test_sigterm_mid_reply_lets_the_reply_finish_on_its_exact_text(world: World, bots: Bots) -> None:
    discord = world.discord
    room, alice = world.rooms[0][0], world.members[0]
    await discord.user_says(room, alice, f"<@{discord.bot.id}> long")
    await discord.wait_until(
        lambda: any(m.content for m in discord.bot_messages(room)), within=10, what="the first words"
    )
    stopped_at = time.monotonic()
    bots.a.process.send_signal(signal.SIGTERM)
    shown_then = "".join(m.content for m in discord.bot_messages(room))
    assert len(shown_then) < len(LONG_ANSWER) / 2  # it really was in the middle of the reply

    assert await bots.a.stop() == 0, bots.a.logs
    assert time.monotonic() - stopped_at < GRACE
    parts = [m.content for m in discord.bot_messages(room)]  # split at a paragraph; the break is dropped
    assert len(parts) == 2 and "\n\n".join(parts) == LONG_ANSWER
    logs = bots.a.logs
    assert "shutting down: finishing replies in progress" in logs and "cut off" not in logs
    for secret in (discord.token, world.telegram.token, WEBHOOK_SECRET):
        assert secret not in logs
