"""Grid KPIs for the operations centre's dashboards: per grid, community, street or department,
over a period, exactly, in one statement over `grid.cases`.

The cohort: the cases *reported* in ``[start, end)`` (``reported_at``), counted as they stand now
(a case reported in March and closed in May counts as closed in March's figures once May has
come). Every figure of a row is over that row's part of the cohort:

- ``unit``: the case's ``grid_code``, ``community``, ``street`` or ``department`` (the copies the
  case took from its grid when it was located, so a later grid import does not move old cases).
  ``None`` gathers the cases with no grid (located by an address only); the department is never
  ``None``. Rows are sorted by unit in code point order, the ``None`` row last.
- ``reported``: every case of the cohort, whatever became of it (rejected and duplicates too);
  ``reported_by_source`` splits it by source and always has the three keys ``worker``,
  ``citizen``, ``command_centre``.
- A *case of its own* is one not linked as a duplicate (``duplicate_of IS NULL``). A duplicate is
  counted as reported only: linked at registration, it ends its own loop there, and once the
  case it duplicates closes it is stored as ``closed`` with the same ``closed_at``; counting it
  again would count one problem twice. Every figure below is over cases of their own.
- ``registered``: cases of their own with ``registered_at`` set and a status other than
  ``rejected`` (the command centre accepted them as valid cases).
- ``closed``: registered cases with status ``closed``; so ``closed <= registered`` and
  ``closure_rate = closed / registered`` (``None`` when nothing was registered).
- *handled*: cases of their own with ``handled_at`` set (a reworked case keeps counting while it
  is handled again).
- ``on_time_rate``: handled cases with ``handled_at <= handle_due_at``, over the handled cases that
  have a deadline (as ``grid.rules.on_time``: no deadline, no verdict; in practice every handled
  case has one, set at dispatch from its category's handle limit). ``None`` when there are none.
- ``rework_rate``: handled cases with ``rework_count > 0``, over handled cases (``None`` when none).
- ``avg_hours_to_close`` and ``p90_hours_to_close``: ``closed_at - reported_at`` of the closed
  cases, in hours; the p90 is exact, PostgreSQL's ``percentile_cont(0.9)`` (linear interpolation
  between the two nearest ranks: position ``0.9 * (n - 1)`` counted from 0 in ascending order).
  ``None`` when nothing is closed.
- ``total``: the same figures over the whole (filtered) cohort, computed from the cases in the
  same pass, not from the rows (its p90 is the p90 of all the closed cases, not an average of
  p90s); its ``unit`` is ``None``.

``within``: when given, only the cases whose ``grid_code``, ``community``, ``street``,
``district`` or ``department`` is one of these codes count, at every level and in the total (the
HTTP layer passes the caller's scope: a community's supervisor passes the community). An empty
sequence therefore yields no cases; ``None`` means the whole city.

The period must end after it starts and last at most 366 days; both ends must carry a UTC
offset. Failures raise ``ValidationFailed`` naming the query parameter (``query.start``,
``query.end``, ``query.level``).

Performance: bench/grid_kpis.py, 1,000,000 cases over a year, PostgreSQL 15 on a 2-vCPU VM
(p50 / p95). The statement reads the period's cases once (``cases_reported`` or a sequential scan)
and sorts them once by unit (``COLLATE "C"``: byte order, the cheapest, and the order of the rows);
its cost follows the number of cases it counts, not the size of the table:

- a community's year through ``within`` (6,000 cases, found by the GIN ``cases_units`` of
  migrations/0007_grid_kpis.sql): 12 / 14 ms (a scan of the city's year without it: ~500 ms);
- the city's last 30 days (82,000 cases): 110-145 ms / 145-205 ms at department, street and
  community level, 265 / 315 ms at grid level (19,000 rows; ~30 ms of it builds them in Python);
- a street's year (133,000 cases) ~390 / 450 ms; a department's (232,000) ~575 / 650 ms;
- the city's whole year (1,000,000 cases): 1.4-1.7 s / 1.6-1.9 s at every level.

The city's year is the known slow case, and no design kept its figures exact and made it fast:
a covering index on ``(reported_at) INCLUDE (...)`` was measured no faster (the time goes in the
executor's per-row work and the sorts, not in reading pages: the exact p90 of the city's year
alone is a sort of ~850,000 durations, 0.5-0.9 s here); and a rollup cannot carry an exact p90,
nor compress at grid level (about 50 cases per grid and year: 675,000 (month, grid, department)
cells for 1,000,000 cases), while a duration histogram per day and street would hold about one
row per closed case.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final, Literal, get_args

import asyncpg
import msgspec

from onewindow.db import Connection
from onewindow.errors import FieldError, ValidationFailed

Level = Literal["grid", "community", "street", "department"]
LEVELS: Final[tuple[Level, ...]] = get_args(Level)
MAX_PERIOD: Final = timedelta(days=366)


class KpiRow(msgspec.Struct, frozen=True, kw_only=True):
    """The figures of one unit (or of the whole cohort, in `KpiReport.total`)."""

    unit: str | None
    reported: int
    reported_by_source: dict[str, int]
    registered: int
    closed: int
    closure_rate: float | None
    on_time_rate: float | None
    rework_rate: float | None
    avg_hours_to_close: float | None
    p90_hours_to_close: float | None


class KpiReport(msgspec.Struct, frozen=True, kw_only=True):
    level: Level
    start: datetime
    end: datetime
    rows: list[KpiRow]
    total: KpiRow


# The column each level groups by: fixed names, never input.
_UNIT_COLUMN: Final[dict[Level, str]] = {
    "grid": "grid_code",
    "community": "community",
    "street": "street",
    "department": "department",
}

# One pass: the cohort's rows, sorted once by unit, feed both grouping sets (each unit, and the
# whole cohort). `duplicate_of IS NULL` is "a case of its own".
_TEMPLATE = """
WITH cohort AS (
    SELECT {unit} COLLATE "C" AS unit,
           source,
           duplicate_of IS NULL AND registered_at IS NOT NULL AND status <> 'rejected' AS registered,
           duplicate_of IS NULL AND registered_at IS NOT NULL AND status = 'closed' AS closed,
           duplicate_of IS NULL AND handled_at IS NOT NULL AS handled,
           duplicate_of IS NULL AND handled_at IS NOT NULL AND handle_due_at IS NOT NULL AS judged,
           duplicate_of IS NULL AND handled_at <= handle_due_at AS on_time,
           duplicate_of IS NULL AND handled_at IS NOT NULL AND rework_count > 0 AS reworked,
           date_part('epoch', closed_at - reported_at) / 3600 AS hours_to_close
    FROM grid.cases
    WHERE reported_at >= $1 AND reported_at < $2{within}
)
SELECT GROUPING(unit) = 1 AS is_total,
       unit,
       count(*) AS reported,
       count(*) FILTER (WHERE source = 'worker') AS by_worker,
       count(*) FILTER (WHERE source = 'citizen') AS by_citizen,
       count(*) FILTER (WHERE source = 'command_centre') AS by_command_centre,
       count(*) FILTER (WHERE registered) AS registered,
       count(*) FILTER (WHERE closed) AS closed,
       count(*) FILTER (WHERE handled) AS handled,
       count(*) FILTER (WHERE judged) AS judged,
       count(*) FILTER (WHERE on_time) AS on_time,
       count(*) FILTER (WHERE reworked) AS reworked,
       avg(hours_to_close) FILTER (WHERE closed) AS avg_hours,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY hours_to_close) FILTER (WHERE closed) AS p90_hours
