"""Alembic environment: runs on the connection handed in by `migrations.upgrade`, or on the URL given
(through the same `run_migration`, so the SQLite foreign-key handling applies either way)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

import migrations
from models import Base, create_engine

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_url(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrations.run_migration(engine, _run)
    finally:
        await engine.dispose()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass a connection or set sqlalchemy.url")
    asyncio.run(_run_with_url(url))


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; run `python bot.py migrate`")
main()
