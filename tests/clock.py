"""A clock a test can move: injected wherever the code under test asks for `now`."""

from __future__ import annotations

from datetime import datetime

from models import utcnow


class Clock:
    """Real time until a test moves it on (sets `now`), so transcript timestamps and handoff timers agree."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now
