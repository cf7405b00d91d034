"""`[handoff.hours]`: the moderators' business hours in TOML, validated with words for the operator.

A default schedule, optional per-desk schedules (`[handoff.hours.desks.telegram]`, by the desk's name,
which is its platform's), and what happens to a request for a human while every desk is closed.
Light on purpose (pydantic and the standard library): settings.py loads it to validate the file.
"""

from __future__ import annotations

import string
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridges import registry
from bridges.hours import WEEKDAYS, BusinessHours, DailyRange, parse_holiday, parse_range

MAX_HOLIDAY_DAYS = 366
"""The longest holiday range: a desk closed for longer should be removed from the configuration."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScheduleSettings(_Strict):
    """One desk's week: opening ranges per day ("09:00-17:00", overnight "22:00-06:00"), in a zone."""

    zone: str = Field("UTC", description="an IANA time zone, such as Europe/Berlin")
    weekdays: tuple[str, ...] = Field((), description="ranges for Monday to Friday, unless a day is given")
    monday: tuple[str, ...] | None = None
    tuesday: tuple[str, ...] | None = None
    wednesday: tuple[str, ...] | None = None
    thursday: tuple[str, ...] | None = None
    friday: tuple[str, ...] | None = None
    saturday: tuple[str, ...] | None = None
    sunday: tuple[str, ...] | None = None
    holidays: tuple[str, ...] = Field(
        (), description='closed dates: "2026-12-24", or inclusive ranges "2026-12-24..2026-12-26"'
    )

    @field_validator("zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin") from None
        return value

    @field_validator("weekdays", *WEEKDAYS)
    @classmethod
    def _ranges(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for text in value or ():
            parse_range(text)
        return value

    @field_validator("holidays")
    @classmethod
    def _dates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            first, last = parse_holiday(text)
            if (last - first).days >= MAX_HOLIDAY_DAYS:
                raise ValueError(f"{text!r} is longer than a year")
        return value

    @model_validator(mode="after")
    def _opens_sometime(self) -> ScheduleSettings:
        if not any(self.day(name) for name in WEEKDAYS):
            raise ValueError('no opening hours in the week: give at least weekdays = ["09:00-17:00"]')
        return self

    def day(self, name: str) -> tuple[str, ...]:
        given: tuple[str, ...] | None = getattr(self, name)
        if given is not None:
            return given
        return self.weekdays if WEEKDAYS.index(name) < 5 else ()

    def business_hours(self) -> BusinessHours:
        week: list[list[DailyRange]] = [[parse_range(text) for text in self.day(name)] for name in WEEKDAYS]
        return BusinessHours(ZoneInfo(self.zone), week, tuple(parse_holiday(text) for text in self.holidays))


class HoursSettings(ScheduleSettings):
    """The default schedule, desks with their own, and what a request outside hours does."""

    desks: dict[str, ScheduleSettings] = Field(
        default_factory=dict, description="a desk's own schedule (replaces the default for it), by name"
    )
    outside_hours: Literal["wait", "agent"] = Field(
        "wait",
        description="a request while every desk is closed: wait opens it for when moderators are back; "
        "agent opens none, and the user stays with the assistant",
    )
    outside_message: str | None = Field(
        None,
        min_length=1,
        max_length=2000,
        description="what the user is told then; {when} is when moderators are back",
    )

    @field_validator("desks")
    @classmethod
    def _known_desks(cls, value: dict[str, ScheduleSettings]) -> dict[str, ScheduleSettings]:
        known = [name for name in registry.PLATFORMS if not registry.PLATFORMS[name].fallback]
        for name in value:
            if name not in known:
                raise ValueError(f"no desk named {name!r} (desks are named by platform: {', '.join(known)})")
        return value

    @field_validator("outside_message")
    @classmethod
    def _only_when(cls, value: str | None) -> str | None:
        for _, field, _, _ in string.Formatter().parse(value or ""):
            if field is not None and field != "when":
                raise ValueError(f"unknown placeholder {{{field}}}; the message may use {{when}} only")
        return value
