"""The desks' business hours as handoff policy: which schedule counts for a request (the desks it goes
to), whether they are all closed now, and what the user is told then (when moderators are back, in the
zone of the desk that opens first)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from bridges.catalogue import Strings
from bridges.hours import ALWAYS, AnyOf, BusinessHours, Schedule
from bridges.hours_config import HoursSettings


class HoursNotices(Strings, key="hours"):
    """What a request for a human outside business hours says; {when} comes from `when`."""

    waiting = (
        "Our moderators are away until {when}. Your request is saved and they will see it when they "
        "are back; the assistant can help in the meantime."
    )
    with_agent = (
        "Our moderators are away until {when}, so I can't pass you to a person now. The assistant is "
        "still here to help; ask for a human again then."
    )
    when = "{weekday} {day} {month}, {time} ({zone} time)"
    no_return = "a date not yet set"
    """{when} for desks closed with no opening ahead (holidays covering the next two years)."""
    weekdays = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday"
    """Monday first, separated by spaces (a catalogue entry is one string)."""
    months = "January February March April May June July August September October November December"


ENGLISH_HOURS = HoursNotices()


@dataclass(frozen=True)
class DeskHours:
    """Business hours by desk name; a desk without its own follows `default`."""

    default: BusinessHours
    desks: Mapping[str, BusinessHours] = field(default_factory=dict)
    outside: Literal["wait", "agent"] = "wait"
    message: str | None = None
    """The operator's outside-hours message; None says the default for `outside`."""

    @classmethod
    def from_settings(cls, settings: HoursSettings) -> DeskHours:
        return cls(
            default=settings.business_hours(),
            desks={name: desk.business_hours() for name, desk in settings.desks.items()},
            outside=settings.outside_hours,
            message=settings.outside_message,
        )

    def of(self, desk: str) -> BusinessHours:
        return self.desks.get(desk, self.default)

    def _hours(self, desks: Iterable[str]) -> list[BusinessHours]:
        """The schedules of `desks`, each once; the default when none is named."""
        return [self.of(desk) for desk in dict.fromkeys(desks)] or [self.default]

    def schedule(self, desks: Iterable[str]) -> Schedule:
        """Business time for a request going to `desks`: open while any of them is."""
        found = self._hours(desks)
        return found[0] if len(found) == 1 else AnyOf(found)

    def closed(
        self, desks: Iterable[str], at: datetime, words: HoursNotices = ENGLISH_HOURS
    ) -> Closed | None:
        """None while one of `desks` is open at `at`; else what the user asking for a human is told (when
        the first of them opens, in the language of `words`) and whether their request waits."""
        upcoming = [
            (opens, hours) for hours in self._hours(desks) if (opens := hours.next_open(at)) is not None
        ]
        if any(opens == at for opens, _ in upcoming):
            return None
        waits = self.outside == "wait"
        template = self.message or (words.waiting if waits else words.with_agent)
        if not upcoming:
            return Closed(template.format(when=words.no_return), waits)
        opens, hours = min(upcoming, key=lambda found: found[0])
        return Closed(template.format(when=when(opens, hours, words)), waits)


@dataclass(frozen=True)
class Closed:
    """Every desk a request would go to is closed."""

    notice: str
    """What the user is told: when moderators are back."""
    waits: bool
    """Whether the request is opened to wait for them (else the user stays with the agent)."""


def when(at: datetime, hours: BusinessHours, words: HoursNotices = ENGLISH_HOURS) -> str:
    """A moment as a person reads it, in the desk's own zone: "Monday 30 November, 09:00 (Europe/Berlin
    time)"."""
    local = at.astimezone(hours.zone)
    return words.when.format(
        weekday=words.weekdays.split()[local.weekday()],
        day=local.day,
        month=words.months.split()[local.month - 1],
        time=f"{local:%H:%M}",
        zone=hours.zone.key,
    )


def schedule_of(hours: DeskHours | None, desks: Iterable[str]) -> Schedule:
    """The business time that counts for a request to `desks`: wall-clock time when no hours are set."""
    return ALWAYS if hours is None else hours.schedule(desks)
