"""grid.kpis against figures worked out by hand.

Fourteen cases written with SQL (the loop's own code is not needed to count them), March 2030:

    case grid  comm street dept  source  status      dup  reg handled  due      rework closes after
    c01  g-a1  c-a  s-1    roads worker  closed      -    yes +3 h     +24 h    0      4 h   (at `start`)
    c02  g-a1  c-a  s-1    san.  citizen closed      -    yes +8 h     +6 h (late) 1   10 h
    c03  g-a2  c-a  s-1    roads worker  closed      -    yes +1 h     +24 h    0      2 h
    c04  g-a2  c-a  s-1    roads centre  closed      -    yes +5 h     +24 h    0      6 h
    c05  g-b1  c-b  s-1    san.  citizen rejected    -    no  -        -        0      -
    c06  g-b1  c-b  s-1    roads worker  duplicate   c07  yes -        -        0      -
    c07  g-b1  c-b  s-1    roads worker  handling    -    yes - (rework, not yet handled) 1  -
    c08  g-b1  c-b  s-1    san.  citizen closed      c01  no  -        -        0      (with c01)
    c09  g-c1  c-c  s-2    san.  worker  verifying   -    yes +30 h    +24 h (late) 2   -
    c10  -     -    -      roads citizen closed      -    yes +12 h    +24 h    0      20 h  (address only)
    c11  g-c1  c-c  s-2    roads worker  closed      -    yes +7 h     none     0      8 h
    c13  g-c1  c-c  s-2    san.  centre  registering -    no  -        -        0      -
    c12  reported exactly at `end`, c14 a second before `start`: outside the period.

Grids g-a1, g-a2 (community c-a), g-b1 (c-b) are in street s-1, g-c1 (c-c) in s-2; all in
district d-1.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from grid.kpis import KpiReport, KpiRow, kpis
from onewindow.db import Connection
from onewindow.errors import ValidationFailed

START = datetime(2030, 3, 1, tzinfo=UTC)
END = datetime(2030, 4, 1, tzinfo=UTC)
H = timedelta(hours=1)

GRIDS = {
    "g-a1": ("c-a", "s-1"),
    "g-a2": ("c-a", "s-1"),
    "g-b1": ("c-b", "s-1"),
    "g-c1": ("c-c", "s-2"),
}
CATEGORIES = {"kpi-pothole": "roads", "kpi-litter": "sanitation"}


async def make_grid(conn: Connection, code: str, community: str, street: str) -> None:
    square = [[80.0, 13.0], [80.001, 13.0], [80.001, 13.001], [80.0, 13.001], [80.0, 13.0]]
    await conn.execute(
        "INSERT INTO grid.grids (code, name, community, street, district, households, geometry, unit_path)"
        " VALUES ($1, $1, $2, $3, 'd-1', 100, $4, $5)",
        code,
        community,
        street,
        {"type": "Polygon", "coordinates": [square]},
        f"kpi/d-1/{street}/{community}/{code}",
    )


async def make_category(conn: Connection, code: str, department: str) -> None:
    await conn.execute(
        "INSERT INTO grid.categories (code, kind, name_zh, name_en, department, register_limit,"
        " handle_limit, severity, updated_by) VALUES ($1, 'event', $1, $1, $2, 'PT2H', 'PT24H', 'normal', 'test')",
        code,
        department,
    )


async def make_case(
    conn: Connection,
    number: str,
    *,
    reported_at: datetime,
    grid: str | None,
    category: str,
    source: str,
    status: str,
    registered: bool = True,
    duplicate_of: uuid.UUID | None = None,
    handled_after: float | None = None,
    due_after: float | None = None,
    closed_after: float | None = None,
    closed_at: datetime | None = None,
    rework_count: int = 0,
) -> uuid.UUID:
    """A case as its loop would leave it; times are hours after `reported_at`."""
    community, street = GRIDS[grid] if grid else (None, None)

    def after(hours: float | None) -> datetime | None:
        return None if hours is None else reported_at + hours * H

    case_id: uuid.UUID = await conn.fetchval(
        """
        INSERT INTO grid.cases (number, source, reporter, category, department, severity, grid_code,
            community, street, district, lat, lon, address, description, status, duplicate_of,
            rework_count, reported_at, register_due_at, registered_at, dispatched_at, handle_due_at,
            handled_at, closed_at)
        VALUES ($1, $2, 'someone', $3, $4, 'normal', $5, $6, $7, $8, $9, $9, $10, 'KPI test case', $11,
            $12, $13, $14, $15, $16, $17, $18, $19, $20)
        RETURNING id
        """,
        f"KPI-{number}",
        source,
        category,
        CATEGORIES[category],
        grid,
        community,
        street,
        "d-1" if grid else None,
        13.0005 if grid else None,
        None if grid else "12 Anna Salai",
        status,
        duplicate_of,
        rework_count,
        reported_at,
        reported_at + 2 * H,
        after(0.5) if registered else None,
        after(1) if due_after is not None else None,
        after(due_after),
        after(handled_after),
        closed_at or after(closed_after),
    )
    return case_id


@pytest.fixture
async def cases(conn: Connection) -> None:
    for code, (community, street) in GRIDS.items():
        await make_grid(conn, code, community, street)
    for code, department in CATEGORIES.items():
        await make_category(conn, code, department)
    pothole, litter = "kpi-pothole", "kpi-litter"
    day = START.replace
    c01 = await make_case(
        conn, "c01", reported_at=START, grid="g-a1", category=pothole, source="worker", status="closed",
        handled_after=3, due_after=24, closed_after=4,
    )  # fmt: skip
    await make_case(
        conn, "c02", reported_at=day(day=2, hour=8), grid="g-a1", category=litter, source="citizen",
        status="closed", handled_after=8, due_after=6, closed_after=10, rework_count=1,
    )  # fmt: skip
    await make_case(
        conn, "c03", reported_at=day(day=3, hour=9), grid="g-a2", category=pothole, source="worker",
        status="closed", handled_after=1, due_after=24, closed_after=2,
    )  # fmt: skip
    await make_case(
        conn, "c04", reported_at=day(day=4, hour=10), grid="g-a2", category=pothole,
        source="command_centre", status="closed", handled_after=5, due_after=24, closed_after=6,
    )  # fmt: skip
    await make_case(
        conn, "c05", reported_at=day(day=5), grid="g-b1", category=litter, source="citizen",
        status="rejected", registered=False, closed_after=1,
    )  # fmt: skip
    c07 = await make_case(
        conn, "c07", reported_at=day(day=6), grid="g-b1", category=pothole, source="worker",
        status="handling", due_after=24, rework_count=1,
    )  # fmt: skip
    # Linked at registration (registered_at set, as a store might): still not a case of its own.
    await make_case(
        conn, "c06", reported_at=day(day=6, hour=2), grid="g-b1", category=pothole, source="worker",
        status="duplicate", duplicate_of=c07,
    )  # fmt: skip
    # A duplicate of c01, closed with it (3 hours after its own report): not counted as closed.
    await make_case(
        conn, "c08", reported_at=START + H, grid="g-b1", category=litter, source="citizen",
        status="closed", registered=False, duplicate_of=c01, closed_at=START + 4 * H,
    )  # fmt: skip
    await make_case(
        conn, "c09", reported_at=day(day=8), grid="g-c1", category=litter, source="worker",
        status="verifying", handled_after=30, due_after=24, rework_count=2,
    )  # fmt: skip
    await make_case(
        conn, "c10", reported_at=day(day=9), grid=None, category=pothole, source="citizen",
        status="closed", handled_after=12, due_after=24, closed_after=20,
    )  # fmt: skip
    # Handled with no deadline: no on-time verdict either way.
    await make_case(
        conn, "c11", reported_at=day(day=10), grid="g-c1", category=pothole, source="worker",
        status="closed", handled_after=7, closed_after=8,
    )  # fmt: skip
    await make_case(
        conn, "c12", reported_at=END, grid="g-a1", category=pothole, source="worker", status="closed",
        handled_after=1, due_after=24, closed_after=2,
    )  # fmt: skip
    await make_case(
        conn, "c13", reported_at=day(day=31, hour=23), grid="g-c1", category=litter,
        source="command_centre", status="registering", registered=False,
    )  # fmt: skip
    await make_case(
        conn, "c14", reported_at=START - timedelta(seconds=1), grid="g-a1", category=litter,
        source="citizen", status="closed", handled_after=1, due_after=24, closed_after=2,
    )  # fmt: skip


def row(
    unit: str | None,
    reported: int,
    by_source: tuple[int, int, int],
    registered: int,
    closed: int,
    closure_rate: float | None,
    on_time_rate: float | None,
    rework_rate: float | None,
    avg_hours: float | None,
    p90_hours: float | None,
) -> KpiRow:
    """An expected row; `by_source` is (worker, citizen, command_centre)."""
    return KpiRow(
        unit=unit,
        reported=reported,
        reported_by_source=dict(zip(("worker", "citizen", "command_centre"), by_source, strict=True)),
        registered=registered,
        closed=closed,
        closure_rate=closure_rate,
        on_time_rate=on_time_rate,
        rework_rate=rework_rate,
        avg_hours_to_close=avg_hours,
        p90_hours_to_close=p90_hours,
    )


def same(actual: KpiRow, expected: KpiRow) -> bool:
    """Equal field by field; floats to 1e-9 (PostgreSQL computes them in binary floating point)."""
    for field in msgspec.structs.fields(KpiRow):
        a: Any = getattr(actual, field.name)
        e: Any = getattr(expected, field.name)
        if isinstance(e, float):
            if not (isinstance(a, float) and math.isclose(a, e, rel_tol=1e-9)):
                return False
        elif a != e:
            return False
    return True


def check(report: KpiReport, rows: list[KpiRow], total: KpiRow) -> None:
    assert [r.unit for r in report.rows] == [r.unit for r in rows]
    for actual, expected in zip(report.rows, rows, strict=True):
        assert same(actual, expected), (actual, expected)
    assert same(report.total, total), (report.total, total)


# Figures shared by several levels.
# c-a (= street s-1's cases of its own): closes after 2, 4, 6, 10 h: avg 5.5; p90 at position
# 0.9 * 3 = 2.7 between 6 and 10: 6 + 0.7 * 4 = 8.8. On time: c01, c03, c04 of 4; reworked: c02.
C_A_FIGURES = (4, (2, 1, 1), 4, 4, 1.0, 0.75, 0.25, 5.5, 8.8)
C_A = row("c-a", *C_A_FIGURES)
# g-b1 / c-b: c05 rejected, c06 and c08 duplicates, c07 open and not (re)handled yet.
B1 = ("g-b1", 4, (2, 2, 0), 1, 0, 0.0, None, None, None, None)
# g-c1 / c-c / s-2: c09 handled late and reworked, c11 closed after 8 h with no deadline, c13 not
# registered. On time: 0 of 1 judged (c09); reworked: 1 of 2 handled.
C1 = ("g-c1", 3, (2, 0, 1), 2, 1, 0.5, 0.0, 0.5, 8.0, 8.0)
# No grid: c10, closed after 20 h, on time.
NOWHERE = row(None, 1, (0, 1, 0), 1, 1, 1.0, 1.0, 0.0, 20.0, 20.0)
# All twelve in the period. Closes after 2, 4, 6, 8, 10, 20 h: avg 50 / 6; p90 at position
# 0.9 * 5 = 4.5 between 10 and 20: 15. Handled 7 (c01-c04, c09-c11), judged 6 (not c11), on time 4
# (c01, c03, c04, c10); reworked 2 (c02, c09).
TOTAL = row(None, 12, (6, 4, 2), 8, 6, 0.75, 4 / 6, 2 / 7, 50 / 6, 15.0)


@pytest.mark.usefixtures("cases")
async def test_grid_level(conn: Connection) -> None:
    report = await kpis(conn, level="grid", start=START, end=END)
    assert (report.level, report.start, report.end) == ("grid", START, END)
    check(
        report,
        [
            # Closes after 4 and 10 h: avg 7; p90 at 0.9 * 1 between them: 4 + 0.9 * 6 = 9.4.
            row("g-a1", 2, (1, 1, 0), 2, 2, 1.0, 0.5, 0.5, 7.0, 9.4),
            # 2 and 6 h: avg 4; p90 2 + 0.9 * 4 = 5.6.
            row("g-a2", 2, (1, 0, 1), 2, 2, 1.0, 1.0, 0.0, 4.0, 5.6),
            row(*B1),
            row(*C1),
            NOWHERE,
        ],
        TOTAL,
    )


@pytest.mark.usefixtures("cases")
async def test_community_level(conn: Connection) -> None:
    report = await kpis(conn, level="community", start=START, end=END)
    c_b = row("c-b", *B1[1:])
    c_c = row("c-c", *C1[1:])
    check(report, [C_A, c_b, c_c, NOWHERE], TOTAL)


@pytest.mark.usefixtures("cases")
async def test_street_level(conn: Connection) -> None:
    report = await kpis(conn, level="street", start=START, end=END)
    # s-1: c-a and c-b together; its closed cases are c-a's.
    s_1 = row("s-1", 8, (4, 3, 1), 5, 4, 0.8, 0.75, 0.25, 5.5, 8.8)
    check(report, [s_1, row("s-2", *C1[1:]), NOWHERE], TOTAL)


@pytest.mark.usefixtures("cases")
async def test_department_level(conn: Connection) -> None:
    report = await kpis(conn, level="department", start=START, end=END)
    # roads: c01, c03, c04, c06, c07, c10, c11. Closes after 4, 2, 6, 20, 8 h: avg 8; p90 at
    # 0.9 * 4 = 3.6 between 8 and 20: 8 + 0.6 * 12 = 15.2. Judged c01, c03, c04, c10, all on time.
    roads = row("roads", 7, (5, 1, 1), 6, 5, 5 / 6, 1.0, 0.0, 8.0, 15.2)
    # sanitation: c02, c05, c08, c09, c13. Registered c02, c09; closed c02 (10 h); both handled
    # late and reworked.
    sanitation = row("sanitation", 5, (1, 3, 1), 2, 1, 0.5, 0.0, 1.0, 10.0, 10.0)
    check(report, [roads, sanitation], TOTAL)


@pytest.mark.usefixtures("cases")
async def test_within_a_community(conn: Connection) -> None:
    report = await kpis(conn, level="grid", start=START, end=END, within=["c-a"])
    check(
        report,
        [
            row("g-a1", 2, (1, 1, 0), 2, 2, 1.0, 0.5, 0.5, 7.0, 9.4),
            row("g-a2", 2, (1, 0, 1), 2, 2, 1.0, 1.0, 0.0, 4.0, 5.6),
        ],
        row(None, *C_A_FIGURES),
    )


@pytest.mark.usefixtures("cases")
async def test_within_a_department_by_street(conn: Connection) -> None:
    report = await kpis(conn, level="street", start=START, end=END, within=["sanitation"])
    # s-1: c02 (closed after 10 h, late, reworked), c05 rejected, c08 a duplicate.
    s_1 = row("s-1", 3, (0, 3, 0), 1, 1, 1.0, 0.0, 1.0, 10.0, 10.0)
    # s-2: c09 (handled late, reworked, not closed), c13 not registered.
    s_2 = row("s-2", 2, (1, 0, 1), 1, 0, 0.0, 0.0, 1.0, None, None)
    check(report, [s_1, s_2], row(None, 5, (1, 3, 1), 2, 1, 0.5, 0.0, 1.0, 10.0, 10.0))


@pytest.mark.usefixtures("cases")
async def test_within_several_units_of_different_kinds(conn: Connection) -> None:
    # A grid and a street: g-a2's cases and s-2's. The district matches every located case.
    report = await kpis(conn, level="grid", start=START, end=END, within=["g-a2", "s-2"])
    assert [r.unit for r in report.rows] == ["g-a2", "g-c1"]
    assert report.total.reported == 5
    district = await kpis(conn, level="department", start=START, end=END, within=["d-1"])
    assert district.total.reported == 11  # all but c10, which has no grid
    assert [r.unit for r in district.rows] == ["roads", "sanitation"]
    # A department: its cases wherever they are, the one with no grid included.
    roads = await kpis(conn, level="grid", start=START, end=END, within=["roads"])
    assert [(r.unit, r.reported) for r in roads.rows] == [
        ("g-a1", 1),
        ("g-a2", 2),
        ("g-b1", 2),
        ("g-c1", 1),
        (None, 1),
    ]


@pytest.mark.usefixtures("cases")
@pytest.mark.parametrize("within", [[], ["nowhere"]])
async def test_within_nothing_is_nothing(conn: Connection, within: list[str]) -> None:
    report = await kpis(conn, level="street", start=START, end=END, within=within)
    assert report.rows == []
    assert same(report.total, row(None, 0, (0, 0, 0), 0, 0, None, None, None, None, None))


@pytest.mark.usefixtures("cases")
async def test_the_period_is_half_open(conn: Connection) -> None:
    # Only c12 (reported exactly at END) in [END, END + 1 day); only c14 just before START.
    after = await kpis(conn, level="grid", start=END, end=END + timedelta(days=1))
    assert [(r.unit, r.reported, r.closed) for r in after.rows] == [("g-a1", 1, 1)]
    before = await kpis(conn, level="department", start=START - timedelta(days=1), end=START)
    assert [(r.unit, r.reported) for r in before.rows] == [("sanitation", 1)]
    # A year: every case, c14 and c12 included.
    year = await kpis(conn, level="street", start=START - timedelta(days=1), end=START + timedelta(days=365))
    assert year.total.reported == 14


async def test_no_cases(conn: Connection) -> None:
    report = await kpis(conn, level="department", start=datetime(2030, 1, 1, tzinfo=UTC), end=START)
    assert report.rows == []
    assert same(report.total, row(None, 0, (0, 0, 0), 0, 0, None, None, None, None, None))


@pytest.mark.parametrize(
    ("start", "end", "parameter", "detail"),
    [
        (START, START, "query.end", "must be after start"),
        (END, START, "query.end", "must be after start"),
        (START, START + timedelta(days=366, seconds=1), "query.end", "at most 366 days after start"),
        (START.replace(tzinfo=None), END, "query.start", "must include a UTC offset"),
        (START, END.replace(tzinfo=None), "query.end", "must include a UTC offset"),
    ],
)
async def test_bad_periods(
    conn: Connection, start: datetime, end: datetime, parameter: str, detail: str
) -> None:
    with pytest.raises(ValidationFailed) as raised:
        await kpis(conn, level="grid", start=start, end=end)
    assert [(e.parameter, e.pointer, e.detail) for e in raised.value.errors] == [(parameter, "", detail)]


async def test_366_days_is_allowed(conn: Connection) -> None:
    report = await kpis(conn, level="street", start=START, end=START + timedelta(days=366))
    assert report.rows == []


async def test_unknown_level(conn: Connection) -> None:
    with pytest.raises(ValidationFailed) as raised:
        await kpis(conn, level="district", start=START, end=END)  # type: ignore[arg-type]
    assert [e.parameter for e in raised.value.errors] == ["query.level"]


async def test_within_one_code_is_a_mistake(conn: Connection) -> None:
    with pytest.raises(TypeError):
        await kpis(conn, level="grid", start=START, end=END, within="c-a")
