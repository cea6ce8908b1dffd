"""A phone on a bad connection: offline batches replayed, mixed good and bad items, limits, and
the delta download."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from grid import seed as grid_seed
from onewindow.db import Connection
from tests.grid.conftest import CENTRE, WORKER, WORKER_ELSEWHERE, key
from tests.workflows.conftest import Clock


def case_item(**overrides: Any) -> dict[str, Any]:
    lat, lon = grid_seed.grid_centre("G-0107")
    return {
        "type": "case",
        "client_id": str(uuid.uuid4()),
        "category": "stair_light",
        "description": "Stair light out, block 2.",
        "lat": lat,
        "lon": lon,
        "reported_at": "2026-09-28T08:30:00+08:00",
        **overrides,
    }


async def counts(conn: Connection) -> tuple[int, int, int]:
    return (
        await conn.fetchval("SELECT count(*) FROM grid.cases"),
        await conn.fetchval("SELECT count(*) FROM grid.case_history"),
        await conn.fetchval("SELECT count(*) FROM onewindow.outbox WHERE topic LIKE 'grid.%'"),
    )


async def test_a_batch_replayed_three_times_changes_nothing(
    http: httpx.AsyncClient, bearer: Any, conn: Connection
) -> None:
    worker = await bearer(WORKER)
    first, second = case_item(), case_item(category="blocked_drain", description="Drain blocked.")
    batch = {"items": [first, second]}
    reply = await http.post("/api/v1/grid/sync", json=batch, headers=worker)
    assert reply.status_code == 200, reply.text
    applied = reply.json()
    assert (applied["applied"], applied["replayed"], applied["rejected"]) == (2, 0, 0)
    numbers = [r["number"] for r in applied["results"]]
    assert all(n.startswith("GC-2026-") for n in numbers)
    after_first = await counts(conn)
    assert after_first[0] == 2
    for _ in range(3):
        again = (await http.post("/api/v1/grid/sync", json=batch, headers=worker)).json()
        assert (again["applied"], again["replayed"], again["rejected"]) == (0, 2, 0)
        assert [r["number"] for r in again["results"]] == numbers
        assert [r["case_id"] for r in again["results"]] == [r["case_id"] for r in applied["results"]]
        assert await counts(conn) == after_first
    # The reported time is the phone's; the case is in the worker's grid.
    case = await conn.fetchrow(
        "SELECT grid_code, reported_at, source FROM grid.cases WHERE client_id = $1",
        uuid.UUID(first["client_id"]),
    )
    assert case is not None
    assert case["grid_code"] == "G-0107"
    assert case["source"] == "worker"
    assert case["reported_at"].isoformat() == "2026-09-28T00:30:00+00:00"


async def test_a_mixed_batch_applies_the_good_items_and_names_each_bad_one(
    http: httpx.AsyncClient, bearer: Any, conn: Connection
) -> None:
    worker, centre = await bearer(WORKER), await bearer(CENTRE)
    # A case reported online earlier, registered and dispatched to the grid's workers.
    lat, lon = grid_seed.grid_centre("G-0107")
    online = (
        await http.post(
            "/api/v1/grid/cases",
            json={"category": "illegal_dumping", "description": "Rubble.", "lat": lat, "lon": lon},
            headers={**worker, **key()},
        )
    ).json()
    for action in ("register", "to_worker"):
        task = (await http.get(f"/api/v1/grid/cases/{online['id']}", headers=centre)).json()["open_tasks"][0]
        await http.post(
            f"/api/v1/tasks/{task['id']}/actions", json={"action": action}, headers={**centre, **key()}
        )

    good_case = case_item()
    swapped = case_item(lat=lon, lon=lat)
    unknown = case_item(category="unicorns")
    handled = {
        "type": "update",
        "client_id": str(uuid.uuid4()),
        "case_id": online["id"],
        "action": "handled",
        "comment": "Rubble removed.",
    }
    out_of_turn = {
        "type": "update",
        "client_id": str(uuid.uuid4()),
        "case_client_id": good_case["client_id"],
        "action": "passed",
    }
    batch = {"items": [good_case, swapped, handled, unknown, out_of_turn]}
    reply = (await http.post("/api/v1/grid/sync", json=batch, headers=worker)).json()
    outcomes = [(r["client_id"], r["outcome"]) for r in reply["results"]]
    assert outcomes == [
        (good_case["client_id"], "applied"),
        (swapped["client_id"], "rejected"),
        (handled["client_id"], "applied"),
        (unknown["client_id"], "rejected"),
        (out_of_turn["client_id"], "rejected"),
    ]
    problems = {r["client_id"]: r["problem"] for r in reply["results"] if r["outcome"] == "rejected"}
    assert problems[swapped["client_id"]]["errors"][0]["pointer"] == "/lat"
    assert problems[unknown["client_id"]]["errors"][0]["pointer"] == "/category"
    assert problems[out_of_turn["client_id"]]["status"] == 422
    assert reply["results"][2]["status"] == "verifying"
    # Nothing of the bad ones was written; the good ones were.
    assert await conn.fetchval("SELECT count(*) FROM grid.cases") == 2
    assert await conn.fetchval("SELECT count(*) FROM grid.sync_items") == 2


async def test_another_device_cannot_reuse_a_client_id_nor_touch_another_grid(
    http: httpx.AsyncClient, bearer: Any
) -> None:
    worker, elsewhere = await bearer(WORKER), await bearer(WORKER_ELSEWHERE)
    item = case_item()
    assert (await http.post("/api/v1/grid/sync", json={"items": [item]}, headers=worker)).json()[
        "applied"
    ] == 1
    reused = (await http.post("/api/v1/grid/sync", json={"items": [item]}, headers=elsewhere)).json()
    assert reused["results"][0]["problem"]["status"] == 409
    case_id = reused["results"][0].get("case_id")
    assert case_id is None
    update = {
        "type": "update",
        "client_id": str(uuid.uuid4()),
        "case_client_id": item["client_id"],
        "action": "handled",
        "comment": "x",
    }
    denied = (await http.post("/api/v1/grid/sync", json={"items": [update]}, headers=elsewhere)).json()
    assert denied["results"][0]["outcome"] == "rejected"


async def test_batches_over_the_limits_and_malformed_items_are_refused_whole(
    http: httpx.AsyncClient, bearer: Any, settings: Any, conn: Connection
) -> None:
    worker = await bearer(WORKER)
    too_many = {"items": [case_item() for _ in range(settings.sync_max_items + 1)]}
    reply = await http.post("/api/v1/grid/sync", json=too_many, headers=worker)
    assert reply.status_code == 413
    assert reply.headers["content-type"].startswith("application/problem+json")
    malformed = await http.post("/api/v1/grid/sync", json={"items": [{"type": "case"}]}, headers=worker)
    assert malformed.status_code == 400
    not_json = await http.post(
        "/api/v1/grid/sync", content=b"{", headers={**worker, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    assert await conn.fetchval("SELECT count(*) FROM grid.cases") == 0


async def test_the_delta_brings_my_steps_and_my_grids_changes_since_the_cursor(
    http: httpx.AsyncClient, bearer: Any, clock: Clock
) -> None:
    worker, centre, elsewhere = await bearer(WORKER), await bearer(CENTRE), await bearer(WORKER_ELSEWHERE)
    mine = (await http.post("/api/v1/grid/sync", json={"items": [case_item()]}, headers=worker)).json()
    lat, lon = grid_seed.grid_centre("G-0301")
    await http.post("/api/v1/grid/sync", json={"items": [case_item(lat=lat, lon=lon)]}, headers=elsewhere)
    clock.advance(seconds=10)
    first = (await http.get("/api/v1/grid/delta", headers=worker)).json()
    assert first["complete"] is True
    assert [c["id"] for c in first["cases"]] == [mine["results"][0]["case_id"]]
    assert first["tasks"] == []  # registering is the command centre's step
    cursor = first["next_cursor"]
    clock.advance(seconds=10)
    assert (await http.get("/api/v1/grid/delta", params={"cursor": cursor}, headers=worker)).json()[
        "cases"
    ] == []

    case_id = mine["results"][0]["case_id"]
    for action in ("register", "to_worker"):
        task = (await http.get(f"/api/v1/grid/cases/{case_id}", headers=centre)).json()["open_tasks"][0]
        await http.post(
            f"/api/v1/tasks/{task['id']}/actions", json={"action": action}, headers={**centre, **key()}
        )
    clock.advance(seconds=10)
    delta = (await http.get("/api/v1/grid/delta", params={"cursor": cursor}, headers=worker)).json()
    assert [(c["id"], c["status"]) for c in delta["cases"]] == [(case_id, "handling")]
    assert [(t["subject_id"], t["state"]) for t in delta["tasks"]] == [(case_id, "handle_worker")]
    bad = await http.get("/api/v1/grid/delta", params={"cursor": "nonsense"}, headers=worker)
    assert bad.status_code == 400
