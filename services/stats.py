"""Statistics of one-window approvals, per approval item and per department, over a period.

The unit counted is an application *item* (a bundle of four items is four items received, each
in its department). For a period [from, to] of the city's calendar days:

- received: items of applications submitted in the period;
- decided: items approved or rejected in the period (by `decided_at`), of which approved and
  rejected; withdrawn items are neither;
- on_time: decided items decided within their promised time (`on_time`, which the review sets
  from working days with the applicant's waiting time left out); on_time_rate = on_time / decided;
- average_working_days: the mean of `working_days` (submission to decision, working days, the
  time waiting for the applicant left out) over the decided items;
- correction_rate: of the decided items, the share returned for correction at least once;
- ratings, average_rating: ratings given in the period to applications that include an item of
  the row (a bundle's rating counts for each of its items and departments).

Each grouping is one query over the items (no query per row). Rates are None when nothing was
decided, averages when there is nothing to average.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec

from identity.api import Principal, unit_path
from onewindow.db import Connection
from onewindow.errors import FieldError, Forbidden, ValidationFailed

__all__ = ["DepartmentFigures", "ItemFigures", "Statistics", "may_read", "statistics"]

# The longest period one request may ask for: the query reads every item of the period.
MAX_DAYS: Final = 366
DEFAULT_DAYS: Final = 30
# The days a period may name: a day from the first to the last whose bounds (midnight before and
# after, in the city's zone, and in UTC) every datetime can hold.
EARLIEST: Final = date(1, 1, 2)
LATEST: Final = date(9999, 12, 30)
READERS: Final = ("supervisor", "command_centre", "admin")


class Figures(msgspec.Struct, frozen=True, kw_only=True):
    received: int
    decided: int
    approved: int
    rejected: int
    on_time: int
    on_time_rate: float | None
    average_working_days: float | None
    correction_rate: float | None
    ratings: int
    average_rating: float | None


class ItemFigures(Figures, frozen=True, kw_only=True):
    item: str
    department: str
    name_zh: str | None
    name_en: str | None


class DepartmentFigures(Figures, frozen=True, kw_only=True):
    department: str


class Statistics(msgspec.Struct, frozen=True, kw_only=True):
    from_: date = msgspec.field(name="from")
    to: date
    items: list[ItemFigures]
    departments: list[DepartmentFigures]


# {key} is a column name chosen below from two constants, never from input.
_QUERY: Final = """
WITH scope AS (
    SELECT ai.application_id, ai.item_code, ai.department, ai.status, ai.decided_at, ai.working_days,
           ai.on_time, ai.corrections, a.submitted_at,
           ai.status IN ('approved', 'rejected') AND ai.decided_at >= $1 AND ai.decided_at < $2 AS decided
    FROM services.application_items ai
    JOIN services.applications a ON a.id = ai.application_id
    WHERE a.submitted_at IS NOT NULL
      AND ($3::text[] IS NULL OR ai.department = ANY($3))
      AND ($4::text IS NULL OR ai.department = $4)
      AND ($5::text IS NULL OR ai.item_code = $5)
),
figures AS (
    SELECT {key} AS key, min(department) AS department,
           count(*) FILTER (WHERE submitted_at >= $1 AND submitted_at < $2) AS received,
           count(*) FILTER (WHERE decided) AS decided,
           count(*) FILTER (WHERE decided AND status = 'approved') AS approved,
           count(*) FILTER (WHERE decided AND status = 'rejected') AS rejected,
           count(*) FILTER (WHERE decided AND on_time) AS on_time,
           avg(working_days) FILTER (WHERE decided)::float8 AS average_working_days,
           count(*) FILTER (WHERE decided AND corrections > 0) AS corrected
    FROM scope GROUP BY {key}
),
rated AS (
    SELECT s.key, count(*) AS ratings, avg(r.level)::float8 AS average_rating
    FROM (SELECT DISTINCT application_id, {key} AS key FROM scope) s
    JOIN services.ratings r ON r.application_id = s.application_id
    WHERE r.rated_at >= $1 AND r.rated_at < $2
    GROUP BY s.key
)
SELECT f.key, f.department, f.received, f.decided, f.approved, f.rejected, f.on_time,
       f.average_working_days, f.corrected, coalesce(r.ratings, 0) AS ratings, r.average_rating,
       i.name_zh, i.name_en
