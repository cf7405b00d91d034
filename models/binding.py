"""Which agent answers where: a scope (global, a Discord guild or channel, a Telegram chat) -> agent name."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, str_enum, utcnow


class BindingScope(enum.StrEnum):
    GLOBAL = "global"
    DISCORD_GUILD = "discord_guild"
    DISCORD_CHANNEL = "discord_channel"
    TELEGRAM_CHAT = "telegram_chat"


class AgentBinding(Base):
    __tablename__ = "agent_bindings"
    __table_args__ = (UniqueConstraint("scope", "scope_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[BindingScope] = mapped_column(str_enum(BindingScope, "binding_scope"))
    scope_id: Mapped[str] = mapped_column(String(64), default="", doc="'' for the global scope")
    agent_name: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
