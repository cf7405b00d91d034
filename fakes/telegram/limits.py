"""Telegram's flood control as the Bot API applies it to a bot: per chat, per group, and overall.

Telegram publishes the limits only loosely ("about one message per second in a chat, short bursts
allowed; 20 messages per minute in a group; about 30 messages per second overall"), so each is a token
bucket with a small burst. A refused request spends nothing and is answered with an integer
`retry_after`, as the real API does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limit:
    rate: float
    per: float
    burst: float


@dataclass(frozen=True)
class Limits:
    per_chat: Limit = Limit(1.0, 1.0, 3.0)
    per_group: Limit = Limit(20.0, 60.0, 20.0)
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


@dataclass
class FloodControl:
    """Decides whether a message-producing request may pass; counts every refusal by scope."""

    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], float] = time.monotonic
    refused: dict[str, int] = field(default_factory=lambda: {"chat": 0, "group": 0, "overall": 0})
    _buckets: dict[tuple[str, int], _Bucket] = field(default_factory=dict)

    def check(self, chat_id: int, is_group: bool) -> int:
        """Spend one token in every scope the request belongs to and return 0, or spend none and return
        the `retry_after` (whole seconds, at least 1) that Telegram would answer."""
        now = self.clock()
        scopes = [("overall", 0, self.limits.overall), ("chat", chat_id, self.limits.per_chat)]
        if is_group:
            scopes.append(("group", chat_id, self.limits.per_group))
        buckets = [(name, self._bucket(name, key, limit, now)) for name, key, limit in scopes]
        for name, bucket in buckets:
            wait = bucket.wait(now)
            if wait > 0:
                self.refused[name] += 1
                return max(1, math.ceil(wait))
        for _name, bucket in buckets:
            bucket.tokens -= 1
        return 0

    def _bucket(self, name: str, key: int, limit: Limit, now: float) -> _Bucket:
        bucket = self._buckets.get((name, key))
        if bucket is None:
            bucket = self._buckets[(name, key)] = _Bucket(limit, limit.burst, now)
        return bucket

    @property
    def total_refused(self) -> int:
        return sum(self.refused.values())
