"""The engine over HTTP: the inbox, actions with Idempotency-Key and If-Match, admin, refusals."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import RollbackDatabase
from tests.workflows.conftest import Clock, staff_member, upload
from tests.workflows.test_engine import PERMIT, start

Headers = dict[str, str]


def key() -> Headers:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def test_inbox_is_scoped_and_paged(http: httpx.AsyncClient, db: RollbackDatabase, bearer: Any) -> None:
    await upload(db.conn, PERMIT)
    for n in range(3):
        await start(db.conn, "permit", f"s-{n}")
    market = await bearer("o1", ("officer", "demo/market"))
    fire = await bearer("o2", ("officer", "demo/fire"))
    first = await http.get("/api/v1/tasks", params={"limit": 2}, headers=market)
    assert first.status_code == 200, first.text
    page = first.json()
    assert len(page["items"]) == 2
    assert page["next_cursor"]
    second = (
        await http.get("/api/v1/tasks", params={"limit": 2, "cursor": page["next_cursor"]}, headers=market)
    ).json()
    assert len(second["items"]) == 1
    assert second["next_cursor"] is None
    seen = {t["subject_id"] for t in page["items"] + second["items"]}
    assert seen == {"s-0", "s-1", "s-2"}
    assert (await http.get("/api/v1/tasks", headers=fire)).json()["items"] == []
    anonymous = await http.get("/api/v1/tasks")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    bad = await http.get("/api/v1/tasks", params={"cursor": "garbage"}, headers=market)
    assert bad.status_code == 400


async def test_action_with_idempotency_key_and_if_match(
    http: httpx.AsyncClient, db: RollbackDatabase, bearer: Any
) -> None:
    await upload(db.conn, PERMIT)
    started = await start(db.conn, "permit")
    task_id = started.open_tasks[0].id
    market = await bearer("o1", ("officer", "demo/market"))
    read = await http.get(f"/api/v1/tasks/{task_id}", headers=market)
    assert read.status_code == 200
    assert read.headers["etag"] == '"1"'
    assert [a["name"] for a in read.json()["actions"]] == ["accept", "return"]

    url = f"/api/v1/tasks/{task_id}/actions"
    no_key = await http.post(url, json={"action": "accept"}, headers=market)
    assert no_key.status_code == 400
    assert no_key.json()["errors"][0]["parameter"] == "Idempotency-Key"
    stale = await http.post(url, json={"action": "accept"}, headers={**market, **key(), "If-Match": '"7"'})
    assert stale.status_code == 412
    missing = await http.post(url, json={"action": "return"}, headers={**market, **key()})
    assert missing.status_code == 422
    assert missing.json()["errors"] == [{"pointer": "/comment", "detail": "required for this action"}]
    wrong = await http.post(url, json={"action": "approve"}, headers={**market, **key()})
    assert wrong.status_code == 422
    assert "accept, return" in wrong.json()["detail"]

    once = {**market, **key(), "If-Match": read.headers["etag"]}
    done = await http.post(url, json={"action": "accept", "comment": "ok"}, headers=once)
    assert done.status_code == 200, done.text
    assert [t["state"] for t in done.json()["instance"]["open_tasks"]] == ["review"]
    again = await http.post(url, json={"action": "accept", "comment": "ok"}, headers=once)
    assert again.status_code == 200
    assert again.json() == done.json()
    assert again.headers["idempotent-replayed"] == "true"
    reused = await http.post(url, json={"action": "accept", "comment": "changed"}, headers=once)
    assert reused.status_code == 422
    assert reused.json()["type"].endswith("idempotency-key-reused")
    late = await http.post(url, json={"action": "accept"}, headers={**market, **key()})
    assert late.status_code == 409
    history = await http.get(f"/api/v1/workflow-instances/{started.id}", headers=market)
    assert [h["event"] for h in history.json()["history"]] == ["started", "action"]


async def test_refusals_over_http(http: httpx.AsyncClient, db: RollbackDatabase, bearer: Any) -> None:
    await upload(db.conn, PERMIT)
    started = await start(db.conn, "permit")
    task_id = started.open_tasks[0].id
    fire = await bearer("o2", ("officer", "demo/fire"))
    clerk = await bearer("c1", ("clerk", "demo/market"))
    boss = await bearer("b1", ("supervisor", "demo/market"))
    url = f"/api/v1/tasks/{task_id}/actions"
    assert (await http.post(url, json={"action": "accept"}, headers={**fire, **key()})).status_code == 404
    assert (await http.get(f"/api/v1/tasks/{task_id}", headers=clerk)).status_code == 404
    assert (await http.get(f"/api/v1/workflow-instances/{started.id}", headers=fire)).status_code == 404
    refused = await http.post(url, json={"action": "accept"}, headers={**boss, **key()})
    assert refused.status_code == 403, refused.text
    unknown = await http.post(
        f"/api/v1/tasks/{uuid.uuid4()}/actions", json={"action": "x"}, headers={**boss, **key()}
    )
    assert unknown.status_code == 404
    extra = await http.post(url, json={"action": "accept", "evil": 1}, headers={**boss, **key()})
    assert extra.status_code == 400


async def test_claim_release_and_reassign(http: httpx.AsyncClient, db: RollbackDatabase, bearer: Any) -> None:
    await upload(db.conn, PERMIT)
    started = await start(db.conn, "permit")
    task_id = started.open_tasks[0].id
    one = await bearer("o1", ("officer", "demo/market"))
    two = await bearer("o2", ("officer", "demo/market"))
    boss = await bearer("b1", ("supervisor", "demo"))
    claimed = await http.post(f"/api/v1/tasks/{task_id}/claim", headers=one)
    assert claimed.status_code == 200
    assert claimed.json()["assignee"] == "o1"
    assert (await http.post(f"/api/v1/tasks/{task_id}/claim", headers=one)).status_code == 200
    assert (await http.post(f"/api/v1/tasks/{task_id}/claim", headers=two)).status_code == 409
    assert (await http.post(f"/api/v1/tasks/{task_id}/release", headers=two)).status_code == 403
    queue = (await http.get("/api/v1/tasks", params={"view": "queue"}, headers=two)).json()["items"]
    assert queue == []
    mine = (await http.get("/api/v1/tasks", params={"view": "mine"}, headers=one)).json()["items"]
    assert [t["id"] for t in mine] == [str(task_id)]
    no_reason = await http.post(
        f"/api/v1/tasks/{task_id}/reassign", json={"role": "supervisor"}, headers=boss
    )
    assert no_reason.status_code == 400
    moved = await http.post(
        f"/api/v1/tasks/{task_id}/reassign",
        json={"role": "supervisor", "reason": "Complex case"},
        headers=boss,
    )
    assert moved.status_code == 200
    assert moved.json()["role"] == "supervisor"
    assert moved.json()["assignee"] is None
    by_officer = await http.post(f"/api/v1/tasks/{task_id}/reassign", json={"reason": "x"}, headers=one)
    assert by_officer.status_code == 404  # the officer no longer sees a supervisor's task


YAML = {"Content-Type": "application/yaml"}


async def test_definition_admin(http: httpx.AsyncClient, bearer: Any) -> None:
    admin = await bearer("a1", ("admin", "demo"))
    officer = await bearer("o1", ("officer", "demo/market"))
    url = "/api/v1/workflow-definitions"
    assert (await http.post(url, content=PERMIT, headers={**officer, **YAML})).status_code == 403
    dry = await http.post(f"{url}/validate", content=PERMIT, headers={**admin, **YAML})
    assert dry.status_code == 200
    assert dry.json()["valid"] is True
    assert (await http.get(url, headers=admin)).json() == []
    first = await http.post(url, content=PERMIT, headers={**admin, **YAML})
    assert first.status_code == 201
    assert first.json() == {"key": "permit", "version": 1, "created": True}
    same = await http.post(url, content=PERMIT, headers={**admin, **YAML})
    assert same.status_code == 200
    assert same.json()["created"] is False
    changed = PERMIT.replace("deadline: P2D", "deadline: P4D")
    second = await http.post(url, content=changed, headers={**admin, **YAML})
    assert second.json()["version"] == 2
    versions = (await http.get(f"{url}/permit", headers=admin)).json()
    assert [v["version"] for v in versions] == [1, 2]
    one = (await http.get(f"{url}/permit/versions/1", headers=admin)).json()
    assert one["source"] == PERMIT
    assert one["definition"]["states"]["accept"]["deadline"]["duration"] == "P2D"
    compared = (await http.get(f"{url}/permit/compare", params={"from": 1, "to": 2}, headers=admin)).json()
    assert {(c["op"], c["pointer"]) for c in compared["changes"]} >= {
        ("changed", "/states/accept/deadline/duration")
    }
    assert (await http.get(f"{url}/permit/versions/9", headers=admin)).status_code == 404
    # Past the int4 column: a 400 problem, never the database's error as a 500.
    assert (await http.get(f"{url}/permit/versions/99999999999", headers=admin)).status_code == 400
    huge = {"from": 1, "to": 99999999999}
    assert (await http.get(f"{url}/permit/compare", params=huge, headers=admin)).status_code == 400

    broken = PERMIT.replace("target: review}", "target: nowhere}").replace(
        "role: officer\n    unit: owner\n    deadline: P2D",
        "role: wizard\n    unit: owner\n    deadline: P2Q",
    )
    refused = await http.post(url, content=broken, headers={**admin, **YAML})
    assert refused.status_code == 400, refused.text
    pointers = {e["pointer"] for e in refused.json()["errors"]}
    assert {
        "/states/accept/role",
        "/states/accept/deadline",
        "/states/accept/actions/accept/target",
    } <= pointers
    assert all(e["detail"].startswith("line ") for e in refused.json()["errors"])
    assert len((await http.get(f"{url}/permit", headers=admin)).json()) == 2
    plain = await http.post(url, content=PERMIT, headers={**admin, "Content-Type": "text/plain"})
    assert plain.status_code == 400


async def test_calendar_admin(http: httpx.AsyncClient, bearer: Any) -> None:
    admin = await bearer("a1", ("admin", "demo"))
    officer = await bearer("o1", ("officer", "demo/market"))
    url = "/api/v1/calendar/days"
    body = {"working": False, "name": "National Day"}
    assert (await http.put(f"{url}/2026-10-01", json=body, headers=officer)).status_code == 403
    put = await http.put(f"{url}/2026-10-01", json=body, headers=admin)
    assert put.status_code == 200
    assert put.json()["name"] == "National Day"
    listed = (await http.get(url, params={"from": "2026-10-01", "to": "2026-10-31"}, headers=officer)).json()
    assert [d["day"] for d in listed] == ["2026-10-01"]
    assert (await http.put(f"{url}/2026-13-01", json=body, headers=admin)).status_code in (400, 404)
    assert (await http.delete(f"{url}/2026-10-01", headers=admin)).status_code == 204
    assert (await http.delete(f"{url}/2026-10-01", headers=admin)).status_code == 404


async def test_delegations(http: httpx.AsyncClient, db: RollbackDatabase, bearer: Any, clock: Clock) -> None:
    me = await bearer("o1", ("officer", "demo/market"))
    o2 = await staff_member(db.conn)
    url = "/api/v1/me/delegations"
    ends = (clock.now.replace(year=clock.now.year + 1)).isoformat()
    made = await http.post(url, json={"delegate": o2, "ends_at": ends, "reason": "Leave"}, headers=me)
    assert made.status_code == 201, made.text
    assert [d["delegate"] for d in (await http.get(url, headers=me)).json()] == [o2]
    past = await http.post(
        url, json={"delegate": o2, "ends_at": "2000-01-01T00:00:00Z", "reason": "x"}, headers=me
    )
    assert past.status_code == 422
    stranger = await http.post(url, json={"delegate": "o2", "ends_at": ends, "reason": "x"}, headers=me)
    assert stranger.status_code == 422
    assert stranger.json()["errors"][0]["pointer"] == "/delegate"
    assert (await http.delete(f"{url}/{made.json()['id']}", headers=me)).status_code == 204
    assert (await http.get(url, headers=me)).json() == []
