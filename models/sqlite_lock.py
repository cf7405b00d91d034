"""One process per SQLite file: an exclusive lock on `<database>.lock`, held while the process runs.

A second process on the same file would take the first one's replies in progress for replies a crash
cut off, and tell their users so. PostgreSQL serves several processes (each with its own
`ops.instance`); in-memory SQLite is private to its process. Neither needs the lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL, make_url


class SQLiteInUse(Exception):
    """The SQLite file cannot be had by this process; the message is one line for the person starting it."""


class NoProcess(Exception):
    """No running process could be found for the database; the message says what to do instead."""


@contextmanager
def sqlite_single_process(url: str | URL) -> Iterator[None]:
    """Hold the lock for the life of the block, or raise `SQLiteInUse` at once if another process has it.

    The operating system drops a flock when its process ends, however it ends (kill -9 included), so a
    crash never leaves a stale lock behind.
    """
    database = _file_database(url)
    if database is None:
        yield
        return
    lock_path = f"{Path(database).resolve()}.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise SQLiteInUse(f"cannot create the lock file {lock_path} ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SQLiteInUse(
                f"another Switchboard process is using {database} "
                "(SQLite serves one process; use PostgreSQL to run several)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for `bot.py reload`
        yield
    finally:
        os.close(fd)


def running_process(url: str | URL) -> int:
    """The process serving this SQLite file (it holds the lock and wrote its id into the lock file)."""
    database = _file_database(url)
    if database is None:
        raise NoProcess(
            "only a SQLite file names its one process; send SIGHUP to each process yourself "
            "(kill -HUP <pid>) or pass --pid"
        )
    lock_path = f"{Path(database).resolve()}.lock"
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        raise NoProcess(f"no Switchboard process is running on {database}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: a process is running
            return int(os.read(fd, 32).decode().strip())
        raise NoProcess(f"no Switchboard process is running on {database}")
    except ValueError:
        raise NoProcess(f"the lock file {lock_path} names no process; pass --pid") from None
    finally:
        os.close(fd)


def _file_database(url: str | URL) -> str | None:
    """The SQLite file the URL names, or None for PostgreSQL and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    if parsed.query.get("mode") == "memory":
        return None
    return parsed.database
