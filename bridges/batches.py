"""Group commit: database steps that many messages take at the same moment, taken once for all of them.

A step called while an earlier call of it is running waits for the next run, which takes every call
made meanwhile. A lone call runs at once (nothing waits for company), and a burst of a hundred messages
costs a few transactions instead of a hundred: on SQLite, whose one writer would otherwise serialise
them lock wait by lock wait, and on PostgreSQL, where each would pay its own round trips and commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

BATCH_LIMIT = 500
"""Calls taken by one run at most, so one transaction stays short."""


class Batched(Generic[Item, Result]):
    """`await batched(item)` runs `step` on a batch of every item called for meanwhile.

    `step` returns one result per item, in order. If it fails for a batch of several, each item is
    tried alone, so one bad item fails only its own call; a failure of a lone item is that call's. A
    failure in `shared` (the database stayed away) is every item's at once: trying them alone would
    only wait it out again, item by item.
    """

    def __init__(
        self,
        step: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        *,
        shared: tuple[type[Exception], ...] = (),
    ) -> None:
        self._step = step
        self._shared = shared
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:BATCH_LIMIT], self._waiting[BATCH_LIMIT:]
            await self._take(batch)

    async def _take(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = list(await self._step([item for item, _ in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for {len(batch)} items")
        except Exception as exc:
            if len(batch) == 1 or isinstance(exc, self._shared):
                for _, future in batch:
                    _settle(future, exc)
                return
            log.warning("a batch of %d failed (%s); taking each alone", len(batch), type(exc).__name__)
            for one in batch:
                await self._take([one])
            return
        except BaseException as exc:  # cancelled with the process: nobody is left to answer
            for _, future in batch:
                _settle(future, exc)
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


def _settle(future: asyncio.Future[Result], exc: BaseException) -> None:
    if future.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(exc)
