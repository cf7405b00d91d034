"""The replies the agent is streaming right now in this process, by conversation, so that a moderator
taking the conversation over can stop the one in progress (bridges/replies.py registers each reply
with the same stop its user's Stop button sets).

Turns run one at a time per conversation, so a conversation has at most one live reply. Stopping it
ends the agent's stream (its connection is released) and keeps the text shown so far; `stop` returns
once that turn is over, so what the moderator's arrival is announced with comes after the reply's
final text, never in the middle of it. A moderator acting in another process reaches a reply here
through the database: `stop_taken_over` runs with the handoff timers and stops every reply whose
conversation is now with a human (a turn with the agent only starts in a conversation with the bot).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Conversation, ConversationStatus

log = logging.getLogger(__name__)

STOP_WAIT = 10.0
"""Seconds `stop` waits for the stopped turn to finish (its final edit may wait for a rate budget)."""


@dataclass
class _Live:
    stop: asyncio.Event
    over: asyncio.Event = field(default_factory=asyncio.Event)


class TakeoverStops:
    def __init__(self, db: async_sessionmaker[AsyncSession]) -> None:
        self._db = db
        self._live: dict[int, _Live] = {}

    @contextlib.contextmanager
    def streaming(self, conversation_id: int, stop: asyncio.Event) -> Iterator[None]:
        """Register the reply streaming in `conversation_id` for as long as the block runs; `stop` is set
        when a moderator takes the conversation over (the renderer's `ReplyControls.stop`)."""
        live = self._live[conversation_id] = _Live(stop)
        try:
            yield
        finally:
            live.over.set()
            if self._live.get(conversation_id) is live:
                del self._live[conversation_id]

    async def stop(self, conversation_id: int) -> bool:
        """Stop the reply streaming in `conversation_id` in this process, and wait until its turn is over.
        False if none was streaming here."""
        live = self._live.get(conversation_id)
        if live is None:
            return False
        live.stop.set()
        try:
            await asyncio.wait_for(live.over.wait(), STOP_WAIT)
        except TimeoutError:
            log.warning("conversation %s: a stopped reply is still finishing", conversation_id)
        return True

    async def stop_taken_over(self) -> None:
        """Stop the replies streaming here whose conversation a moderator took over (in any process)."""
        if not self._live:
            return
        async with self._db() as session:
            taken = list(
                await session.scalars(
                    select(Conversation.id).where(
                        Conversation.id.in_(list(self._live)), Conversation.status == ConversationStatus.HUMAN
                    )
                )
            )
        for conversation_id in taken:
            live = self._live.get(conversation_id)
            if live is not None:
                log.info("conversation %s: taken over elsewhere; stopping its reply", conversation_id)
                live.stop.set()
