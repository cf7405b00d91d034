"""Files survive a crash: an inbound message's row keeps its files' metadata until it is handled.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 09:00:00

Downgrade drops only the metadata: a message still waiting is answered as before, without being able
to tell its user which files to send again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages") as batch:
        batch.add_column(sa.Column("attachments", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages") as batch:
        batch.drop_column("attachments")
