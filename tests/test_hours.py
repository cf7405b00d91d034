"""Business hours as time arithmetic (bridges/hours.py) and as configuration (bridges/hours_config.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridges.desk_hours import Closed, DeskHours, HoursNotices
from bridges.hours import ALWAYS, AnyOf, BusinessHours, parse_holiday, parse_range
from bridges.hours_config import HoursSettings
from settings import ConfigError, load_settings

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
NINE_TO_FIVE = (parse_range("09:00-17:00"),)


def office(zone: ZoneInfo, *, holidays: tuple[str, ...] = ()) -> BusinessHours:
    """09:00-17:00 on weekdays."""
    return BusinessHours(zone, [NINE_TO_FIVE] * 5 + [(), ()], tuple(parse_holiday(h) for h in holidays))


def local(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone)  # type: ignore[misc]


def test_open_within_a_range_and_closed_at_its_end() -> None:
    hours = office(BERLIN)
    assert hours.is_open(local(BERLIN, 2026, 11, 25, 9, 0))  # a Wednesday
    assert hours.is_open(local(BERLIN, 2026, 11, 25, 16, 59))
    assert not hours.is_open(local(BERLIN, 2026, 11, 25, 17, 0))
    assert not hours.is_open(local(BERLIN, 2026, 11, 25, 8, 59))


def test_next_open_after_friday_evening_is_monday_morning() -> None:
    hours = office(BERLIN)
    friday_evening = local(BERLIN, 2026, 11, 27, 18, 30)
    assert hours.next_open(friday_evening) == local(BERLIN, 2026, 11, 30, 9, 0)
    saturday = local(BERLIN, 2026, 11, 28, 12, 0)
    assert hours.next_open(saturday) == local(BERLIN, 2026, 11, 30, 9, 0)
    inside = local(BERLIN, 2026, 11, 30, 10, 0)
    assert hours.next_open(inside) == inside


def test_a_deadline_counts_only_business_time_across_a_weekend() -> None:
    hours = office(BERLIN)
    friday = local(BERLIN, 2026, 11, 27, 16, 50)
    deadline = hours.add_business_time(friday, timedelta(minutes=30))
    assert deadline == local(BERLIN, 2026, 11, 30, 9, 20)  # 10 minutes on Friday, 20 on Monday
    assert hours.business_elapsed(friday, deadline) == timedelta(minutes=30)
    assert hours.business_elapsed(deadline, friday) == timedelta()
    at_night = local(BERLIN, 2026, 11, 25, 23, 0)
    assert hours.add_business_time(at_night, timedelta(minutes=10)) == local(BERLIN, 2026, 11, 26, 9, 10)


def test_an_overnight_range_runs_into_the_next_day_and_belongs_to_the_day_it_starts() -> None:
    nights = parse_range("22:00-06:00")
    assert nights.overnight
    hours = BusinessHours(BERLIN, [(nights,)] * 5 + [(), ()])  # Monday night to Friday night
    assert hours.is_open(local(BERLIN, 2026, 11, 24, 23, 0))  # Tuesday night
    assert hours.is_open(local(BERLIN, 2026, 11, 25, 5, 59))  # Wednesday early: Tuesday's range
    assert not hours.is_open(local(BERLIN, 2026, 11, 25, 6, 0))
    assert hours.is_open(local(BERLIN, 2026, 11, 28, 3, 0))  # Saturday early: Friday's range
    assert not hours.is_open(local(BERLIN, 2026, 11, 29, 3, 0))  # Sunday early: nothing on Saturday
    assert hours.next_open(local(BERLIN, 2026, 11, 28, 7, 0)) == local(BERLIN, 2026, 11, 30, 22, 0)
    start = local(BERLIN, 2026, 11, 25, 5, 0)
    assert hours.add_business_time(start, timedelta(hours=2)) == local(BERLIN, 2026, 11, 25, 23, 0)


def test_ranges_that_touch_across_midnight_are_one_opening() -> None:
    evening, morning = parse_range("18:00-24:00"), parse_range("00:00-08:00")
    hours = BusinessHours(BERLIN, [(morning, evening)] * 7)
    opened = local(BERLIN, 2026, 11, 25, 23, 0)
    assert list(islice(hours.intervals(opened), 1)) == [
        (
            local(BERLIN, 2026, 11, 25, 18, 0).astimezone(UTC),
            local(BERLIN, 2026, 11, 26, 8, 0).astimezone(UTC),
        )
    ]
    assert hours.add_business_time(opened, timedelta(hours=10)) == local(BERLIN, 2026, 11, 26, 19, 0)


def test_holidays_close_their_days_and_a_range_of_them_all_days_in_it() -> None:
    hours = office(BERLIN, holidays=("2026-12-24..2026-12-26", "2026-12-31"))
    assert not hours.is_open(local(BERLIN, 2026, 12, 24, 10, 0))
    assert not hours.is_open(local(BERLIN, 2026, 12, 25, 10, 0))
    assert hours.is_open(local(BERLIN, 2026, 12, 23, 10, 0))
    # Wednesday 23rd 16:00: one hour that day, then Thursday to Saturday off, Sunday closed
    deadline = hours.add_business_time(local(BERLIN, 2026, 12, 23, 16, 0), timedelta(hours=2))
    assert deadline == local(BERLIN, 2026, 12, 28, 10, 0)
    assert hours.next_open(local(BERLIN, 2026, 12, 30, 18, 0)) == local(BERLIN, 2027, 1, 1, 9, 0)


def test_a_holiday_closes_an_overnight_range_starting_on_it_but_not_one_ending_on_it() -> None:
    nights = BusinessHours(BERLIN, [(parse_range("22:00-06:00"),)] * 7, (parse_holiday("2026-12-24"),))
    assert nights.is_open(local(BERLIN, 2026, 12, 24, 5, 0))  # the 23rd's night
    assert not nights.is_open(local(BERLIN, 2026, 12, 24, 23, 0))
    assert not nights.is_open(local(BERLIN, 2026, 12, 25, 5, 0))


@pytest.mark.parametrize(
    ("zone", "spring", "autumn", "opens_utc"),
    [
        (BERLIN, (2026, 3, 29), (2026, 10, 25), (7, 8)),
        (NEW_YORK, (2026, 3, 8), (2026, 11, 1), (13, 14)),
    ],
)
def test_a_day_keeps_its_local_hours_across_dst_changes(
    zone: ZoneInfo, spring: tuple[int, int, int], autumn: tuple[int, int, int], opens_utc: tuple[int, int]
) -> None:
    """On a change of clocks (both on a Sunday) the open hours stay at their wall-clock times: Monday
    opens at 09:00 local, a different hour in UTC than the Friday before; a whole day (00:00-24:00)
    holds 23 hours in spring and 25 in autumn, and deadlines count them."""
    all_day = BusinessHours(zone, [(parse_range("00:00-24:00"),)] * 7)
    office_hours = office(zone)
    for day, hours_in_day, monday_utc in ((spring, 23, opens_utc[0]), (autumn, 25, opens_utc[1])):
        midnight = local(zone, *day, 0, 0)
        next_midnight = midnight + timedelta(days=1)  # aware arithmetic is wall-clock: the next 00:00
        assert all_day.business_elapsed(midnight, next_midnight) == timedelta(hours=hours_in_day)
        assert all_day.add_business_time(midnight, timedelta(hours=24)) != next_midnight

        monday = office_hours.next_open(local(zone, *day, 12, 0))
        assert monday == datetime(*day, monday_utc, 0, tzinfo=UTC) + timedelta(days=1)
        friday = local(zone, *day, 16, 0) - timedelta(days=2)
        deadline = office_hours.add_business_time(friday, timedelta(hours=2))
        assert deadline == local(zone, *day, 10, 0) + timedelta(days=1)  # Monday 10:00, local
        assert deadline.utcoffset() != friday.utcoffset()  # the clocks changed over the weekend


def test_a_range_in_the_spring_gap_opens_when_the_clocks_have_moved_on() -> None:
    """02:30 does not exist in Berlin on 29 March 2026: a range 02:30-04:00 opens at 03:30 CEST, as
    zoneinfo reads the missing wall time (with the offset before the change)."""
    hours = BusinessHours(BERLIN, [(parse_range("02:30-04:00"),)] * 7)
    opened = hours.next_open(local(BERLIN, 2026, 3, 29, 1, 0))
    assert opened == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST
    assert hours.business_elapsed(opened, opened + timedelta(hours=5)) == timedelta(minutes=30)


def test_several_desks_count_time_when_any_of_them_is_open() -> None:
    both = AnyOf([office(BERLIN), office(NEW_YORK)])
    # Berlin 09:00-17:00 is 03:00-11:00 New York; together 08:00 to 22:00 UTC (winter)
    monday = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    assert not both.is_open(monday)
    assert both.next_open(monday) == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert both.is_open(datetime(2026, 11, 30, 20, 0, tzinfo=UTC))
    assert both.business_elapsed(monday, monday + timedelta(days=1)) == timedelta(hours=14)


def test_always_open_is_wall_clock_time() -> None:
    start = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
    assert ALWAYS.add_business_time(start, timedelta(minutes=30)) == start + timedelta(minutes=30)
    assert ALWAYS.business_elapsed(start, start + timedelta(hours=5)) == timedelta(hours=5)
    assert ALWAYS.is_open(start)


def test_a_schedule_that_never_opens_again_says_so() -> None:
    closed = BusinessHours(BERLIN, [NINE_TO_FIVE] + [()] * 6, (parse_holiday("2026-01-01..2028-12-31"),))
    start = local(BERLIN, 2026, 6, 1, 12, 0)
    assert closed.next_open(start) is None
    with pytest.raises(ValueError, match="does not open again"):
        closed.add_business_time(start, timedelta(minutes=1))


@given(
    start=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    minutes=st.integers(min_value=0, max_value=60 * 24 * 10),
    zone=st.sampled_from([BERLIN, NEW_YORK]),
)
def test_elapsed_business_time_undoes_a_deadline(start: datetime, minutes: int, zone: ZoneInfo) -> None:
    hours = BusinessHours(
        zone,
        [NINE_TO_FIVE, NINE_TO_FIVE, (parse_range("22:00-02:00"),), NINE_TO_FIVE, NINE_TO_FIVE, (), ()],
        (parse_holiday("2026-12-24..2026-12-26"),),
    )
    deadline = hours.add_business_time(start, timedelta(minutes=minutes))
    assert deadline >= start
    assert hours.business_elapsed(start, deadline) == timedelta(minutes=minutes)
    if minutes:
        assert hours.is_open(deadline - timedelta(microseconds=1))


# -- configuration -----------------------------------------------------------------------------------


def load(tmp_path: Path, text: str) -> HoursSettings:
    path = tmp_path / "switchboard.toml"
    path.write_text(text, encoding="utf-8")
    hours = load_settings(path, environ={}).handoff.hours
    assert hours is not None
    return hours


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_a_readme_configuration_loads(tmp_path: Path) -> None:
    hours = load(
        tmp_path,
        """
