"""Satisfaction ratings: one row per case whose user was asked to rate it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 11:10:00

Downgrade drops the table, and with it every rating and comment; the cases themselves are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ratings",
        sa.Column("handoff_id", sa.Integer(), nullable=False),
        sa.Column("desk", sa.String(length=32), nullable=False),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shown_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("rated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("comment_prompt", sa.String(length=64), nullable=True),
        sa.CheckConstraint("score BETWEEN 1 AND 5", name=op.f("ck_ratings_score_range")),
        sa.ForeignKeyConstraint(
            ["handoff_id"], ["handoffs.id"], name=op.f("fk_ratings_handoff_id_handoffs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("handoff_id", name=op.f("pk_ratings")),
    )
    op.create_index("ix_ratings_desk_asked_at", "ratings", ["desk", "asked_at"], unique=False)
    op.create_index(op.f("ix_ratings_comment_prompt"), "ratings", ["comment_prompt"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_ratings_comment_prompt"), table_name="ratings")
    op.drop_index("ix_ratings_desk_asked_at", table_name="ratings")
    op.drop_table("ratings")
