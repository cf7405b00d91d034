"""Group commit (bridges/batches.py): calls made while a run is in flight share the next run."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bridges.batches import Batched


class Step:
    """Doubles its items; holds each run until `release` while `hold` is set; fails on `bad` items."""

    def __init__(self, *, bad: frozenset[int] = frozenset(), shared: bool = False) -> None:
        self.runs: list[list[int]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.running = asyncio.Event()
        self.bad, self.shared = bad, shared

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.runs.append(list(items))
        self.running.set()
        await self.hold.wait()
        if self.shared:
            raise ConnectionError("the database went away")
        if any(item in self.bad for item in items):
            raise ValueError("a bad item")
        return [item * 2 for item in items]


async def test_a_lone_call_runs_at_once() -> None:
    step = Step()
    assert await Batched(step)(3) == 6
    assert step.runs == [[3]]


async def test_calls_made_while_a_run_is_in_flight_share_the_next_run() -> None:
    step = Step()
    batched = Batched(step)
    step.hold.clear()
    first = asyncio.create_task(batched(1))
    await asyncio.wait_for(step.running.wait(), 5)
    rest = [asyncio.create_task(batched(n)) for n in range(2, 12)]
    await asyncio.sleep(0)  # every call is queued behind the run in flight
    step.hold.set()
    assert await asyncio.gather(first, *rest) == [n * 2 for n in range(1, 12)]
    assert step.runs == [[1], list(range(2, 12))]


async def test_a_bad_item_fails_only_its_own_call() -> None:
    step = Step(bad=frozenset({5}))
    batched = Batched(step)
    step.hold.clear()
    first = asyncio.create_task(batched(1))
    await asyncio.wait_for(step.running.wait(), 5)
    rest = [asyncio.create_task(batched(n)) for n in (4, 5, 6)]
    await asyncio.sleep(0)
    step.hold.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert results[:2] == [2, 8] and isinstance(results[2], ValueError) and results[3] == 12
    assert step.runs == [[1], [4, 5, 6], [4], [5], [6]]


async def test_a_shared_failure_fails_every_call_of_the_run_once() -> None:
    step = Step(shared=True)
    batched = Batched(step, shared=(ConnectionError,))
    step.hold.clear()
    first = asyncio.create_task(batched(1))
    await asyncio.wait_for(step.running.wait(), 5)
    rest = [asyncio.create_task(batched(n)) for n in (2, 3)]
    await asyncio.sleep(0)
    step.hold.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)
    assert step.runs == [[1], [2, 3]]  # not tried one by one


async def test_a_caller_that_gives_up_leaves_the_others_their_results() -> None:
    step = Step()
    batched = Batched(step)
    step.hold.clear()
    first = asyncio.create_task(batched(1))
    await asyncio.wait_for(step.running.wait(), 5)
    impatient, patient = asyncio.create_task(batched(2)), asyncio.create_task(batched(3))
    await asyncio.sleep(0)
    impatient.cancel()
    step.hold.set()
    assert await first == 2 and await patient == 6
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_a_step_that_loses_a_result_fails_the_calls_instead_of_leaving_them_waiting() -> None:
    async def forgetful(items: Sequence[int]) -> list[int]:
        return [item * 2 for item in items][1:]

    batched = Batched(forgetful)
    results = await asyncio.wait_for(asyncio.gather(batched(1), batched(2), return_exceptions=True), 5)
    assert all(isinstance(result, RuntimeError) for result in results)