FROM figures f
LEFT JOIN rated r ON r.key = f.key
LEFT JOIN services.items i ON i.code = f.key AND $6
WHERE f.received > 0 OR f.decided > 0 OR r.ratings > 0
ORDER BY f.key
"""
_BY_ITEM: Final = _QUERY.replace("{key}", "item_code")
_BY_DEPARTMENT: Final = _QUERY.replace("{key}", "department")


def _figures(record: Any) -> dict[str, Any]:
    decided: int = record["decided"]
    return {
        "received": record["received"],
        "decided": decided,
        "approved": record["approved"],
        "rejected": record["rejected"],
        "on_time": record["on_time"],
        "on_time_rate": round(record["on_time"] / decided, 4) if decided else None,
        "average_working_days": (
            round(record["average_working_days"], 2) if record["average_working_days"] is not None else None
        ),
        "correction_rate": round(record["corrected"] / decided, 4) if decided else None,
        "ratings": record["ratings"],
        "average_rating": round(record["average_rating"], 2)
        if record["average_rating"] is not None
        else None,
    }


def may_read(principal: Principal) -> None:
    """403 unless the caller is a supervisor, of the command centre or an admin: checked before
    anything of the request is read (the route's guard, and `statistics` again)."""
    if not any(principal.has_role(role) for role in READERS):
        raise Forbidden(
            "Statistics are for supervisors (of their departments), the command centre and admins."
        )


async def visible_departments(conn: Connection, principal: Principal) -> list[str] | None:
    """The departments whose figures the caller may see: None for all (admin, command centre),
    the departments a supervisor oversees, else 403."""
    may_read(principal)
    if principal.has_role("admin") or principal.has_role("command_centre"):
        return None
    departments = await conn.fetch("SELECT DISTINCT department FROM services.application_items")
    seen: list[str] = []
    for record in departments:
        path = await unit_path(conn, record["department"])
        if path is not None and principal.has_role("supervisor", within=path):
            seen.append(record["department"])
    return seen


def period(start: date | None, end: date | None, *, today: date) -> tuple[date, date]:
    """The period asked for: both ends included; by default the 30 days up to today. Each end
    must be a day whose midnight, in any time zone, is a time PostgreSQL and Python can hold
    (400 otherwise, never an overflow)."""
    outside = [
        FieldError(pointer="", parameter=f"query.{name}", detail=f"must be from {EARLIEST} to {LATEST}")
        for name, day in (("from", start), ("to", end))
        if day is not None and not EARLIEST <= day <= LATEST
    ]
    if outside:
        raise ValidationFailed("The period is not valid.", errors=outside)
    end = end or today
    if start is None:
        if (end - EARLIEST).days < DEFAULT_DAYS - 1:
            raise ValidationFailed(
                "The period is not valid.",
                errors=[
                    FieldError(pointer="", parameter="query.from", detail="required this early: give it")
                ],
            )
        start = end - timedelta(days=DEFAULT_DAYS - 1)
    errors = []
    if start > end:
        errors.append(FieldError(pointer="", parameter="query.from", detail="must not be after `to`"))
    elif (end - start).days + 1 > MAX_DAYS:
        errors.append(FieldError(pointer="", parameter="query.from", detail=f"at most {MAX_DAYS} days"))
    if errors:
        raise ValidationFailed("The period is not valid.", errors=errors)
    return start, end


async def statistics(
    conn: Connection,
    principal: Principal,
    *,
    start: date | None,
    end: date | None,
    department: str | None,
    item: str | None,
    now: datetime,
    timezone: str,
) -> Statistics:
    zone = ZoneInfo(timezone)
    allowed = await visible_departments(conn, principal)  # 403 before anything of the request
    start, end = period(start, end, today=now.astimezone(zone).date())
    if allowed is not None and department is not None and department not in allowed:
        raise Forbidden(f"You do not oversee the department {department}.")
    lower = datetime.combine(start, time.min, tzinfo=zone)
    upper = datetime.combine(end + timedelta(days=1), time.min, tzinfo=zone)
    by_item = await conn.fetch(_BY_ITEM, lower, upper, allowed, department, item, True)
    by_department = await conn.fetch(_BY_DEPARTMENT, lower, upper, allowed, department, item, False)
    return Statistics(
        from_=start,
        to=end,
        items=[
            ItemFigures(
                item=r["key"],
                department=r["department"],
                name_zh=r["name_zh"],
                name_en=r["name_en"],
                **_figures(r),
            )
            for r in by_item
        ],
        departments=[DepartmentFigures(department=r["key"], **_figures(r)) for r in by_department],
    )
