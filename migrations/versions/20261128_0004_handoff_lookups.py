"""Handoff lookups by index: desk places, due requests; refused deliveries counted.

`handoff_places` maps a desk's thread or topic to its handoff (filled from the refs stored so far), the
timers find due requests on (status, requested_at), and `pending_deliveries.refusals` bounds retries.
Nothing is rebuilt: new table, new index, one column added with a default. Downgrading loses only
what the older schema cannot hold (the places stay derivable from `notification_refs`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 10:00:00
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLACE_KEYS = {"discord": ("thread",), "telegram": ("topic", "handoff_id")}
"""The refs entries each desk looks its handoffs up by, as the desks declared them at this revision."""
BATCH = 1000

places = sa.table(
    "handoff_places",
    sa.column("desk", sa.String),
    sa.column("place", sa.String),
    sa.column("handoff_id", sa.Integer),
)


def upgrade() -> None:
    op.create_table(
        "handoff_places",
        sa.Column("desk", sa.String(length=32), nullable=False),
        sa.Column("place", sa.String(length=128), nullable=False),
        sa.Column("handoff_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["handoff_id"],
            ["handoffs.id"],
            name=op.f("fk_handoff_places_handoff_id_handoffs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("desk", "place", name=op.f("pk_handoff_places")),
    )
    op.create_index(op.f("ix_handoff_places_handoff_id"), "handoff_places", ["handoff_id"], unique=False)
    op.create_index("ix_handoffs_status_requested_at", "handoffs", ["status", "requested_at"], unique=False)
    op.add_column(
        "pending_deliveries",
        sa.Column("refusals", sa.Integer(), server_default="0", nullable=False),
    )
    for batch in _places_of_existing_handoffs():
        op.bulk_insert(places, batch)


def _places_of_existing_handoffs() -> Iterator[list[dict[str, Any]]]:
    """The places the stored refs name, a page of handoffs at a time (keyset by id), so a large table
    is never held in memory."""
    bind, last = op.get_bind(), 0
    page = sa.text("SELECT id, notification_refs FROM handoffs WHERE id > :last ORDER BY id LIMIT :n")
    while rows := bind.execute(page, {"last": last, "n": BATCH}).all():
        last = rows[-1][0]
        batch = [
            {"desk": desk, "place": f"{key}:{desk_refs[key]}", "handoff_id": handoff_id}
            for handoff_id, raw in rows
            for desk, desk_refs in _desk_refs(raw)
            for key in PLACE_KEYS[desk]
            if desk_refs.get(key) is not None
        ]
        if batch:
            yield batch


def _desk_refs(raw: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    refs = json.loads(raw) if isinstance(raw, str) else raw
    for desk in PLACE_KEYS:
        desk_refs = (refs or {}).get(desk)
        if isinstance(desk_refs, dict):
            yield desk, desk_refs


def downgrade() -> None:
    op.drop_column("pending_deliveries", "refusals")
    op.drop_index("ix_handoffs_status_requested_at", table_name="handoffs")
    op.drop_index(op.f("ix_handoff_places_handoff_id"), table_name="handoff_places")
    op.drop_table("handoff_places")
