"""The conversations and their transcripts, as the named steps the Relay takes on them.

Each step is its own transaction and outlives a database restart (`survives_db_outage`), so a retry
repeats only work that did not commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.base import Attachment, HistoryEntry
from bridges.bindings import Bindings
from bridges.handoff import open_handoff_of
from bridges.inbox import Inbox, Receipt
from bridges.outage import survives_db_outage
from bridges.surface import Inbound
from models import Conversation, ConversationStatus, Handoff, Role, TranscriptEntry, User
from models.queries import user_row


class Conversations:
    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        *,
        inbox: Inbox,
        bindings: Bindings,
        now: Callable[[], datetime],
        outage_grace: float,
    ) -> None:
        self.db = db
        self.inbox = inbox
        self.bindings = bindings
        self._now = now
        self.outage_grace = outage_grace

    @survives_db_outage
    async def current(self, inbound: Inbound) -> tuple[Conversation | None, Handoff | None]:
        """The user's open conversation in this place, and its open handoff, as they are now."""
        async with self.db() as session:
            conversation: Conversation | None = await session.scalar(_open_conversation(inbound))
            handoff = await open_handoff_of(session, conversation.id) if conversation else None
        return conversation, handoff

    @survives_db_outage
    async def open_for(self, inbound: Inbound, idle_timeout: timedelta) -> Conversation:
        """The live conversation for this user in this place: a bot conversation idle for `idle_timeout`
        is closed and a new one started, with the agent bound to the place."""
        now = self._now()
        async with self.db.begin() as session:
            user = await user_row(session, inbound.platform, inbound.user_id, inbound.display_name)
            conversation: Conversation | None = await session.scalar(_open_conversation(inbound))
            if (
                conversation is not None
                and conversation.status == ConversationStatus.BOT
                and conversation.last_activity_at + idle_timeout <= now
            ):
                close(conversation, now)
                conversation = None
            if conversation is None:
                conversation = Conversation(
                    user_id=user.id,
                    platform=inbound.platform,
                    chat_id=inbound.chat_id,
                    thread_id=inbound.thread_id,
                    agent_name=await self.bindings.agent_for(session, inbound),
                    provider_state={},
                    status=ConversationStatus.BOT,
                    last_activity_at=now,
                )
                session.add(conversation)
            conversation.last_activity_at = now
        return conversation

    @survives_db_outage
    async def close(self, conversation_id: int) -> None:
        async with self.db.begin() as session:
            close(await session.get_one(Conversation, conversation_id), self._now())

    @survives_db_outage
    async def history(self, conversation_id: int, length: int) -> tuple[HistoryEntry, ...]:
        """The `length` entries before the newest (the message being answered), oldest first."""
        async with self.db() as session:
            entries = await session.scalars(
                select(TranscriptEntry)
                .where(
                    TranscriptEntry.conversation_id == conversation_id, TranscriptEntry.role != Role.SYSTEM
                )
                .order_by(TranscriptEntry.id.desc())
                .limit(length + 1)
            )
            rows = list(entries)[1:]
        return tuple(HistoryEntry(role=row.role.value, text=row.text) for row in reversed(rows))  # type: ignore[arg-type]

    @survives_db_outage
    async def record(
        self,
        conversation_id: int,
        role: Role,
        text: str,
        message_ids: Sequence[str] = (),
        author_id: str = "",
        *,
        handled: Receipt | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> None:
        """Add a transcript entry (with its files' metadata, never their bytes); with `handled`, mark
        that inbound message as taken by its turn in the same transaction, so a crash can neither lose
        it nor answer it twice."""
        async with self.db.begin() as session:
            if handled is not None:
                await session.execute(self.inbox.handled(handled))
            session.add(
                TranscriptEntry(
                    conversation_id=conversation_id,
                    role=role,
                    text=text,
                    author_id=author_id,
                    platform_message_ids=[mid for mid in message_ids if mid],
                    attachments=[attachment.metadata() for attachment in attachments] or None,
                )
            )

    @survives_db_outage
    async def set_pending(
        self, conversation_id: int, pending: dict[str, Any] | None = None, *, message_id: str = ""
    ) -> None:
        """Mark a reply as being written (who writes it, what was asked, the messages posted so far), so
        a crash leaves a trace its next start reports."""
        async with self.db.begin() as session:
            conversation = await session.get_one(Conversation, conversation_id)
            current = pending if pending is not None else dict(conversation.pending_reply or {})
            if message_id:
                current["message_ids"] = [*current.get("message_ids", []), message_id]
            conversation.pending_reply = current

    @survives_db_outage
    async def finish_turn(
        self, conversation_id: int, provider_state: dict[str, Any] | None, *, ended: bool
    ) -> None:
        async with self.db.begin() as session:
            conversation = await session.get_one(Conversation, conversation_id)
            now = self._now()
            conversation.last_activity_at = now
            conversation.pending_reply = None
            if provider_state is not None:
                conversation.provider_state = provider_state
            if ended:
                close(conversation, now)

    @survives_db_outage
    async def stranded(self) -> list[Conversation]:
        """Conversations with a reply marked as being written (by any process, this run included)."""
        async with self.db() as session:
            return list(
                await session.scalars(select(Conversation).where(Conversation.pending_reply.is_not(None)))
            )

    @survives_db_outage
    async def clear_pending(self, conversation_id: int) -> None:
        async with self.db.begin() as session:
            (await session.get_one(Conversation, conversation_id)).pending_reply = None


def close(conversation: Conversation, now: datetime) -> None:
    conversation.status = ConversationStatus.CLOSED
    conversation.closed_at = now


def _open_conversation(inbound: Inbound) -> Any:
    return (
        select(Conversation)
        .join(User)
        .where(
            User.platform == inbound.platform,
            User.external_id == inbound.user_id,
            Conversation.platform == inbound.platform,
            Conversation.chat_id == inbound.chat_id,
            Conversation.thread_id == inbound.thread_id,
            Conversation.status != ConversationStatus.CLOSED,
        )
        .order_by(Conversation.id.desc())
        .limit(1)
    )
