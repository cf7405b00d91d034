"""Migrations on SQLite and PostgreSQL: upgrade from empty, no drift from the models, clean downgrade."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

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


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_processes_starting_together_migrate_one_at_a_time(database_url: str) -> None:
    """Several processes with auto_migrate start on an empty database at once; none may fail.
    (Several processes need PostgreSQL; SQLite is the single-process default.)"""
    engines = [create_engine(database_url) for _ in range(3)]
    try:
        await asyncio.gather(*(migrations.upgrade(engine) for engine in engines))
        head = ScriptDirectory(str(migrations.SCRIPT_LOCATION)).get_current_head()
        assert {await migrations.current_revision(engine) for engine in engines} == {head}
    finally:
        for engine in engines:
            await engine.dispose()
