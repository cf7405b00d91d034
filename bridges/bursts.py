"""Bursts: messages one user sends in one place in quick succession, answered as one turn.

People type in bursts ("hi" / "I have a question" / "about my order"); answering each line alone costs a
provider turn per line and answers the first before the question has arrived. With a window
(`[limits] burst_window_seconds`), a message whose turn comes waits until the window has passed since
the newest message lined up behind it, then takes with it the run of plain messages right behind it
that arrived within the window of each other. A command or a button press in the line ends the run,
and so does a turn that has started: what arrives after that waits for the next turn.

Every message is still recorded on arrival (bridges/inbox.py), and the joined ones are marked handled
in the one transaction that begins the turn, so a crash before it leaves each of them to the recovery,
which joins them again by their recorded arrival times.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import NamedTuple

from bridges.inbox import Inbox, Receipt
from bridges.surface import Inbound
from bridges.turns import Place, TurnOrder


class Follower(NamedTuple):
    """A message that joined an earlier one's turn: answered by it, and marked handled with it."""

    inbound: Inbound
    receipt: Receipt


@dataclass
class _Waiting:
    inbound: Inbound
    arrived: datetime
    receipt: Receipt | None = None
    """Set once the message is recorded: only a recorded message can join a turn."""
    joined: bool = False


class Bursts:
    def __init__(
        self,
        order: TurnOrder,
        inbox: Inbox,
        window: float,
        *,
        now: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.order = order
        self.inbox = inbox
        self.window = timedelta(seconds=window)
        self._now = now
        self._sleep = sleep
        self._waiting: dict[Place, _Waiting] = {}

    def arrived(self, place: Place, inbound: Inbound, at: datetime | None = None) -> None:
        """A plain message took `place` (at `at`, for one a restart recovers; else now). Presses and
        commands are never registered, so they end a run; a message registered already stays as it is."""
        if self.window and inbound.button is None and place not in self._waiting:
            self._waiting[place] = _Waiting(inbound, at or self._now())

    def recorded(self, place: Place, receipt: Receipt) -> None:
        if (waiting := self._waiting.get(place)) is not None:
            waiting.receipt = receipt

    def joined(self, place: Place) -> bool:
        """Whether the message at `place` was answered by an earlier one's turn."""
        waiting = self._waiting.get(place)
        return waiting is not None and waiting.joined

    def forget(self, place: Place) -> None:
        self._waiting.pop(place, None)

    async def gather(self, place: Place) -> list[Follower]:
        """Once `place`'s turn has come: wait out the window after the newest message of its run, then
        take the run (marked joined, so their own turns only step aside)."""
        if place not in self._waiting:
            return []
        while (wait := (self._run(place)[-1].arrived + self.window - self._now()).total_seconds()) > 0:
            await self._sleep(wait)
        run = self._run(place)[1:]
        for waiting in run:
            waiting.joined = True
        return [Follower(waiting.inbound, waiting.receipt) for waiting in run if waiting.receipt is not None]

    @asynccontextmanager
    async def started(
        self, inbound: Inbound, receipt: Receipt, followers: Sequence[Follower], *, recorded: bool = True
    ) -> AsyncIterator[tuple[Inbound, list[Follower]]]:
        """The turn's message, joined, and its followers, each with the text of the user's latest edit
        (`Inbox.turn_of`: edits from here on no longer change what is answered). A message its turn
        records (not `recorded`) was never queued, so nothing has edited it."""
        if not recorded:
            yield inbound, []
            return
        async with AsyncExitStack() as stack:
            latest = await stack.enter_async_context(self.inbox.turn_of(inbound, receipt))
            edited = [
                follower._replace(inbound=await stack.enter_async_context(self.inbox.turn_of(*follower)))
                for follower in followers
            ]
            yield joined(latest, edited), edited

    def _run(self, place: Place) -> list[_Waiting]:
        """`place`'s message and the recorded plain messages right behind it, each within the window of
        the one before."""
        run = [self._waiting[place]]
        for behind in self.order.behind(place):
            waiting = self._waiting.get(behind)
            if waiting is None or waiting.receipt is None or waiting.arrived - run[-1].arrived > self.window:
                break
            run.append(waiting)
        return run


def joined(leader: Inbound, followers: Sequence[Follower]) -> Inbound:
    """One message of a burst: the texts joined with newlines (empty ones left out), the files in order."""
    if not followers:
        return leader
    messages = [leader, *(follower.inbound for follower in followers)]
    return replace(
        leader,
        text="\n".join(message.text for message in messages if message.text),
        attachments=tuple(attachment for message in messages for attachment in message.attachments),
    )
