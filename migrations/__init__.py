"""Alembic migrations, runnable from code (`bot.py migrate`, start-up, tests) without an alembic.ini.

Every migration runs through `run_migration`: one transaction, one process at a time, and on SQLite with
foreign keys off while tables are rebuilt, then checked before the commit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from models.db import create_engine

SCRIPT_LOCATION = Path(__file__).resolve().parent


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


MIGRATION_LOCK = 7411520
"""PostgreSQL advisory lock key: processes starting together migrate one at a time."""


class MigrationError(RuntimeError):
    """A migration would leave the database inconsistent; it was rolled back, so nothing changed."""


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await run_migration(engine, lambda sync: command.upgrade(alembic_config(sync), revision))


async def upgrade_url(url: str) -> None:
    """Upgrade the database at `url` to head with an engine of its own (a fresh test or bench database)."""
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Go back to `revision` ("base" drops every table). Rows are kept; what only the newer schema can
    hold (its tables and columns) is lost, as each revision's docstring says."""
    await run_migration(engine, lambda sync: command.downgrade(alembic_config(sync), revision))


async def run_migration(engine: AsyncEngine, work: Callable[[Connection], None]) -> None:
    """Run `work` (alembic) on one connection, in one transaction that it commits only if it succeeds."""
    async with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            await conn.run_sync(_run_on_sqlite, work)
            return
        async with conn.begin():  # the others wait, then find the schema at head
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            await conn.run_sync(work)


def _run_on_sqlite(connection: Connection, work: Callable[[Connection], None]) -> None:
    """SQLite alters a table by rebuilding it: copy, drop the old one, rename. With foreign keys enforced,
    dropping the old table deletes every row that refers to it (ON DELETE CASCADE). So foreign keys are
    off while migrating and checked before the commit. The pragma is ignored inside a transaction, so the
    driver is told not to open one and we issue BEGIN ourselves; IMMEDIATE makes a second process wait
    for the first, as the advisory lock does on PostgreSQL. The pool resets the isolation level."""
    connection.execution_options(isolation_level="AUTOCOMMIT")
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.commit()
    try:
        with connection.begin():  # commits or rolls back the BEGIN below: the driver sees it open
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            work(connection)
            _check_foreign_keys(connection)
    finally:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()


def _check_foreign_keys(connection: Connection) -> None:
    """Raise (so the caller rolls back) if any row points at a row that does not exist."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if not broken:
        return
    counts = Counter((row[0], row[2]) for row in broken)  # (table, rowid, parent table, constraint id)
    details = "; ".join(
        f"{n} in {table} point to missing {parent}" for (table, parent), n in sorted(counts.items())
    )
    raise MigrationError(
        f"migration rolled back, nothing changed: {len(broken)} rows refer to rows that do not exist "
        f"({details}). Delete or fix those rows, then migrate again."
    )


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


def head_revision() -> str:
    """The newest revision in migrations/versions."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head
