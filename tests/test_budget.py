"""Shared rate budgets: the bucket refills at its rate, waiters are served in order, all-or-nothing takes."""

from __future__ import annotations

import asyncio

import pytest

from bridges.budget import RateBudget, WindowBudget, acquire_all, try_acquire_all
from bridges.surface import SurfaceError, send_notice
from tests.surfaces import RecordingSurface


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_rate() -> None:
    clock = Clock()
    budget = RateBudget(5, per=1.0, clock=clock)
    taken = 0
    while budget.available():
        budget.take()
        taken += 1
    assert taken == 5
    clock.now = 0.2  # one token refilled
    assert budget.available()
    budget.take()
    assert not budget.available()
    clock.now = 100.0
    assert sum(1 for _ in iter(lambda: budget.available() and (budget.take() or True), False)) == 5


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RateBudget(0)


def test_try_acquire_all_takes_from_every_budget_or_none() -> None:
    roomy_clock, tight_clock = Clock(), Clock()
    roomy, tight = RateBudget(10, clock=roomy_clock), RateBudget(1, clock=tight_clock)
    assert try_acquire_all([roomy, tight])
    assert not try_acquire_all([roomy, tight])
    tight_clock.now = 1.0
    assert try_acquire_all([roomy, tight])  # roomy lost one token per success only: 10 -> 9 -> 9 -> 8
    spent = 0
    while roomy.available():
        roomy.take()
        spent += 1
    assert spent == 8


async def test_waiters_are_served_in_arrival_order_at_the_budget_rate() -> None:
    budget = RateBudget(20, per=1.0, burst=1)
    order: list[int] = []

    async def take(n: int) -> None:
        await budget.acquire()
        order.append(n)

    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(asyncio.gather(*(take(n) for n in range(10))), 5)
    elapsed = loop.time() - started
    assert order == list(range(10))
    assert elapsed >= 9 / 20 * 0.95  # nine refills at 20/s after the first token


async def test_opportunistic_takes_yield_to_waiters() -> None:
    """Intermediate edits (try_acquire) must not jump ahead of a request that is waiting."""
    budget = RateBudget(50, burst=1)
    budget.take()
    waiter = asyncio.create_task(budget.acquire())
    await asyncio.sleep(0)  # let the waiter queue up
    assert not budget.available()
    await asyncio.wait_for(waiter, 2)


async def test_cancelled_waiter_lets_the_next_one_through() -> None:
    budget = RateBudget(50, burst=1)
    budget.take()
    first = asyncio.create_task(budget.acquire())
    second = asyncio.create_task(acquire_all([budget]))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.wait_for(second, 2)


async def test_notices_outside_a_reply_pay_the_surface_budgets_too() -> None:
    clock = Clock()
    budget = RateBudget(1, per=1.0, burst=2, clock=clock)
    surface = RecordingSurface(budgets=(budget,))
    assert await send_notice(surface, "one") and await send_notice(surface, "two")
    third = asyncio.create_task(send_notice(surface, "three"))
    await asyncio.sleep(0)  # let it reach the empty budget
    assert not third.done() and surface.visible_texts() == ["one", "two"]
    third.cancel()


async def test_a_refused_notice_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    surface = RecordingSurface()
    surface.fail_next("send", SurfaceError("chat not found"))
    assert await send_notice(surface, "hello") is False
    assert "chat not found" in caplog.text


async def test_first_texts_go_ahead_of_queued_requests_in_their_own_arrival_order() -> None:
    budget = RateBudget(50, per=1.0, burst=1)
    order: list[str] = []

    async def take(name: str, urgent: bool) -> None:
        await budget.acquire(urgent=urgent)
        order.append(name)

    await budget.acquire()  # the bucket is empty: everyone below waits
    edits = [asyncio.create_task(take(f"edit {n}", False)) for n in range(3)]
    await asyncio.sleep(0)  # let them queue (a yield, not a wait for time)
    firsts = [asyncio.create_task(take(f"first {n}", True)) for n in range(2)]
    await asyncio.wait_for(asyncio.gather(*edits, *firsts), 5)
    # Even "edit 0", already at the head waiting out the refill, lets the first texts pass.
    assert order == ["first 0", "first 1", "edit 0", "edit 1", "edit 2"]


async def test_a_cancelled_first_text_lets_the_queue_move_on() -> None:
    budget = RateBudget(50, per=1.0, burst=1)
    await budget.acquire()
    edit = asyncio.create_task(budget.acquire())
    await asyncio.sleep(0)
    first = asyncio.create_task(budget.acquire(urgent=True))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.wait_for(edit, 5)
    assert first.cancelled()


def test_a_window_budget_spends_its_whole_limit_at_once_and_never_more_in_any_window() -> None:
    """Platforms state hard caps ("5 per 5 s", "20 per minute"): a quiet scope may spend all of it at
    once, and no window of that length ever holds more."""
    clock = Clock()
    budget = WindowBudget(5, 5.1, clock=clock)
    spends: list[float] = []
    for step in range(400):  # ask every 0.05 s for 20 s
        clock.now = step * 0.05
        while budget.available():
            budget.take()
            spends.append(clock.now)
    assert spends[:5] == [0.0] * 5
    assert all(later - earlier >= 5.1 - 1e-9 for earlier, later in zip(spends, spends[5:], strict=False))
    assert len(spends) == 20  # 5 at 0, 5.1, 10.2 and 15.3 s
    assert not budget.full()
    clock.now = 30.0
    assert budget.full()


async def test_a_window_budget_serves_waiters_when_its_oldest_spend_leaves_the_window() -> None:
    loop = asyncio.get_running_loop()
    budget = WindowBudget(2, 0.2, clock=loop.time)
    started = loop.time()
    await asyncio.wait_for(asyncio.gather(*(budget.acquire() for _ in range(4))), 5)
    assert loop.time() - started >= 0.2 * 0.95


def test_a_reserve_leaves_room_for_requests_that_must_happen() -> None:
    """Intermediate edits take a slot only while one stays free for the final edit."""
    now = [0.0]
    window = WindowBudget(5, 5.0, clock=lambda: now[0])
    taken = 0
    while try_acquire_all([window], reserve=1):
        taken += 1
    assert taken == 4 and window.available()  # the fifth slot is the final's
    now[0] = 5.0
    assert try_acquire_all([window], reserve=1)
    single = RateBudget(1, per=1.0, clock=lambda: now[0])  # a budget of one keeps no reserve
    assert try_acquire_all([single], reserve=1)
