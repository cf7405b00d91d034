"""What a process could not deliver itself: a user it has no bridge for.

With several processes (Discord shards, Telegram in one of them), a moderator may claim and answer a
handoff in a process that cannot reach the user's platform. The words wait here, in order, until a
process that serves that platform delivers them (every process's handoff timers look).
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, str_enum, utcnow


class DeliveryKind(enum.StrEnum):
    NOTICE = "notice"
    """`text` is posted to the user."""
    RESUME = "resume"
    """The agent is told the bot is back and its answer shown (see `Relay.resume_after_handoff`)."""
    RATING = "rating"
    """The rating question of the conversation's case is shown with its buttons (bridges/ratings.py)."""


class PendingDelivery(Base):
    __tablename__ = "pending_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    platform: Mapped[str] = mapped_column(String(16), index=True)
    kind: Mapped[DeliveryKind] = mapped_column(str_enum(DeliveryKind, "delivery_kind"))
    text: Mapped[str] = mapped_column(Text, default="")
    refusals: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """How often the platform refused it for good; past a few, delivery is given up and reported."""
    taken_by: Mapped[str | None] = mapped_column(String(64), default=None)
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
