"""Blocked users: ignored everywhere, by every process sharing the database, until the block ends.

A block is global (a user blocked from the Discord desk is blocked on every platform chat the bot
serves), so who may set one is decided by the bridges from the desk's own server or chat. A block can
run out by itself (`until`), and carries a reason that moderators see and the blocked user never does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridges.batches import Batched
from bridges.outage import DATABASE_FAILURES
from models import User, utcnow
from models.queries import user_row

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Block:
    platform: str
    user_id: str
    by: str
    """Who set it, as platform:user id."""
    since: datetime
    until: datetime | None
    """When it lifts by itself; None: until someone unblocks."""
    reason: str


class BlockService:
    def __init__(self, db: async_sessionmaker[AsyncSession], *, now: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.now = now
        """The clock that decides whether a block has run out."""
        self._reading = Batched(self._users, shared=DATABASE_FAILURES)
        """A read fails for every user alike; the callers retry (`survives_db_outage`)."""

    async def active(self, platform: str, user_id: str) -> Block | None:
        """The user's block, unless there is none or it has run out. Asked for every message, so the
        users of every message arriving meanwhile are read at once (bridges/batches.py)."""
        user = await self._reading((platform, user_id))
        return self._block_of(user) if user is not None else None

    async def _users(self, keys: Sequence[tuple[str, str]]) -> list[User | None]:
        async with self.db() as session:
            found = {
                (user.platform, user.external_id): user
                for user in await session.scalars(
                    select(User).where(tuple_(User.platform, User.external_id).in_(list(set(keys))))
                )
            }
        return [found.get(key) for key in keys]

    async def block(
        self, platform: str, user_id: str, *, by: str, until: datetime | None = None, reason: str = ""
    ) -> Block:
        """Block the user (a user never seen before too), replacing any earlier block's terms."""
        now = self.now()
        async with self.db.begin() as session:
            user = await user_row(session, platform, user_id)
            user.blocked_at, user.blocked_by = now, by
            user.blocked_until, user.block_reason = until, reason or None
        return Block(platform, user_id, by, now, until, reason)

    async def unblock(self, platform: str, user_id: str) -> Block | None:
        """Lift the block; returns the block that was lifted, or None if the user was not blocked."""
        async with self.db.begin() as session:
            user = await session.scalar(
                select(User).where(User.platform == platform, User.external_id == user_id)
            )
            lifted = self._block_of(user) if user is not None else None
            if user is not None:
                user.blocked_at = user.blocked_by = user.blocked_until = user.block_reason = None
        return lifted

    def _block_of(self, user: User) -> Block | None:
        if user.blocked_at is None or not user.blocked_at_time(self.now()):
            return None
        return Block(
            user.platform,
            user.external_id,
            user.blocked_by or "",
            user.blocked_at,
            user.blocked_until,
            user.block_reason or "",
        )
