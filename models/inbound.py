"""Which platform messages have been taken by some process, so each is answered exactly once.

Several processes can share one database (Discord shards, a Telegram webhook behind a load balancer,
a restart while Telegram redelivers an unconfirmed update). The first process to insert a message's
row answers it; any other sees the duplicate and drops the message.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow


class InboundMessage(Base):
    __tablename__ = "inbound_messages"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    taken_by: Mapped[str] = mapped_column(String(64), doc="the instance and run that answers it")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
