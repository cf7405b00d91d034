"""Where a message passed across a handoff was copied to: the data step of bridges/mirror.py.

A side is a user platform ("telegram") or a desk (`desk_side`); a copy's chat is its handoff's (the
user's conversation, or the desk's thread or topic), so only its message id is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridges.surface import Inbound
from models import MessageCopy


def desk_side(desk: str) -> str:
    """The side name of a desk, apart from the user platform of the same name."""
    return f"desk:{desk}"


@dataclass(frozen=True)
class Origin:
    """A message where it was written: a user platform or `desk_side`, the chat, the message id."""

    side: str
    chat: str
    message: str


def origin_of(inbound: Inbound) -> Origin:
    """Where a user's message was written, as its edits and deletions will name it."""
    return Origin(inbound.platform, inbound.chat_id, inbound.message_id)


async def remember(
    db: async_sessionmaker[AsyncSession], handoff_id: int, origin: Origin, copies: Sequence[tuple[str, str]]
) -> None:
    """Store where `origin` was copied to, as (side, message id) pairs."""
    if not origin.message or not copies:
        return
    async with db.begin() as session:
        for side, message in copies:
            await session.merge(
                MessageCopy(
                    origin=origin.side,
                    origin_chat=origin.chat,
                    origin_message=origin.message,
                    copy_side=side,
                    copy_message=message,
                    handoff_id=handoff_id,
                )
            )
