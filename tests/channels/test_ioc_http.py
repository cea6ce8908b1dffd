"""The IOC feed over HTTP: the endpoint admin API, the pull feed (scope ioc.feed) and the IOC's
inbound updates (scope ioc.update): idempotent, never a step back, mapped onto the case loop,
not echoed back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import jsonschema  # type: ignore[import-untyped]
from cloudevents.core.formats.json import JSONFormat

from onewindow.db import Connection
from tests.channels.ioc_fixtures import ADMIN, NOT_ADMIN, act, drain, ioc_token, report_case, to_handling
from tests.conftest import RollbackDatabase
from tests.grid.conftest import bearer, city, clock, http

__all__ = ["bearer", "city", "clock", "http", "ioc_token"]  # fixtures

ENDPOINTS = "/api/v1/channels/ioc/endpoints"
SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "ioc-feed"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def at(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=60 - minutes)).isoformat()


async def test_endpoint_admin_api(http: httpx.AsyncClient, bearer: Any) -> None:
    admin = await bearer(ADMIN)
    assert (await http.get(ENDPOINTS)).status_code == 401
    assert (await http.get(ENDPOINTS, headers=await bearer(NOT_ADMIN))).status_code == 403

    created = await http.post(
        ENDPOINTS, json={"name": "IOC", "url": "https://ioc.example/hooks"}, headers=admin
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["new_secret"].startswith("whsec_")  # generated: shown once
    assert body["new_secret"] not in json.dumps(body["secrets"])
    endpoint = f"{ENDPOINTS}/{body['id']}"
    read = await http.get(endpoint, headers=admin)
    assert read.status_code == 200
    assert read.headers["etag"] == '"1"'
    assert read.json()["new_secret"] is None
    assert body["new_secret"] not in read.text

    own = await http.post(
        ENDPOINTS, json={"name": "Second", "url": "http://10.0.0.2/in", "secret": SECRET}, headers=admin
    )
    assert own.status_code == 201
    assert own.json()["new_secret"] is None  # the admin's own secret is not echoed
    listed = await http.get(ENDPOINTS, params={"limit": 1}, headers=admin)
    assert [e["name"] for e in listed.json()["items"]] == ["IOC"]
    page2 = await http.get(
        ENDPOINTS, params={"limit": 1, "cursor": listed.json()["next_cursor"]}, headers=admin
    )
    assert [e["name"] for e in page2.json()["items"]] == ["Second"]
    assert page2.json()["next_cursor"] is None

    # Bad input: every one a 400 problem, nothing stored.
    for bad in (
        {"name": "x", "url": "ftp://ioc.example"},
        {"name": "x", "url": "https://ioc.example", "secret": "not-a-secret"},
        {"name": "x", "url": "https://ioc.example", "secret": "whsec_c2hvcnQ="},
        {"name": "", "url": "https://ioc.example"},
        {"name": "x", "url": "https://ioc.example", "extra": 1},
    ):
        reply = await http.post(ENDPOINTS, json=bad, headers=admin)
        assert reply.status_code == 400, (bad, reply.text)
        assert reply.headers["content-type"].startswith("application/problem+json")
    assert len((await http.get(ENDPOINTS, headers=admin)).json()["items"]) == 2

    # Rotation: If-Match required; add a new secret, retire the old one, never the last.
    old_id = body["secrets"][0]["id"]
    assert (await http.patch(endpoint, json={"add_secret": "generate"}, headers=admin)).status_code == 428
    stale = await http.patch(endpoint, json={"add_secret": "generate"}, headers={**admin, "If-Match": '"7"'})
    assert stale.status_code == 412
    rotated = await http.patch(
        endpoint, json={"add_secret": "generate"}, headers={**admin, "If-Match": '"1"'}
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["new_secret"].startswith("whsec_")
    assert [s["active"] for s in rotated.json()["secrets"]] == [True, True]
    retired = await http.patch(
        endpoint, json={"retire_secrets": [old_id]}, headers={**admin, "If-Match": '"2"'}
    )
    assert retired.status_code == 200, retired.text
    assert sorted(s["active"] for s in retired.json()["secrets"]) == [False, True]
    last = next(s["id"] for s in retired.json()["secrets"] if s["active"])
    refused = await http.patch(
        endpoint, json={"retire_secrets": [last]}, headers={**admin, "If-Match": '"3"'}
    )
    assert refused.status_code == 422
    unknown = await http.patch(
        endpoint, json={"retire_secrets": [old_id]}, headers={**admin, "If-Match": '"3"'}
    )
    assert unknown.status_code == 400

    disabled = await http.post(f"{endpoint}/disable", headers=admin)
    assert disabled.json()["enabled"] is False
    assert (await http.post(f"{endpoint}/enable", headers=admin)).json()["enabled"] is True
    deliveries = await http.get(f"{endpoint}/deliveries", params={"state": "dead"}, headers=admin)
    assert deliveries.json() == {"items": [], "next_cursor": None}
    assert (
        await http.get(f"{endpoint}/deliveries", params={"state": "lost"}, headers=admin)
    ).status_code == 400
    assert (await http.get(f"{endpoint}/log", headers=admin)).json()["items"] == []
    assert (await http.post(f"{endpoint}/replay", headers=admin)).json() == {"replayed": 0}
    assert (await http.delete(endpoint, headers=admin)).status_code == 204
    assert (await http.get(endpoint, headers=admin)).status_code == 404


async def test_a_dead_delivery_is_listed_and_replayed_through_the_api(
    http: httpx.AsyncClient, bearer: Any, conn: Connection, db: RollbackDatabase
) -> None:
    admin = await bearer(ADMIN)
    created = (
        await http.post(ENDPOINTS, json={"name": "IOC", "url": "http://127.0.0.1:9/x"}, headers=admin)
    ).json()
    await report_case(conn)
    await drain(db)
    await conn.execute("UPDATE channels.ioc_deliveries SET state = 'dead', attempts = 12")
    endpoint = f"{ENDPOINTS}/{created['id']}"
    dead = (await http.get(f"{endpoint}/deliveries", params={"state": "dead"}, headers=admin)).json()["items"]
    assert len(dead) == 1
    assert dead[0]["sequence"] == 1
    one = f"{endpoint}/deliveries/{dead[0]['id']}"
    assert (await http.get(one, headers=admin)).json()["delivery"]["state"] == "dead"
    assert (await http.post(f"{one}/replay", headers=admin)).json() == {"replayed": 1}
    assert (await http.post(f"{one}/replay", headers=admin)).status_code == 422  # pending now, not dead
    detail = (await http.get(one, headers=admin)).json()
    assert detail["delivery"]["state"] == "pending"
    assert detail["delivery"]["attempts"] == 0
    assert [a["outcome"] for a in detail["attempts"]] == ["replayed"]
    other = f"{ENDPOINTS}/00000000-0000-0000-0000-000000000000/deliveries/{dead[0]['id']}/replay"
    assert (await http.post(other, headers=admin)).status_code == 404


async def test_pull_the_feed_with_the_ioc_feed_scope(
    http: httpx.AsyncClient, ioc_token: Any, conn: Connection, db: RollbackDatabase
) -> None:
    first = await report_case(conn)
    await to_handling(conn, first.id)
    second = await report_case(conn)
    await drain(db)
    feed = await ioc_token("ioc.feed")
    assert (await http.get("/ioc/v1/events")).status_code == 401
    forbidden = await http.get("/ioc/v1/events", headers=await ioc_token("ioc.update"))
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"].startswith("application/problem+json")

    reply = await http.get("/ioc/v1/events", params={"limit": 2}, headers=feed)
    assert reply.status_code == 200
    page = reply.json()
    assert page["more"] is True
    rest = (await http.get("/ioc/v1/events", params={"after": page["next_cursor"]}, headers=feed)).json()
    assert rest["more"] is False
    events = page["events"] + rest["events"]
    schema = json.loads((SCHEMAS / "events-page.json").read_text())
    registry = {
        name: json.loads((SCHEMAS / name).read_text())
        for name in ("case-reported.json", "case-changed.json", "case-closed.json")
    }
    from referencing import Registry, Resource  # noqa: PLC0415 - jsonschema's own dependency

    refs = Registry().with_resources(
        (f"https://onewindow.city/docs/ioc-feed/{n}", Resource.from_contents(s)) for n, s in registry.items()
    )
    jsonschema.Draft202012Validator(
        schema, registry=refs, format_checker=jsonschema.FormatChecker()
    ).validate({**page, "events": events})
    parsed = [JSONFormat().read(None, json.dumps(e).encode()) for e in events]
    assert [(e.get_subject(), cast("dict[str, Any]", e.get_data())["sequence"]) for e in parsed] == [
        (first.number, 1),
        (first.number, 2),
        (first.number, 3),
        (second.number, 1),
    ]
    # Caught up: the same cursor comes back, with nothing.
    empty = (await http.get("/ioc/v1/events", params={"after": rest["next_cursor"]}, headers=feed)).json()
    assert empty == {"events": [], "next_cursor": rest["next_cursor"], "more": False}
    for bad in ({"after": "abc"}, {"after": "-1"}, {"limit": 0}, {"limit": 5000}):
        assert (await http.get("/ioc/v1/events", params=bad, headers=feed)).status_code == 400, bad


async def history(conn: Connection, case_id: Any) -> list[tuple[str, str, str | None]]:
    rows = await conn.fetch(
        "SELECT actor, action, note FROM grid.case_history WHERE case_id = $1 ORDER BY id", case_id
    )
    return [(r["actor"], r["action"], r["note"]) for r in rows]


async def test_inbound_updates_are_idempotent_never_roll_back_and_are_not_echoed(
    http: httpx.AsyncClient, ioc_token: Any, conn: Connection, db: RollbackDatabase
) -> None:
    case = await report_case(conn)
    await to_handling(conn, case.id)
    await drain(db)
    update = await ioc_token("ioc.update")
    url = f"/ioc/v1/incidents/{case.number}/updates"
    acknowledged = {
        "update_id": "ioc-1",
        "status": "acknowledged",
        "occurred_at": at(1),
        "note": "Crew notified.",
    }

    first = await http.post(url, json=acknowledged, headers=update)
    assert first.status_code == 201, first.text
    assert first.json()["effect"] == "noted"
    assert first.json()["case_status"] == "handling"
    # The same update again (here by the case's id): the same reply, no second effect.
    again = await http.post(f"/ioc/v1/incidents/{case.id}/updates", json=acknowledged, headers=update)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    reused = await http.post(url, json={**acknowledged, "note": "Something else."}, headers=update)
    assert reused.status_code == 422
    assert reused.json()["type"] == "urn:onewindow:problem:idempotency-key-reused"
    assert (await history(conn, case.id))[-1] == ("external:ioc", "external_update", "Crew notified.")
    assert [h for h in await history(conn, case.id) if h[0] == "external:ioc"] == [
        ("external:ioc", "external_update", "Crew notified.")
    ]

    resolved = {"update_id": "ioc-3", "status": "resolved", "occurred_at": at(30), "note": "Drain cleared."}
    done = await http.post(url, json=resolved, headers=update)
    assert done.status_code == 201, done.text
    assert done.json()["effect"] == "handled"
    assert done.json()["case_status"] == "verifying"
    # Older than the latest: recorded, but the case does not go back.
    late = {"update_id": "ioc-2", "status": "in_progress", "occurred_at": at(10)}
    stale = await http.post(url, json=late, headers=update)
    assert stale.status_code == 201
    assert stale.json()["effect"] == "stale"
    assert stale.json()["case_status"] == "verifying"
    rows = await conn.fetch(
        "SELECT update_id, stale FROM channels.ioc_updates ORDER BY received_at, update_id"
    )
    assert sorted((r["update_id"], r["stale"]) for r in rows) == [
        ("ioc-1", False),
        ("ioc-2", True),
        ("ioc-3", False),
    ]
    assert await conn.fetchval("SELECT status FROM grid.cases WHERE id = $1", case.id) == "verifying"
    assert [h for h in await history(conn, case.id) if h[0] == "external:ioc"] == [
        ("external:ioc", "external_update", "Crew notified."),
        ("external:ioc", "handled", "Drain cleared."),
    ]

    # No echo: the IOC's own changes are not in the feed; the city's next change is, with the
    # case's own number (4 and 5 were the IOC's note and its "handled": a gap, not a renumbering).
    await drain(db)
    await act(conn, case.id, "passed")
    await drain(db)
    feed = await conn.fetch(
        "SELECT sequence, cloudevent FROM channels.ioc_events WHERE case_id = $1 ORDER BY sequence", case.id
    )
    assert [r["sequence"] for r in feed] == [1, 2, 3, 6]
    assert [r["cloudevent"]["data"].get("action") for r in feed] == [
        None,
        "register",
        "to_department",
        "passed",
    ]
    assert all("origin" not in r["cloudevent"]["data"] for r in feed)
    grid_events = await conn.fetch(
        "SELECT payload->>'origin' AS origin FROM onewindow.outbox WHERE topic = 'grid.case.changed'"
        " AND payload->>'case_id' = $1",
        str(case.id),
    )
    assert sorted((r["origin"] or "-") for r in grid_events) == ["-", "-", "-", "ioc", "ioc"]


async def test_inbound_bad_input_writes_nothing(
    http: httpx.AsyncClient, ioc_token: Any, conn: Connection, db: RollbackDatabase
) -> None:
    case = await report_case(conn)
    update = await ioc_token("ioc.update")
    url = f"/ioc/v1/incidents/{case.id}/updates"
    good = {"update_id": "u-1", "status": "acknowledged", "occurred_at": at(1)}
    assert (await http.post(url, json=good)).status_code == 401
    assert (await http.post(url, json=good, headers=await ioc_token("ioc.feed"))).status_code == 403
    unknown = await http.post("/ioc/v1/incidents/GC-1999-999999/updates", json=good, headers=update)
    assert unknown.status_code == 404
    assert (
        await http.post(f"/ioc/v1/incidents/{'0' * 36}/updates", json=good, headers=update)
    ).status_code == 404
    for bad in (
        {**good, "status": "done"},
        {**good, "occurred_at": "2025-01-01T10:00:00"},  # no offset
        {**good, "occurred_at": "0001-01-01T00:00:00+01:00"},  # before year 1 in UTC
        {**good, "occurred_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
        {**good, "update_id": ""},
        {**good, "update_id": "has space"},
        {**good, "note": "x" * 2001},
        {**good, "extra": True},
        {"status": "acknowledged", "occurred_at": at(1)},
    ):
        reply = await http.post(url, json=bad, headers=update)
        assert reply.status_code == 400, (bad, reply.text)
        assert reply.headers["content-type"].startswith("application/problem+json")
    malformed = await http.post(
        url, content=b"{not json", headers={**update, "content-type": "application/json"}
    )
    assert malformed.status_code == 400
    # A closed (here: rejected) case takes no update.
    await act(conn, case.id, "reject", comment="Not a real case.")
    closed = await http.post(url, json=good, headers=update)
    assert closed.status_code == 422
    assert closed.json()["type"] == "urn:onewindow:problem:rule-violation"
    assert await conn.fetchval("SELECT count(*) FROM channels.ioc_updates") == 0
    assert await conn.fetchval("SELECT count(*) FROM grid.case_history WHERE actor LIKE 'external:%'") == 0


def pointers(reply: httpx.Response) -> list[str]:
    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    return [e["pointer"] for e in reply.json()["errors"]]


async def test_control_characters_and_uncallable_urls_are_refused_at_the_edge(
    http: httpx.AsyncClient, bearer: Any, ioc_token: Any, conn: Connection, db: RollbackDatabase
) -> None:
    admin = await bearer(ADMIN)
    for body, pointer in (
        ({"name": "IOC\x00", "url": "https://ioc.example/in"}, "/name"),
        ({"name": "IOC\nsecond line", "url": "https://ioc.example/in"}, "/name"),
        ({"name": "IOC", "url": "https://ioc.example/in\x00"}, "/url"),
        ({"name": "IOC", "url": "http://[::1"}, "/url"),  # httpx.InvalidURL when called
        ({"name": "IOC", "url": "https://ioc.example/a b"}, "/url"),
    ):
        assert pointers(await http.post(ENDPOINTS, json=body, headers=admin)) == [pointer], body
    created = await http.post(ENDPOINTS, json={"name": "IOC", "url": "https://ioc.example/in"}, headers=admin)
    endpoint = f"{ENDPOINTS}/{created.json()['id']}"
    for body, pointer in (({"name": "x\x07"}, "/name"), ({"url": "http://[::1"}, "/url")):
        reply = await http.patch(endpoint, json=body, headers={**admin, "If-Match": '"1"'})
        assert pointers(reply) == [pointer], body
    assert (await http.get(endpoint, headers=admin)).json()["version"] == 1
    assert await conn.fetchval("SELECT count(*) FROM channels.ioc_endpoints") == 1

    case = await report_case(conn)
    update = await ioc_token("ioc.update")
    body = {"update_id": "u-nul", "status": "acknowledged", "occurred_at": at(1), "note": "Crew\x00 sent."}
    reply = await http.post(f"/ioc/v1/incidents/{case.id}/updates", json=body, headers=update)
    assert pointers(reply) == ["/note"]
    assert await conn.fetchval("SELECT count(*) FROM channels.ioc_updates") == 0
    assert await conn.fetchval("SELECT count(*) FROM grid.case_history WHERE actor LIKE 'external:%'") == 0
