"""Deadlines counted on the city's calendar: working days, office hours, or the plain clock.

A deadline is written as an ISO 8601 duration (`parse_duration`) and runs on one of three clocks
(`workflows.model.Clock`). Working time is measured on the local wall clock, so "P1D" from
Friday 09:00 is Monday 09:00 whatever daylight saving time does over the weekend.

The wall clock does not run evenly: it skips an hour in spring and repeats one in autumn.
Here it never runs backwards: through the repeated hour it stands still at the hour's
end, so the first pass counts and the second does not. A target that falls into a skipped hour
is reached at the first instant after the gap; that is the one case in which
`elapsed(start, add(start, amount))` exceeds `amount` (by the part of the gap that was working
time). Otherwise `elapsed` inverts `add` exactly, both are monotone, and `add` returns the
earliest instant at which the amount has passed.

Note for callers: Python compares and subtracts two datetimes with the same `tzinfo` by wall
time, ignoring `fold`; compare results in UTC when a repeated hour may be involved.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from workflows.model import Clock

MAX_DAYS = 365
# How long `add` looks for working time before deciding the calendar has none.
_IDLE_LIMIT = 3 * 366

_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)
_MIDNIGHT = time()

_DURATION = re.compile(r"P(?:([0-9]+)D)?(?:(T)(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?")
_SPAN = re.compile(r"([0-9]{1,2}):([0-9]{2})-([0-9]{1,2}):([0-9]{2})")
_EXAMPLE_HOURS = "09:00-12:00,13:00-17:00"

Spans = tuple[tuple[timedelta, timedelta], ...]


def parse_duration(text: str) -> tuple[int, int]:
    """ISO 8601 duration as (days, seconds), the seconds not folded into days: PT36H stays
    36 hours, which is not a day and a half of office hours."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(_duration_problem(text))
    days_text, t, hours, minutes, secs = match.groups()
    if t is not None and hours is None and minutes is None and secs is None:
        raise ValueError(f"{text}: a 'T' must be followed by hours, minutes or seconds, e.g. PT4H.")
    if days_text is None and t is None:
        raise ValueError("A duration needs at least one component, e.g. P3D or PT4H.")
    days = int(days_text or 0)
    seconds = int(hours or 0) * 3600 + int(minutes or 0) * 60 + int(secs or 0)
    if days == 0 and seconds == 0:
        raise ValueError(f"{text}: a deadline must be longer than zero.")
    if days * 86400 + seconds > MAX_DAYS * 86400:
        raise ValueError(f"{text}: a deadline cannot be longer than {MAX_DAYS} days.")
    return days, seconds


def _duration_problem(text: str) -> str:
    """The most helpful sentence for a duration the grammar refused."""
    if "-" in text:
        return f"{text}: a deadline cannot be negative."
    if any(c.islower() for c in text):
        return f"{text}: durations are written in upper case, e.g. P3D or PT4H."
    if "." in text or "," in text:
        return f"{text}: durations take whole numbers; write PT90M rather than PT1.5H."
    date_part = text.partition("T")[0]
    if text.startswith("P") and any(unit in date_part for unit in "YMW"):
        return (
            f"{text}: years, months and weeks have no fixed length in working time; "
            "write the duration in days, e.g. P30D."
        )
    return f"{text!r} is not an ISO 8601 duration such as P3D, PT4H or P1DT12H."


def infer_clock(days: int, seconds: int) -> Clock:
    """An author who writes hours means office hours; one who writes days means working days."""
    return "working_hours" if seconds else "working_days"


def parse_office_hours(text: str) -> tuple[tuple[time, time], ...]:
    """Office hours as written by an administrator, e.g. "09:00-12:00,13:00-17:00"."""
    if not text.strip():
        raise ValueError(f"Office hours are empty; write them like {_EXAMPLE_HOURS}.")
    spans: list[tuple[time, time]] = []
    for part in (p.strip() for p in text.split(",")):
        match = _SPAN.fullmatch(part)
        if match is None:
            raise ValueError(f"{part!r} is not a span of office hours like 09:00-12:00.")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise ValueError(f"{part}: hours run from 00 to 23 and minutes from 00 to 59.")
        spans.append((time(h1, m1), time(h2, m2)))
    result = tuple(spans)
    _check_office_hours(result)
    return result


