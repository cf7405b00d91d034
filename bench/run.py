"""Benchmark the real bot process against loopback fakes of Discord, Telegram and a paced provider.

    .venv/bin/python -m bench.run                  # levels 1, 50 and 500: 6 to 7 minutes on 2 cores
    .venv/bin/python -m bench.run --quick          # levels 1 and 10 with short replies: under a minute
    .venv/bin/python -m bench.run --json           # the same figures as JSON on stdout

`python bot.py run` serves both bridges against the fakes, which enforce the platforms' limits with
real 429s, and an `[agents.bench] kind = "openai"` pointed at `bench.provider.PacedProvider` (by
default 300-token replies at 50 tokens/s, the first chunk after 300 ms). Each level sends that many
user messages at once, half on Discord and half on Telegram, in two layouts: "spread" (each reply in
its own chat: Discord DMs, Telegram private chats streamed as drafts) and "piled" (`--per-chat`
replies per chat: Discord guild channels and Telegram groups, each message @mentioning the bot).
Piled chats are bound by the per-chat limits (Discord: 5 messages per 5 s per channel; Telegram: one a
second per chat and 20 a minute per group), which is why the default is 20 replies per chat: 500
replies in 25 chats take about two minutes. Level 1 sends one reply per platform, one after the other.

Reported per level, layout and platform: first-visible latency over the provider's first chunk and
the least delay the platform limits force on it, final-visible lag after the last chunk, platform
requests per reply, 429 answers, and how many replies ended showing exactly the provider's text; per
level and layout the bot's CPU time per provider chunk; the bot's peak RSS; and its RSS per idle
session, from two more idle starts, on a database holding `--sessions` conversations and on an empty
one. Every target is printed as PASS or MISS; the exit status is 0 unless the harness itself failed.

A level ends when every reply is delivered, when nothing has happened for `--stall` seconds (the bot
gave up on the rest), or after `--round-timeout`. Each bot run gets a fresh SQLite file, or with
`--database-url postgresql://...` a throwaway database created on that server (the role needs
CREATEDB) and dropped afterwards. `--keep DIR` keeps the bot's logs (and SQLite files) there.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.observe import (
    Platform,
    Watch,
    discord_floor,
    discord_shown,
    telegram_floor,
    telegram_shown,
)
from bench.process import BotProcess, HarnessError, fresh_database, seed_sessions
from bench.provider import PacedProvider, reply_text
from bench.report import IdleMemory, Layout, PlatformResult, ReplyTiming, Report, ScenarioResult, percentile
from fakes.discord import FakeDiscord, FakeGuild
from fakes.discord import RequestRecord as DiscordRecord
from fakes.telegram import FakeTelegram
from fakes.telegram import RequestRecord as TelegramRecord
from models import safe_url

DISCORD_MAX_LENGTH = 2000
WARM_UP_TOKENS = 3
PLATFORMS: tuple[Platform, Platform] = ("discord", "telegram")


@dataclass(frozen=True)
class Options:
    levels: tuple[int, ...]
    layouts: tuple[Layout, ...]
    tokens: int
    rate: float
    first_chunk: float
    per_chat: int
    sessions: int
    database_url: str | None
    round_timeout: float
    stall: float
    json: bool
    keep: Path | None


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--levels", help="replies at once, comma-separated (default 1,50,500)")
    parser.add_argument("--layouts", default="spread,piled", help="spread, piled or both (default)")
    parser.add_argument("--tokens", type=int, help="tokens (chunks) per reply (default 300)")
    parser.add_argument("--rate", type=float, default=50.0, help="tokens per second (default 50)")
    parser.add_argument("--first-chunk", type=float, default=0.3, help="seconds to the first chunk (0.3)")
    parser.add_argument("--per-chat", type=int, help="replies per chat in the piled layout (default 20)")
    parser.add_argument("--sessions", type=int, help="idle sessions for the RSS measure; 0 skips it (10000)")
    parser.add_argument("--database-url", help="a PostgreSQL server to create throwaway databases on")
    parser.add_argument("--round-timeout", type=float, default=600.0, help="seconds a level may take (600)")
    parser.add_argument(
        "--stall", type=float, default=30.0, help="give up on a level after this many quiet seconds (30)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="levels 1,10, 30 tokens, 5 per chat, 1000 sessions"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--keep", type=Path, help="keep the bot's logs and databases in this directory")
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    options = Options(
        levels=_levels(args.levels or ("1,10" if quick else "1,50,500"), parser),
        layouts=tuple(_layouts(args.layouts, parser)),
        tokens=args.tokens or (30 if quick else 300),
        rate=args.rate,
        first_chunk=args.first_chunk,
        per_chat=args.per_chat or (5 if quick else 20),
        sessions=args.sessions if args.sessions is not None else (1_000 if quick else 10_000),
        database_url=args.database_url,
        round_timeout=args.round_timeout,
        stall=args.stall,
        json=args.json,
        keep=args.keep,
    )
    longest = reply_text(reply_id(999, 99_999), options.tokens)
    if options.tokens < 1 or len(longest) > DISCORD_MAX_LENGTH:
        parser.error(
            f"--tokens must keep a reply within one Discord message ({DISCORD_MAX_LENGTH} characters)"
        )
    if options.rate <= 0 or options.first_chunk < 0 or options.per_chat < 1 or options.sessions < 0:
        parser.error("--rate and --per-chat must be positive, --first-chunk and --sessions not negative")
    if options.database_url and not options.database_url.startswith(("postgresql", "postgres")):
        parser.error("--database-url must be a postgresql:// URL (SQLite is the default)")
    return options


def _levels(value: str, parser: argparse.ArgumentParser) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in value.split(","))
    except ValueError:
        parser.error("--levels: expected comma-separated whole numbers")
    if min(levels) < 1:
        parser.error("--levels: every level must be at least 1")
    return levels


def _layouts(value: str, parser: argparse.ArgumentParser) -> list[Layout]:
    known: dict[str, Layout] = {"spread": "spread", "piled": "piled"}
    unknown = [part for part in value.split(",") if part not in known]
    if unknown:
        parser.error(f"--layouts: unknown layout {unknown[0]!r} (spread, piled)")
    return [known[part] for part in value.split(",")]


def reply_id(round_number: int, index: int) -> str:
    """Unique per reply; `bench.observe.REPLY_ID` recognises it at the start of a shown text."""
    return f"r{round_number}n{index}"


# -- the world the bot sees ------------------------------------------------------------------------

Say = Callable[[str], Awaitable[object]]


@dataclass(frozen=True)
class Chat:
    platform: Platform
    scopes: tuple[str, ...]
    """The platform's rate-limit scopes a message here spends from (see `bench.observe.Floor`)."""
    newcomer: Callable[[], Say]
    """A new user in this chat; returns how they say something to the bot (with a mention if needed)."""


