"""The moderator desk's everyday tools: internal notes, snippets, scheduled and silent closes, metrics.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 09:00:00

Downgrade drops what only this schema holds: snippets, scheduled closes, close reasons and the mark
on internal notes. The notes themselves are kept, as moderator entries of the transcript (the older
code shows transcripts to moderators only, so none reaches a user).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HANDOFF_COLUMNS = (
    sa.Column("close_reason", sa.Text(), nullable=True),
    sa.Column("close_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("close_scheduled_by", sa.String(length=64), nullable=True),
    sa.Column("close_scheduled_by_name", sa.String(length=255), nullable=True),
    sa.Column("last_word_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("silence_warned_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("first_response_at", sa.DateTime(timezone=True), nullable=True),
)


def upgrade() -> None:
    with op.batch_alter_table("transcript_entries") as batch:
        batch.add_column(sa.Column("internal", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("handoffs") as batch:
        for column in _HANDOFF_COLUMNS:
            batch.add_column(column)
    op.create_index("ix_handoffs_close_at", "handoffs", ["close_at"], unique=False)
    op.create_table(
        "snippets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snippets")),
        sa.UniqueConstraint("name", name=op.f("uq_snippets_name")),
    )


def downgrade() -> None:
    op.drop_table("snippets")
    op.drop_index("ix_handoffs_close_at", table_name="handoffs")
    with op.batch_alter_table("handoffs") as batch:
        for column in reversed(_HANDOFF_COLUMNS):
            batch.drop_column(column.name)
    with op.batch_alter_table("transcript_entries") as batch:
        batch.drop_column("internal")
