"""A user's satisfaction rating of one case: asked once when a moderator resolves it, answered at most once.

The row is made when the question is asked, so a press of a stored button (even after a restart, even a
forged one) finds the case it belongs to, or nothing. Score and comment are each set by one conditional
UPDATE, so the first press wins.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime

MAX_SCORE = 5


class Rating(Base):
    __tablename__ = "ratings"
    __table_args__ = (
        CheckConstraint(f"score BETWEEN 1 AND {MAX_SCORE}", name="score_range"),
        # `/ratings [days]` reads the ratings of one desk's cases asked in a period: a range on this index.
        Index("ix_ratings_desk_asked_at", "desk", "asked_at"),
    )

    handoff_id: Mapped[int] = mapped_column(
        ForeignKey("handoffs.id", ondelete="CASCADE"), primary_key=True, doc="one rating per case"
    )
    desk: Mapped[str] = mapped_column(String(32), doc="the desk whose moderator resolved the case")
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    shown_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, default=None, doc="when the question reached the user (or was given up)"
    )
    score: Mapped[int | None] = mapped_column(Integer, default=None)
    rated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    comment: Mapped[str | None] = mapped_column(Text, default=None)
    comment_prompt: Mapped[str | None] = mapped_column(
        String(64), default=None, index=True, doc="'chat:message' of a prompt whose reply is the comment"
    )
