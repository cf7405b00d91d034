"""Blocks that expire and carry a reason; inbound messages recorded before they wait for their turn.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 09:00:00

Downgrade drops what only this schema holds: block expiry and reason (a timed block becomes a block
until /unblock, never a lifted one) and the stored text of inbound messages.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INBOUND_COLUMNS = (
    sa.Column("arrival", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("user_id", sa.String(length=64), nullable=False, server_default=""),
    sa.Column("display_name", sa.String(length=255), nullable=False, server_default=""),
    sa.Column("thread_id", sa.String(length=64), nullable=False, server_default=""),
    sa.Column("guild_id", sa.String(length=64), nullable=False, server_default=""),
    sa.Column("is_dm", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("text", sa.Text(), nullable=False, server_default=""),
    sa.Column("button", sa.JSON(), nullable=True),
    sa.Column("command", sa.String(length=16), nullable=True),
    sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("block_reason", sa.Text(), nullable=True))
    with op.batch_alter_table("inbound_messages") as batch:
        for column in _INBOUND_COLUMNS:
            batch.add_column(column)
    # Rows from before were all taken by a turn when they were written.
    op.execute("UPDATE inbound_messages SET handled_at = received_at")
    with op.batch_alter_table("inbound_messages") as batch:  # defaults were only for the rows above
        for column in _INBOUND_COLUMNS:
            if column.server_default is not None:
                batch.alter_column(column.name, server_default=None)
    op.create_index(
        "ix_inbound_messages_unhandled", "inbound_messages", ["taken_by", "handled_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_inbound_messages_unhandled", table_name="inbound_messages")
    with op.batch_alter_table("inbound_messages") as batch:
        for column in reversed(_INBOUND_COLUMNS):
            batch.drop_column(column.name)
    with op.batch_alter_table("users") as batch:
        batch.drop_column("block_reason")
        batch.drop_column("blocked_until")
