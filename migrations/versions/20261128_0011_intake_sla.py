"""Intake reasons and first-response targets on handoffs: the reason chosen, its priority, the SLA due
time and whether the case was escalated for passing it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 12:00:00

Downgrade drops the four columns: cases keep their free-text reason, and lose the intake label,
priority and SLA marks (not shown by the older code anyway).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("handoffs") as batch:
        batch.add_column(sa.Column("intake_label", sa.String(length=80), nullable=True))
        batch.add_column(sa.Column("priority", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("first_response_due_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("sla_escalated_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_handoffs_first_response_due_at", ["first_response_due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("handoffs") as batch:
        batch.drop_index("ix_handoffs_first_response_due_at")
        batch.drop_column("sla_escalated_at")
        batch.drop_column("first_response_due_at")
        batch.drop_column("priority")
        batch.drop_column("intake_label")
