"""Business hours as time arithmetic: when a desk is open, when it opens next, and deadlines that count
only open time. Pure: no I/O, no configuration, no clock of its own (callers pass `at`).

A schedule is a stream of open intervals in UTC. Weekly ranges are wall-clock times in an IANA zone, so
a range keeps its local hours across a DST change (the day is 23 or 25 hours long in UTC, and the open
time with it). A range whose end is not after its start runs overnight into the next day; it belongs to
the day it starts on, so a holiday closes the ranges that start on it. Everything else (is it open, when
does it open, a deadline, time elapsed) is computed from the stream, once, for every kind of schedule.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

Interval = tuple[datetime, datetime]
"""An open span [start, end), both aware datetimes in UTC."""

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
HORIZON = timedelta(days=800)
"""How far ahead a schedule looks for its next opening before it calls itself closed for good: longer
than any holiday range the configuration allows plus a week."""
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class DailyRange:
    """Open from `start` to `end`, local wall-clock times; `end` at or before `start` runs overnight into
    the next day (so 22:00-06:00, and 00:00-00:00 is the whole day)."""

    start: time
    end: time

    @property
    def overnight(self) -> bool:
        return self.end <= self.start


def parse_range(text: str) -> DailyRange:
    """A range such as "09:00-17:00", "22:00-06:00" (overnight) or "00:00-24:00" (the whole day).
    Raises ValueError with words for the operator."""
    start_text, dash, end_text = text.partition("-")
    if not dash:
        raise ValueError(f"{text!r} is not a range; write it as HH:MM-HH:MM, such as 09:00-17:00")
    start, end = _parse_time(start_text.strip()), _parse_time(end_text.strip(), end=True)
    if start == end and start != time(0):
        raise ValueError(f"{text!r} is empty: the end must differ from the start (00:00-24:00 is all day)")
    return DailyRange(start, end)


def _parse_time(text: str, *, end: bool = False) -> time:
    if end and text == "24:00":
        return time(0)
    hours, colon, minutes = text.partition(":")
    if not (colon and hours.isdigit() and minutes.isdigit() and len(minutes) == 2 and len(hours) <= 2):
        raise ValueError(f"{text!r} is not a time; write it as HH:MM, such as 09:00")
    if int(hours) > 23 or int(minutes) > 59:
        raise ValueError(f"{text!r} is not a time of day (00:00 to 23:59, or 24:00 as an end)")
    return time(int(hours), int(minutes))


def parse_holiday(text: str) -> tuple[date, date]:
    """A date such as "2026-12-24", or an inclusive range "2026-12-24..2026-12-26". Raises ValueError
    with words for the operator."""
    first_text, dots, last_text = text.partition("..")
    first = _parse_date(first_text.strip())
    last = _parse_date(last_text.strip()) if dots else first
    if last < first:
        raise ValueError(f"{text!r} ends before it starts")
    return first, last


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date; write it as YYYY-MM-DD, such as 2026-12-24") from None


class Schedule(ABC):
    """Open intervals over time, and what follows from them."""

    @abstractmethod
    def intervals(self, since: datetime) -> Iterator[Interval]:
        """Open intervals in time order, merged (none touches the next), the first one containing `since`
        or starting after it; each may begin before `since`. Ends when nothing opens within `HORIZON`."""

    def is_open(self, at: datetime) -> bool:
        return self.next_open(at) == at

    def next_open(self, at: datetime) -> datetime | None:
        """`at` itself if open then, else when it next opens; None if never (within `HORIZON`)."""
        for start, end in self.intervals(at):
            if end > at:
                return max(start, at)
        return None

    def add_business_time(self, start: datetime, duration: timedelta) -> datetime:
        """The wall-clock moment when `duration` of open time has passed since `start` (a deadline that
        does not run while closed). Raises ValueError if the schedule never opens again."""
        remaining = duration
        for opens, closes in self.intervals(start):
            opens = max(opens, start)
            if closes <= opens:
                continue
            if closes == _END_OF_TIME or opens + remaining <= closes:
                return opens + remaining
            remaining -= closes - opens
        raise ValueError("the schedule does not open again")

    def business_elapsed(self, since: datetime, until: datetime) -> timedelta:
        """Open time between two moments (zero if `until` is not after `since`)."""
        elapsed = timedelta()
        for opens, closes in self.intervals(since):
            if opens >= until:
                break
            elapsed += max(min(closes, until) - max(opens, since), timedelta())
        return elapsed


class Always(Schedule):
    """Open all the time: business time is wall-clock time (no hours configured)."""

    def intervals(self, since: datetime) -> Iterator[Interval]:
        yield since, _END_OF_TIME


ALWAYS = Always()


@dataclass(frozen=True, eq=False)
class BusinessHours(Schedule):
    """Weekly opening ranges (Monday first) in a time zone, closed on holidays (inclusive date ranges)."""

    zone: ZoneInfo
    week: Sequence[Sequence[DailyRange]]
    holidays: Sequence[tuple[date, date]] = ()

    def __post_init__(self) -> None:
        if len(self.week) != 7:
            raise ValueError("a week has seven days")

    def intervals(self, since: datetime) -> Iterator[Interval]:
        return _merged(self._ranges(since.astimezone(self.zone).date() - timedelta(days=1)), since)

    def _ranges(self, first_day: date) -> Iterator[Interval]:
        """Each day's ranges in UTC, day after day, in start order within a day (so in start order)."""
        for offset in range(HORIZON.days):
            day = first_day + timedelta(days=offset)
            if self._holiday(day):
                continue
            for daily in sorted(self.week[day.weekday()], key=lambda r: r.start):
                end_day = day + timedelta(days=1) if daily.overnight else day
                yield self._utc(day, daily.start), self._utc(end_day, daily.end)

    def _utc(self, day: date, at: time) -> datetime:
        # A wall time in a DST gap (02:30 on the spring-forward night) is read with the offset before
        # the change, as zoneinfo does for fold=0: the hour that does not exist is not open time.
        return datetime.combine(day, at, tzinfo=self.zone).astimezone(UTC)

    def _holiday(self, day: date) -> bool:
        return any(first <= day <= last for first, last in self.holidays)


@dataclass(frozen=True, eq=False)
class AnyOf(Schedule):
    """Open whenever at least one of the schedules is (several desks: someone can take it)."""

    schedules: Sequence[Schedule]

    def intervals(self, since: datetime) -> Iterator[Interval]:
        streams = [schedule.intervals(since) for schedule in self.schedules]
        return _merged(heapq.merge(*streams), since)


def _merged(spans: Iterable[Interval], since: datetime) -> Iterator[Interval]:
    """Join overlapping or touching spans (given in start order), drop what ended by `since`, and stop
    once nothing opens within `HORIZON` of `since`."""
    current: Interval | None = None
    for start, end in spans:
        if end <= start or end <= since:
            continue
        if current is not None and start <= current[1]:
            current = (current[0], max(current[1], end))
            continue
        if current is not None:
            yield current
        if start > since + HORIZON:
            return
        current = (start, end)
    if current is not None:
        yield current
