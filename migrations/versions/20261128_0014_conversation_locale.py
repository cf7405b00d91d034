"""Each conversation remembers its user's language, so what reaches them later (a moderator joining,
the case closing, a reply cut off by a restart) is in it too.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28 12:00:00

Downgrade drops only the column: those later notices are then in the default language.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("locale", sa.String(length=35), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("locale")
