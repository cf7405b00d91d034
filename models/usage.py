"""What each user and each place used of the assistant in one quota period (bridges/quotas.py).

One row per scope and period, counted up in the same transaction as the turn's own writes: a turn's
message when it begins, the tokens its provider reported when it finishes. Periods are UTC calendar
days or months, so a row is never rewritten once its period is over, and old rows can be pruned.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime


class UsageCounter(Base):
    __tablename__ = "usage_counters"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True, doc="'user' or 'place'")
    scope_id: Mapped[str] = mapped_column(
        String(160), primary_key=True, doc="'platform:user id', or 'binding scope:id' for a place"
    )
    period_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    messages: Mapped[int] = mapped_column(Integer, default=0, doc="turns sent to an agent")
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
