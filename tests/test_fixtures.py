"""The suite's own fixtures, which every database and server test stands on: what `database_url` and
`engine` hand a test, ports no other server can be given first, and a cluster that still starts when
another process took its port."""

from __future__ import annotations

import asyncio
import socket

import asyncpg
import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations
from models import create_engine
from tests.conftest import PostgresCluster, ephemeral_ports, free_port, postgres_bindir


async def test_engine_is_at_the_head_revision(engine: AsyncEngine) -> None:
    assert await migrations.current_revision(engine) == migrations.head_revision()


async def test_database_url_alone_is_empty(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(lambda sync: inspect(sync).get_table_names()) == []
    finally:
        await engine.dispose()


def test_free_ports_are_never_ones_a_bind_to_port_0_could_be_given() -> None:
    """Else a fake server started meanwhile (here, or on the other worker) can take the port first."""
    ephemeral = ephemeral_ports()
    assert not any(free_port() in ephemeral for _ in range(50))


@pytest.mark.slow
@pytest.mark.postgres
async def test_a_cluster_whose_port_was_taken_starts_on_another() -> None:
    cluster = PostgresCluster(postgres_bindir())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", cluster.port))
        taken.listen()
        try:
            await asyncio.to_thread(cluster.start)
            assert cluster.port != taken.getsockname()[1]
            conn = await asyncpg.connect(cluster.admin_dsn)
            assert await conn.fetchval("SELECT 1") == 1
            await conn.close()
        finally:
            await asyncio.to_thread(cluster.stop)
