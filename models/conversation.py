"""Users, their conversations with an agent, and the transcript of each conversation."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, UTCDateTime, str_enum, utcnow


class ConversationStatus(enum.StrEnum):
    BOT = "bot"
    HANDOFF_REQUESTED = "handoff_requested"
    HUMAN = "human"
    CLOSED = "closed"


class Role(enum.StrEnum):
    USER = "user"
    AGENT = "agent"
    MODERATOR = "moderator"
    SYSTEM = "system"


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("platform", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(255), default="")
    blocked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    blocked_by: Mapped[str | None] = mapped_column(String(64), default=None, doc="platform:user id")
    blocked_until: Mapped[datetime | None] = mapped_column(
        UTCDateTime, default=None, doc="when the block lifts by itself; None blocks until /unblock"
    )
    block_reason: Mapped[str | None] = mapped_column(
        Text, default=None, doc="for moderators only: never shown to the blocked user"
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    conversations: Mapped[list[Conversation]] = relationship(back_populates="user")

    def blocked_at_time(self, now: datetime) -> bool:
        """Whether a block is in force at `now` (one with an end lifts by itself)."""
        return self.blocked_at is not None and (self.blocked_until is None or self.blocked_until > now)


class Conversation(Base):
    """One user's session with one agent in one place (chat, channel, thread or topic)."""

    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_place", "user_id", "platform", "chat_id", "thread_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(16))
    chat_id: Mapped[str] = mapped_column(String(64))
    thread_id: Mapped[str] = mapped_column(String(64), default="", doc="'' when not in a thread or topic")
    agent_name: Mapped[str] = mapped_column(String(64))
    provider_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    pending_reply: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, default=None, doc="set while a reply is being written; left behind by a crash"
    )
    status: Mapped[ConversationStatus] = mapped_column(
        str_enum(ConversationStatus, "conversation_status"), default=ConversationStatus.BOT
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    locale: Mapped[str | None] = mapped_column(
        String(35), default=None, doc="the user's language as their platform last gave it; None: the default"
    )

    user: Mapped[User] = relationship(back_populates="conversations")
    transcript: Mapped[list[TranscriptEntry]] = relationship(
        back_populates="conversation", order_by="TranscriptEntry.id"
    )


class TranscriptEntry(Base):
    __tablename__ = "transcript_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[Role] = mapped_column(str_enum(Role, "transcript_role"))
    text: Mapped[str] = mapped_column(Text)
    author_id: Mapped[str] = mapped_column(String(64), default="", doc="platform id of a moderator author")
    internal: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), doc="a moderators' note: never shown to the user"
    )
    platform_message_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    attachments: Mapped[list[dict[str, Any]] | None] = mapped_column(
        JSON, default=None, doc="metadata of the files sent with it (kind, mime, size, name); no bytes"
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    conversation: Mapped[Conversation] = relationship(back_populates="transcript")
