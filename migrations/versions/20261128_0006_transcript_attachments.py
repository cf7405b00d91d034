"""Transcript entries list the files sent with them (metadata only: kind, mime type, size, name).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 09:00:00

Downgrade drops that list; the entries' text stays.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("transcript_entries") as batch:
        batch.add_column(sa.Column("attachments", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transcript_entries") as batch:
        batch.drop_column("attachments")
