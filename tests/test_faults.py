"""Hostile input and platform faults end to end (issue 7): the real discord.py and python-telegram-bot
against the loopback fakes, the real Relay and database, and a scripted agent.

Each test asserts that nothing is lost: the user's words reach the agent (or are deliberately not sent),
the reply ends on its exact text or a clear notice, and the conversation carries on. Faults the fakes
do not produce on their own (5xx answers, 429 storms) are injected by the two subclasses below, which
answer chosen requests with the chosen status before the fake sees them. Every test also runs under a
log scan: with the production redaction filter in place, no token may appear in any log line.

Faults covered elsewhere are listed in the README's fault table rather than repeated here.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import re
import unicodedata
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Button, Message, TextDelta
from bridges.discord.bridge import DiscordBridge
from bridges.discord.cog import Replies as DiscordReplies
from bridges.relay import Notices, Relay
from bridges.split import utf16_length
from bridges.telegram.handlers import Replies as TelegramReplies
from fakes.discord import FakeChannel, FakeDiscord, FakeMessage, FakeUser
from fakes.telegram import FakeTelegram
from fakes.telegram.harness import POLICY, ScriptedAgent, Telegram, running
from fakes.telegram.server import ApiError, Params
from models import Role, StoredButton, TranscriptEntry
from ops.logs import TEXT_FORMAT, RedactSecrets
from tests.discord_support import discord_config

pytestmark = pytest.mark.e2e

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""What is tested here is the bridges' and renderer's behaviour; the button store runs on both databases."""

DISCORD_TOKEN = "fake-discord-token-0123456789abcdef"
TELEGRAM_TOKEN = "987654:TELEGRAM-secret-token-abcdef"
WINDOW = 0.25
NO_PINGS: dict[str, list[str]] = {"parse": []}
MESSAGES = "POST /channels/{channel_id}/messages"
EDITS = "PATCH /channels/{channel_id}/messages/{message_id}"

# Text no bridge may mangle: right-to-left scripts, explicit bidi controls and isolates, zero-width
# characters, emoji ZWJ sequences with skin tones, flags, combining marks.
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"
HOSTILE_UNICODE = (
    "שלום עולם مرحبا بالعالم \u202eevil.exe\u202c \u2067ltr in rtl\u2069 "
    f"a\u200bb\u200cc\u2060d {FAMILY} \U0001f44d\U0001f3fd \U0001f1e9\U0001f1ea e\u0301\u0302"
)


# -- the log scan ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_secret_in_any_log_line() -> Iterator[None]:
    """Capture every record at DEBUG through the production formatter and redaction filter, then check
    that no token (nor its URL-encoded form, as it appears in request URLs) survived into a line."""
    secrets = [DISCORD_TOKEN, TELEGRAM_TOKEN]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    lines = stream.getvalue().splitlines()
    assert lines, "the log scan saw nothing: is logging captured at all?"
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), secret.split(":")[-1]}:
            leaked = [line for line in lines if form in line]
            assert not leaked, f"a secret reached the log: {leaked[0][:200]!r}"


# -- fault injection ---------------------------------------------------------------------------------


