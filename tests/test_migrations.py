"""Migrations on SQLite and PostgreSQL: upgrade from empty, no drift from the models, clean downgrade,
and no row lost by any step up or down."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Enum,
    Integer,
    MetaData,
    Numeric,
    String,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

import migrations
from models import Base, create_engine


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


async def test_upgrade_matches_models_and_downgrades_cleanly(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == set()

        await migrations.upgrade(engine)
        head = ScriptDirectory(str(migrations.SCRIPT_LOCATION)).get_current_head()
        assert await migrations.current_revision(engine) == head
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == set(Base.metadata.tables)
            assert await conn.run_sync(_diff) == []

        await migrations.downgrade(engine, "base")
        assert await migrations.current_revision(engine) is None
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == set()

        await migrations.upgrade(engine)  # and back up again: downgrade left nothing behind
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


def test_revisions_form_one_linear_history() -> None:
    script = ScriptDirectory(str(migrations.SCRIPT_LOCATION))
    assert len(script.get_heads()) == 1
    revisions = list(script.walk_revisions())
    assert revisions[-1].down_revision is None


async def test_processes_starting_together_migrate_one_at_a_time(database_url: str) -> None:
    """Several processes with auto_migrate start on an empty database at once; none may fail. (An advisory
    lock on PostgreSQL; on SQLite, BEGIN IMMEDIATE.)"""
    engines = [create_engine(database_url) for _ in range(3)]
    try:
        await asyncio.gather(*(migrations.upgrade(engine) for engine in engines))
        head = ScriptDirectory(str(migrations.SCRIPT_LOCATION)).get_current_head()
        assert {await migrations.current_revision(engine) for engine in engines} == {head}
    finally:
        for engine in engines:
            await engine.dispose()


def _revisions() -> list[str]:
    """Every revision, oldest first, from migrations/versions: a new one is covered without edits here."""
    script = ScriptDirectory(str(migrations.SCRIPT_LOCATION))
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


ROWS = 4
"""Rows seeded into every table. Children alternate between the first two parent rows (a child keyed by its
parent, one per parent, takes a parent each), and enum values cycle, so each parent has several children
and none holds two open handoffs."""

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _value(column: Column[Any], row: int) -> object:
    """Row `row`'s value for a column as the database has it at this revision. Enum values come from the
    models (the database stores them as plain strings); everything else from the reflected type."""
    if column.foreign_keys:
        (foreign_key,) = column.foreign_keys
        return _value(foreign_key.column, row if column.primary_key else row % 2)
    model = Base.metadata.tables.get(column.table.name)
    if model is not None and column.name in model.columns:
        model_type = model.columns[column.name].type
        if isinstance(model_type, Enum):
            return model_type.enums[row % len(model_type.enums)]
    kind = column.type
    if isinstance(kind, Boolean):
        return row % 2 == 0
    if isinstance(kind, Integer):
        return row + 1
    if isinstance(kind, Numeric):
        return row + 0.5
    if isinstance(kind, String):
        return f"{row}:{column.name}"[: kind.length]
    if isinstance(kind, JSON):
        return {"row": row, "column": column.name}
    if isinstance(kind, DateTime):
        return _EPOCH + timedelta(minutes=row)
    raise TypeError(f"no test value for {column.table.name}.{column.name} ({kind!r}): add one to _value")


def _seed(connection: Connection) -> None:
    """ROWS rows in every table the database has now, every column filled, parents first."""
    reflected = MetaData()
    reflected.reflect(connection)
    for table in reflected.sorted_tables:
        if table.name != "alembic_version":
            connection.execute(
                table.insert(), [{c.name: _value(c, i) for c in table.columns} for i in range(ROWS)]
            )


@dataclass(frozen=True)
class _Contents:
    columns: frozenset[str]
    rows: list[dict[str, Any]]

    def project(self, columns: frozenset[str]) -> list[dict[str, Any]]:
        return [{name: row[name] for name in columns} for row in self.rows]


def _snapshot(connection: Connection) -> dict[str, _Contents]:
    """Every row of every table, in primary-key order."""
    reflected = MetaData()
    reflected.reflect(connection)
    return {
        table.name: _Contents(
            frozenset(table.columns.keys()),
            [dict(row._mapping) for row in connection.execute(select(table).order_by(*table.primary_key))],
        )
        for table in reflected.sorted_tables
        if table.name != "alembic_version"
    }


def _assert_kept(before: dict[str, _Contents], after: dict[str, _Contents], step: str, *, up: bool) -> None:
    """Every table on both sides keeps every row, with the same values in the columns on both sides; a
    table the step creates starts empty. Only a downgrade may drop a table (data only the newer schema
    can hold)."""
    if up:
        assert set(before) <= set(after), f"{step} dropped tables {set(before) - set(after)}"
    counts_before = {name: len(before[name].rows) for name in after if name in before}
    counts_after = {name: len(after[name].rows) for name in after if name in before}
    assert counts_after == counts_before, f"{step} changed row counts"
    for name, contents in after.items():
        if name not in before:
            assert contents.rows == [], f"{step} created {name} with rows in it"
            continue
        common = before[name].columns & contents.columns
        assert contents.project(common) == before[name].project(common), f"{step} changed rows of {name}"


async def _step(
    engine: AsyncEngine, before: dict[str, _Contents], target: str, *, up: bool
) -> dict[str, _Contents]:
    current = await migrations.current_revision(engine)
    await (migrations.upgrade if up else migrations.downgrade)(engine, target)
    assert await migrations.current_revision(engine) == target
    async with engine.connect() as conn:
        after = await conn.run_sync(_snapshot)
    _assert_kept(before, after, f"{current} -> {target}", up=up)
    return after


@pytest.mark.parametrize("start", _revisions())
async def test_no_row_lost_up_or_down(database_url: str, start: str) -> None:
    """A database built and filled at `start` goes up to head one step at a time, down to the first
    revision, and up again: every step keeps every row and every value the schema on both sides holds."""
    revisions = _revisions()
    engine = create_engine(database_url)
    try:
        await migrations.upgrade(engine, start)
        async with engine.begin() as conn:
            await conn.run_sync(_seed)
        async with engine.connect() as conn:
            contents = await conn.run_sync(_snapshot)
        assert contents and all(len(table.rows) == ROWS for table in contents.values())

        ups = revisions[revisions.index(start) + 1 :]
        for target in ups:
            contents = await _step(engine, contents, target, up=True)
        for target in reversed(revisions[:-1]):
            contents = await _step(engine, contents, target, up=False)
        for target in revisions[1:]:
            contents = await _step(engine, contents, target, up=True)
    finally:
        await engine.dispose()


async def _connection_is_ordinary(engine: AsyncEngine) -> None:
    """The pooled connection the migration used is back to normal: foreign keys enforced, and a
    transaction that rolls back leaves nothing behind."""
    pool = engine.sync_engine.pool
    assert isinstance(pool, QueuePool)
    assert pool.checkedin() == 1  # so the next connect gets the connection that migrated
    async with engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        await conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'rolled back'")
        await conn.rollback()
        assert await conn.scalar(text("SELECT version_num FROM alembic_version")) != "rolled back"


async def test_sqlite_migration_leaves_connections_as_it_found_them(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'switchboard.db'}")
    try:
        await migrations.upgrade(engine)
        await _connection_is_ordinary(engine)
    finally:
        await engine.dispose()


async def test_sqlite_migration_over_broken_foreign_keys_fails_and_changes_nothing(tmp_path: Path) -> None:
    """Rows pointing at missing rows (left by a foreign-keys-off import, say) stop the migration with a
    clear error, and its DDL is rolled back: SQLite can, once the runner owns the transaction."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'switchboard.db'}"
    first = _revisions()[0]
    engine = create_engine(url)
    try:
        await migrations.upgrade(engine, first)
        async with engine.begin() as conn:
            await conn.run_sync(_seed)
        saboteur = create_engine(url)  # its own pool: this connection must not serve anyone else
        try:
            async with saboteur.connect() as conn:
                await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                await conn.exec_driver_sql("DELETE FROM conversations")
                await conn.commit()
        finally:
            await saboteur.dispose()
        async with engine.connect() as conn:
            before = await conn.run_sync(_snapshot)

        with pytest.raises(migrations.MigrationError, match=r"4 in handoffs point to missing conversations"):
            await migrations.upgrade(engine)

        assert await migrations.current_revision(engine) == first
        async with engine.connect() as conn:
            assert await conn.run_sync(_snapshot) == before
        await _connection_is_ordinary(engine)
    finally:
        await engine.dispose()
