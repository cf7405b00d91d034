"""Waiting on the database, which has no change events: look again every few milliseconds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import InboundMessage, TranscriptEntry


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 5.0, what: str) -> None:
    try:
        async with asyncio.timeout(within):
            while not await check():  # noqa: ASYNC110 - nothing signals a database change
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out after {within}s waiting for {what}") from None


async def queued_text(db: async_sessionmaker[AsyncSession], message_id: object) -> str | None:
    """The text an inbound message waits with (None once its turn has taken it)."""
    async with db() as session:
        return await session.scalar(
            select(InboundMessage.text).where(
                InboundMessage.message_id == str(message_id), InboundMessage.handled_at.is_(None)
            )
        )


async def transcript_texts(db: async_sessionmaker[AsyncSession]) -> list[str]:
    async with db() as session:
        return list((await session.scalars(select(TranscriptEntry.text).order_by(TranscriptEntry.id))).all())


async def holds(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def has(values: Awaitable[list[str]], expected: str) -> bool:
    return expected in await values