class FaultyDiscord(FakeDiscord):
    """FakeDiscord that answers the next requests of a route with injected statuses: a 5xx as Discord's
    front end sends it, or a 429 with `retry_after` and the headers discord.py reads."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.faults: dict[str, list[tuple[int, float]]] = defaultdict(list)

    def inject(self, route: str, status: int, times: int = 1, retry_after: float = 0.0) -> None:
        self.faults[route].extend([(status, retry_after)] * times)

    def _guarded(self, spec: Any) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        inner = super()._guarded(spec)
        route = f"{spec.method} {spec.path}"

        async def handle(request: web.Request) -> web.StreamResponse:
            if not self.faults[route]:
                return await inner(request)
            status, retry_after = self.faults[route].pop(0)
            major = ":".join(request.match_info[key] for key in spec.major)
            if status == 429:
                body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
                headers = {
                    "Retry-After": str(max(1, round(retry_after))),
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                    "X-RateLimit-Bucket": "injected",
                    "X-RateLimit-Scope": "user",
                }
                return self._respond(request, route, major, {}, 429, body, headers)
            return self._respond(request, route, major, {}, status, {"message": "upstream error", "code": 0})

        return handle


@dataclass(frozen=True)
class Arrival:
    method: str
    at: float
    injected: int = 0
    """The status injected instead of an answer, 0 when the fake answered."""


class FaultyTelegram(FakeTelegram):
    """FakeTelegram that answers the next calls of a method with injected errors (Telegram's 5xx, or
    flood control with `retry_after`), and notes when every call of a method arrived."""

    def __init__(self) -> None:
        super().__init__(TELEGRAM_TOKEN)
        self.faults: dict[str, list[ApiError]] = defaultdict(list)
        self.arrivals: list[Arrival] = []
        self._handlers = {name: self._faulty(name, handler) for name, handler in self._handlers.items()}

    def inject(self, method: str, error: ApiError, times: int = 1) -> None:
        self.faults[method].extend([error] * times)

    def _faulty(
        self, method: str, handler: Callable[[Params], Awaitable[Any]]
    ) -> Callable[[Params], Awaitable[Any]]:
        async def handle(params: Params) -> Any:
            now = asyncio.get_running_loop().time()
            if self.faults[method]:
                error = self.faults[method].pop(0)
                self.arrivals.append(Arrival(method, now, error.code))
                raise error
            self.arrivals.append(Arrival(method, now))
            return await handler(params)

        return handle

    def of(self, method: str) -> list[Arrival]:
        return [a for a in self.arrivals if a.method == method]


def rate_limits_counted(platform: str) -> float:
    return REGISTRY.get_sample_value("switchboard_platform_429_total", {"platform": platform}) or 0.0


def flood(seconds: int) -> ApiError:
    return ApiError(429, f"Too Many Requests: retry after {seconds}", seconds)


# -- helpers -----------------------------------------------------------------------------------------


_JOINS_PREVIOUS = re.compile(
    "[\u200d\u0300-\u036f\ufe00-\ufe0f\U0001f3fb-\U0001f3ff\U000e0020-\U000e007f\u20e3]"
)


def assert_graphemes_whole(chunks: list[str]) -> None:
    """No message may begin with something that belongs to the previous character (a combining mark,
    ZWJ, variation selector, skin tone) or end on a ZWJ, and regional-indicator flags stay in pairs."""
    for before, after in itertools.pairwise(chunks):
        assert not before.endswith("\u200d"), f"a chunk ends inside an emoji sequence: {before[-8:]!r}"
        assert not _JOINS_PREVIOUS.match(after), f"a chunk starts inside a grapheme: {after[:8]!r}"
        assert unicodedata.category(after[0]) not in {"Mn", "Me", "Mc"}, after[:8]
        flags = len(re.findall("[\U0001f1e6-\U0001f1ff]", before))
        assert flags % 2 == 0, f"a flag was cut in half at {before[-4:]!r}"


def without_space(text: str) -> str:
    return re.sub(r"\s+", "", text)


def showing(
    fake: FakeDiscord, channel: FakeChannel, text: str, *, skip: int = 0, exact: bool = False
) -> list[FakeMessage] | None:
    """The bot's messages in `channel` (after the first `skip`) once together they show all of `text`:
    character for character if `exact`, else ignoring the whitespace a split at a boundary drops."""
    messages = fake.bot_messages(channel)[skip:]
    shown = "".join(m.content for m in messages)
    same = shown == text if exact else without_space(shown) == without_space(text)
    return messages if messages and same else None


@dataclass
class DiscordWorld:
    fake: FaultyDiscord
    db: async_sessionmaker[AsyncSession]
    agent: ScriptedAgent
    alice: FakeUser
    channel: FakeChannel
    bridges: list[DiscordBridge] = field(default_factory=list)

    @property
    def dm(self) -> FakeChannel:
        return self.fake.dm_channel(self.alice)

    async def start(self) -> DiscordBridge:
        """A new process: a new client, relay and button cache over the same database."""
        config = discord_config(self.fake)
        relay = Relay(self.db, {"scripted": self.agent}, POLICY)
        bridge = DiscordBridge(config, relay)
        await bridge.start()
        self.bridges.append(bridge)
        return bridge

    async def texts(self, channel: FakeChannel, texts: list[str], within: float = 8.0) -> list[FakeMessage]:
        return await self.fake.wait_for_texts(channel, texts, within=within)

    def assert_never_pinged(self, channel: FakeChannel) -> None:
        for message in self.fake.bot_messages(channel):
            assert message.allowed_mentions, message.id
            assert all(allowed == NO_PINGS for allowed in message.allowed_mentions), message.id
            assert not message.pinged, (message.id, message.pinged)


@pytest.fixture
async def discord(db: async_sessionmaker[AsyncSession]) -> AsyncIterator[DiscordWorld]:
    fake = FaultyDiscord(token=DISCORD_TOKEN, message_window=WINDOW)
    async with fake:
        owner, alice = fake.add_user("owner"), fake.add_user("alice")
        guild = fake.add_guild("Test server", owner)
        fake.add_member(guild, alice)
        world = DiscordWorld(fake, db, ScriptedAgent(), alice, fake.add_text_channel(guild, "general"))
        await world.start()
        try:
            yield world
        finally:
            for bridge in world.bridges:
                await bridge.close(grace=1.0)


@asynccontextmanager
async def telegram_running(db: async_sessionmaker[AsyncSession]) -> AsyncIterator[Telegram]:
    async with running(db, FaultyTelegram()) as telegram:
        yield telegram


@pytest.fixture
async def telegram(db: async_sessionmaker[AsyncSession]) -> AsyncIterator[Telegram]:
    async with telegram_running(db) as harness:
        yield harness


def faulty(telegram: Telegram) -> FaultyTelegram:
    assert isinstance(telegram.fake, FaultyTelegram)
    return telegram.fake


def assert_telegram_clean(fake: FakeTelegram) -> None:
    """Nothing the fake refused on its own: no broken entities, no identical edit, no real 429."""
    assert fake.refusals(400) == [], fake.refusals(400)
    assert fake.not_modified == 0


# -- Discord -----------------------------------------------------------------------------------------


@sqlite_only
async def test_discord_rtl_and_zero_width_text_round_trips_exactly(discord: DiscordWorld) -> None:
    fake, agent, dm = discord.fake, discord.agent, discord.dm
    await fake.user_says(dm, discord.alice, HOSTILE_UNICODE)
    await discord.texts(dm, [f"scripted: {HOSTILE_UNICODE} (#1)"])
    assert agent.turns[0].text == HOSTILE_UNICODE

    # One unbreakable run far over the limit: the cuts are hard cuts, and must fall between graphemes.
    unit = f"{FAMILY}\U0001f44d\U0001f3fdעבר\u202e\u05d9\u05ea\u202c\U0001f1e9\U0001f1eae\u0301\u200b"
    long = unit * (4500 // len(unit))
    agent.script["long"] = [TextDelta(long[i : i + 700]) for i in range(0, len(long), 700)]
    await fake.user_says(dm, discord.alice, "long")
    messages = await fake.wait_until(
        lambda: showing(fake, dm, long, skip=1, exact=True), within=10.0, what="the whole unbreakable reply"
    )
    assert len(messages) >= 3 and all(utf16_length(m.content) <= 2000 for m in messages)
    assert_graphemes_whole([m.content for m in messages])
    discord.assert_never_pinged(dm)


@sqlite_only
async def test_discord_empty_and_whitespace_messages_reach_no_agent(discord: DiscordWorld) -> None:
    fake, dm = discord.fake, discord.dm
    for blank in ("", "   ", "\n\t \u3000"):  # "" is what an attachment-only message carries
        await fake.user_says(dm, discord.alice, blank)
    await fake.user_says(dm, discord.alice, "real")
    await discord.texts(dm, ["scripted: real (#1)"])
    assert [turn.text for turn in discord.agent.turns] == ["real"]
    assert fake.count(MESSAGES) == 1


@sqlite_only
async def test_discord_zero_width_only_message_reaches_no_agent(discord: DiscordWorld) -> None:
    fake, dm = discord.fake, discord.dm
    await fake.user_says(dm, discord.alice, "\u200b\u200c\u200d\u2060\ufeff")
    await fake.user_says(dm, discord.alice, "real")
    await fake.wait_until(
        lambda: any(m.content.startswith("scripted: real") for m in fake.bot_messages(dm)), what="a reply"
    )
    assert [turn.text for turn in discord.agent.turns] == ["real"]


@sqlite_only
async def test_discord_mentions_and_markdown_in_streamed_agent_output_stay_inert_and_exact(
    discord: DiscordWorld,
) -> None:
    fake, channel, alice = discord.fake, discord.channel, discord.alice
    guild_id = channel.guild_id
    injection = (
        f"@everyone @here <@{alice.id}> <@!{alice.id}> <@&{guild_id}> ||spoiler|| "
        "[free nitro](https://evil.example) ```unclosed fence **bold `tick "
    )
    pieces = [injection[i : i + 37] for i in range(0, len(injection), 37)] * 16  # long enough to split
    feed = discord.agent.feed("go")
    await fake.user_says(channel, alice, f"<@{fake.bot.id}> go")
    await feed.put(TextDelta(pieces[0]))
    (first,) = await fake.wait_until(lambda: fake.bot_messages(channel), what="the first text")
    await feed.put(TextDelta(pieces[1]))
    await fake.wait_until(lambda: len(first.versions) > 1, what="an edit")
    for piece in pieces[2:]:
        await feed.put(TextDelta(piece))
    await feed.put(None)
    full = "".join(pieces)
    messages = await fake.wait_until(lambda: showing(fake, channel, full), within=10.0, what="the reply")
    assert len(messages) >= 2 and all(m.content in full for m in messages)
    discord.assert_never_pinged(channel)
    bodies = [r.body for r in fake.requests if r.route in (MESSAGES, EDITS)]
    assert bodies and all(body and body.get("allowed_mentions") == NO_PINGS for body in bodies)


@sqlite_only
async def test_discord_stale_button_whose_payload_is_gone_is_answered_expired(
    discord: DiscordWorld,
) -> None:
    fake, agent, dm = discord.fake, discord.agent, discord.dm
    agent.script["menu"] = [Message("Pick one", buttons=(Button("A", {"n": 1}), Button("B", {"n": 2})))]
    await fake.user_says(dm, discord.alice, "menu")
    (menu,) = await discord.texts(dm, ["Pick one"])
    await fake.wait_until(lambda: menu.components, what="the buttons")

    await discord.bridges.pop().close(grace=1.0)  # issued before a restart...
    async with discord.db.begin() as session:
        await session.execute(delete(StoredButton))  # ...whose stored payload was since deleted
    await discord.start()
    stale = await fake.press(menu, menu.buttons()[0]["custom_id"], discord.alice)
    callback = await fake.wait_for_callback(stale)
    assert callback["data"]["content"] == DiscordReplies.button_expired
    assert callback["data"]["flags"] == 64  # told privately
    assert len(agent.turns) == 1 and [m.content for m in fake.bot_messages(dm)] == ["Pick one"]


@sqlite_only
async def test_discord_forged_custom_id_of_another_shape_is_answered_expired(discord: DiscordWorld) -> None:
    fake, agent, dm = discord.fake, discord.agent, discord.dm
    agent.script["menu"] = [Message("Pick one", buttons=(Button("A", {"n": 1}),))]
    await fake.user_says(dm, discord.alice, "menu")
    (menu,) = await discord.texts(dm, ["Pick one"])
    await fake.wait_until(lambda: menu.components, what="the buttons")
    menu.components[0]["components"][0]["custom_id"] = "sb:../../admin"
    forged = await fake.press(menu, "sb:../../admin", discord.alice)
    callback = await fake.wait_for_callback(forged, within=1.0)
    assert callback["data"]["content"] == DiscordReplies.button_expired
    assert len(agent.turns) == 1


@sqlite_only
async def test_discord_5xx_on_send_and_edits_mid_stream_still_ends_exact(discord: DiscordWorld) -> None:
    fake, agent, dm = discord.fake, discord.agent, discord.dm
    fake.inject(MESSAGES, 503)  # discord.py does not retry a 503 itself: the renderer must
    feed = agent.feed("go")
    await fake.user_says(dm, discord.alice, "go")
    await feed.put(TextDelta("First part"))
    (reply,) = await discord.texts(dm, ["First part ▌"])
    fake.inject(EDITS, 503, times=2)  # the next intermediate edit and one try of the final one
    await feed.put(TextDelta(", second part"))
    await fake.wait_until(lambda: fake.count(EDITS) >= 1, what="an edit attempt")
    await feed.put(TextDelta(", the end."))
    await feed.put(None)
    await discord.texts(dm, ["First part, second part, the end."])
    assert reply.content == "First part, second part, the end."
    statuses = [r.status for r in fake.requests if r.route in (MESSAGES, EDITS)]
    assert statuses.count(503) == 3 and statuses[-1] == 200

    await fake.user_says(dm, discord.alice, "still there?")  # the session was kept
    await discord.texts(dm, [reply.content, "scripted: still there? (#2)"])


@sqlite_only
async def test_discord_429_storm_is_waited_out_without_hammering(discord: DiscordWorld) -> None:
    fake, agent, dm = discord.fake, discord.agent, discord.dm
    counted = rate_limits_counted("discord")
    retry_after = 0.15
    fake.inject(MESSAGES, 429, times=3, retry_after=retry_after)
    feed = agent.feed("go")
    await fake.user_says(dm, discord.alice, "go")
    await feed.put(TextDelta("Under load"))
    (reply,) = await discord.texts(dm, ["Under load ▌"])
    fake.inject(EDITS, 429, times=4, retry_after=retry_after)
    for piece in [", still", " streaming", " and", " done."]:
        await feed.put(TextDelta(piece))
    await feed.put(None)
    await discord.texts(dm, ["Under load, still streaming and done."])

    calls = [r for r in fake.requests if r.route in (MESSAGES, EDITS)]
    assert sum(r.status == 429 for r in calls) == 7
    assert rate_limits_counted("discord") - counted == 7  # the operator's metric saw every one
    for refused, following in itertools.pairwise(calls):
        if refused.status == 429 and following.route == refused.route:
            assert following.at - refused.at >= retry_after * 0.9, "retried before retry_after"
    answered = sum(r.status == 200 for r in calls)
    assert answered <= 1 + len(reply.versions), "more successful requests than shown versions"


# -- Telegram ----------------------------------------------------------------------------------------


@pytest.mark.slow
@sqlite_only
async def test_telegram_rtl_and_zero_width_text_round_trips_exactly(telegram: Telegram) -> None:
    fake, agent = telegram.fake, telegram.agent
    user = fake.user("Noa")
    chat = fake.private_chat(user)
    fake.say(chat, user, HOSTILE_UNICODE)
    await telegram.final(chat, f"scripted: {HOSTILE_UNICODE} (#1)")
    assert agent.turns[0].text == HOSTILE_UNICODE

    unit = f"{FAMILY}\U0001f44d\U0001f3fdעבר\u202e\u05d9\u05ea\u202c\U0001f1e9\U0001f1eae\u0301\u200b"
    long = unit * (6000 // utf16_length(unit))
    agent.script["long"] = [TextDelta(long[:1500]), TextDelta(long[1500:])]
    fake.say(chat, user, "long")
    await fake.wait_for(
        lambda: "".join(m.text for m in fake.bot_messages(chat)[1:]) == long,
        within=10.0,
        what="the whole unbreakable reply",
    )
    texts = [m.text for m in fake.bot_messages(chat)[1:]]
    assert len(texts) >= 2 and all(utf16_length(t) <= 4096 for t in texts)
    assert_graphemes_whole(texts)
    assert_telegram_clean(fake)


@pytest.mark.slow
async def test_telegram_10000_character_message_is_kept_whole_and_shortened_for_the_agent(
    telegram: Telegram,
) -> None:
    fake, agent = telegram.fake, telegram.agent
    user = fake.user("Max")
    chat = fake.private_chat(user)
    huge = ("@everyone **bold** `code` שלום " * 400)[:10_000]
    fake.say(chat, user, huge)
    limit = POLICY.max_input_chars
    await telegram.final(chat, Notices.input_shortened.format(limit=limit))
    await fake.wait_for(lambda: len(fake.bot_messages(chat)) >= 2, within=10.0, what="the reply")
    assert agent.turns[0].text == huge[:limit]
    async with telegram.db() as session:
        said = await session.scalar(select(TranscriptEntry.text).where(TranscriptEntry.role == Role.USER))
    assert said == huge
    assert_telegram_clean(fake)


@sqlite_only
async def test_telegram_whitespace_messages_reach_no_agent(telegram: Telegram) -> None:
    fake, agent = telegram.fake, telegram.agent
    user = fake.user("Ana")
    chat = fake.private_chat(user)
    for blank in ("   ", "\n\t \u3000"):
        fake.say(chat, user, blank)
    fake.say(chat, user, "real")
    await telegram.final(chat, "scripted: real (#1)")
    assert [turn.text for turn in agent.turns] == ["real"]
    assert len(fake.bot_messages(chat)) == 1


@sqlite_only
async def test_telegram_markdown_injection_keeps_text_and_entities_whole(telegram: Telegram) -> None:
    fake, agent = telegram.fake, telegram.agent
    user = fake.user("Eve")
    group = fake.group("Lobby")
    hostile = (
        "\U0001f600 **bold \U0001f44d\U0001f3fd** _it_ ~~gone~~ ||hidden|| `a*b_c` @everyone "
        "**unclosed *mixed _markers ``` no fence end \\*escaped\\* <b>tag</b> [x](https://ok.example)"
    )
    agent.script["go"] = [Message(hostile)]
    fake.say(group, user, "@switchboard_bot go")
    await fake.wait_for(lambda: bool(fake.bot_messages(group)), what="the reply")
    (message,) = fake.bot_messages(group)
    assert_telegram_clean(fake)  # every entity was accepted: none out of bounds or inside a surrogate pair
    # Formatting markers become entities; every word and symbol the agent wrote is still shown.
    for word in ("bold", "\U0001f44d\U0001f3fd", "it", "gone", "hidden", "a*b_c", "@everyone", "<b>tag</b>"):
        assert word in message.text, word
    assert "no fence end" in message.text and "*escaped*" in message.text
    assert {e["type"] for e in message.entities} >= {"bold", "italic", "code", "spoiler", "text_link"}
    for entity in message.entities:
        start, end = entity["offset"], entity["offset"] + entity["length"]
        units = message.text.encode("utf-16-le")
        for edge in (start, end):  # an edge inside a surrogate pair would split an emoji
            if 0 < edge < len(units) // 2:
                unit = int.from_bytes(units[2 * edge : 2 * edge + 2], "little")
                assert not 0xDC00 <= unit <= 0xDFFF, (entity, message.text)
        assert entity["type"] != "mention" or entity.get("url") is None
    assert [t.text for t in agent.turns] == ["go"]


@sqlite_only
async def test_telegram_agent_output_cannot_mention_users(telegram: Telegram) -> None:
    fake, agent = telegram.fake, telegram.agent
    user = fake.user("Eve")
    group = fake.group("Lobby")
    agent.script["go"] = [Message("Ask [the admin](tg://user?id=4242) or [me](tg://openmessage?user_id=1)")]
    fake.say(group, user, "@switchboard_bot go")
    await fake.wait_for(lambda: bool(fake.bot_messages(group)), what="the reply")
    (message,) = fake.bot_messages(group)
    assert "the admin" in message.text
    assert not [e for e in message.entities if str(e.get("url", "")).startswith("tg://")]
    assert not [e for e in message.entities if e["type"] == "text_mention"]


@pytest.mark.slow
async def test_telegram_stale_and_foreign_button_payloads_are_answered_expired(telegram: Telegram) -> None:
    fake, agent = telegram.fake, telegram.agent
    user = fake.user("Ida")
    chat = fake.private_chat(user)
    agent.script["menu"] = [Message("Pick", buttons=(Button("A", {"n": 1}), Button("B", {"n": 2})))]
    fake.say(chat, user, "menu")
    (menu,) = await telegram.replies(chat)
    await fake.wait_for(lambda: bool(menu.buttons), what="the keyboard")
    issued = [b["callback_data"] for b in menu.buttons]

    await telegram.bridge.close(grace=5)  # issued before a restart...
    async with telegram.db.begin() as session:
        await session.execute(delete(StoredButton))  # ...whose stored payload was since deleted
    await telegram.restart()
    stale = fake.press(menu, issued[0], user)
    menu.reply_markup = {"inline_keyboard": [[{"text": "x", "callback_data": "other-bot:42"}]]}
    foreign = fake.press(menu, "other-bot:42", user)  # never issued by us at all
    await fake.wait_for(lambda: {stale, foreign} <= set(fake.callback_answers), what="both presses answered")
    for query in (stale, foreign):
        assert fake.callback_answers[query]["text"] == TelegramReplies.expired_button
    fake.say(chat, user, "after")  # the turns above reached no agent; this one does
    await telegram.final(chat, "scripted: after (#2)")
    assert [t.text for t in agent.turns] == ["menu", "after"]


@pytest.mark.slow
@sqlite_only
async def test_telegram_5xx_on_send_and_edits_mid_stream_still_ends_exact(telegram: Telegram) -> None:
    fake, agent = faulty(telegram), telegram.agent
    user = fake.user("Raj")
    group = fake.group("Help")
    fake.inject("sendMessage", ApiError(500, "Internal Server Error"))
    feed = agent.feed("go")
    fake.say(group, user, "@switchboard_bot go")
    await feed.put(TextDelta("First part"))
    (reply,) = await telegram.replies(group)
    fake.inject("editMessageText", ApiError(502, "Bad Gateway"), times=2)
    await feed.put(TextDelta(", second part"))
    await fake.wait_for(lambda: bool(fake.of("editMessageText")), what="an edit attempt")
    await feed.put(TextDelta(", the end."))
    await feed.put(None)
    await telegram.final(group, "First part, second part, the end.")
    assert len(fake.bot_messages(group)) == 1 and reply.text == "First part, second part, the end."
    assert [a.injected for a in fake.arrivals if a.injected] == [500, 502, 502]

    fake.say(group, user, "@switchboard_bot still there?")  # the session was kept
    await telegram.final(group, "scripted: still there? (#2)")
    assert_telegram_clean(fake)


@pytest.mark.slow
async def test_telegram_refused_formatting_falls_back_to_the_plain_text(telegram: Telegram) -> None:
    fake, agent = faulty(telegram), telegram.agent
    gina = fake.user("Gina")
    chat = fake.private_chat(gina)
    hostile = "**Click** [here](javascript:alert(1)) <b>bold?</b> `<i>` _a *b ~c ||d \\ [x]("
    agent.script["click"] = [Message(hostile)]
    # Telegram refuses entities it cannot accept (ours are checked, but its rules are its own).
    fake.inject("sendMessage", ApiError(400, "Bad Request: can't parse entities: unsupported URL protocol"))
    fake.say(chat, gina, "click")
    await telegram.final(chat, hostile)  # the agent's text as written: nothing lost
    (message,) = fake.bot_messages(chat)
    assert message.entities == []
    fake.say(chat, gina, "<b>*and* the next</b>")  # the rest of that reply stays plain; a new one formats
    await telegram.final(chat, "scripted: <b>and the next</b> (#2)")
    assert len(fake.refusals(400)) == 1 and fake.refusals(429) == [] and fake.not_modified == 0


@pytest.mark.slow
@sqlite_only
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # PTB's own RetryAfter
async def test_telegram_429_storm_is_waited_out_without_hammering(telegram: Telegram) -> None:
    fake, agent = faulty(telegram), telegram.agent
    counted = rate_limits_counted("telegram")
    user = fake.user("Lu")
    group = fake.group("Busy")
    feed = agent.feed("go")
    fake.say(group, user, "@switchboard_bot go")
    await feed.put(TextDelta("Under load"))
    (reply,) = await telegram.replies(group)
    fake.inject("editMessageText", flood(1), times=3)
    for piece in [", still", " streaming", " and", " done."]:
        await feed.put(TextDelta(piece))
    await feed.put(None)
    await fake.wait_for(
        lambda: reply.text == "Under load, still streaming and done.",
        within=10.0,
        what="the exact final text",
    )

    edits = fake.of("editMessageText")
    assert sum(a.injected == 429 for a in edits) == 3
    assert rate_limits_counted("telegram") - counted == 3  # the operator's metric saw every one
    for refused, following in itertools.pairwise(edits):
        if refused.injected == 429:
            assert following.at - refused.at >= 0.95, "retried before retry_after"
    assert len(edits) <= 3 + len(reply.history), "more edits than the storm and the shown versions need"
    assert len(fake.bot_messages(group)) == 1
    assert_telegram_clean(fake)
