"""Edits and deletions mirrored during a handoff: each message's copy on the other side.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 09:00:00

Downgrade drops the table: edits made afterwards are shown to moderators as notes, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "message_copies",
        sa.Column("origin", sa.String(length=40), nullable=False),
        sa.Column("origin_chat", sa.String(length=64), nullable=False),
        sa.Column("origin_message", sa.String(length=64), nullable=False),
        sa.Column("copy_side", sa.String(length=40), nullable=False),
        sa.Column("copy_message", sa.String(length=64), nullable=False),
        sa.Column("handoff_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["handoff_id"],
            ["handoffs.id"],
            name=op.f("fk_message_copies_handoff_id_handoffs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "origin", "origin_chat", "origin_message", "copy_side", name=op.f("pk_message_copies")
        ),
    )
    op.create_index(op.f("ix_message_copies_handoff_id"), "message_copies", ["handoff_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_message_copies_handoff_id"), table_name="message_copies")
    op.drop_table("message_copies")
