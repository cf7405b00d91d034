"""Discord's rate limits as the real API applies them: fixed-window buckets per route and major parameter,
plus one global bucket per bot, answered with real 429s and X-RateLimit-* headers.

A bucket's window opens with its first request and resets `window` seconds later, which is how Discord
reports it (`X-RateLimit-Reset-After` counts down to a full refill).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Bucket:
    limit: int
    window: float
    remaining: int = 0
    resets_at: float = 0.0

    def hit(self, now: float) -> float:
        """Spend one request; return 0 if allowed, else the seconds until the window resets."""
        if now >= self.resets_at:
            self.remaining, self.resets_at = self.limit, now + self.window
        if self.remaining == 0:
            return self.resets_at - now
        self.remaining -= 1
        return 0.0


@dataclass(frozen=True)
class Verdict:
    """The outcome of one request against the limits: the headers to send, and a 429 body if refused."""

    headers: dict[str, str]
    retry_after: float = 0.0
    is_global: bool = False

    @property
    def limited(self) -> bool:
        return self.retry_after > 0

    def body(self) -> dict[str, object]:
        return {
            "message": "You are being rate limited.",
            "retry_after": self.retry_after,
            "global": self.is_global,
        }


@dataclass
class RateLimiter:
    """Every bucket the fake enforces, and a record of each 429 it answered."""

    route_limits: dict[str, tuple[int, float]]
    """Route template -> (limit, window seconds); routes not listed have no per-route bucket."""
    global_limit: int = 50
    global_window: float = 1.0
    clock: Callable[[], float] = time.monotonic
    refused: list[tuple[str, str, bool]] = field(default_factory=list)
    """(route template, major parameter, global?) of every 429."""
    _buckets: dict[tuple[str, str], Bucket] = field(default_factory=dict)
    _global: Bucket | None = None

    def check(self, route: str, major: str, *, counts_globally: bool = True) -> Verdict:
        now = self.clock()
        if counts_globally:
            if self._global is None:
                self._global = Bucket(self.global_limit, self.global_window)
            wait = self._global.hit(now)
            if wait:
                self.refused.append((route, major, True))
                headers = {"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"}
                return Verdict(_with_retry_after(headers, wait), round(wait, 3), is_global=True)
        if route not in self.route_limits:
            return Verdict({})
        limit, window = self.route_limits[route]
        bucket = self._buckets.setdefault((route, major), Bucket(limit, window))
        wait = bucket.hit(now)
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(bucket.remaining),
            "X-RateLimit-Reset": f"{time.time() + bucket.resets_at - now:.3f}",
            "X-RateLimit-Reset-After": f"{bucket.resets_at - now:.3f}",
            "X-RateLimit-Bucket": hashlib.sha1(route.encode()).hexdigest()[:16],
        }
        if wait:
            self.refused.append((route, major, False))
            headers["X-RateLimit-Scope"] = "user"
            return Verdict(_with_retry_after(headers, wait), round(wait, 3))
        return Verdict(headers)


def _with_retry_after(headers: dict[str, str], wait: float) -> dict[str, str]:
    return {**headers, "Retry-After": str(math.ceil(wait))}