@dataclass(frozen=True)
class Reply:
    """One user message to send, and the reply it should get."""

    id: str
    tokens: int
    chat: Chat
    say: Callable[[], Awaitable[object]]

    @property
    def platform(self) -> Platform:
        return self.chat.platform

    @property
    def expected(self) -> str:
        return reply_text(self.id, self.tokens)


@dataclass
class Scenario:
    level: int
    layout: Layout
    rounds: list[list[Reply]]
    """Replies sent at once, round after round."""

    @property
    def replies(self) -> list[Reply]:
        return [reply for replies in self.rounds for reply in replies]

    def chats(self, platform: Platform) -> int:
        return len({id(r.chat) for r in self.replies if r.platform == platform})


@dataclass
class World:
    """Users and chats in both fakes. Chats are created before the bot connects, since Discord announces
    guilds and their channels only at login."""

    discord: FakeDiscord
    telegram: FakeTelegram
    rounds: int = 0
    _guild: FakeGuild | None = field(default=None, init=False)

    def scenario(self, level: int, layout: Layout, tokens: int, per_chat: int) -> Scenario:
        """Half the replies on each platform at once; a single reply runs once per platform instead."""
        if level == 1:
            rounds = [self.round({platform: 1}, layout, per_chat, tokens) for platform in PLATFORMS]
        else:
            rounds = [
                self.round(
                    {"discord": math.ceil(level / 2), "telegram": level // 2}, layout, per_chat, tokens
                )
            ]
        return Scenario(level, layout, rounds)

    def round(self, counts: dict[Platform, int], layout: Layout, per_chat: int, tokens: int) -> list[Reply]:
        """Replies to send at once: each in its own chat (spread), or `per_chat` to a chat (piled)."""
        self.rounds += 1
        replies: list[Reply] = []
        for platform, count in counts.items():
            chats = [
                self._chat(platform, layout)
                for _ in range(count if layout == "spread" else math.ceil(count / per_chat))
            ]
            for index in range(count):
                rid = reply_id(self.rounds, len(replies))
                chat = chats[index % len(chats)]
                say = functools.partial(chat.newcomer(), f"{rid} {tokens}")
                replies.append(Reply(rid, tokens, chat, say))
        return replies

    def _chat(self, platform: Platform, layout: Layout) -> Chat:
        if platform == "discord":
            return self._dm() if layout == "spread" else self._channel()
        return self._private() if layout == "spread" else self._group()

    def _dm(self) -> Chat:
        discord = self.discord
        user = discord.add_user(f"user{len(discord.users)}")
        channel = discord.dm_channel(user)

        def newcomer() -> Say:
            return lambda text: discord.user_says(channel, user, text)

        return Chat("discord", ("global", f"channel:{channel.id}"), newcomer)

    def _channel(self) -> Chat:
        discord = self.discord
        if self._guild is None:
            self._guild = discord.add_guild("bench", discord.add_user("owner"))
        guild = self._guild
        channel = discord.add_text_channel(guild, f"chat{len(discord.channels)}")

        def newcomer() -> Say:
            user = discord.add_user(f"user{len(discord.users)}")
            discord.add_member(guild, user)
            return lambda text: discord.user_says(channel, user, f"<@{discord.bot.id}> {text}")

        return Chat("discord", ("global", f"channel:{channel.id}"), newcomer)

    def _private(self) -> Chat:
        telegram = self.telegram
        user = telegram.user("user")
        chat = telegram.private_chat(user)

        def newcomer() -> Say:
            return _async(lambda text: telegram.say(chat, user, text))

        return Chat("telegram", ("overall", f"chat:{chat.id}"), newcomer)

    def _group(self) -> Chat:
        telegram = self.telegram
        chat = telegram.group(f"chat{len(telegram.chats)}")

        def newcomer() -> Say:
            user = telegram.user("user")
            return _async(lambda text: telegram.say(chat, user, f"@{telegram.bot.username} {text}"))

        return Chat("telegram", ("overall", f"chat:{chat.id}", f"group:{chat.id}"), newcomer)


def _async(call: Callable[[str], object]) -> Say:
    async def say(text: str) -> object:
        return call(text)

    return say


# -- running it ------------------------------------------------------------------------------------


class LoopLag:
    """How late this process's event loop wakes up. The fakes and the provider share it, so while it
    runs late, the times they record run late too: read the figures in that light."""

    def __init__(self, tick: float = 0.01) -> None:
        self.tick = tick
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.tick)
            self.samples.append(time.monotonic() - before - self.tick)


