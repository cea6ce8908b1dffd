"""Grid management against the live server over real HTTP: the demo city seeded by the command,
a worker's phone reporting offline and replaying its batch, the whole loop with a failed
verification and rework."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from grid import seed as grid_seed
from onewindow.settings import Settings
from tests.conftest import server_env, stop
from tests.e2e.conftest import run_command, serve_testapp
from tests.e2e.test_workflows import bearer

pytestmark = pytest.mark.e2e

WORKER = ("grid_worker", "demo/central/riverside/riverside-1/G-0107")
CENTRE = ("command_centre", "demo/central/riverside")
JPEG = b"\xff\xd8\xff\xe0" + b"\x10JFIF" + bytes(range(256))


@pytest.fixture
def server(settings: Settings, migrated_database: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    env = server_env(settings, tmp_path) | {"DATABASE_URL": migrated_database}
    seeded = run_command(["seed", "--demo"], env)  # migrations, the case loop, the demo city
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    served = serve_testapp(env, tmp_path / "uvicorn.log")
    try:
        yield served.base_url, migrated_database
    finally:
        stop(served.child.process)


def step(
    http: httpx.Client, headers: dict[str, str], case_id: str, action: str, **body: Any
) -> dict[str, Any]:
    case = http.get(f"/api/v1/grid/cases/{case_id}", headers=headers).json()
    task = next(t for t in case["open_tasks"] if action in t["actions"])
    reply = http.post(
        f"/api/v1/tasks/{task['id']}/actions",
        json={"action": action, **body},
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def test_a_phone_reports_offline_and_the_loop_closes_after_rework(
    server: tuple[str, str], settings: Settings
) -> None:
    base, database_url = server
    worker = bearer(database_url, settings.public_url, "worker-e2e", WORKER)
    centre = bearer(database_url, settings.public_url, "centre-e2e", CENTRE)
    lat, lon = grid_seed.grid_centre("G-0107")
    with httpx.Client(base_url=base, timeout=30) as http:
        # The demo city is there: its layer locates, its cases are listed.
        located = http.get("/api/v1/grid/locate", params={"lat": lat, "lon": lon}, headers=worker).json()
        assert located["grid"] == "G-0107"
        assert http.get("/api/v1/grid/cases", headers=centre).json()["items"]

        digest = hashlib.sha256(JPEG).hexdigest()
        uploaded = http.put(f"/api/v1/grid/photos/{digest}", content=JPEG, headers=worker)
        assert uploaded.status_code == 201, uploaded.text
        batch = {
            "items": [
                {
                    "type": "case",
                    "client_id": str(uuid.uuid4()),
                    "category": "illegal_dumping",
                    "description": "Rubble dumped by the bike shed.",
                    "lat": lat,
                    "lon": lon,
                    "photos": [digest],
                },
                {
                    "type": "case",
                    "client_id": str(uuid.uuid4()),
                    "category": "nope",
                    "description": "x",
                    "lat": lat,
                    "lon": lon,
                },
            ]
        }
        replies = [http.post("/api/v1/grid/sync", json=batch, headers=worker).json() for _ in range(3)]
        assert [(r["applied"], r["replayed"], r["rejected"]) for r in replies] == [
            (1, 0, 1),
            (0, 1, 1),
            (0, 1, 1),
        ]
        case_id = replies[0]["results"][0]["case_id"]
        assert {r["results"][0]["case_id"] for r in replies} == {case_id}

        step(http, centre, case_id, "register")
        step(http, centre, case_id, "to_worker")
        step(http, worker, case_id, "handled", comment="Cleared.")
        step(http, worker, case_id, "failed", comment="Some left behind the shed.")
        step(http, worker, case_id, "handled", comment="All cleared.")
        step(http, centre, case_id, "passed")
        step(http, centre, case_id, "close")
        step(http, centre, case_id, "evaluate", data={"rating": 4})

        case = http.get(f"/api/v1/grid/cases/{case_id}", headers=centre).json()
        assert (case["status"], case["rework_count"], case["rating"]) == ("closed", 1, 4)
        assert [h["action"] for h in case["history"]][-3:] == ["close", "evaluate", "closed"]
        assert http.get(f"/api/v1/grid/photos/{digest}", headers=centre).content == JPEG
