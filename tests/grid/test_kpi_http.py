"""The KPI endpoint: who may read it, over which units, and bad periods."""

from __future__ import annotations

from typing import Any

import httpx

from grid import seed as grid_seed
from identity.tokens import RoleGrant
from onewindow.db import Connection
from onewindow.settings import Settings
from tests.grid.conftest import WORKER, person
from workflows.api import Actor

PERIOD = {"start": "2026-09-01T00:00:00+08:00", "end": "2026-10-01T00:00:00+08:00"}
ADMIN = Actor(subject="admin-1", kind="person", roles=(RoleGrant(role="admin", unit="demo", path="demo"),))
SUPERVISOR = person("sup-1", ("supervisor", "demo/central/riverside/riverside-1"))
WATER = person("officer-water", ("officer", "demo/water"))


async def test_kpis_are_scoped_to_the_callers_units(
    http: httpx.AsyncClient, bearer: Any, conn: Connection, settings: Settings
) -> None:
    await grid_seed.seed_cases(conn)  # eleven cases, all in riverside-1, reported on the test clock's day
    everything = (
        await http.get(
            "/api/v1/grid/kpis", params={**PERIOD, "level": "community"}, headers=await bearer(ADMIN)
        )
    ).json()
    assert [row["unit"] for row in everything["rows"]] == ["riverside-1"]
    assert everything["total"]["reported"] == 11
    assert everything["total"]["closed"] == 1
    assert everything["total"]["rework_rate"] is not None

    mine = (
        await http.get(
            "/api/v1/grid/kpis", params={**PERIOD, "level": "grid"}, headers=await bearer(SUPERVISOR)
        )
    ).json()
    assert {row["unit"] for row in mine["rows"]} <= {"G-0105", "G-0106", "G-0107", "G-0108"}
    assert mine["total"]["reported"] == 11
    water = (
        await http.get(
            "/api/v1/grid/kpis", params={**PERIOD, "level": "department"}, headers=await bearer(WATER)
        )
    ).json()
    assert [row["unit"] for row in water["rows"]] == ["water"]
    assert water["total"]["reported"] == 3


async def test_kpis_refuse_workers_and_bad_periods(http: httpx.AsyncClient, bearer: Any) -> None:
    worker, admin = await bearer(WORKER), await bearer(ADMIN)
    assert (await http.get("/api/v1/grid/kpis", params=PERIOD, headers=worker)).status_code == 403
    backwards = await http.get(
        "/api/v1/grid/kpis", params={"start": PERIOD["end"], "end": PERIOD["start"]}, headers=admin
    )
    assert backwards.status_code == 400
    assert backwards.headers["content-type"].startswith("application/problem+json")
    too_long = await http.get(
        "/api/v1/grid/kpis",
        params={"start": "2025-01-01T00:00:00Z", "end": "2026-06-01T00:00:00Z"},
        headers=admin,
    )
    assert too_long.status_code == 400
    assert (
        await http.get("/api/v1/grid/kpis", params={**PERIOD, "level": "planet"}, headers=admin)
    ).status_code == 400
