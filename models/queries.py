"""Queries shared by several services, kept beside the tables they touch."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from models.base import Base
from models.conversation import Conversation, User
from models.handoff import OPEN_HANDOFF_STATUSES, Handoff


def insert_ignoring_duplicates(session: AsyncSession, table: type[Base]) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can ignore duplicates (`on_conflict_do_nothing`) on SQLite and PostgreSQL alike."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def user_row(session: AsyncSession, platform: str, external_id: str, display_name: str = "") -> User:
    """The user's row, created on first contact. The insert ignores a duplicate, since the same new
    user's first messages can arrive in two chats (a DM and a channel) at the same moment; a non-empty
    `display_name` refreshes the stored one."""
    where = (User.platform == platform, User.external_id == external_id)
    user = await session.scalar(select(User).where(*where))
    if user is None:
        await session.execute(
            insert_ignoring_duplicates(session, User)
            .values(platform=platform, external_id=external_id, display_name=display_name)
            .on_conflict_do_nothing(index_elements=["platform", "external_id"])
        )
        user = await session.scalar(select(User).where(*where))
        assert user is not None
    elif display_name and user.display_name != display_name:
        user.display_name = display_name
    return user


def open_handoff_id_of(platform: str, external_id: str) -> Select[int]:
    """The id of the user's open handoff, in any of their conversations."""
    return (
        select(Handoff.id)
        .join(Conversation, Conversation.id == Handoff.conversation_id)
        .join(User, User.id == Conversation.user_id)
        .where(
            User.platform == platform,
            User.external_id == external_id,
            Handoff.status.in_(OPEN_HANDOFF_STATUSES),
        )
        .limit(1)
    )