[handoff.hours]
zone = "Europe/Berlin"
weekdays = ["09:00-12:30", "13:30-17:00"]
friday = ["09:00-15:00"]
holidays = ["2026-12-24..2026-12-26", "2027-01-01"]
outside_hours = "wait"

[handoff.hours.desks.telegram]
zone = "America/New_York"
weekdays = ["08:00-20:00"]
saturday = ["22:00-02:00"]
""",
    )
    desks = DeskHours.from_settings(hours)
    berlin, new_york = desks.of("discord"), desks.of("telegram")
    assert berlin.zone.key == "Europe/Berlin" and new_york.zone.key == "America/New_York"
    assert not berlin.is_open(local(BERLIN, 2026, 11, 27, 15, 30))  # Friday closes at 15:00
    assert not berlin.is_open(local(BERLIN, 2026, 11, 26, 13, 0))  # lunch
    assert new_york.is_open(local(NEW_YORK, 2026, 11, 29, 1, 0))  # Saturday's night
    assert desks.outside == "wait"


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ('zone = "Mars/Olympus"\nweekdays = ["09:00-17:00"]', "handoff.hours.zone: unknown time zone"),
        ('weekdays = ["09:00-25:00"]', "handoff.hours.weekdays: '25:00' is not a time of day"),
        ('monday = ["9-17"]', "handoff.hours.monday: '9' is not a time; write it as HH:MM"),
        ('weekdays = ["09:00 to 17:00"]', "is not a range; write it as HH:MM-HH:MM"),
        ('weekdays = ["09:00-09:00"]', "is empty: the end must differ from the start"),
        ('weekdays = ["09:00-17:00"]\nholidays = ["2026-02-30"]', "'2026-02-30' is not a date"),
        ('weekdays = ["09:00-17:00"]\nholidays = ["2026-12-26..2026-12-24"]', "ends before it starts"),
        ('weekdays = ["09:00-17:00"]\nholidays = ["2026-01-01..2027-06-01"]', "longer than a year"),
        ("saturday = []", "no opening hours in the week"),
        (
            'weekdays = ["09:00-17:00"]\noutside_hours = "queue"',
            "handoff.hours.outside_hours: Input should be",
        ),
        (
            'weekdays = ["09:00-17:00"]\noutside_message = "Back at {time}"',
            "unknown placeholder {time}; the message may use {when} only",
        ),
        (
            'weekdays = ["09:00-17:00"]\n[handoff.hours.desks.matrix]\nweekdays = ["09:00-17:00"]',
            "no desk named",
        ),
        (
            'weekdays = ["09:00-17:00"]\n[handoff.hours.desks.discord]\nzone = "UTC"',
            "desks.discord: no opening",
        ),
        ('weekdays = ["09:00-17:00"]\nsundays = ["10:00-12:00"]', "handoff.hours.sundays: unknown key"),
    ],
)
def test_mistakes_are_refused_with_words_for_the_operator(tmp_path: Path, toml: str, problem: str) -> None:
    assert problem in refused(tmp_path, f"[handoff.hours]\n{toml}\n")


def test_no_hours_configured_means_none(tmp_path: Path) -> None:
    path = tmp_path / "switchboard.toml"
    path.write_text("[handoff]\nexpire_after_minutes = 30\n", encoding="utf-8")
    assert load_settings(path, environ={}).handoff.hours is None


def notice(hours: DeskHours, desks: list[str], at: datetime) -> str:
    closed = hours.closed(desks, at)
    assert closed is not None
    return closed.notice


def test_the_outside_message_says_when_the_first_desk_opens_in_its_own_zone() -> None:
    desks = DeskHours(office(BERLIN), {"telegram": office(NEW_YORK)})
    saturday = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert notice(desks, ["discord", "telegram"], saturday) == HoursNotices.waiting.format(
        when="Monday 30 November, 09:00 (Europe/Berlin time)"
    )
    assert notice(desks, ["telegram"], saturday) == HoursNotices.waiting.format(
        when="Monday 30 November, 09:00 (America/New_York time)"
    )
    monday_evening_berlin = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)  # 13:00 in New York
    assert desks.closed(["discord"], monday_evening_berlin) is not None
    assert desks.closed(["discord", "telegram"], monday_evening_berlin) is None
    agent = DeskHours(office(BERLIN), outside="agent")
    assert notice(agent, [], saturday) == HoursNotices.with_agent.format(
        when="Monday 30 November, 09:00 (Europe/Berlin time)"
    )
    assert [hours.closed([], saturday) for hours in (desks, agent)] == [
        Closed(notice(desks, [], saturday), waits=True),
        Closed(notice(agent, [], saturday), waits=False),
    ]
    custom = DeskHours(office(BERLIN), message="Back {when}!")
    assert notice(custom, [], saturday) == "Back Monday 30 November, 09:00 (Europe/Berlin time)!"
