"""Shared rate budgets: one per platform scope (bot, channel, chat, group), not per reply.

A `RateBudget` is a token bucket (a steady rate with a burst); a `WindowBudget` allows `limit` requests
in any `window` seconds, which is how platforms state hard caps ("5 per 5 s", "20 per minute") and lets a
quiet scope spend its whole allowance at once without ever passing the cap.

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

    def retune(self, rate: float, per: float = 1.0, *, burst: float | None = None) -> None:
        """Change the rate and burst from now on (a reloaded limit); what was spent stays spent."""
        if rate <= 0 or per <= 0:
            raise ValueError("rate and per must be positive")
        self._refill()
        self.refill_per_second = rate / per
        self.capacity = burst if burst is not None else rate
        self._tokens = min(self._tokens, self.capacity)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.refill_per_second)
        self._stamp = now

    def _wait(self, reserve: int = 0) -> float:
        """Seconds until a token is free, with `reserve` more left over; 0 or less when that is now. A
        reserve beyond the budget's capacity is not asked for (a budget of one keeps no reserve)."""
        self._refill()
        need = min(1 + reserve, max(self.capacity, 1))
        return (need - self._tokens) / self.refill_per_second

    def _idle(self) -> bool:
        self._refill()
        return self._tokens >= self.capacity

    def available(self, reserve: int = 0) -> bool:
        """A token is free now (with `reserve` more left for requests that must happen) and no waiting
        request is ahead of the caller."""
        return not self._waiters and self._wait(reserve) <= 0

    def full(self) -> bool:
        """Nothing has been spent lately: the budget could be forgotten and recreated without change."""
        return not self._waiters and self._idle()

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
                    wait = self._wait()
                    if wait <= 0:
                        self.take()
                        return
                    await asyncio.sleep(wait)
                else:  # checked and cleared in one step, so a wake-up is never missed
                    waiter.turn.clear()
                    await waiter.turn.wait()
        finally:
            self._waiters.remove(waiter)
            if self._waiters:
                self._waiters[0].turn.set()


class WindowBudget(RateBudget):
    """At most `limit` requests in any `window` seconds: a sliding log of the last `limit` spends.

    A platform's fixed window (opened by its first request, reset `window` later) never holds more than
    `limit` of them either, so this spends the platform's whole allowance and never more; `window`
    should include the time a request may take to reach the platform after it took its token."""

    def __init__(self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(limit, per=window, clock=clock)
        self.window = window
        self._spent: deque[float] = deque(maxlen=limit)

    def _wait(self, reserve: int = 0) -> float:
        limit = self._spent.maxlen or 0
        room = limit - min(reserve, limit - 1)  # spends allowed before the reserve
        if len(self._spent) < room:
            return 0.0
        return self._spent[len(self._spent) - room] + self.window - self._clock()

    def _idle(self) -> bool:
        return not self._spent or self._spent[-1] + self.window <= self._clock()

    def take(self) -> None:
        self._spent.append(self._clock())


class _Waiter:
    __slots__ = ("turn", "urgent")

    def __init__(self, urgent: bool) -> None:
        self.turn = asyncio.Event()
        self.urgent = urgent


def try_acquire_all(budgets: Sequence[RateBudget], *, reserve: int = 0) -> bool:
    """Take one token from every budget, or from none of them; with `reserve`, only while that many more
    stay free in each (so an intermediate edit never takes the slot a final edit will need)."""
    if all(budget.available(reserve) for budget in budgets):
        for budget in budgets:
            budget.take()
        return True
    return False


async def acquire_all(budgets: Sequence[RateBudget], *, urgent: bool = False) -> None:
    for budget in budgets:
        await budget.acquire(urgent=urgent)
