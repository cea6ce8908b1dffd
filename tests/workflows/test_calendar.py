"""The city's calendar: hand-computed deadlines, refused durations, and the add/elapsed contract."""

from __future__ import annotations

import time as clock_time
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workflows.calendar import WorkCalendar, infer_clock, parse_duration, parse_office_hours
from workflows.model import Clock

SHANGHAI = ZoneInfo("Asia/Shanghai")
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
WEEKEND = frozenset({6, 7})
HOURS = parse_office_hours("09:00-12:00,13:00-17:00")
CLOCKS: tuple[Clock, ...] = ("working_days", "working_hours", "continuous")

# National Day week 2026 (Thursday 1 to Wednesday 7 October, minus the weekend), with a make-up
# working Sunday before it and a make-up working Saturday after it.
GOLDEN_WEEK = {
    date(2026, 9, 27): True,  # Sunday
    date(2026, 10, 1): False,  # Thursday
    date(2026, 10, 2): False,
    date(2026, 10, 5): False,
    date(2026, 10, 6): False,
    date(2026, 10, 7): False,
    date(2026, 10, 10): True,  # Saturday
}

PLAIN = WorkCalendar(tz=SHANGHAI, weekend=WEEKEND, office_hours=HOURS, overrides={})
CHINA = WorkCalendar(tz=SHANGHAI, weekend=WEEKEND, office_hours=HOURS, overrides=GOLDEN_WEEK)
DUTCH = WorkCalendar(tz=AMSTERDAM, weekend=WEEKEND, office_hours=HOURS, overrides={})


