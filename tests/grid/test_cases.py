"""Cases and their closed loop over HTTP: report, register, dispatch, handle, verify (with a
failed verification and rework), close, evaluate; duplicates; who sees what; bad input."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from grid import seed as grid_seed
from onewindow.db import Connection
from tests.grid.conftest import CENTRE, CITY_CENTRE, URBAN, WATER, WORKER, WORKER_ELSEWHERE, key
from tests.workflows.conftest import Clock
from workflows.api import Actor

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def report(http: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    lat, lon = grid_seed.grid_centre("G-0107")
    payload = {"category": "blocked_drain", "description": "Drain blocked.", "lat": lat, "lon": lon, **body}
    reply = await http.post("/api/v1/grid/cases", json=payload, headers={**headers, **key()})
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


async def act(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    case_id: str,
    action: str,
    expect: int = 200,
    **body: Any,
) -> httpx.Response:
    case = (await http.get(f"/api/v1/grid/cases/{case_id}", headers=headers)).json()
    tasks = [t for t in case["open_tasks"] if action in t["actions"]]
    assert tasks, (action, case["status"], case["open_tasks"])
    reply = await http.post(
        f"/api/v1/tasks/{tasks[0]['id']}/actions",
        json={"action": action, **body},
        headers={**headers, **key()},
    )
    assert reply.status_code == expect, reply.text
    return reply


async def photo(http: httpx.AsyncClient, headers: dict[str, str], content: bytes = PNG) -> str:
    digest = hashlib.sha256(content).hexdigest()
    reply = await http.put(
        f"/api/v1/grid/photos/{digest}", content=content, headers={**headers, "Content-Type": "image/png"}
    )
    assert reply.status_code in (200, 201), reply.text
    return digest


async def events(conn: Connection, case_id: str) -> list[tuple[str, str | None]]:
    rows = await conn.fetch(
        "SELECT topic, payload->>'action' AS action FROM onewindow.outbox"
        " WHERE topic LIKE 'grid.case.%' AND payload->>'case_id' = $1 ORDER BY seq",
        case_id,
    )
    return [(row["topic"], row["action"]) for row in rows]


async def test_the_whole_loop_with_a_failed_verification_and_rework(
    http: httpx.AsyncClient, bearer: Any, conn: Connection, clock: Clock
) -> None:
    worker, centre = await bearer(WORKER), await bearer(CENTRE)
    first_photo = await photo(http, worker)
    case = await report(http, worker, category="illegal_dumping", photos=[first_photo])
    assert case["number"].startswith("GC-2026-")
    assert case["grid"] == "G-0107"
    assert case["community"] == "riverside-1"
    assert case["street"] == "riverside"
    assert case["status"] == "registering"
    assert [(t["state"], t["role"]) for t in case["open_tasks"]] == [("register", "command_centre")]
    case_id = case["id"]

    # The street's command centre finds it in its inbox.
    inbox = (await http.get("/api/v1/tasks", params={"subject_kind": "grid_case"}, headers=centre)).json()
    assert [t["subject_id"] for t in inbox["items"]] == [case_id]

    await act(http, centre, case_id, "register")
    clock.advance(minutes=10)
    await act(http, centre, case_id, "to_worker")
    after_dispatch = (await http.get(f"/api/v1/grid/cases/{case_id}", headers=worker)).json()
    assert after_dispatch["status"] == "handling"
    assert after_dispatch["dispatched_to"] == "worker"
    assert after_dispatch["handle_due_at"] is not None

    clock.advance(hours=2)
    fixed_photo = await photo(http, worker, PNG + b"fixed")
    await act(http, worker, case_id, "handled", comment="Waste removed.", data={"photos": [fixed_photo]})
    await act(http, worker, case_id, "failed", comment="Half of it is still there.")
    reworked = (await http.get(f"/api/v1/grid/cases/{case_id}", headers=worker)).json()
    assert reworked["status"] == "handling"
    assert reworked["rework_count"] == 1
    assert [t["state"] for t in reworked["open_tasks"]] == ["handle_worker"]

    await act(http, worker, case_id, "handled", comment="All removed now.")
    await act(http, centre, case_id, "passed")
    await act(http, centre, case_id, "close")
    await act(http, centre, case_id, "evaluate", data={"rating": 3})

    done = (await http.get(f"/api/v1/grid/cases/{case_id}", headers=centre)).json()
    assert done["status"] == "closed"
    assert done["closed_at"] is not None
    assert done["rating"] == 3
    assert done["rework_count"] == 1
    assert done["handled_on_time"] is True
    assert done["open_tasks"] == []
    assert {(p["sha256"], p["stage"]) for p in done["photos"]} == {
        (first_photo, "report"),
        (fixed_photo, "handle"),
    }
    assert [(h["action"], h["to_status"]) for h in done["history"]] == [
        ("reported", "registering"),
        ("register", "dispatching"),
        ("to_worker", "handling"),
        ("handled", "verifying"),
        ("failed", "handling"),
        ("handled", "verifying"),
        ("passed", "closing"),
        ("close", "evaluating"),
        ("evaluate", "evaluating"),
        ("closed", "closed"),
    ]
    assert await events(conn, case_id) == [
        ("grid.case.reported", None),
        ("grid.case.changed", "register"),
        ("grid.case.changed", "to_worker"),
        ("grid.case.changed", "handled"),
        ("grid.case.changed", "failed"),
        ("grid.case.changed", "handled"),
        ("grid.case.changed", "passed"),
        ("grid.case.changed", "close"),
        ("grid.case.changed", "evaluate"),
        ("grid.case.closed", None),
    ]


async def test_rework_goes_back_to_the_department_that_handled_it(
    http: httpx.AsyncClient, bearer: Any
) -> None:
    worker, centre, water = await bearer(WORKER), await bearer(CENTRE), await bearer(WATER)
    case_id = (await report(http, worker))["id"]
    await act(http, centre, case_id, "register")
    await act(http, centre, case_id, "to_department")
    # The water authority's officer sees it; the urban officer does not.
    urban = await bearer(URBAN)
    assert (await http.get(f"/api/v1/grid/cases/{case_id}", headers=urban)).status_code == 404
    await act(http, water, case_id, "handled", comment="Cleared.")
    await act(http, worker, case_id, "failed", comment="Still blocked.")
    case = (await http.get(f"/api/v1/grid/cases/{case_id}", headers=water)).json()
    assert [(t["state"], t["role"]) for t in case["open_tasks"]] == [("handle_department", "officer")]
    assert case["rework_count"] == 1


async def test_a_duplicate_is_suggested_linked_and_closes_with_its_primary(
    http: httpx.AsyncClient, bearer: Any, conn: Connection
) -> None:
    worker, centre = await bearer(WORKER), await bearer(CENTRE)
    lat, lon = grid_seed.grid_centre("G-0107")
    primary = (await report(http, worker, category="street_light"))["id"]
    # 30 m away, same category: suggested. 200 m away or another category: not.
    await report(http, worker, category="street_light", lat=lat + 0.0018, lon=lon)
    await report(http, worker, category="blocked_drain", lat=lat + 0.0001, lon=lon)
    second = await report(http, worker, category="street_light", lat=lat + 0.00027, lon=lon)
    assert [d["id"] for d in second["possible_duplicates"]] == [primary]
    assert 25 < second["possible_duplicates"][0]["distance_m"] < 35

    # Linking to a case nobody registered yet is refused; to a registered one, accepted.
    await act(http, centre, second["id"], "duplicate", expect=422, data={"duplicate_of": primary})
    await act(http, centre, primary, "register")
    primary_number = (await http.get(f"/api/v1/grid/cases/{primary}", headers=centre)).json()["number"]
    await act(http, centre, second["id"], "duplicate", data={"duplicate_of": primary_number})
    linked = (await http.get(f"/api/v1/grid/cases/{second['id']}", headers=centre)).json()
    assert linked["status"] == "duplicate"
    assert linked["duplicate_of"] == primary
    assert linked["open_tasks"] == []

    await act(http, centre, primary, "to_worker")
    await act(http, worker, primary, "handled", comment="Bulb replaced.")
    await act(http, worker, primary, "passed")
    await act(http, centre, primary, "close")
    await act(http, centre, primary, "evaluate", data={"rating": 5})
    closed = (await http.get(f"/api/v1/grid/cases/{second['id']}", headers=centre)).json()
    assert closed["status"] == "closed"
    assert (
        closed["closed_at"]
        == (await http.get(f"/api/v1/grid/cases/{primary}", headers=centre)).json()["closed_at"]
    )
    assert (await events(conn, second["id"]))[-2:] == [
        ("grid.case.changed", "closed_with_primary"),
        ("grid.case.closed", None),
    ]


async def test_a_worker_sees_only_their_grids_cases(http: httpx.AsyncClient, bearer: Any) -> None:
    worker, elsewhere, centre = await bearer(WORKER), await bearer(WORKER_ELSEWHERE), await bearer(CENTRE)
    mine = (await report(http, worker))["id"]
    lat, lon = grid_seed.grid_centre("G-0301")
    theirs = (await report(http, elsewhere, lat=lat, lon=lon))["id"]
    assert (await http.get(f"/api/v1/grid/cases/{theirs}", headers=worker)).status_code == 404
    listed = (await http.get("/api/v1/grid/cases", headers=worker)).json()
    assert [c["id"] for c in listed["items"]] == [mine]
    # The riverside command centre sees riverside only; the city's sees both.
    assert [c["id"] for c in (await http.get("/api/v1/grid/cases", headers=centre)).json()["items"]] == [mine]
    city = await bearer(CITY_CENTRE)
    assert {c["id"] for c in (await http.get("/api/v1/grid/cases", headers=city)).json()["items"]} == {
        mine,
        theirs,
    }
    # A worker cannot register (the command centre's step), a citizen token cannot report.
    reply = await act(http, worker, mine, "register", expect=404)
    assert reply.headers["content-type"].startswith("application/problem+json")
    citizen = await bearer(Actor(subject="c-1", kind="person", roles=(), name="c"))
    assert (await http.get("/api/v1/grid/cases", headers=citizen)).status_code == 403
    assert (await http.get("/api/v1/grid/cases")).status_code == 401


async def test_outside_every_grid_or_an_address_only_queues_at_the_city(
    http: httpx.AsyncClient, bearer: Any
) -> None:
    centre, city = await bearer(CENTRE), await bearer(CITY_CENTRE)
    far = await report(http, centre, lat=38.0, lon=106.0)
    assert far["grid"] is None
    address = await report(http, centre, lat=None, lon=None, address="No. 5 Market Lane")
    assert address["grid"] is None
    inbox = (await http.get("/api/v1/tasks", params={"subject_kind": "grid_case"}, headers=city)).json()
    assert {t["subject_id"] for t in inbox["items"]} == {far["id"], address["id"]}
    assert (await http.get("/api/v1/tasks", params={"subject_kind": "grid_case"}, headers=centre)).json()[
        "items"
    ] == []


async def test_bad_reports_are_refused_with_every_problem(
    http: httpx.AsyncClient, bearer: Any, conn: Connection
) -> None:
    worker = await bearer(WORKER)
    reply = await http.post(
        "/api/v1/grid/cases",
        json={"category": "no_such", "description": " ", "lat": 106.27, "lon": 38.47, "photos": ["ab" * 32]},
        headers={**worker, **key()},
    )
    assert reply.status_code == 400
    assert reply.headers["content-type"].startswith("application/problem+json")
    errors = {e["pointer"]: e["detail"] for e in reply.json()["errors"]}
    assert set(errors) == {"/lat", "/category", "/description", "/photos/0"}
    assert "swapped" in errors["/lat"]
    no_location = await http.post(
        "/api/v1/grid/cases",
        json={"category": "blocked_drain", "description": "x"},
        headers={**worker, **key()},
    )
    assert no_location.status_code == 400
    assert await conn.fetchval("SELECT count(*) FROM grid.cases") == 0


async def test_an_action_out_of_turn_or_incomplete_is_refused(http: httpx.AsyncClient, bearer: Any) -> None:
    worker, centre = await bearer(WORKER), await bearer(CENTRE)
    case_id = (await report(http, worker))["id"]
    task = (await http.get(f"/api/v1/grid/cases/{case_id}", headers=centre)).json()["open_tasks"][0]
    out_of_turn = await http.post(
        f"/api/v1/tasks/{task['id']}/actions", json={"action": "close"}, headers={**centre, **key()}
    )
    assert out_of_turn.status_code == 422
    await act(http, centre, case_id, "reject", expect=422)  # a rejection needs its reason
    await act(http, centre, case_id, "register")
    await act(http, centre, case_id, "to_worker")
    await act(http, worker, case_id, "handled", comment="done")
    await act(http, worker, case_id, "passed")
    await act(http, centre, case_id, "close")
    bad_rating = await act(http, centre, case_id, "evaluate", expect=422, data={"rating": 9})
    assert bad_rating.json()["errors"][0]["pointer"] == "/data/rating"
    case = (await http.get(f"/api/v1/grid/cases/{case_id}", headers=centre)).json()
    assert case["status"] == "evaluating"
    assert case["rating"] is None


async def test_photos_are_idempotent_by_content_and_limited(
    http: httpx.AsyncClient, bearer: Any, settings: Any
) -> None:
    worker = await bearer(WORKER)
    digest = hashlib.sha256(PNG).hexdigest()
    first = await http.put(f"/api/v1/grid/photos/{digest}", content=PNG, headers=worker)
    again = await http.put(f"/api/v1/grid/photos/{digest}", content=PNG, headers=worker)
    assert (first.status_code, again.status_code) == (201, 200)
    assert (await http.get(f"/api/v1/grid/photos/{digest}", headers=worker)).content == PNG
    wrong = await http.put(f"/api/v1/grid/photos/{'0' * 64}", content=PNG, headers=worker)
    assert wrong.status_code == 400
    text = b"hello, not a picture"
    unsupported = await http.put(
        f"/api/v1/grid/photos/{hashlib.sha256(text).hexdigest()}", content=text, headers=worker
    )
    assert unsupported.status_code == 415
    big = PNG + b"\x00" * settings.photo_max_bytes
    too_large = await http.put(
        f"/api/v1/grid/photos/{hashlib.sha256(big).hexdigest()}", content=big, headers=worker
    )
    assert too_large.status_code == 413
    assert too_large.headers["content-type"].startswith("application/problem+json")
    # Someone who neither uploaded it nor sees a case with it does not get it.
    other = await bearer(WORKER_ELSEWHERE)
    assert (await http.get(f"/api/v1/grid/photos/{digest}", headers=other)).status_code == 404
