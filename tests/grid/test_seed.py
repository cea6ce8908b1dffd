"""The demo city's grid management: a layer that imports cleanly, and a case in every state."""

from __future__ import annotations

from typing import Any

from grid import seed as grid_seed
from grid.geo import parse_grids
from onewindow.db import Connection
from onewindow.settings import Settings


def test_the_demo_layer_is_valid_and_has_sixteen_grids_in_four_communities() -> None:
    grids = parse_grids(grid_seed.layer_document())
    assert len(grids) == 16
    assert {g.community for g in grids} == {"riverside-1", "riverside-2", "hillside-1", "hillside-2"}
    assert {g.street for g in grids} == {"riverside", "hillside"}
    assert all(150 <= g.households <= 260 for g in grids)


async def test_seeding_twice_gives_cases_in_every_state_once(
    conn: Connection, settings: Settings, city: Any
) -> None:
    await grid_seed.seed_demo(conn, settings)
    await grid_seed.seed_demo(conn, settings)
    statuses = {row["status"] for row in await conn.fetch("SELECT DISTINCT status FROM grid.cases")}
    assert statuses == {
        "registering",
        "dispatching",
        "handling",
        "verifying",
        "closing",
        "evaluating",
        "closed",
        "rejected",
        "duplicate",
    }
    assert await conn.fetchval("SELECT count(*) FROM grid.cases") == 11
    assert await conn.fetchval("SELECT max(rework_count) FROM grid.cases") == 1
    assert await conn.fetchval("SELECT count(*) FROM grid.categories") == len(grid_seed.CATEGORIES)
