"""Telegram's flood control as the Bot API applies it to a bot: per chat, per group, and overall.

Telegram publishes the limits only loosely ("about one message per second in a chat, short bursts
allowed; 20 messages per minute in a group; about 30 messages per second overall"). The per-second
limits are token buckets with a small burst; the group's is stated as a hard count per minute, so it is
a sliding window: never more than 20 in any 60 seconds. A refused request spends nothing and is
answered with an integer `retry_after`, as the real API does.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limit:
    """A token bucket: `rate` requests per `per` seconds, up to `burst` at once."""

    rate: float
    per: float
    burst: float


@dataclass(frozen=True)
class Window:
    """A hard cap: at most `limit` requests in any `seconds`."""

    limit: int
    seconds: float


@dataclass(frozen=True)
class Limits:
    per_chat: Limit = Limit(1.0, 1.0, 3.0)
    per_group: Window = Window(20, 60.0)
    overall: Limit = Limit(30.0, 1.0, 30.0)


@dataclass
class _Bucket:
    limit: Limit
    tokens: float
    stamp: float

    def wait(self, now: float) -> float:
        """Seconds until a token is free (0 if one is free now)."""
        self.tokens = min(
            self.limit.burst, self.tokens + (now - self.stamp) * self.limit.rate / self.limit.per
        )
        self.stamp = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) * self.limit.per / self.limit.rate

    def spend(self, now: float) -> None:
        self.tokens -= 1


@dataclass
class _Log:
    """The times of the last `limit` requests let through."""

    window: Window
    passed: deque[float]

    def wait(self, now: float) -> float:
        if len(self.passed) < self.window.limit:
            return 0.0
        return max(0.0, self.passed[0] + self.window.seconds - now)

    def spend(self, now: float) -> None:
        self.passed.append(now)


@dataclass
class FloodControl:
    """Decides whether a message-producing request may pass; counts every refusal by scope."""

    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], float] = time.monotonic
    refused: dict[str, int] = field(default_factory=lambda: {"chat": 0, "group": 0, "overall": 0})
    _scopes: dict[tuple[str, int], _Bucket | _Log] = field(default_factory=dict)

    def check(self, chat_id: int, is_group: bool) -> int:
        """Spend in every scope the request belongs to and return 0, or spend in none and return the
        `retry_after` (whole seconds, at least 1) that Telegram would answer."""
        now = self.clock()
        scopes = [
            ("overall", self._bucket("overall", 0, self.limits.overall, now)),
            ("chat", self._bucket("chat", chat_id, self.limits.per_chat, now)),
        ]
        if is_group:
            scopes.append(("group", self._log(chat_id)))
        for name, scope in scopes:
            wait = scope.wait(now)
            if wait > 0:
                self.refused[name] += 1
                return max(1, math.ceil(wait))
        for _name, scope in scopes:
            scope.spend(now)
        return 0

    def _bucket(self, name: str, key: int, limit: Limit, now: float) -> _Bucket | _Log:
        scope = self._scopes.get((name, key))
        if scope is None:
            scope = self._scopes[(name, key)] = _Bucket(limit, limit.burst, now)
        return scope

    def _log(self, chat_id: int) -> _Bucket | _Log:
        window = self.limits.per_group
        scope = self._scopes.get(("group", chat_id))
        if scope is None:
            scope = self._scopes[("group", chat_id)] = _Log(window, deque(maxlen=window.limit))
        return scope

    @property
    def total_refused(self) -> int:
        return sum(self.refused.values())
