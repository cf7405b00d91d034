"""Which agent answers where: a scope (global, or a place a platform declares) -> an agent name."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow


class AgentBinding(Base):
    __tablename__ = "agent_bindings"
    __table_args__ = (UniqueConstraint("scope", "scope_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(
        String(32), doc="'global', or a scope a platform declares in bridges/registry.py"
    )
    scope_id: Mapped[str] = mapped_column(String(64), default="", doc="'' for the global scope")
    agent_name: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
