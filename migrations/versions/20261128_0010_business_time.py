"""Business hours: a waiting request's deadlines, counted in business time, stored on it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 12:00:00

Upgrade leaves both columns empty: the handoff timers fill them in for every waiting request (from its
request time, as before). Downgrade drops them; the older code computes its timers from the request
time again, in wall-clock time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("handoffs") as batch:
        batch.add_column(sa.Column("expire_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_handoffs_status_due_at", "handoffs", ["status", "due_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_handoffs_status_due_at", table_name="handoffs")
    with op.batch_alter_table("handoffs") as batch:
        batch.drop_column("due_at")
        batch.drop_column("expire_at")
