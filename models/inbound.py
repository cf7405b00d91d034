"""Every inbound message, recorded the moment it arrives: answered exactly once, and never lost.

Several processes can share one database (Discord shards, a Telegram webhook behind a load balancer,
a restart while Telegram redelivers an unconfirmed update). The first process to insert a message's
row answers it; any other sees the duplicate and drops the message.

The row is written before the message waits for its turn, with everything needed to answer it, and
marked handled once the turn has taken it. A process killed while messages were queued behind a long
reply (the platform had already confirmed them) finds them here on its next start.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow


class InboundMessage(Base):
    __tablename__ = "inbound_messages"
    __table_args__ = (Index("ix_inbound_messages_unhandled", "taken_by", "handled_at"),)

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[str] = mapped_column(
        String(64), primary_key=True, doc="the platform's id; 'local:…' for presses and slash commands"
    )
    taken_by: Mapped[str] = mapped_column(String(64), doc="the instance and run that answers it")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    arrival: Mapped[int] = mapped_column(
        Integer, default=0, doc="order of arrival in the run that took it, for a recovery in order"
    )
    user_id: Mapped[str] = mapped_column(String(64), default="")
    display_name: Mapped[str] = mapped_column(String(255), default="")
    thread_id: Mapped[str] = mapped_column(String(64), default="")
    guild_id: Mapped[str] = mapped_column(String(64), default="")
    is_dm: Mapped[bool] = mapped_column(Boolean, default=False)
    text: Mapped[str] = mapped_column(Text, default="", doc="kept until handled, then cleared")
    button: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None, doc="a pressed button")
    attachments: Mapped[list[dict[str, Any]] | None] = mapped_column(
        JSON(none_as_null=True),
        default=None,
        doc="its files' metadata (as the transcript keeps it), kept until handled",
    )
    command: Mapped[str | None] = mapped_column(
        String(16), default=None, doc="a command that waits its turn like a message: reset, human"
    )
    handled_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, default=None, doc="when its turn took it; None while it waits (or was lost to a crash)"
    )
