"""Database steps that outlive a restart of the database or a locked SQLite file."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from models.db import is_transient_db_error

log = logging.getLogger(__name__)


DATABASE_FAILURES: tuple[type[Exception], ...] = (DBAPIError, PoolTimeout, OSError)
"""What a database step can fail with; `is_transient_db_error` tells which of them a retry outlives."""


class DatabaseUnavailable(Exception):
    """The database stayed unreachable for longer than the grace period."""


class Patient(Protocol):
    @property
    def outage_grace(self) -> float:
        """Seconds to keep retrying while the database is unreachable or locked."""
        ...


S = TypeVar("S", bound=Patient)
P = ParamSpec("P")
T = TypeVar("T")


def survives_db_outage(
    step: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Retry a database step through a restart or a lock, with backoff, within the owner's grace.

    Each step is its own transaction, so a retry repeats only work that did not commit.
    """

    @functools.wraps(step)
    async def retrying(owner: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + owner.outage_grace
        delay = 0.1
        while True:
            try:
                return await step(owner, *args, **kwargs)
            except DATABASE_FAILURES as exc:
                if not is_transient_db_error(exc):
                    raise
                if loop.time() + delay > deadline:
                    raise DatabaseUnavailable(f"{step.__name__}: {type(exc).__name__}") from exc
                log.warning("database unavailable in %s (%s); retrying in %.1fs", step.__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    return retrying
