"""Open311 against the live server over plain HTTP, as a FixMyStreet-like client uses it: the
demo city seeded by the command (its api key, its services), discovery -> services -> a
definition -> POST (JSON and XML) -> token -> GET by id -> the status changing as staff move
the case -> servicerequestupdates. Every JSON reply is validated against the shared schemas."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from defusedxml import ElementTree  # type: ignore[import-untyped]  # no stubs in the dev dependencies

from channels.open311_rules import STATUS_TEXT
from grid import seed as grid_seed
from onewindow.settings import Settings
from tests.channels.open311_fixtures import valid
from tests.conftest import server_env, stop
from tests.e2e.conftest import run_command, serve_testapp
from tests.e2e.test_workflows import bearer

pytestmark = pytest.mark.e2e

CENTRE = ("command_centre", "demo/central/riverside")
URBAN = ("officer", "demo/urban")
DEMO_KEY = "open311-demo-key"


@pytest.fixture
def server(settings: Settings, migrated_database: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    env = server_env(settings, tmp_path) | {"DATABASE_URL": migrated_database}
    seeded = run_command(["seed", "--demo"], env)  # the demo city, its Open311 key among it
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    served = serve_testapp(env, tmp_path / "uvicorn.log")
    try:
        yield served.base_url, migrated_database
    finally:
        stop(served.child.process)


def step(http: httpx.Client, headers: dict[str, str], number: str, action: str, **body: Any) -> None:
    found = http.get("/api/v1/grid/cases", headers=headers, params={"limit": 200}).json()["items"]
    case_id = next(c["id"] for c in found if c["number"] == number)
    case = http.get(f"/api/v1/grid/cases/{case_id}", headers=headers).json()
    task = next(t for t in case["open_tasks"] if action in t["actions"])
    reply = http.post(
        f"/api/v1/tasks/{task['id']}/actions",
        json={"action": action, **body},
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert reply.status_code == 200, reply.text


def extended(http: httpx.Client, number: str) -> dict[str, Any]:
    reply = http.get(f"/open311/v2/requests/{number}.json", params={"extensions": "true"})
    assert reply.status_code == 200, reply.text
    found: dict[str, Any] = valid("requests.json", reply.json())[0]
    return found


def test_an_open311_client_reports_and_follows_a_problem(server: tuple[str, str], settings: Settings) -> None:
    base, database_url = server
    centre = bearer(database_url, settings.public_url, "centre-o311-e2e", CENTRE)
    urban = bearer(database_url, settings.public_url, "officer-o311-e2e", URBAN)
    lat, lon = grid_seed.grid_centre("G-0105")
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    with httpx.Client(base_url=base, timeout=30) as http:
        discovery = http.get("/open311/v2/discovery.json").json()
        assert discovery["endpoints"][0]["url"].endswith("/open311/v2")

        services = valid("services.json", http.get("/open311/v2/services.json").json())
        assert "road_damage" in {s["service_code"] for s in services}
        definition = valid(
            "service-definition.json", http.get("/open311/v2/services/road_damage.json").json()
        )
        hazards = next(a for a in definition["attributes"] if a["code"] == "hazards")
        assert hazards["datatype"] == "multivaluelist"

        fields = {
            "api_key": DEMO_KEY,
            "service_code": "road_damage",
            "lat": str(lat),
            "long": str(lon),
            "description": "Deep pothole in the cycle lane.",
            "attribute[hazards][]": ["pothole", "debris"],
            "attribute[width_cm]": "50",
        }
        posted = http.post("/open311/v2/requests.json", data=fields)
        assert posted.status_code == 201, posted.text
        number, token = posted.json()[0]["service_request_id"], posted.json()[0]["token"]
        posted_xml = http.post("/open311/v2/requests.xml", data=fields)
        assert posted_xml.status_code == 201, posted_xml.text
        root = ElementTree.fromstring(posted_xml.content)
        assert root.tag == "service_requests"
        assert root.findtext("request/service_request_id").startswith("GC-")

        assert http.get(f"/open311/v2/tokens/{token}.json").json() == [
            {"service_request_id": number, "token": token}
        ]
        seen = extended(http, number)
        assert (seen["status"], seen["extended_attributes"]["status"]) == ("open", "OPEN")

        step(http, centre, number, "register")
        assert extended(http, number)["extended_attributes"]["status"] == "ACTION_SCHEDULED"
        step(http, centre, number, "to_department")
        seen = extended(http, number)
        assert seen["extended_attributes"]["status"] == "IN_PROGRESS"
        assert seen["expected_datetime"] is not None
        step(http, urban, number, "handled", comment="Patched with hot asphalt by crew 7.")
        seen = extended(http, number)
        assert (seen["status"], seen["extended_attributes"]["status"], seen["status_notes"]) == (
            "open",
            "FIXED",
            STATUS_TEXT["verifying"],  # the city's words for the status, never staff's comment
        )
        assert "crew 7" not in str(seen)
        step(http, centre, number, "passed")
        step(http, centre, number, "close")
        step(http, centre, number, "evaluate", data={"rating": 5})
        assert extended(http, number)["status"] == "closed"

        updated = http.post(
            "/open311/v2/servicerequestupdates.json",
            data={
                "api_key": DEMO_KEY,
                "service_request_id": number,
                "description": "Thanks, looks good.",
                "update_id": "e2e-1",
            },
        )
        assert updated.status_code == 201, updated.text
        feed = http.get("/open311/v2/servicerequestupdates.json", params={"start_date": since}).json()
        statuses = [u["status"] for u in feed if u["service_request_id"] == number]
        assert statuses[0] == "OPEN"
        assert statuses[-1] == "CLOSED"
        assert "IN_PROGRESS" in statuses
        assert "FIXED" in statuses
        ids = [int(u["update_id"]) for u in feed if u["service_request_id"] == number]
        assert ids == sorted(ids)
        assert len(set(ids)) == len(ids)
        times = [datetime.fromisoformat(u["updated_datetime"]) for u in feed]
        assert times == sorted(times)  # oldest first
        root = ElementTree.fromstring(
            http.get("/open311/v2/servicerequestupdates.xml", params={"start_date": since}).content
        )
        assert [u.findtext("update_id") for u in root.findall("request_update")] == [
            u["update_id"] for u in feed
        ]

        assert "Thanks, looks good." not in str(feed)  # a citizen's words are not public

        refused = http.post("/open311/v2/requests.json", data={**fields, "api_key": "wrong"})
        assert refused.status_code == 403
        assert refused.json()[0]["code"] == 403
        in_url = http.post("/open311/v2/requests.json", params={"api_key": DEMO_KEY}, data=fields)
        assert in_url.status_code == 400
