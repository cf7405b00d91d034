"""A request for a human moderator, and its life: requested -> claimed -> resolved / returned / expired."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, str_enum, utcnow


class HandoffStatus(enum.StrEnum):
    REQUESTED = "requested"
    CLAIMED = "claimed"
    RESOLVED = "resolved"
    RETURNED = "returned"
    EXPIRED = "expired"


OPEN_HANDOFF_STATUSES = (HandoffStatus.REQUESTED, HandoffStatus.CLAIMED)
_OPEN_WHERE = text("status IN ('requested', 'claimed')")


class Handoff(Base):
    __tablename__ = "handoffs"
    __table_args__ = (
        # At most one open handoff per conversation, enforced by the database itself.
        Index(
            "uq_handoffs_one_open_per_conversation",
            "conversation_id",
            unique=True,
            sqlite_where=_OPEN_WHERE,
            postgresql_where=_OPEN_WHERE,
        ),
        # The timers' question every tick, "which requests are due?", is a range on this index.
        Index("ix_handoffs_status_requested_at", "status", "requested_at"),
        # ...and "which scheduled closes are due?" a range on this one.
        Index("ix_handoffs_close_at", "close_at"),
        # ...and "which waiting requests are due to escalate or expire?" a range on this one.
        Index("ix_handoffs_status_due_at", "status", "due_at"),
        # ...and "which cases are past their first-response target?" a range on this one.
        Index("ix_handoffs_first_response_due_at", "first_response_due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[HandoffStatus] = mapped_column(
        str_enum(HandoffStatus, "handoff_status"),
        default=HandoffStatus.REQUESTED,
    )
    reason: Mapped[str] = mapped_column(Text, default="")
    requested_by: Mapped[str] = mapped_column(
        String(16), doc="'agent' or 'user'; 'takeover' or 'contact' for a case a moderator opened"
    )
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None, doc="platform:user id")
    claimed_by_name: Mapped[str | None] = mapped_column(String(255), default=None)
    closed_by: Mapped[str | None] = mapped_column(
        String(64), default=None, doc="platform:user id, or 'timer'"
    )
    closed_by_name: Mapped[str | None] = mapped_column(String(255), default=None)
    notification_refs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    close_reason: Mapped[str | None] = mapped_column(
        Text, default=None, doc="why it was closed (or will be, when close_at is set); for moderators"
    )
    close_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, default=None, doc="a scheduled close; cleared when the user writes first"
    )
    close_scheduled_by: Mapped[str | None] = mapped_column(
        String(64), default=None, doc="platform:user id of who scheduled close_at"
    )
    close_scheduled_by_name: Mapped[str | None] = mapped_column(String(255), default=None)
    last_word_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, default=None, doc="the last message of the user or a moderator while claimed"
    )
    silence_warned_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, default=None, doc="when the auto-close warning went out; cleared by a new message"
    )
    first_response_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, default=None, doc="the first moderator reply the user got"
    )
    expire_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, default=None, doc="when a waiting request expires, counted in business time"
    )
    due_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime,
        default=None,
        doc="a waiting request's next timer (its escalation, then its expiry); None until the timers "
        "set it (a request from before business hours, or one let go with /unclaim)",
    )
    intake_label: Mapped[str | None] = mapped_column(
        String(80), default=None, doc="the intake reason the user chose, if the menu was shown"
    )
    priority: Mapped[str | None] = mapped_column(
        String(16), default=None, doc="the intake reason's priority (low, normal, high, urgent)"
    )
    first_response_due_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, default=None, doc="the first-response target ([handoff.sla]); None if there is none"
    )
    sla_escalated_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, default=None, doc="when the case was escalated for passing that target (once)"
    )


class HandoffPlace(Base):
    """Where a handoff lives on a desk (a Discord thread, a Telegram topic), as "key:value" from the refs
    the desk returned. A moderator's message finds its handoff by this primary key, instead of a scan of
    every open handoff's `notification_refs`."""

    __tablename__ = "handoff_places"

    desk: Mapped[str] = mapped_column(String(32), primary_key=True)
    place: Mapped[str] = mapped_column(String(128), primary_key=True)
    handoff_id: Mapped[int] = mapped_column(ForeignKey("handoffs.id", ondelete="CASCADE"), index=True)


def place_key(key: str, value: object) -> str:
    """How a refs entry is stored in `HandoffPlace.place`."""
    return f"{key}:{value}"


class MessageCopy(Base):
    """A message's copy on the other side of a handoff (a user's message in a desk's thread or topic, a
    moderator's reply in the user's chat), so an edit or a deletion of the one can be shown on the other.
    A side is a user platform ("telegram") or a desk ("desk:discord"); the copy's chat is the handoff's."""

    __tablename__ = "message_copies"

    origin: Mapped[str] = mapped_column(String(40), primary_key=True)
    origin_chat: Mapped[str] = mapped_column(String(64), primary_key=True)
    origin_message: Mapped[str] = mapped_column(String(64), primary_key=True)
    copy_side: Mapped[str] = mapped_column(String(40), primary_key=True)
    copy_message: Mapped[str] = mapped_column(String(64))
    handoff_id: Mapped[int] = mapped_column(ForeignKey("handoffs.id", ondelete="CASCADE"), index=True)
