"""The grid layer over HTTP: import (atomic, every problem listed), re-import with history,
export, locate, and every process seeing a new layer."""

from __future__ import annotations

import copy
from typing import Any

import httpx

from grid import layer
from grid import seed as grid_seed
from onewindow.db import Connection
from tests.grid.conftest import WORKER
from tests.workflows.conftest import Clock
from workflows.api import Actor


async def admin_headers(bearer: Any) -> dict[str, str]:
    from identity.tokens import RoleGrant  # noqa: PLC0415

    return dict(
        await bearer(
            Actor(
                subject="admin-1", kind="person", roles=(RoleGrant(role="admin", unit="demo", path="demo"),)
            )
        )
    )


async def test_an_import_with_defects_lists_every_problem_and_writes_nothing(
    http: httpx.AsyncClient, bearer: Any, conn: Connection
) -> None:
    admin = await admin_headers(bearer)
    document = grid_seed.layer_document()
    features = document["features"]
    before = await conn.fetchval("SELECT version FROM grid.layer")
    features[1]["properties"]["code"] = "market"  # a department's code
    features[2]["geometry"]["coordinates"][0][1] = [200.0, 38.4]  # out of range
    features[3]["properties"]["households"] = -5
    features[4]["geometry"] = {"type": "Point", "coordinates": [106.27, 38.47]}
    reply = await http.post("/api/v1/grid/grids/import", json=document, headers=admin)
    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    pointers = {e["pointer"] for e in reply.json()["errors"]}
    assert pointers == {
        "/features/2/geometry/coordinates/0/1",
        "/features/3/properties/households",
        "/features/4/geometry/type",
    }
    assert await conn.fetchval("SELECT version FROM grid.layer") == before
    assert await conn.fetchval("SELECT count(*) FROM grid.grids WHERE code = 'market'") == 0


async def test_a_grid_code_that_is_already_another_unit_is_refused(
    http: httpx.AsyncClient, bearer: Any
) -> None:
    admin = await admin_headers(bearer)
    document = grid_seed.layer_document()
    document["features"][1]["properties"]["code"] = "market"
    reply = await http.post("/api/v1/grid/grids/import", json=document, headers=admin)
    assert reply.status_code == 400
    assert [e["pointer"] for e in reply.json()["errors"]] == ["/features/1/properties/code"]


async def test_reimport_updates_in_place_retires_and_keeps_history(
    http: httpx.AsyncClient, bearer: Any, conn: Connection, clock: Clock
) -> None:
    admin, worker = await admin_headers(bearer), await bearer(WORKER)
    document = grid_seed.layer_document()
    same = await http.post("/api/v1/grid/grids/import", json=document, headers=admin)
    assert same.status_code == 200, same.text
    assert (same.json()["created"], same.json()["updated"], same.json()["retired"]) == ([], [], [])
    assert same.json()["unchanged"] == 16

    changed = copy.deepcopy(document)
    changed["features"] = [f for f in changed["features"] if f["properties"]["code"] != "G-0404"]
    changed["features"][0]["properties"]["households"] = 999
    clock.advance(minutes=1)
    reply = (await http.post("/api/v1/grid/grids/import", json=changed, headers=admin)).json()
    assert (reply["updated"], reply["retired"]) == (["G-0105"], ["G-0404"])
    grid = (await http.get("/api/v1/grid/grids/G-0105", headers=worker)).json()
    assert grid["households"] == 999
    assert [(h["version"], h["change"], h["households"]) for h in grid["history"]] == [
        (1, "created", document["features"][0]["properties"]["households"]),
        (2, "updated", 999),
    ]
    exported = (await http.get("/api/v1/grid/grids", headers=worker)).json()
    assert len(exported["features"]) == 15
    assert "G-0404" not in {f["properties"]["code"] for f in exported["features"]}
    # A retired grid is never located; its point is now outside every grid.
    lat, lon = grid_seed.grid_centre("G-0404")
    located = (await http.get("/api/v1/grid/locate", params={"lat": lat, "lon": lon}, headers=worker)).json()
    assert located == {
        "lat": lat,
        "lon": lon,
        "inside": False,
        "grid": None,
        "community": None,
        "street": None,
        "district": None,
    }
    # Importing it again restores it.
    restored = (await http.post("/api/v1/grid/grids/import", json=document, headers=admin)).json()
    assert "G-0404" in restored["updated"]
    assert (await http.get("/api/v1/grid/grids/G-0404", headers=worker)).json()["history"][-1][
        "change"
    ] == "restored"


async def test_locate_answers_inside_outside_and_refuses_bad_coordinates(
    http: httpx.AsyncClient, bearer: Any
) -> None:
    worker = await bearer(WORKER)
    lat, lon = grid_seed.grid_centre("G-0203")
    inside = (await http.get("/api/v1/grid/locate", params={"lat": lat, "lon": lon}, headers=worker)).json()
    assert (inside["grid"], inside["community"], inside["street"], inside["district"]) == (
        "G-0203",
        "riverside-2",
        "riverside",
        "central",
    )
    swapped = await http.get("/api/v1/grid/locate", params={"lat": lon, "lon": lat}, headers=worker)
    assert swapped.status_code == 400
    assert "swapped" in swapped.json()["errors"][0]["detail"]
    assert (
        await http.get("/api/v1/grid/locate", params={"lat": "north", "lon": 1}, headers=worker)
    ).status_code == 400


async def test_a_new_layer_is_seen_by_a_process_holding_the_old_locator(conn: Connection, city: Any) -> None:
    """The locator is rebuilt when the layer version moved: what another process's import did is
    seen here at the next locate."""
    lat, lon = grid_seed.grid_centre("G-0404")
    assert (await layer.locator(conn)).locate(lat, lon) == "G-0404"
    document = grid_seed.layer_document()
    document["features"] = [f for f in document["features"] if f["properties"]["code"] != "G-0404"]
    await conn.execute("UPDATE grid.grids SET retired_at = now() WHERE code = 'G-0404'")
    # What an import in another process commits:
    await conn.execute("UPDATE grid.layer SET version = version + 1, token = gen_random_uuid()")
    assert (await layer.locator(conn)).locate(lat, lon) is None


async def test_only_an_admin_imports(http: httpx.AsyncClient, bearer: Any) -> None:
    worker = await bearer(WORKER)
    reply = await http.post("/api/v1/grid/grids/import", json=grid_seed.layer_document(), headers=worker)
    assert reply.status_code == 403
    assert (
        await http.post("/api/v1/grid/grids/import", content=b"{", headers=await admin_headers(bearer))
    ).status_code == 400
