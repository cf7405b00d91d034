"""Stored buttons (too large for custom_id or callback_data), handoff closer, blocks, pending replies.

Downgrade loses: stored buttons (old messages' long buttons stop working), handoffs.closed_by_name,
users.blocked_at and blocked_by (blocked users are unblocked), conversations.pending_reply.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 06:56:41.957593
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stored_buttons",
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_stored_buttons")),
    )
    with op.batch_alter_table("handoffs") as batch:
        batch.add_column(sa.Column("closed_by_name", sa.String(length=255), nullable=True))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("blocked_by", sa.String(length=64), nullable=True))
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("pending_reply", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("pending_reply")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("blocked_by")
        batch.drop_column("blocked_at")
    with op.batch_alter_table("handoffs") as batch:
        batch.drop_column("closed_by_name")
    op.drop_table("stored_buttons")
