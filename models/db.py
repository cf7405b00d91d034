"""Engine and session factory for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_only

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def normalize_url(url: str | URL) -> URL:
    """Accept plain `sqlite:///` and `postgresql://` URLs and pick the async driver for them."""
    parsed = make_url(url)
    if parsed.drivername in _ASYNC_DRIVERS:
        parsed = parsed.set(drivername=_ASYNC_DRIVERS[parsed.drivername])
    if parsed.drivername not in {"sqlite+aiosqlite", "postgresql+asyncpg"}:
        raise ValueError(f"unsupported database driver {parsed.drivername!r}: use sqlite or postgresql")
    return parsed


SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})
"""Query parameters that carry a secret: asyncpg, like libpq, also takes the password from the query."""


def url_secrets(url: str | URL) -> list[str]:
    """The URL's passwords, from its user info or its query string."""
    parsed = make_url(url)
    found = [parsed.password] if parsed.password else []
    for key, value in parsed.query.items():
        if key.lower() in SECRET_QUERY_KEYS:
            found += [value] if isinstance(value, str) else value
    return found


def safe_url(url: str | URL) -> str:
    """The URL as it may appear in logs and output: never with a password, wherever it is written."""
    parsed = make_url(url)
    query = {key: "***" if key.lower() in SECRET_QUERY_KEYS else value for key, value in parsed.query.items()}
    shown = parsed.set(query={}).render_as_string(hide_password=True)
    return f"{shown}?{urlencode(query, doseq=True, safe='*')}" if query else shown


def create_engine(url: str | URL, *, echo: bool = False) -> AsyncEngine:
    parsed = normalize_url(url)
    # Hundreds of replies at once each touch the database a few times. Under overload (see bench/) a
    # small pool and short waits dropped turns; waiting longer only delays them.
    kwargs: dict[str, Any] = {"echo": echo, "pool_size": 10, "max_overflow": 30, "pool_timeout": 120}
    if parsed.drivername.startswith("sqlite"):
        # One writer at a time: wait for the lock instead of failing at once.
        kwargs["connect_args"] = {"timeout": 60}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(parsed, **kwargs)
    if parsed.drivername.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    # Write-ahead logging: readers never wait for the writer, so concurrent replies do not queue on
    # every read; NORMAL sync is safe with WAL (a power cut can lose the last commits, never corrupt).
    _enter_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


WAL_RETRIES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
"""Seconds between tries to switch a new database file to WAL while other connections do the same."""


def _enter_wal(cursor: Any) -> None:
    """Switch to WAL (it stays on in the file). On a new file opened by several connections at once,
    SQLite answers "database is locked" at once to all but one, without waiting (the busy timeout
    does not apply: waiting could deadlock), so try again, pausing without blocking the event loop."""
    for pause in WAL_RETRIES:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # the driver's OperationalError, adapted for asyncio
            if "locked" not in str(exc):
                raise
            await_only(asyncio.sleep(pause))
    cursor.execute("PRAGMA journal_mode=WAL")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


# SQLSTATE classes that mean "the server went away or is not ready": connection exceptions (08) and
# operator intervention such as shutdown or "starting up" (57P).
_TRANSIENT_SQLSTATES = ("08", "57P")


def is_transient_db_error(error: BaseException) -> bool:
    """True for failures a retry can outlive: a dropped connection, a restarting server, a locked file,
    every pooled connection busy."""
    if isinstance(error, OperationalError | InterfaceError | PoolTimeout):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError | asyncpg.exceptions.ConnectionDoesNotExistError):
            return True
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_TRANSIENT_SQLSTATES):
            return True
        cause = cause.__cause__ or cause.__context__
    return False
