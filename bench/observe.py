"""What the fake platforms showed, and when: every request the bot made, stamped as the fake answered it.

`RequestLog` replaces a fake's `requests` list. The fakes append one record per answered request (a
429 included) right after changing their state, so the append is the moment a user would see the
change; the log hands each record with a `time.monotonic()` reading to a `Watch`, which keeps, per
reply id, when the first text and the exact final text were shown. Nothing polls.

Every text a reply shows starts with its id (see `bench.provider.reply_tokens`), which is how a
request is matched to its reply without knowing message ids.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from fakes.discord import FakeDiscord
from fakes.discord import RequestRecord as DiscordRecord
from fakes.telegram import FakeTelegram
from fakes.telegram import RequestRecord as TelegramRecord


class Answered(Protocol):
    """A fake's record of one request it answered."""

    @property
    def status(self) -> int: ...


Platform = Literal["discord", "telegram"]
R = TypeVar("R", bound=Answered)
REPLY_ID = re.compile(r"r\d+n\d+(?= |$)")

DISCORD_TEXT_ROUTES = frozenset(
    {"POST /channels/{channel_id}/messages", "PATCH /channels/{channel_id}/messages/{message_id}"}
)
TELEGRAM_MESSAGES = frozenset({"sendMessage", "editMessageText"})
TELEGRAM_DRAFT = "sendMessageDraft"


class Pulse:
    """Beats on every sign of progress (a platform request, a provider chunk), so that a round in which
    the bot has silently given up on some replies can end without waiting out its timeout."""

    def __init__(self) -> None:
        self._beat = asyncio.Event()

    def beat(self) -> None:
        self._beat.set()

    async def quiet_for(self, seconds: float) -> None:
        """Return once nothing has happened for `seconds`."""
        while True:
            self._beat.clear()
            try:
                await asyncio.wait_for(self._beat.wait(), seconds)
            except TimeoutError:
                return


class RequestLog(list[R], Generic[R]):
    """A fake's request list that also reports each record, with the time it was answered."""

    def __init__(self, observe: Callable[[float, R], None]) -> None:
        super().__init__()
        self._observe = observe

    def append(self, record: R) -> None:
        super().append(record)
        self._observe(time.monotonic(), record)


@dataclass(frozen=True)
class Shown:
    """A successful request that put text on screen; a draft is on screen but not yet a message."""

    text: str
    message: bool


def discord_shown(record: DiscordRecord) -> Shown | None:
    if record.status != 200 or record.route not in DISCORD_TEXT_ROUTES or not record.body:
        return None
    return Shown(str(record.body.get("content") or ""), message=True)


def telegram_shown(record: TelegramRecord) -> Shown | None:
    if record.status != 200 or record.method not in (*TELEGRAM_MESSAGES, TELEGRAM_DRAFT):
        return None
    return Shown(str(record.params.get("text") or ""), message=record.method in TELEGRAM_MESSAGES)


@dataclass
class Seen:
    """One reply as its user saw it; times are `time.monotonic()` readings."""

    expected: str
    first_visible: float | None = None
    """The first request showing any of its text (a draft, for a Telegram private chat)."""
    final_shown: float | None = None
    """The first request showing the exact final text, a draft included."""
    final_visible: float | None = None
    """The first time the exact final text stood in a real message: the reply is delivered."""


class Watch(Generic[R]):
    """Follows one platform's requests: per reply what was seen, and per round the request counts."""

    def __init__(self, shown: Callable[[R], Shown | None], pulse: Pulse) -> None:
        self._shown = shown
        self._pulse = pulse
        self.replies: dict[str, Seen] = {}
        self.requests = 0
        self.limited = 0
        """429 answers."""
        self.log: RequestLog[R] = RequestLog(self._observe)
        self._waiting = 0
        self._delivered = asyncio.Event()
        self._delivered.set()

    def expect(self, replies: dict[str, str]) -> None:
        """Start a round: these reply ids (with their exact final texts) are on their way."""
        self.requests = self.limited = 0
        for reply_id, text in replies.items():
            self.replies[reply_id] = Seen(text)
        self._waiting = len(replies)
        if self._waiting:
            self._delivered.clear()

    async def delivered(self) -> None:
        """Return once every reply of the round shows its exact final text in a real message."""
        await self._delivered.wait()

    def _observe(self, at: float, record: R) -> None:
        self._pulse.beat()
        self.requests += 1
        if record.status == 429:
            self.limited += 1
        shown = self._shown(record)
        match = REPLY_ID.match(shown.text) if shown else None
        seen = self.replies.get(match.group(0)) if match else None
        if shown is None or seen is None:
            return
        if seen.first_visible is None:
            seen.first_visible = at
        if shown.text != seen.expected:
            return
        if seen.final_shown is None:
            seen.final_shown = at
        if shown.message and seen.final_visible is None:
            seen.final_visible = at
            self._waiting -= 1
            if self._waiting == 0:
                self._delivered.set()


