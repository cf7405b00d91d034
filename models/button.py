"""Button payloads kept server-side, because platforms cap what a button can carry.

Discord's custom_id holds 100 characters and Telegram's callback_data 64 bytes, while a provider's
button payload (a Voiceflow `request` object, say) can be any size. The button carries a short token;
the payload lives here, so presses keep working after a restart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow


class StoredButton(Base):
    __tablename__ = "stored_buttons"

    token: Mapped[str] = mapped_column(String(32), primary_key=True)
    label: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    url: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
