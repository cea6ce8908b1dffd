#!/usr/bin/env python3
"""bench/grid_kpis.py: the grid KPI query (grid.kpis.kpis) on a year of generated cases.

Usage: DATABASE_URL=postgresql://... .venv/bin/python bench/grid_kpis.py [--cases 1000000] [--runs 50]
           [--seed 1] [--keep]

Creates a scratch database on the server of DATABASE_URL (dropped afterwards unless --keep),
applies the migrations, fills it with `load()` (20,000 grids over 2 districts x 10 streets x 100
communities, 20 categories over 6 departments, N cases reported over the last 365 days, written
with COPY), runs VACUUM ANALYZE, then times `kpis()` for every level over the whole year and
over the last 30 days, and as the HTTP layer asks for a street's or a community's supervisor
(`within=[street]` at grid and community level, `within=[community]` at grid level) and a
department's officer (`within=[department]` at street level), over the whole year: each
`--runs` times after one warm-up run; it prints p50 / p95 / max, the rows and the cases counted.

The case mix, as the loop leaves it (grid/case_loop.yaml): about 4 % rejected at registration,
4 % linked as duplicates of a recent case (status 'closed' with their primary's closed_at once
it has closed, else 'duplicate'), 5 % stuck open somewhere in the loop, the rest run to their
end (open only when reported in the last days); of the handled ones about 10 % late and 8 %
reworked. Sources: 60 % grid workers, 30 % citizens, 10 % the command centre; 2 % of the cases
have an address only (no grid).

`load()` (and the `generate_*` functions under it) can be imported to fill any migrated
database, e.g. for another benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grid.kpis import KpiReport, Level, kpis
from onewindow.db import Connection, connect
from onewindow.migrate import migrate

DEPARTMENTS = ("city-management", "sanitation", "roads", "water", "parks", "market")
SOURCES = ("worker",) * 6 + ("citizen",) * 3 + ("command_centre",)
OPEN_STATUSES = ("registering", "dispatching", "handling", "verifying", "closing", "evaluating")
CASE_COLUMNS = (
    "id", "number", "source", "reporter", "category", "department", "severity", "grid_code",
    "community", "street", "district", "lat", "lon", "address", "description", "status",
    "duplicate_of", "dispatched_to", "rework_count", "reported_at", "register_due_at",
    "registered_at", "dispatched_at", "handle_due_at", "handled_at", "closed_at", "rating",
    "created_at", "updated_at",
)  # fmt: skip
GRID_COLUMNS = ("code", "name", "community", "street", "district", "households", "geometry", "unit_path")
CATEGORY_COLUMNS = (
    "code", "kind", "name_zh", "name_en", "department", "register_limit", "handle_limit",
    "severity", "updated_by",
)  # fmt: skip
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Grid:
    code: str
    community: str
    street: str
    district: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Category:
    code: str
    department: str
    severity: str
    handle_hours: int


def generate_grids(count: int = 20_000, *, districts: int = 2, streets: int = 10) -> list[Grid]:
    """`count` grids: `districts` x `streets` streets, 100 communities per street, the grids
    shared evenly among the communities (10 each for 20,000). Each is a 100 m square."""
    communities = districts * streets * 100
    per_community = max(1, -(-count // communities))
    grids: list[Grid] = []
    for n in range(count):
        c = n // per_community
        d, s, k = c // (streets * 100), (c // 100) % streets, c % 100
        district = f"d{d + 1}"
        street = f"{district}-s{s + 1:02d}"
        community = f"{street}-c{k + 1:03d}"
        lat = 13.0 + (n // 200) * 0.001
        lon = 80.0 + (n % 200) * 0.001
        grids.append(Grid(f"{community}-g{n % per_community + 1:02d}", community, street, district, lat, lon))
    return grids


def generate_categories(count: int = 20) -> list[Category]:
    """`count` categories over the six departments; handle limits of 24 or 72 hours."""
    severities = ("low", "normal", "high", "urgent")
    return [
        Category(
            f"cat-{n + 1:02d}", DEPARTMENTS[n % len(DEPARTMENTS)], severities[n % 4], 24 if n % 3 else 72
        )
        for n in range(count)
    ]


def _grid_record(grid: Grid) -> tuple[Any, ...]:
    d = 0.0009
    ring = [
        [grid.lon, grid.lat],
        [grid.lon + d, grid.lat],
        [grid.lon + d, grid.lat + d],
        [grid.lon, grid.lat + d],
        [grid.lon, grid.lat],
    ]
    geometry = {"type": "Polygon", "coordinates": [ring]}
    path = f"bench/{grid.district}/{grid.street}/{grid.community}/{grid.code}"
    return (grid.code, f"Grid {grid.code}", grid.community, grid.street, grid.district, 200, geometry, path)


def _category_record(category: Category) -> tuple[Any, ...]:
    limit = f"PT{category.handle_hours}H" if category.handle_hours == 24 else "P3D"
    return (
        category.code, "event", f"类别{category.code}", f"Category {category.code}",
        category.department, "PT2H", limit, category.severity, "bench",
    )  # fmt: skip


@dataclass(slots=True)
class _Loop:
    """Where a case's loop stands: its status and the times it has reached."""

    status: str = "closed"
    registered: datetime | None = None
    dispatched: datetime | None = None
    dispatched_to: str | None = None
    handle_due: datetime | None = None
    handled: datetime | None = None
    closed: datetime | None = None
    rework: int = 0
    rating: int | None = None