FROM cohort
GROUP BY GROUPING SETS ((unit), ())
"""
# The scope filter: the same expression as the index cases_units (migrations/0007_grid_kpis.sql),
# so a small scope (a community, a grid) is found through it. NULL elements never match.
_WITHIN = """
      AND ARRAY[grid_code, community, street, district, department] && $3::text[]"""
# Constant SQL texts (asyncpg caches one prepared statement per text): per level, with and
# without the scope filter.
_SQL: Final[dict[tuple[Level, bool], str]] = {
    (level, scoped): _TEMPLATE.format(unit=column, within=_WITHIN if scoped else "")
    for level, column in _UNIT_COLUMN.items()
    for scoped in (False, True)
}


def period_errors(start: datetime, end: datetime) -> list[FieldError]:
    """What is wrong with a KPI period, as the query parameters `start` and `end`."""
    errors = [
        FieldError(pointer="", parameter=f"query.{name}", detail="must include a UTC offset")
        for name, value in (("start", start), ("end", end))
        if value.utcoffset() is None
    ]
    if errors:
        return errors
    if end <= start:
        return [FieldError(pointer="", parameter="query.end", detail="must be after start")]
    if end - start > MAX_PERIOD:
        return [FieldError(pointer="", parameter="query.end", detail="at most 366 days after start")]
    return []


def _row(record: asyncpg.Record) -> tuple[bool, KpiRow]:
    """(is it the total, the row). Read by position: faster than by name over the 20,000 rows of
    a grid-level report."""
    (is_total, unit, reported, worker, citizen, centre, registered, closed, handled, judged, on_time,
     reworked, avg_hours, p90_hours) = record  # fmt: skip
    return is_total, KpiRow(
        unit=unit,
        reported=reported,
        reported_by_source={"worker": worker, "citizen": citizen, "command_centre": centre},
        registered=registered,
        closed=closed,
        closure_rate=closed / registered if registered else None,
        on_time_rate=on_time / judged if judged else None,
        rework_rate=reworked / handled if handled else None,
        avg_hours_to_close=avg_hours,
        p90_hours_to_close=p90_hours,
    )


async def kpis(
    conn: Connection,
    *,
    level: Level,
    start: datetime,
    end: datetime,
    within: Sequence[str] | None = None,
) -> KpiReport:
    """The KPIs of the cases reported in `[start, end)`, one row per unit of `level`, and the
    total; only the cases in one of the units `within` when given (see the module docstring)."""
    if level not in _UNIT_COLUMN:
        raise ValidationFailed(
            f"Unknown level {level!r}.",
            errors=[FieldError(pointer="", parameter="query.level", detail=f"one of {', '.join(LEVELS)}")],
        )
    errors = period_errors(start, end)
    if errors:
        raise ValidationFailed("The KPI period is not valid.", errors=errors)
    if isinstance(within, str):
        raise TypeError("`within` is a sequence of unit codes, not one code")
    args: tuple[object, ...] = (start, end) if within is None else (start, end, list(within))
    # Planned with the real period and scope every time: a community's cases are best found
    # through the GIN, a department's year by a sequential scan; a month through cases_reported,
    # a year by a sequential scan. The generic plan the plan cache may settle on after five runs
    # of a prepared statement cannot tell them apart; planning takes under a millisecond.
    # SET LOCAL in a savepoint lasts until the caller's transaction ends (or this one, when the
    # caller has none): harmless to whatever else that transaction runs.
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        records = await conn.fetch(_SQL[(level, within is not None)], *args)
    rows: list[KpiRow] = []
    total: KpiRow | None = None
    for record in records:
        is_total, row = _row(record)
        if is_total:
            total = row
        else:
            rows.append(row)
    if total is None:  # GROUPING SETS with () yields the total row even over no cases
        raise RuntimeError("the KPI statement returned no total row")
    rows.sort(key=lambda row: (row.unit is None, row.unit or ""))
    return KpiReport(level=level, start=start, end=end, rows=rows, total=total)
