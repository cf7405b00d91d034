"""Turns per conversation, one at a time, first come first served.

A message takes its place in line without awaiting anything, so it can then be written to the database
while it waits and still keep its place: a reply being streamed never lets a later message overtake an
earlier one, and nothing waits for its turn unrecorded.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from types import TracebackType


class TurnOrder:
    def __init__(self) -> None:
        self._lines: dict[Hashable, deque[Place]] = {}
        self._taken = 0

    def line_up(self, key: Hashable) -> Place:
        """Take the next place in `key`'s line, now. Leave it with `with` (or `leave()`)."""
        line = self._lines.setdefault(key, deque())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not line:
            future.set_result(None)
        self._taken += 1
        place = Place(self, key, future, self._taken)
        line.append(place)
        return place

    def waiting(self) -> int:
        """How many places are taken, in every line (for tests and metrics)."""
        return sum(len(line) for line in self._lines.values())

    def behind(self, place: Place) -> list[Place]:
        """The places after `place` in its line, in order (what a burst may join, bridges/bursts.py)."""
        line = list(self._lines.get(place.key, ()))
        return line[line.index(place) + 1 :] if place in line else []

    def _leave(self, place: Place) -> None:
        line = self._lines[place.key]
        line.remove(place)
        if not line:
            del self._lines[place.key]
        elif not line[0]._future.done():
            line[0]._future.set_result(None)


class Place:
    """One message's place in its conversation's line."""

    def __init__(self, order: TurnOrder, key: Hashable, future: asyncio.Future[None], number: int) -> None:
        self._order, self.key, self._future = order, key, future
        self.number = number
        """Its place in the order of arrival of every message in this process, across all lines."""
        self._left = False

    async def turn(self) -> None:
        """Wait until every earlier place has left."""
        await self._future

    def come(self) -> bool:
        """Whether its turn has come: no earlier place is left in its line."""
        return self._future.done()

    def leave(self) -> None:
        if not self._left:
            self._left = True
            self._order._leave(self)

    def __enter__(self) -> Place:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.leave()