def _check_office_hours(spans: tuple[tuple[time, time], ...]) -> None:
    if not spans:
        raise ValueError(f"Office hours are empty; write them like {_EXAMPLE_HOURS}.")
    previous_end: time | None = None
    for start, end in spans:
        if start.tzinfo is not None or end.tzinfo is not None:
            raise ValueError("Office hours are local times without a time zone.")
        if start >= end:
            raise ValueError(f"Office hours {start:%H:%M}-{end:%H:%M} end before they start.")
        if previous_end is not None and start < previous_end:
            raise ValueError(
                f"Office hours must be in order and must not overlap ({start:%H:%M} is before {previous_end:%H:%M})."
            )
        previous_end = end


def _since_midnight(t: time) -> timedelta:
    return timedelta(hours=t.hour, minutes=t.minute, seconds=t.second, microseconds=t.microsecond)


def _utc(moment: datetime) -> datetime:
    """Instants are compared and shifted in UTC: Python does wall-time arithmetic within one zone."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("Deadlines need time-zone-aware datetimes.")
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class WorkCalendar:
    """The city's working time: which days count, and the office hours within them."""

    tz: ZoneInfo
    weekend: frozenset[int]
    office_hours: tuple[tuple[time, time], ...]
    overrides: Mapping[date, bool]

    def __post_init__(self) -> None:
        if not self.weekend <= frozenset(range(1, 8)):
            raise ValueError("Weekend days are ISO weekdays, 1 (Monday) to 7 (Sunday).")
        _check_office_hours(self.office_hours)

    def is_working_day(self, day: date) -> bool:
        working = self.overrides.get(day)
        if working is not None:
            return working
        return day.isoweekday() not in self.weekend

    def office_day(self) -> timedelta:
        """A day of a working-hours duration is one office day, not 24 hours."""
        return sum((end - start for start, end in self._spans("working_hours")), timedelta())

    def budget(self, days: int, seconds: int, clock: Clock) -> timedelta:
        """Budgets are amounts of the clock's own time: a working-hours day is one office day."""
        if clock == "working_hours":
            return days * self.office_day() + timedelta(seconds=seconds)
        return timedelta(days=days, seconds=seconds)

    def add(self, start: datetime, amount: timedelta, clock: Clock) -> datetime:
        """The earliest instant at which `amount` of the clock's time has passed since `start`.

        Earliest: two office hours from 10:00 with a lunch break at 12:00 end at 12:00, not 13:00;
        a working-day amount that runs out at the end of Monday ends at Tuesday 00:00 even when
        Tuesday is a holiday. Time starting outside working time starts at the next opening.
        """
        begin = _utc(start)
        if amount < timedelta():
            raise ValueError("A deadline cannot be negative.")
        if clock == "continuous":
            return (begin + amount).astimezone(self.tz)
        if not amount:
            return begin.astimezone(self.tz)
        target = self._advance(self._wall(begin), amount, self._spans(clock))
        return self._instant(target).astimezone(self.tz)

    def elapsed(self, start: datetime, end: datetime, clock: Clock) -> timedelta:
        """How much of the clock's time passes from `start` to `end` (none if `end` is not later)."""
        begin, finish = _utc(start), _utc(end)
        if clock == "continuous":
            return max(finish - begin, timedelta())
        low, high = self._wall(begin), self._wall(finish)
        if high <= low:
            return timedelta()
        return self._between(low, high, self._spans(clock))

    # Working time on the wall clock: naive local datetimes from here on.

    def _spans(self, clock: Clock) -> Spans:
        if clock == "working_days":
            return ((timedelta(), _DAY),)
        return tuple((_since_midnight(s), _since_midnight(e)) for s, e in self.office_hours)

    def _advance(self, wall: datetime, amount: timedelta, spans: Spans) -> datetime:
        """Walk day by day: an amount is at most a year, a few hundred steps."""
        remaining = amount
        day = wall.date()
        midnight = datetime.combine(day, _MIDNIGHT)
        idle = 0
        while True:
            if self.is_working_day(day):
                for offset, stop in spans:
                    lo, hi = max(midnight + offset, wall), midnight + stop
                    if lo < hi:
                        idle = -1
                        if hi - lo >= remaining:
                            return lo + remaining
                        remaining -= hi - lo
            idle += 1
            if idle > _IDLE_LIMIT:
                raise ValueError(
                    "The calendar has no working time in the next three years; check its weekend and holidays."
                )
            day += _DAY
            midnight += _DAY

    def _between(self, low: datetime, high: datetime, spans: Spans) -> timedelta:
        """Working time between two wall times; whole days between them are counted, not walked."""
        first, last = low.date(), high.date()
        if first == last:
            return self._within(first, low, high, spans)
        total = self._within(first, low, datetime.combine(first + _DAY, _MIDNIGHT), spans)
        total += self._within(last, datetime.combine(last, _MIDNIGHT), high, spans)
        per_day = sum((stop - offset for offset, stop in spans), timedelta())
        return total + self._working_days(first + _DAY, last) * per_day

    def _within(self, day: date, low: datetime, high: datetime, spans: Spans) -> timedelta:
        if not self.is_working_day(day):
            return timedelta()
        midnight = datetime.combine(day, _MIDNIGHT)
        total = timedelta()
        for offset, stop in spans:
            lo, hi = max(midnight + offset, low), min(midnight + stop, high)
            if lo < hi:
                total += hi - lo
        return total

    def _working_days(self, first: date, stop: date) -> int:
        """Working days in [first, stop): whole weeks by arithmetic, then the overrides."""
        weeks, rest = divmod((stop - first).days, 7)
        count = weeks * (7 - len(self.weekend))
        count += sum((first + timedelta(days=i)).isoweekday() not in self.weekend for i in range(rest))
        for day, working in self.overrides.items():
            if first <= day < stop:
                count += int(working) - int(day.isoweekday() not in self.weekend)
        return count

    # Between instants and the wall clock.

    def _wall(self, moment: datetime) -> datetime:
        """The local wall clock at a UTC instant, standing still through a repeated hour."""
        local = moment.astimezone(self.tz)
        first_offset, offset = local.replace(fold=0).utcoffset(), local.utcoffset()
        if local.fold and first_offset is not None and offset is not None and first_offset > offset:
            # Second pass through a repeated hour: it ends at most one repeat (first - second offset) later.
            resumes = self._first(moment, moment + (first_offset - offset), lambda t: not self._local(t).fold)
            return self._local(resumes).replace(tzinfo=None)
        return local.replace(tzinfo=None)

    def _instant(self, wall: datetime) -> datetime:
        """The earliest UTC instant whose `_wall` has reached `wall`."""
        moment = wall.replace(tzinfo=self.tz, fold=0).astimezone(UTC)
        if self._local(moment).replace(tzinfo=None) != wall:
            # A skipped hour: the wall clock reaches `wall` when it jumps past it.
            other = wall.replace(tzinfo=self.tz, fold=1).astimezone(UTC)
            before, after = min(moment, other), max(moment, other)
            offset = self._local(before).utcoffset()
            return self._first(before, after, lambda t: self._local(t).utcoffset() != offset)
        just_before = self._local(moment - _TICK)
        first_offset, offset = just_before.replace(fold=0).utcoffset(), just_before.utcoffset()
        if just_before.fold and first_offset is not None and offset is not None and first_offset > offset:
            # `wall` ends a repeated hour, and the clock stood at it through the whole second pass.
            return moment - (first_offset - offset)
        return moment

    def _local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.tz)

    @staticmethod
    def _first(low: datetime, high: datetime, reached: Callable[[datetime], bool]) -> datetime:
        """The first whole UTC second in (low, high] at which `reached` holds (false at `low`, true
        at `high`): zone transitions fall on whole seconds, and this runs only around them."""
        lo, hi = math.floor(low.timestamp()), math.ceil(high.timestamp())
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if reached(datetime.fromtimestamp(mid, UTC)):
                hi = mid
            else:
                lo = mid
        return datetime.fromtimestamp(hi, UTC)
