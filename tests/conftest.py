"""Shared fixtures: every database test runs on SQLite and on a throwaway PostgreSQL cluster.

The cluster is started once per session (per xdist worker: each has its own) from the local PostgreSQL
binaries. Without them the Postgres cases skip, unless SWITCHBOARD_REQUIRE_POSTGRES=1 (set by .ci/run), in
which case they fail loudly. A test that takes `engine` gets a copy of a database migrated once per
session: running the migrations for every test took about 0.1 s on SQLite and 0.15 s on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import glob
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import migrations
from agents.http import agent_http_client
from models import create_engine, session_factory

REQUIRE_POSTGRES = os.environ.get("SWITCHBOARD_REQUIRE_POSTGRES") == "1"
_system_random = random.SystemRandom()


def _postgres_bindir() -> Path | None:
    candidates = [os.environ.get("SWITCHBOARD_PG_BINDIR", "")]
    if pg_config := shutil.which("pg_config"):
        candidates.append(
            subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip()
        )
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    if initdb := shutil.which("initdb"):
        candidates.append(str(Path(initdb).resolve().parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def ephemeral_ports() -> range:
    """The ports the kernel hands out to every bind to port 0 and every outgoing connection."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except OSError:  # not Linux: the IANA range, which macOS and Windows use
        low, high = 49152, 65535
    return range(low, high + 1)


def free_port() -> int:
    """A loopback port nothing listens on, for a server that must be told its port before it binds it.

    Drawn from below the ephemeral range: a port from that range could be handed to any bind to port 0
    (a fake server in this test, on the other xdist worker) before our server binds it. The choice is
    random from the system's source, so two workers never draw in step."""
    while True:
        port = _system_random.randrange(1024, ephemeral_ports().start)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # in use: draw again
                continue
        return port


class PostgresCluster:
    """A private PostgreSQL server on loopback, trust auth, no fsync: built to be thrown away."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.directory = Path(tempfile.mkdtemp(prefix="switchboard-pg-"))
        self.port = free_port()
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self._as_postgres, *args], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stderr or result.stdout}")

    def start(self) -> None:
        data = self.directory / "data"
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        for _ in range(2):
            try:
                self.resume()
                return
            except RuntimeError:
                # Another process (the other xdist worker, drawing the same port) may have bound it since
                # free_port() found it free: try a new one.
                self.port = free_port()
        self.resume()

    def pause(self) -> None:
        """Stop the server (as a crash would: connections drop) but keep its data for `resume`."""
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "immediate", "-w", "stop"
        )

    def resume(self) -> None:
        data = self.directory / "data"
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(self.directory / "log"),
            "-o",
            options,
            "start",
        )

    def stop(self) -> None:
        try:
            self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "immediate", "stop"
            )
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"


def postgres_bindir() -> Path:
    """The PostgreSQL binaries; without them the test skips, or fails when SWITCHBOARD_REQUIRE_POSTGRES=1."""
    bindir = _postgres_bindir()
    if bindir is None:
        message = "PostgreSQL binaries not found (install Debian's postgresql)"
        if REQUIRE_POSTGRES:
            pytest.fail(message + " and SWITCHBOARD_REQUIRE_POSTGRES=1", pytrace=False)
        pytest.skip(message)
    return bindir


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(postgres_bindir())
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def _admin(cluster: PostgresCluster, statement: str) -> None:
    conn = await asyncpg.connect(cluster.admin_dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _in_own_loop(work: Coroutine[object, object, None]) -> None:
    """Run `work` to the end from sync code that a test's running event loop may have called (a session
    fixture first asked for inside an async one): in a thread, on a loop of its own."""
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, work).result()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session, for `database_url` to copy."""
    path = tmp_path_factory.mktemp("template") / "switchboard.db"
    _in_own_loop(migrations.upgrade_url(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres_cluster: PostgresCluster) -> str:
    """A database on the session's cluster migrated to head once, for `database_url` to clone."""
    name = "switchboard_template"
    _in_own_loop(_admin(postgres_cluster, f'CREATE DATABASE "{name}"'))
    _in_own_loop(migrations.upgrade_url(postgres_cluster.url(name)))
    return name


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database of each kind: empty, unmigrated; at head when the test also takes `engine`, copied
    from the session's template (as the migrations would leave it, in a fraction of their time)."""
    migrated = "engine" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "switchboard.db"
        if migrated:
            template: Path = request.getfixturevalue("sqlite_template")
            with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(path)) as copy:
                source.backup(copy)
        yield f"sqlite+aiosqlite:///{path}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    name = f"test_{uuid.uuid4().hex[:12]}"
    clone = f' TEMPLATE "{request.getfixturevalue("postgres_template")}"' if migrated else ""
    await _admin(cluster, f'CREATE DATABASE "{name}"{clone}')
    try:
        yield cluster.url(name)
    finally:
        await _admin(cluster, f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated database of each kind (`database_url` copied it from the migrated template)."""
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def db(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The httpx client bot.py gives the HTTP agent backends to share (on aiohttp's transport)."""
    async with agent_http_client() as client:
        yield client


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say plainly how many PostgreSQL cases ran, so a silent skip cannot hide in CI output."""
    counts: dict[str, int] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if "postgres" in getattr(report, "keywords", {}) and report.when in ("call", "setup"):
                if outcome == "passed" and report.when != "call":
                    continue
                counts[outcome] = counts.get(outcome, 0) + 1
    summary = ", ".join(f"{n} {outcome}" for outcome, n in counts.items()) or "none collected"
    terminalreporter.write_line(f"PostgreSQL tests: {summary}")


@pytest.fixture
def private_postgres() -> Iterator[PostgresCluster]:
    """A cluster of its own, for tests that stop and restart the server."""
    cluster = PostgresCluster(postgres_bindir())
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