def _run_loop(rng: random.Random, reported: datetime, category: Category, now: datetime) -> _Loop:
    """A registered case through its loop: about 10 % handled late, 8 % reworked, 5.5 % stuck
    open (and open anyway while the loop has not reached `now`)."""
    registered = reported + MINUTE * (5 + rng.random() * 115)
    loop = _Loop(registered=registered)
    dispatched = registered + MINUTE * (5 + rng.random() * 115)
    handle_due = dispatched + HOUR * category.handle_hours
    share = 1.05 + rng.random() * 2 if rng.random() < 0.1 else 0.05 + rng.random() * 0.9
    handled = dispatched + HOUR * (category.handle_hours * share)
    if rng.random() < 0.08:
        loop.rework = 1 if rng.random() < 0.75 else 2
    closed = handled + HOUR * (1 + rng.random() * 23)
    stuck = rng.random() < 0.055
    if not stuck and closed <= now:
        loop.closed, loop.rating = closed, 1 + int(rng.random() * 5)
    elif not stuck and handled <= now:
        loop.status = "evaluating"
    elif dispatched <= now:
        loop.status = "handling"
    elif registered <= now:
        loop.status = "dispatching"
        return loop
    else:
        return _Loop(status="registering")
    loop.dispatched, loop.handle_due = dispatched, handle_due
    loop.dispatched_to = "department" if rng.random() < 0.6 else "worker"
    if loop.status in ("closed", "evaluating"):
        loop.handled = handled
    return loop


def generate_cases(
    rng: random.Random, count: int, grids: Sequence[Grid], categories: Sequence[Category], now: datetime
) -> Iterator[tuple[Any, ...]]:
    """`count` case rows (CASE_COLUMNS) reported over the 365 days before `now`, in the order
    they were reported (as the table fills in production)."""
    year = 365 * 86400.0
    offsets = sorted(rng.random() * year for _ in range(count))
    ids: list[uuid.UUID] = []
    closed_at: list[datetime | None] = []
    can_be_primary: list[bool] = []  # neither rejected nor itself a duplicate
    for n, offset in enumerate(reversed(offsets)):
        reported = now - timedelta(seconds=offset)
        case_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        category = categories[int(len(categories) * rng.random() ** 1.3)]
        source = SOURCES[int(rng.random() * len(SOURCES))]
        grid = None if rng.random() < 0.02 else grids[int(len(grids) * rng.random() ** 1.5)]
        duplicate_of = None
        u = rng.random()
        primary = max(0, n - 1 - int(rng.random() * 200)) if n else -1
        if u < 0.04:
            loop = _Loop(status="rejected", closed=reported + MINUTE * (10 + rng.random() * 170))
        elif u < 0.08 and primary >= 0 and can_be_primary[primary]:
            # Linked at registration; closes with its primary (open while that is open).
            duplicate_of = ids[primary]
            primary_at = closed_at[primary]
            if primary_at is not None and primary_at > reported:
                loop = _Loop(closed=primary_at)
            else:
                loop = _Loop(status="duplicate")
        else:
            loop = _run_loop(rng, reported, category, now)
        ids.append(case_id)
        closed_at.append(loop.closed if loop.status == "closed" else None)
        can_be_primary.append(duplicate_of is None and loop.status != "rejected")
        times = (reported, loop.registered, loop.dispatched, loop.handled, loop.closed)
        changed = max(t for t in times if t is not None)
        yield (
            case_id, f"GC-B-{n + 1:07d}", source, f"reporter-{int(rng.random() * 5000)}",
            category.code, category.department, category.severity,
            grid.code if grid else None, grid.community if grid else None,
            grid.street if grid else None, grid.district if grid else None,
            grid.lat + rng.random() * 0.0009 if grid else None,
            grid.lon + rng.random() * 0.0009 if grid else None,
            None if grid else f"{int(rng.random() * 900) + 1} Anna Salai",
            f"Bench case {n + 1}: {category.code} reported by {source}",
            loop.status, duplicate_of, loop.dispatched_to, loop.rework, reported, reported + 2 * HOUR,
            loop.registered, loop.dispatched, loop.handle_due, loop.handled, loop.closed, loop.rating,
            reported + MINUTE * rng.random(), changed,
        )  # fmt: skip


