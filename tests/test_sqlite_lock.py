"""The one-process lock on a SQLite file, in process (tests/test_cli.py runs it with real processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.sqlite_lock import SQLiteInUse, sqlite_single_process


def test_a_file_is_held_by_one_holder_at_a_time_and_released_after(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'switchboard.db'}"
    with sqlite_single_process(url):
        with pytest.raises(SQLiteInUse, match=r"another Switchboard process is using .*switchboard\.db"):
            with sqlite_single_process(f"sqlite:///{tmp_path / '.' / 'switchboard.db'}"):
                pass
    with sqlite_single_process(url):
        pass


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite://",
        "sqlite+aiosqlite:///:memory:",
        "postgresql+asyncpg://bot@127.0.0.1:1/switchboard",
    ],
)
def test_in_memory_sqlite_and_postgresql_take_no_lock(url: str) -> None:
    with sqlite_single_process(url), sqlite_single_process(url):
        pass


def test_a_lock_file_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SQLiteInUse, match=r"^cannot create the lock file .*missing.*No such file"):
        with sqlite_single_process(f"sqlite:///{tmp_path / 'missing' / 'switchboard.db'}"):
            pass