def bot_config(discord: FakeDiscord, telegram_url: str, provider: PacedProvider) -> str:
    return f"""\
[discord]
api_base = "{discord.api_base}"
gateway_url = "{discord.gateway_url}"
command_guilds = []
guild_ready_timeout = 0.1

[telegram]
base_url = "{telegram_url}"
poll_timeout = 1

[agents.bench]
kind = "openai"
base_url = "{provider.url}"
model = "{provider.model}"

[routing]
default_agent = "bench"

[ops]
shutdown_grace_seconds = 10
"""


async def first_of(*conditions: Awaitable[object], bot: BotProcess, within: float) -> int | None:
    """Wait for the first of `conditions` to finish and return its index; None if `within` seconds pass
    first. The bot exiting meanwhile fails the harness."""
    futures = [asyncio.ensure_future(condition) for condition in conditions]
    exited = asyncio.ensure_future(bot.exited())
    try:
        await asyncio.wait({*futures, exited}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in (*futures, exited):
            future.cancel()
        await asyncio.gather(*futures, exited, return_exceptions=True)
    if bot.process.returncode is not None:
        raise HarnessError(f"the bot exited early:\n{bot.tail()}")
    finished = [i for i, f in enumerate(futures) if f.done() and not f.cancelled() and not f.exception()]
    return finished[0] if finished else None


@asynccontextmanager
async def running_bot(
    provider: PacedProvider, workdir: Path, database: str, world: World | None = None
) -> AsyncIterator[BotProcess]:
    """Serve the fakes, start the bot on `database`, and yield it once both bridges are up."""
    discord, telegram = (world.discord, world.telegram) if world else (FakeDiscord(), FakeTelegram())
    async with discord, telegram.running() as telegram_url:
        env = {
            "SWITCHBOARD_DATABASE__URL": database,
            "SWITCHBOARD_DISCORD__TOKEN": discord.token,
            "SWITCHBOARD_TELEGRAM__TOKEN": telegram.token,
        }
        bot = await BotProcess.start(workdir, bot_config(discord, telegram_url, provider), env)
        try:
            up = asyncio.gather(
                discord.connected(within=60),
                telegram.wait_for(lambda: telegram.count("setMyCommands") > 0, within=60, what="start"),
            )
            if await first_of(up, bot=bot, within=60) is None:
                raise HarnessError(f"the bridges did not start within 60s:\n{bot.tail()}")
            yield bot
        finally:
            await bot.stop()


class LoadRun:
    """Every scenario against one bot process, then its peak RSS."""

    def __init__(self, options: Options, provider: PacedProvider, workdir: Path) -> None:
        self.options = options
        self.provider = provider
        self.said_at: dict[str, float] = {}
        """When each reply's user message was sent (`time.monotonic()`), for the time to the provider."""
        self.workdir = workdir
        self.watches: dict[Platform, Watch[Any]] = {
            "discord": Watch[DiscordRecord](discord_shown, provider.pulse),
            "telegram": Watch[TelegramRecord](telegram_shown, provider.pulse),
        }
        telegram = FakeTelegram()
        telegram.requests = self.watches["telegram"].log
        self.world = World(FakeDiscord(requests=self.watches["discord"].log), telegram)

    async def run(self) -> tuple[list[ScenarioResult], int]:
        options = self.options
        warm_up = self.world.round({"discord": 1, "telegram": 1}, "spread", 1, WARM_UP_TOKENS)
        scenarios = [
            self.world.scenario(level, layout, options.tokens, options.per_chat)
            for level in options.levels
            for layout in options.layouts
        ]
        async with (
            fresh_database(options.database_url, self.workdir, "load") as database,
            running_bot(self.provider, self.workdir, database, self.world) as bot,
        ):
            if not await self._play(bot, warm_up, ScenarioResult(0, "spread", [])):
                raise HarnessError(f"the bot did not answer the warm-up messages:\n{bot.tail()}")
            results = []
            for scenario in scenarios:
                _progress(f"level {scenario.level} {scenario.layout}: {_describe(scenario)}")
                result = ScenarioResult(
                    scenario.level,
                    scenario.layout,
                    [PlatformResult(p, scenario.layout, scenario.chats(p)) for p in PLATFORMS],
                )
                for replies in scenario.rounds:
                    await self._play(bot, replies, result)
                exact = sum(p.exact for p in result.platforms)
                _progress(f"  {exact}/{len(scenario.replies)} exact in {result.wall_seconds:.1f}s")
                results.append(result)
            return results, bot.memory_bytes("VmHWM")

    async def _play(self, bot: BotProcess, replies: list[Reply], result: ScenarioResult) -> bool:
        """Send `replies` at once, wait until each is delivered (or the round stalls or times out) and
        the bot is idle again, and add what was seen to `result`. Returns whether all were delivered."""
        for platform, watch in self.watches.items():
            watch.expect({r.id: r.expected for r in replies if r.platform == platform})
        cpu, started = bot.cpu_seconds(), time.monotonic()
        with LoopLag() as lag:
            for reply in replies:
                self.said_at[reply.id] = time.monotonic()
                await reply.say()
            delivered = asyncio.gather(*(watch.delivered() for watch in self.watches.values()))
            stalled = self.provider.pulse.quiet_for(self.options.stall)
            ended = await first_of(delivered, stalled, bot=bot, within=self.options.round_timeout)
            if ended != 0:
                why = f"nothing happened for {self.options.stall:g}s" if ended == 1 else "it timed out"
                _progress(f"  gave up waiting for the rest of the replies: {why}")
            if not await bot.settle():
                _progress("  the bot is still busy; going on regardless")
        delivered_at = [self.watches[r.platform].replies[r.id].final_visible for r in replies]
        result.wall_seconds += max((at for at in delivered_at if at is not None), default=started) - started
        result.cpu_seconds += bot.cpu_seconds() - cpu
        result.harness_lag_p99 = max(result.harness_lag_p99 or 0.0, percentile(lag.samples, 99) or 0.0)
        result.chunks += sum(
            self.provider.streams[r.id].chunks for r in replies if r.id in self.provider.streams
        )
        self._collect(replies, result)
        return ended == 0

    def _collect(self, replies: list[Reply], result: ScenarioResult) -> None:
        floors = {
            "discord": discord_floor(self.world.discord),
            "telegram": telegram_floor(self.world.telegram),
        }
        for platform_result in result.platforms:
            platform = platform_result.platform
            mine = [r for r in replies if r.platform == platform]
            if not mine:
                continue
            watch = self.watches[platform]
            platform_result.requests += watch.requests
            platform_result.limited += watch.limited
            streams = [self.provider.streams.get(r.id) for r in mine]
            started = [
                (s.first_chunk_at, list(r.chat.scopes))
                for r, s in zip(mine, streams, strict=True)
                if s and s.first_chunk_at is not None
            ]
            forced = iter(floors[platform].delays(started))
            for reply, stream in zip(mine, streams, strict=True):
                seen = watch.replies[reply.id]
                first = stream.first_chunk_at if stream else None
                last = stream.last_chunk_at if stream and stream.complete else None
                platform_result.replies.append(
                    ReplyTiming(
                        to_agent=_since(self.said_at.get(reply.id), stream.requested_at if stream else None),
                        first_visible=_since(first, seen.first_visible),
                        final_lag=_since(last, seen.final_visible),
                        final_shown_lag=_since(last, seen.final_shown),
                        floor=next(forced) if first is not None else None,
                    )
                )


def _since(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


def _describe(scenario: Scenario) -> str:
    return ", ".join(
        f"{sum(r.platform == p for r in scenario.replies)} on {p} in {_plural(scenario.chats(p), 'chat')}"
        for p in PLATFORMS
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


async def idle_memory(options: Options, provider: PacedProvider, workdir: Path) -> IdleMemory:
    """The bot's RSS once idle, on a database holding `options.sessions` idle sessions and on an empty one."""
    rss: dict[bool, int] = {}
    for seeded in (False, True):
        name = "seeded" if seeded else "empty"
        async with fresh_database(options.database_url, workdir, name) as database:
            if seeded:
                await seed_sessions(database, options.sessions)
            async with running_bot(provider, workdir, database) as bot:
                if not await bot.settle():
                    raise HarnessError("the bot never went idle after starting")
                rss[seeded] = bot.memory_bytes("VmRSS")
    return IdleMemory(options.sessions, rss[False], rss[True])


async def benchmark(options: Options) -> Report:
    with _workdir(options.keep) as workdir:
        async with PacedProvider(rate=options.rate, first_chunk=options.first_chunk) as provider:
            scenarios, peak = await LoadRun(options, provider, workdir).run()
            idle = None
            if options.sessions:
                _progress(f"idle RSS: an empty database, then {options.sessions:,} sessions")
                idle = await idle_memory(options, provider, workdir)
            if provider.rejected:
                raise HarnessError(f"the provider got requests it could not place: {provider.rejected[:3]}")
    settings = {
        "tokens": options.tokens,
        "rate": options.rate,
        "first_chunk": options.first_chunk,
        "per_chat": options.per_chat,
        "database": safe_url(options.database_url) if options.database_url else "SQLite",
        "levels": list(options.levels),
        "layouts": list(options.layouts),
    }
    return Report(settings, scenarios, peak, idle)


@contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as directory:
        yield Path(directory)


def _progress(line: str) -> None:
    print(f"bench: {line}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        report = asyncio.run(benchmark(options))
    except HarnessError as exc:
        print(f"bench: the harness failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_json(), indent=2) if options.json else report.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