def _batches(rows: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def load(
    conn: Connection,
    *,
    cases: int = 1_000_000,
    grids: int = 20_000,
    categories: int = 20,
    seed: int = 1,
    now: datetime | None = None,
) -> tuple[list[Grid], list[Category]]:
    """Fill a migrated database (grid schema empty) with grids, categories and `cases` cases
    reported over the 365 days before `now`; then VACUUM ANALYZE the tables."""
    rng = random.Random(seed)  # noqa: S311 - reproducible bench data, not secrets
    now = now or datetime.now(UTC)
    grid_list = generate_grids(grids)
    category_list = generate_categories(categories)
    await conn.copy_records_to_table(
        "grids", schema_name="grid", columns=GRID_COLUMNS, records=[_grid_record(g) for g in grid_list]
    )
    await conn.copy_records_to_table(
        "categories",
        schema_name="grid",
        columns=CATEGORY_COLUMNS,
        records=[_category_record(c) for c in category_list],
    )
    for batch in _batches(generate_cases(rng, cases, grid_list, category_list, now), 100_000):
        await conn.copy_records_to_table("cases", schema_name="grid", columns=CASE_COLUMNS, records=batch)
    await conn.execute("SELECT setval('grid.case_numbers', $1)", max(cases, 1))
    await conn.execute("VACUUM ANALYZE grid.grids, grid.categories, grid.cases")
    return grid_list, category_list


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _summary(label: str, samples: list[float], report: KpiReport) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return (
        f"{label:<42} p50 {statistics.median(ordered):7.1f} ms  p95 {p95:7.1f} ms"
        f"  max {ordered[-1]:7.1f} ms  {len(report.rows):6,} rows  {report.total.reported:9,} cases"
    )


async def _time(
    conn: Connection,
    runs: int,
    *,
    level: Level,
    start: datetime,
    end: datetime,
    within: Sequence[str] | None = None,
) -> tuple[list[float], KpiReport]:
    report = await kpis(conn, level=level, start=start, end=end, within=within)  # warm-up
    samples: list[float] = []
    for _ in range(runs):
        began = time.perf_counter()
        report = await kpis(conn, level=level, start=start, end=end, within=within)
        samples.append((time.perf_counter() - began) * 1000)
    return samples, report


async def bench(admin_url: str, *, cases: int, runs: int, seed: int, keep: bool) -> None:
    name = f"onewindow_bench_kpis_{os.getpid()}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _with_database(admin_url, name)
    try:
        conn = await connect(url)
        try:
            await migrate(conn)
            server = await conn.fetchval("SHOW server_version")
            began = time.perf_counter()
            now = datetime.now(UTC).replace(microsecond=0)
            grids, _ = await load(conn, cases=cases, seed=seed, now=now)
            generated = time.perf_counter() - began
            size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('grid.cases'))")
            print(f"PostgreSQL {server}; database {name}")
            print(f"generated and loaded {cases:,} cases, {len(grids):,} grids in {generated:.1f} s")
            print(f"grid.cases with its indexes: {size}")
            year_start, month_start = now - timedelta(days=365), now - timedelta(days=30)
            street = grids[0].street
            levels: tuple[Level, ...] = ("grid", "community", "street", "department")
            for level in levels:
                samples, report = await _time(conn, runs, level=level, start=year_start, end=now)
                print(_summary(f"{level}, 365 days", samples, report), flush=True)
            for level in levels:
                samples, report = await _time(conn, runs, level=level, start=month_start, end=now)
                print(_summary(f"{level}, 30 days", samples, report), flush=True)
            scoped: tuple[tuple[Level, str], ...] = (
                ("grid", street),
                ("community", street),
                ("grid", grids[0].community),
                ("street", DEPARTMENTS[0]),
            )
            for level, unit in scoped:
                samples, report = await _time(
                    conn, runs, level=level, start=year_start, end=now, within=[unit]
                )
                print(_summary(f"{level}, 365 days, within {unit}", samples, report), flush=True)
        finally:
            await conn.close()
    finally:
        if keep:
            print(f"kept {url}")
        else:
            admin = await asyncpg.connect(admin_url)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database (its URL is printed)")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.exit("grid_kpis: set DATABASE_URL to a PostgreSQL server (a scratch database is created on it)")
    asyncio.run(bench(url, cases=args.cases, runs=args.runs, seed=args.seed, keep=args.keep))


if __name__ == "__main__":
    main()
