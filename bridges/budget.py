"""Shared rate budgets: one token bucket per platform scope (bot, channel, chat, group), not per reply.

Requests that must happen (the first and the final text) wait for a token in arrival order, a reply's
first text ahead of the rest;
intermediate edits only take a token when one is free and nobody is waiting, so under load they thin
out instead of queueing in front of the text that matters.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence


class RateBudget:
    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        *,
        burst: float | None = None,
        initial: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`initial` tokens (default: a full burst) is for a budget that may start where another left
        off, such as a chat's after a restart, when the platform's own bucket is not known to be full."""
        if rate <= 0 or per <= 0:
            raise ValueError("rate and per must be positive")
        self.refill_per_second = rate / per
        self.capacity = burst if burst is not None else rate
        self._tokens = self.capacity if initial is None else min(initial, self.capacity)
        self._clock = clock
        self._stamp = clock()
        self._waiters: deque[_Waiter] = deque()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.refill_per_second)
        self._stamp = now

    def available(self) -> bool:
        """A token is free now and no waiting request is ahead of the caller."""
        self._refill()
        return not self._waiters and self._tokens >= 1

    def full(self) -> bool:
        """Nothing has been spent lately: the bucket could be forgotten and recreated without change."""
        self._refill()
        return not self._waiters and self._tokens >= self.capacity

    def take(self) -> None:
        """Consume a token the caller checked with `available()` in the same event-loop step."""
        self._tokens -= 1

    async def acquire(self, *, urgent: bool = False) -> None:
        """Wait for a token, in arrival order; an `urgent` request (a reply's first text) goes ahead of
        every waiting request that is not, so first words are not queued behind other replies' edits."""
        if self.available():
            self.take()
            return
        waiter = _Waiter(urgent)
        if urgent:
            position = next((i for i, other in enumerate(self._waiters) if not other.urgent), None)
            self._waiters.insert(len(self._waiters) if position is None else position, waiter)
        else:
            self._waiters.append(waiter)
        try:
            while True:
                if self._waiters[0] is waiter:
                    self._refill()
                    if self._tokens >= 1:
                        self._tokens -= 1
                        return
                    await asyncio.sleep((1 - self._tokens) / self.refill_per_second)
                else:  # checked and cleared in one step, so a wake-up is never missed
                    waiter.turn.clear()
                    await waiter.turn.wait()
        finally:
            self._waiters.remove(waiter)
            if self._waiters:
                self._waiters[0].turn.set()


class _Waiter:
    __slots__ = ("turn", "urgent")

    def __init__(self, urgent: bool) -> None:
        self.turn = asyncio.Event()
        self.urgent = urgent


def try_acquire_all(budgets: Sequence[RateBudget]) -> bool:
    """Take one token from every budget, or from none of them."""
    if all(budget.available() for budget in budgets):
        for budget in budgets:
            budget.take()
        return True
    return False


async def acquire_all(budgets: Sequence[RateBudget], *, urgent: bool = False) -> None:
    for budget in budgets:
        await budget.acquire(urgent=urgent)