# -- what the limits force ---------------------------------------------------------------------------


class TokenBucket:
    """Telegram's flood control for one scope: `rate` per second, up to `burst` at once."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, float("-inf")
        self.last = float("-inf")

    def _refill(self, at: float) -> None:
        if at > self.stamp:
            self.tokens = min(self.burst, self.tokens + (at - self.stamp) * self.rate)
            self.stamp = at

    def ready_at(self, at: float) -> float:
        self._refill(at)
        return at if self.tokens >= 1 else at + (1 - self.tokens) / self.rate

    def spend(self, at: float) -> None:
        self._refill(at)
        self.tokens -= 1
        self.last = at


class FixedWindow:
    """A Discord bucket: `limit` requests in a window that opens with its first request."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.count, self.resets_at = 0, float("-inf")
        self.last = float("-inf")

    def ready_at(self, at: float) -> float:
        return at if at >= self.resets_at or self.count < self.limit else self.resets_at

    def spend(self, at: float) -> None:
        if at >= self.resets_at:
            self.count, self.resets_at = 0, at + self.window
        self.count += 1
        self.last = at


class SlidingWindow:
    """A Telegram group: at most `limit` requests in any `window` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.window = window
        self.passed: deque[float] = deque(maxlen=limit)
        self.last = float("-inf")

    def ready_at(self, at: float) -> float:
        full = len(self.passed) == self.passed.maxlen
        return max(at, self.passed[0] + self.window) if full else at

    def spend(self, at: float) -> None:
        self.passed.append(at)
        self.last = at


Scope = TokenBucket | FixedWindow | SlidingWindow


def earliest(scopes: list[Scope], at: float) -> float:
    """Spend one request in every scope at the first moment all of them allow it, and return it. A
    scope serves its requests in order, so none goes out before one that came earlier."""
    at = max(at, *(scope.last for scope in scopes))
    while True:
        ready = max(scope.ready_at(at) for scope in scopes)
        if ready <= at:
            break
        at = ready
    for scope in scopes:
        scope.spend(at)
    return at


class Floor:
    """The least delay the platform limits force on each first text: every reply's first text is
    sent the moment its first chunk arrives, first come first served, as if first texts were the
    only requests. A lower bound, so a renderer is judged on what it adds to it."""

    def __init__(self, make: Callable[[str], Scope]) -> None:
        self._make = make
        self._scopes: dict[str, Scope] = {}

    def delays(self, firsts: list[tuple[float, list[str]]]) -> list[float]:
        """`firsts`: (first chunk time, scope names) per reply; returns the forced delays, same order."""
        order = sorted(range(len(firsts)), key=lambda index: firsts[index][0])
        delays = [0.0] * len(firsts)
        for index in order:
            at, names = firsts[index]
            scopes = [self._scope(name) for name in names]
            delays[index] = earliest(scopes, at) - at
        return delays

    def _scope(self, name: str) -> Scope:
        if name not in self._scopes:
            self._scopes[name] = self._make(name)
        return self._scopes[name]


def discord_floor(fake: FakeDiscord) -> Floor:
    """Scopes "global" and "channel:ID", with the limits this fake enforces."""
    return Floor(
        lambda name: (
            FixedWindow(fake.global_limit, fake.global_window)
            if name == "global"
            else FixedWindow(fake.message_limit, fake.message_window)
        )
    )


def telegram_floor(fake: FakeTelegram) -> Floor:
    """Scopes "overall", "chat:ID" and "group:ID", with the limits this fake enforces."""
    limits = fake.flood.limits

    def make(name: str) -> Scope:
        kind = name.partition(":")[0]
        if kind == "group":
            return SlidingWindow(limits.per_group.limit, limits.per_group.seconds)
        limit = limits.overall if kind == "overall" else limits.per_chat
        return TokenBucket(limit.rate / limit.per, limit.burst)

    return Floor(make)