def sh(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def ams(year: int, month: int, day: int, hour: int = 0, minute: int = 0, fold: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=AMSTERDAM, fold=fold)


def same_instant(a: datetime, b: datetime) -> bool:
    """Python compares datetimes of one zone by wall time; fold matters here, so compare in UTC."""
    return a.astimezone(UTC) == b.astimezone(UTC) and a.utcoffset() == b.utcoffset()


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


# Working days


def test_the_weekend_does_not_count() -> None:
    assert PLAIN.add(sh(2026, 3, 6, 15), hours(72), "working_days") == sh(2026, 3, 11, 15)  # Fri -> Wed
    assert PLAIN.elapsed(sh(2026, 3, 6, 15), sh(2026, 3, 11, 15), "working_days") == hours(72)


def test_working_days_starting_on_a_saturday_start_on_monday() -> None:
    assert PLAIN.add(sh(2026, 3, 7, 10), hours(72), "working_days") == sh(2026, 3, 12)  # Sat -> Thu 00:00
    assert PLAIN.elapsed(sh(2026, 3, 7, 10), sh(2026, 3, 9), "working_days") == timedelta()


def test_a_day_used_up_at_midnight_ends_at_the_next_midnight_even_on_a_holiday() -> None:
    assert PLAIN.add(sh(2026, 3, 9), hours(24), "working_days") == sh(2026, 3, 10)
    # Wednesday 30 September used up: Thursday 1 October 00:00, the holiday's first instant.
    assert CHINA.add(sh(2026, 9, 30), hours(24), "working_days") == sh(2026, 10, 1)
    assert CHINA.elapsed(sh(2026, 9, 30), sh(2026, 10, 4, 12), "working_days") == hours(24)


def test_national_day_week_does_not_count() -> None:
    # Wednesday 30 September 10:00: 14 hours that day, then nothing until Thursday 8 October.
    assert CHINA.add(sh(2026, 9, 30, 10), hours(24), "working_days") == sh(2026, 10, 8, 10)
    assert CHINA.elapsed(sh(2026, 9, 30, 10), sh(2026, 10, 8, 10), "working_days") == hours(24)
    assert PLAIN.add(sh(2026, 9, 30, 10), hours(24), "working_days") == sh(2026, 10, 1, 10)


def test_make_up_working_days_on_the_weekend_count() -> None:
    assert CHINA.add(sh(2026, 9, 25, 15), hours(24), "working_days") == sh(2026, 9, 27, 15)  # Fri -> Sun
    assert CHINA.add(sh(2026, 10, 9, 12), hours(24), "working_days") == sh(2026, 10, 10, 12)  # Fri -> Sat
    assert CHINA.is_working_day(date(2026, 9, 27))
    assert not CHINA.is_working_day(date(2026, 10, 1))
    assert not CHINA.is_working_day(date(2026, 9, 26))
    assert CHINA.is_working_day(date(2026, 9, 30))


def test_working_days_ignore_daylight_saving_time() -> None:
    # The clocks go forward on Sunday 29 March and back on Sunday 25 October 2026.
    assert DUTCH.add(ams(2026, 3, 27, 9), hours(24), "working_days") == ams(2026, 3, 30, 9)
    assert DUTCH.add(ams(2026, 10, 23, 9), hours(24), "working_days") == ams(2026, 10, 26, 9)
    assert DUTCH.elapsed(ams(2026, 3, 27, 9), ams(2026, 3, 30, 9), "working_days") == hours(24)


def test_a_working_day_on_the_spring_forward_sunday_has_24_wall_clock_hours() -> None:
    cal = WorkCalendar(tz=AMSTERDAM, weekend=WEEKEND, office_hours=HOURS, overrides={date(2026, 3, 29): True})
    sunday = ams(2026, 3, 29)
    assert cal.add(sunday, hours(1), "working_days") == ams(2026, 3, 29, 1)
    assert cal.add(sunday, hours(4), "working_days") == ams(2026, 3, 29, 4)  # three real hours later
    assert cal.elapsed(sunday, ams(2026, 3, 30), "working_days") == hours(24)
    # 02:30 never shows on the clock: the deadline is when the clock jumps past it, 03:00.
    end = cal.add(sunday, hours(2.5), "working_days")
    assert end == ams(2026, 3, 29, 3)
    assert end.utcoffset() == hours(2)
    assert cal.elapsed(sunday, end, "working_days") == hours(3)


def test_a_working_day_on_the_fall_back_sunday_counts_the_repeated_hour_once() -> None:
    cal = WorkCalendar(
        tz=AMSTERDAM, weekend=WEEKEND, office_hours=HOURS, overrides={date(2026, 10, 25): True}
    )
    sunday = ams(2026, 10, 25)
    assert same_instant(cal.add(sunday, hours(2.5), "working_days"), ams(2026, 10, 25, 2, 30))  # 1st pass
    # 03:00 on the wall is reached when the second pass of 02:00-03:00 begins.
    assert same_instant(cal.add(sunday, hours(3), "working_days"), ams(2026, 10, 25, 2, fold=1))
    assert same_instant(cal.add(sunday, hours(4), "working_days"), ams(2026, 10, 25, 4))
    assert cal.elapsed(sunday, ams(2026, 10, 25, 2, 30, fold=1), "working_days") == hours(3)
    assert cal.elapsed(ams(2026, 10, 25, 2, 30, fold=1), ams(2026, 10, 25, 3), "working_days") == timedelta()
    assert cal.elapsed(sunday, ams(2026, 10, 26), "working_days") == hours(24)
    assert cal.add(ams(2026, 10, 25, 2, 30, fold=1), hours(1), "working_days") == ams(2026, 10, 25, 4)


# Working hours


def test_office_hours_resume_after_the_weekend() -> None:
    assert PLAIN.add(sh(2026, 3, 6, 15), hours(4), "working_hours") == sh(2026, 3, 9, 11)  # Fri -> Mon
    assert PLAIN.elapsed(sh(2026, 3, 6, 15), sh(2026, 3, 9, 11), "working_hours") == hours(4)


def test_the_lunch_break_does_not_count() -> None:
    assert PLAIN.add(sh(2026, 3, 9, 10), hours(2), "working_hours") == sh(2026, 3, 9, 12)  # earliest
    assert PLAIN.add(sh(2026, 3, 9, 10), hours(3), "working_hours") == sh(2026, 3, 9, 14)
    assert PLAIN.add(sh(2026, 3, 9, 12, 30), hours(1), "working_hours") == sh(2026, 3, 9, 14)
    assert PLAIN.elapsed(sh(2026, 3, 9, 11), sh(2026, 3, 9, 14), "working_hours") == hours(2)


def test_time_outside_office_hours_starts_at_the_next_opening() -> None:
    assert PLAIN.add(sh(2026, 3, 9, 7), hours(1), "working_hours") == sh(2026, 3, 9, 10)
    assert PLAIN.add(sh(2026, 3, 6, 18), hours(1), "working_hours") == sh(2026, 3, 9, 10)  # Fri evening
    assert PLAIN.add(sh(2026, 3, 7, 10), hours(1), "working_hours") == sh(2026, 3, 9, 10)  # Saturday
    assert PLAIN.elapsed(sh(2026, 3, 6, 17), sh(2026, 3, 9, 9), "working_hours") == timedelta()


def test_office_hours_skip_a_public_holiday() -> None:
    assert CHINA.add(sh(2026, 9, 30, 16), hours(2), "working_hours") == sh(2026, 10, 8, 10)
    assert CHINA.elapsed(sh(2026, 9, 29, 9), sh(2026, 10, 9, 9), "working_hours") == hours(3 * 7)


def test_whole_office_days() -> None:
    assert PLAIN.office_day() == hours(7)
    assert PLAIN.budget(1, 2 * 3600, "working_hours") == hours(9)
    assert PLAIN.add(sh(2026, 3, 6, 9), PLAIN.budget(1, 0, "working_hours"), "working_hours") == sh(
        2026, 3, 6, 17
    )
    assert PLAIN.budget(3, 0, "working_days") == hours(72)
    assert PLAIN.budget(1, 3600, "continuous") == hours(25)


# Continuous


def test_continuous_time_is_real_time() -> None:
    assert PLAIN.add(sh(2026, 3, 6, 15), hours(72), "continuous") == sh(2026, 3, 9, 15)
    assert PLAIN.elapsed(sh(2026, 3, 9, 15), sh(2026, 3, 6, 15), "continuous") == timedelta()
    # Saturday noon to Sunday noon is 23 hours in Amsterdam in spring.
    assert DUTCH.elapsed(ams(2026, 3, 28, 12), ams(2026, 3, 29, 12), "continuous") == hours(23)
    assert DUTCH.add(ams(2026, 3, 28, 12), hours(24), "continuous") == ams(2026, 3, 29, 13)


# The contract's edges


@pytest.mark.parametrize("clock", CLOCKS)
def test_nothing_added_is_the_start_itself(clock: Clock) -> None:
    saturday = sh(2026, 3, 7, 10)
    assert PLAIN.add(saturday, timedelta(), clock) == saturday
    assert PLAIN.elapsed(saturday, saturday, clock) == timedelta()


@pytest.mark.parametrize("clock", CLOCKS)
def test_results_are_in_the_city_zone(clock: Clock) -> None:
    end = PLAIN.add(datetime(2026, 3, 6, 7, tzinfo=UTC), hours(4), clock)
    assert end.tzinfo is SHANGHAI
    assert PLAIN.add(datetime(2026, 3, 6, 7, tzinfo=UTC), timedelta(), clock).tzinfo is SHANGHAI


@pytest.mark.parametrize("clock", CLOCKS)
def test_naive_datetimes_are_refused(clock: Clock) -> None:
    naive = datetime(2026, 3, 9, 10)  # noqa: DTZ001
    with pytest.raises(ValueError, match="time-zone-aware"):
        PLAIN.add(naive, hours(1), clock)
    with pytest.raises(ValueError, match="time-zone-aware"):
        PLAIN.elapsed(naive, sh(2026, 3, 9, 11), clock)
    with pytest.raises(ValueError, match="time-zone-aware"):
        PLAIN.elapsed(sh(2026, 3, 9, 11), naive, clock)


def test_a_negative_amount_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        PLAIN.add(sh(2026, 3, 9), -hours(1), "working_days")


def test_a_calendar_without_working_time_refuses_rather_than_looping() -> None:
    never = WorkCalendar(tz=SHANGHAI, weekend=frozenset(range(1, 8)), office_hours=HOURS, overrides={})
    with pytest.raises(ValueError, match="no working time"):
        never.add(sh(2026, 3, 9), hours(1), "working_days")
    assert never.elapsed(sh(2026, 3, 9), sh(2027, 3, 9), "working_hours") == timedelta()
    # One make-up day two years out is still found.
    once = WorkCalendar(
        tz=SHANGHAI, weekend=frozenset(range(1, 8)), office_hours=HOURS, overrides={date(2028, 3, 9): True}
    )
    assert once.add(sh(2026, 3, 9), hours(1), "working_hours") == sh(2028, 3, 9, 10)


def test_a_bad_calendar_is_refused() -> None:
    with pytest.raises(ValueError, match="ISO weekdays"):
        WorkCalendar(tz=SHANGHAI, weekend=frozenset({0, 6}), office_hours=HOURS, overrides={})
    with pytest.raises(ValueError, match="empty"):
        WorkCalendar(tz=SHANGHAI, weekend=WEEKEND, office_hours=(), overrides={})
    with pytest.raises(ValueError, match="overlap"):
        WorkCalendar(
            tz=SHANGHAI,
            weekend=WEEKEND,
            office_hours=((time(9), time(13)), (time(12), time(17))),
            overrides={},
        )


def test_a_year_of_working_days_is_fast() -> None:
    start = sh(2026, 3, 6, 15)
    began = clock_time.perf_counter()
    for _ in range(100):
        CHINA.add(start, CHINA.budget(20, 0, "working_days"), "working_days")
    assert (clock_time.perf_counter() - began) / 100 < 0.001
    # 365 working days from Friday 6 March 2026 15:00: 73 whole weeks reach Friday 30 July 2027;
    # National Day week takes five working days and gives back two, so three more: Wednesday.
    assert CHINA.add(start, CHINA.budget(365, 0, "working_days"), "working_days") == sh(2027, 8, 4, 15)
    assert CHINA.elapsed(start, sh(2027, 8, 4, 15), "working_days") == hours(365 * 24)


# Durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P3D", (3, 0)),
        ("PT4H", (0, 4 * 3600)),
        ("P1DT12H", (1, 12 * 3600)),
        ("PT90M", (0, 90 * 60)),
        ("PT45S", (0, 45)),
        ("PT1H30M15S", (0, 5415)),
        ("PT36H", (0, 36 * 3600)),
        ("P365D", (365, 0)),
        ("PT8760H", (0, 365 * 86400)),
    ],
)
def test_durations_parse(text: str, expected: tuple[int, int]) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("P0D", "longer than zero"),
        ("PT0S", "longer than zero"),
        ("P1Y", "in days"),
        ("P2M", "in days"),
        ("P1W", "in days"),
        ("P1Y2DT3H", "in days"),
        ("-P1D", "negative"),
        ("P-1D", "negative"),
        ("PT1.5H", "whole numbers"),
        ("P1,5D", "whole numbers"),
        ("P", "at least one component"),
        ("PT", "'T' must be followed"),
        ("P1DT", "'T' must be followed"),
        ("p3d", "upper case"),
        ("P3d", "upper case"),
        ("P366D", "365 days"),
        ("P365DT1S", "365 days"),
        ("PT8761H", "365 days"),
        ("3D", "not an ISO 8601 duration"),
        ("", "not an ISO 8601 duration"),
        ("P3D ", "not an ISO 8601 duration"),
        ("P3D\n", "not an ISO 8601 duration"),
        ("P\uff13D", "not an ISO 8601 duration"),  # a full-width digit
        ("PT4H1D", "not an ISO 8601 duration"),
    ],
)
def test_durations_refused_say_why(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_duration(text)


def test_hours_mean_office_hours_and_days_mean_working_days() -> None:
    assert infer_clock(*parse_duration("P3D")) == "working_days"
    assert infer_clock(*parse_duration("PT4H")) == "working_hours"
    assert infer_clock(*parse_duration("P1DT12H")) == "working_hours"
    assert infer_clock(*parse_duration("PT30S")) == "working_hours"


# Office hours


def test_office_hours_parse() -> None:
    assert parse_office_hours("09:00-12:00,13:00-17:00") == ((time(9), time(12)), (time(13), time(17)))
    assert parse_office_hours("8:30-17:30") == ((time(8, 30), time(17, 30)),)
    assert parse_office_hours(" 09:00-12:00 , 12:00-17:00 ") == ((time(9), time(12)), (time(12), time(17)))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        (" ", "empty"),
        ("09:00", "not a span"),
        ("9h-17h", "not a span"),
        ("09:00-12:00,", "not a span"),
        ("12:00-09:00", "end before they start"),
        ("09:00-09:00", "end before they start"),
        ("13:00-17:00,09:00-12:00", "in order"),
        ("09:00-13:00,12:00-17:00", "overlap"),
        ("09:00-24:00", "00 to 23"),
        ("09:60-10:00", "00 to 59"),
    ],
)
def test_office_hours_refused_say_why(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_office_hours(text)


# Properties

BASE = datetime(2026, 1, 1, tzinfo=UTC)
# Daylight saving changes in Amsterdam, and Sundays on which they happen (made working at random).
SWITCHES = [
    datetime(2026, 3, 29, 1, tzinfo=UTC),
    datetime(2026, 10, 25, 1, tzinfo=UTC),
    datetime(2027, 3, 28, 1, tzinfo=UTC),
]
SWITCH_DAYS = [date(2026, 3, 29), date(2026, 10, 25), date(2027, 3, 28)]

instants = st.one_of(
    st.builds(lambda us: BASE + timedelta(microseconds=us), st.integers(0, 2 * 365 * 86400 * 10**6)),
    st.builds(
        lambda switch, us: switch + timedelta(microseconds=us),
        st.sampled_from(SWITCHES),
        st.integers(-3 * 3600 * 10**6, 3 * 3600 * 10**6),
    ),
)
amounts = st.one_of(
    st.timedeltas(min_value=timedelta(), max_value=timedelta(days=60)),
    st.builds(lambda minutes: timedelta(minutes=minutes), st.integers(0, 6 * 60)),
)


OFFICE_HOURS = ["09:00-12:00,13:00-17:00", "08:30-17:30", "01:00-04:00,09:00-18:00", "00:00-23:45"]


@st.composite
def calendars(draw: st.DrawFn, zones: tuple[ZoneInfo, ...] = (SHANGHAI, AMSTERDAM)) -> WorkCalendar:
    """Office hours in the small hours meet the daylight saving changes; so do working Sundays."""
    days = st.one_of(st.dates(date(2026, 1, 1), date(2028, 6, 30)), st.sampled_from(SWITCH_DAYS))
    return WorkCalendar(
        tz=draw(st.sampled_from(zones)),
        weekend=draw(
            st.sampled_from([WEEKEND, frozenset({7}), frozenset({5, 6}), frozenset(), frozenset(range(1, 7))])
        ),
        office_hours=parse_office_hours(draw(st.sampled_from(OFFICE_HOURS))),
        overrides=draw(st.dictionaries(days, st.booleans(), max_size=30)),
    )


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def jumps_at(cal: WorkCalendar, moment: datetime) -> bool:
    """Whether the clocks go forward at this instant."""
    return bool(
        (utc(moment) - timedelta(microseconds=1)).astimezone(cal.tz).utcoffset() != moment.utcoffset()
    )


@settings(max_examples=400, deadline=None)
@given(cal=calendars(), start=instants, a=amounts, b=amounts, clock=st.sampled_from(CLOCKS))
def test_elapsed_inverts_add_and_add_is_monotone(
    cal: WorkCalendar, start: datetime, a: timedelta, b: timedelta, clock: Clock
) -> None:
    end = cal.add(start, a, clock)
    assert end.tzinfo is cal.tz
    assert utc(end) >= utc(start)
    passed = cal.elapsed(start, end, clock)
    # Exact, except for a target inside a skipped hour, reached when the clock jumps past it.
    assert passed == a or (passed > a and clock != "continuous" and jumps_at(cal, end))
    if a:  # the earliest such instant
        assert cal.elapsed(start, utc(end) - timedelta(microseconds=1), clock) < a
    low, high = sorted((a, b))
    assert utc(cal.add(start, low, clock)) <= utc(cal.add(start, high, clock))


@settings(max_examples=300, deadline=None)
@given(cal=calendars(), start=instants, x=instants, y=instants, clock=st.sampled_from(CLOCKS))
def test_elapsed_is_monotone(
    cal: WorkCalendar, start: datetime, x: datetime, y: datetime, clock: Clock
) -> None:
    early, late = sorted((x, y))
    assert cal.elapsed(start, early, clock) <= cal.elapsed(start, late, clock)
    assert cal.elapsed(start, early, clock) >= timedelta()


QUARTER = timedelta(minutes=15)


def counts(cal: WorkCalendar, moment: datetime, clock: Clock) -> bool:
    if clock == "continuous":
        return True
    if not cal.is_working_day(moment.date()):
        return False
    return clock == "working_days" or any(s <= moment.time() < e for s, e in cal.office_hours)


@settings(max_examples=150, deadline=None)
@given(
    cal=calendars(zones=(SHANGHAI,)),
    first=st.integers(0, 4 * 96 * 7),
    length=st.integers(0, 3 * 96 * 7),
    clock=st.sampled_from(CLOCKS),
)
def test_elapsed_agrees_with_counting_quarter_hours(
    cal: WorkCalendar, first: int, length: int, clock: Clock
) -> None:
    """Against a slow count, quarter-hour by quarter-hour, in a zone without daylight saving."""
    start = datetime(2026, 9, 14, tzinfo=SHANGHAI) + first * QUARTER
    counted = sum((QUARTER for i in range(length) if counts(cal, start + i * QUARTER, clock)), timedelta())
    assert cal.elapsed(start, start + length * QUARTER, clock) == counted
