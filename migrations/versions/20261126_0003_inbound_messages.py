"""Several processes on one database: inbound messages taken once, deliveries across processes.

Downgrade loses: inbound_messages (which process took which message) and pending_deliveries (notices
and resumes not yet delivered).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 12:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbound_messages",
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("chat_id", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("taken_by", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("platform", "chat_id", "message_id", name=op.f("pk_inbound_messages")),
    )
    op.create_index(
        op.f("ix_inbound_messages_received_at"), "inbound_messages", ["received_at"], unique=False
    )
    op.create_table(
        "pending_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("notice", "resume", name="delivery_kind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("taken_by", sa.String(length=64), nullable=True),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_pending_deliveries_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_deliveries")),
    )
    op.create_index(
        op.f("ix_pending_deliveries_conversation_id"), "pending_deliveries", ["conversation_id"], unique=False
    )
    op.create_index(op.f("ix_pending_deliveries_platform"), "pending_deliveries", ["platform"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_pending_deliveries_platform"), table_name="pending_deliveries")
    op.drop_index(op.f("ix_pending_deliveries_conversation_id"), table_name="pending_deliveries")
    op.drop_table("pending_deliveries")
    op.drop_index(op.f("ix_inbound_messages_received_at"), table_name="inbound_messages")
    op.drop_table("inbound_messages")
