"""Durations as moderators type them (`30m`, `2h`, `7d`, `1w`, `1h30m`), for blocks and scheduled closes."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"(?:\d{1,6}[smhdw])+", re.IGNORECASE)
MAX_DURATION = timedelta(days=3650)


def parse_duration(word: str) -> timedelta | None:
    """`30m`, `2h`, `7d`, `1w`, `1h30m`; None if `word` is not a duration. Raises ValueError if it is
    one, but zero or over ten years."""
    if not _DURATION.fullmatch(word):
        return None
    total = timedelta()
    for amount, unit in re.findall(r"(\d+)([smhdw])", word.lower()):
        total += timedelta(**{_UNITS[unit]: int(amount)})
    if not timedelta() < total <= MAX_DURATION:
        raise ValueError(word)
    return total


def duration_and_reason(words: list[str]) -> tuple[timedelta | None, str]:
    """`["2h", "spam", "links"]` -> (2 hours, "spam links"); a first word that is no duration starts
    the reason. Raises ValueError on a duration out of range."""
    if not words:
        return None, ""
    duration = parse_duration(words[0])
    return duration, " ".join(words[1:] if duration is not None else words).strip()
