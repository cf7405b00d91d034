"""A clock a test can move: injected wherever the code under test asks for `now`."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from models import utcnow


class Clock:
    """Real time until a test moves it on (sets `now`), so transcript timestamps and handoff timers agree."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


class Sleeper:
    """An injected `sleep` on `clock`: a sleeper wakes once the test moves the clock past its deadline,
    never by real time passing. `deadlines` are those waited on now, so a test can wait for a sleeper."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.deadlines: list[datetime] = []
        self._moved = asyncio.Condition()

    async def __call__(self, seconds: float) -> None:
        deadline = self.clock.now + timedelta(seconds=seconds)
        async with self._moved:
            self.deadlines.append(deadline)
            try:
                await self._moved.wait_for(lambda: self.clock.now >= deadline)
            finally:
                self.deadlines.remove(deadline)

    async def advance(self, seconds: float) -> None:
        async with self._moved:
            self.clock.now += timedelta(seconds=seconds)
            self._moved.notify_all()
