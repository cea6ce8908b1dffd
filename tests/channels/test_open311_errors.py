"""Open311 bad input: each refusal is the specification's array of {code, description} (in the
format asked for), with 400, 401, 403, 404 or 429, and nothing is written."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from grid import seed as grid_seed
from onewindow.db import Connection
from onewindow.settings import Settings
from tests.channels.open311_fixtures import (
    ADMIN,
    CITIZEN,
    Bearer,
    form,
    issue_key,
    o311_client,
    xml,
)
from tests.conftest import RollbackDatabase
from tests.workflows.conftest import Clock
from workflows import engine

pytest_plugins = ["tests.channels.open311_fixtures"]

LAT, LON = grid_seed.grid_centre("G-0107")


def good(key: str, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "api_key": key,
        "service_code": "road_damage",
        "lat": str(LAT),
        "long": str(LON),
        "description": "A pothole at the crossing.",
        "attributes": {"hazards": ["pothole", "cracks"], "width_cm": "40"},
    }
    fields.update(extra)
    return form(**{k: v for k, v in fields.items() if v is not None})


async def cases(conn: Connection) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM grid.cases")
    return count


async def refused(
    http: httpx.AsyncClient, data: dict[str, Any], status: int, *, path: str = "requests.json"
) -> list[str]:
    reply = await http.post(f"/open311/v2/{path}", data=data)
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert isinstance(body, list)
    assert body
    assert all(set(e) == {"code", "description"} and e["code"] == status for e in body)
    return [e["description"] for e in body]


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        ({"service_code": None}, 400, "service_code: required"),
        ({"lat": None, "long": None}, 400, "location: give lat and long"),
        ({"long": None}, 400, "lat and long: give both"),
        ({"lat": "95", "long": str(LON)}, 400, "lat: a latitude is within"),
        ({"lat": "north"}, 400, "lat: not a number"),
        ({"service_code": "no_such_thing"}, 404, "service_code: no service"),
        ({"api_key": "o311_not-a-key"}, 403, "api_key: not a valid key"),
        ({"api_key": None}, 403, "api_key: required"),
        ({"description": "x" * 5000}, 400, "description: at most 2000 characters"),
        (
            {"attributes": {"hazards": ["pothole", "lava"], "width_cm": "40"}},
            400,
            "attribute[hazards]: not among",
        ),
        ({"attributes": {"width_cm": "40"}}, 400, "attribute[hazards]: required"),
        (
            {"attributes": {"hazards": ["pothole"], "width_cm": "wide"}},
            400,
            "attribute[width_cm]: not a number",
        ),
        (
            {"attributes": {"hazards": ["pothole"], "colour": "red"}},
            400,
            "attribute[colour]: this service has no",
        ),
        ({"media_url": "javascript:alert(1)"}, 400, "media_url: an absolute http:// or https:// URL"),
        ({"media_url": "http://photos.example/a b.jpg"}, 400, "media_url: no spaces or control characters"),
        ({"media_url": "http://[::1/a.jpg"}, 400, "media_url: not a valid URL"),
        ({"media_url": "https://photos.example/" + "a" * 2000}, 400, "media_url: at most 2000 characters"),
    ],
)
async def test_bad_reports_are_refused_in_the_spec_format_and_nothing_is_written(
    o311_http: httpx.AsyncClient,
    o311_key: str,
    conn: Connection,
    change: dict[str, Any],
    status: int,
    says: str,
) -> None:
    before = await cases(conn)
    descriptions = await refused(o311_http, good(o311_key, **change), status)
    assert any(d.startswith(says) for d in descriptions), descriptions
    assert await cases(conn) == before
    assert await conn.fetchval("SELECT count(*) FROM channels.open311_requests") == 0


async def test_every_problem_is_named_at_once_and_xml_errors_are_xml(
    o311_http: httpx.AsyncClient, o311_key: str
) -> None:
    data = good(o311_key, lat="95", description="x" * 5000, attributes={"hazards": ["lava"]})
    descriptions = await refused(o311_http, data, 400)
    assert len(descriptions) == 3, descriptions
    reply = await o311_http.post("/open311/v2/requests.xml", data=data)
    root = xml(reply)
    assert reply.status_code == 400
    assert root.tag == "errors"
    assert {e.findtext("code") for e in root.findall("error")} == {"400"}
    assert len(root.findall("error")) == 3


async def test_wrong_datatypes_of_every_kind_are_refused(o311_http: httpx.AsyncClient, o311_key: str) -> None:
    dumping = {"api_key": o311_key, "service_code": "illegal_dumping", "lat": str(LAT), "long": str(LON)}
    descriptions = await refused(
        o311_http,
        form(**dumping, attributes={"waste_type": "gold", "seen_at": "yesterday", "details": "y" * 2500}),
        400,
    )
    assert sorted(d.split(":")[0] for d in descriptions) == [
        "attribute[details]",
        "attribute[seen_at]",
        "attribute[waste_type]",
    ]
    ok = await o311_http.post(
        "/open311/v2/requests.json",
        data=form(**dumping, attributes={"waste_type": "bulky", "seen_at": "2026-09-28T07:00:00+08:00"}),
    )
    assert ok.status_code == 201, ok.text


async def test_a_body_that_is_not_a_form_is_refused(o311_http: httpx.AsyncClient, o311_key: str) -> None:
    reply = await o311_http.post("/open311/v2/requests.json", json={"api_key": o311_key})
    assert reply.status_code == 400
    assert reply.json()[0]["description"].startswith("Send the parameters form-encoded")


async def test_malformed_dates_and_bad_filters_are_400(o311_http: httpx.AsyncClient) -> None:
    for params, says in [
        ({"start_date": "28/09/2026"}, "start_date: not a date and time"),
        ({"end_date": "2026-09-28T10:00:00"}, "end_date: not a date and time with its offset"),
        (
            {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-09-01T00:00:00Z"},
            "start_date, end_date: may not span",
        ),
        ({"status": "sleeping"}, "status: 'sleeping' is not"),
        ({"service_code": "nope"}, "service_code: no service"),
        ({"page_size": "5000"}, "page_size: a whole number"),
        ({"start_date": "9999-12-31T00:00:00Z"}, "start_date: a year from 1970 to 9000"),
        ({"end_date": "0001-01-01T00:00:00+01:00"}, "end_date: a year from 1970 to 9000"),
    ]:
        reply = await o311_http.get("/open311/v2/requests.json", params=params)
        assert reply.status_code == 400, (params, reply.text)
        assert reply.json()[0]["description"].startswith(says), reply.json()
    for start in ("soon", "9999-12-31T00:00:00Z"):
        reply = await o311_http.get("/open311/v2/servicerequestupdates.json", params={"start_date": start})
        assert reply.status_code == 400, reply.text


async def test_unknown_things_are_404_in_the_spec_format(o311_http: httpx.AsyncClient) -> None:
    for path in (
        "/open311/v2/services/no_such.json",
        "/open311/v2/requests/GC-1999-000001.json",
        "/open311/v2/tokens/3f1e0c3c-1d0b-4a51-9c39-4a5c1a1f3e7d.json",
        "/open311/v2/tokens/not-a-token.xml",
        "/open311/v2/nothing-here.json",
    ):
        reply = await o311_http.get(path)
        assert reply.status_code == 404, path
        if path.endswith(".xml"):
            assert xml(reply).find("error/code").text == "404"
        else:
            assert reply.json()[0]["code"] == 404


async def test_a_jurisdiction_other_than_the_citys_is_404(
    o311_settings: Settings, db: RollbackDatabase, o311_clock: Clock, o311_city: engine.Runtime, o311_key: str
) -> None:
    settings = o311_settings.model_copy(update={"open311_jurisdiction_id": "yinchuan.example"})
    async with o311_client(settings, db, o311_clock) as http:
        assert (
            await http.get("/open311/v2/services.json", params={"jurisdiction_id": "yinchuan.example"})
        ).status_code == 200
        assert (await http.get("/open311/v2/services.json")).status_code == 200
        reply = await http.get("/open311/v2/services.json", params={"jurisdiction_id": "elsewhere"})
        assert reply.status_code == 404
        await refused(http, good(o311_key, jurisdiction_id="elsewhere"), 404)


async def test_a_revoked_key_is_refused(
    o311_http: httpx.AsyncClient, o311_bearer: Bearer, conn: Connection
) -> None:
    admin = await o311_bearer(ADMIN)
    issued = await o311_http.post("/api/v1/channels/open311/keys", json={"app": "fixmystreet"}, headers=admin)
    assert issued.status_code == 201, issued.text
    key = issued.json()
    assert key["key"].startswith(key["prefix"])
    stored = await conn.fetchval("SELECT key_digest FROM channels.open311_keys WHERE id = $1", key["id"])
    assert key["key"].encode() not in bytes(stored)  # a digest, not the key
    assert (await o311_http.post("/open311/v2/requests.json", data=good(key["key"]))).status_code == 201

    listed = (await o311_http.get("/api/v1/channels/open311/keys", headers=admin)).json()
    assert key["id"] in {k["id"] for k in listed["items"]}
    assert all("key" not in k for k in listed["items"])
    revoked = await o311_http.delete(f"/api/v1/channels/open311/keys/{key['id']}", headers=admin)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"]
    await refused(o311_http, good(key["key"]), 403)
    assert key["id"] not in {
        k["id"] for k in (await o311_http.get("/api/v1/channels/open311/keys", headers=admin)).json()["items"]
    }


async def test_only_admins_manage_keys(o311_http: httpx.AsyncClient, o311_bearer: Bearer) -> None:
    assert (await o311_http.get("/api/v1/channels/open311/keys")).status_code == 401
    citizen = await o311_bearer(CITIZEN)
    reply = await o311_http.post("/api/v1/channels/open311/keys", json={"app": "x"}, headers=citizen)
    assert reply.status_code == 403
    assert reply.headers["content-type"].startswith("application/problem+json")
    admin = await o311_bearer(ADMIN)
    bad = await o311_http.post("/api/v1/channels/open311/keys", json={"app": ""}, headers=admin)
    assert bad.status_code == 400


async def test_rate_limits_per_address_and_per_key_answer_429(
    o311_settings: Settings,
    db: RollbackDatabase,
    o311_clock: Clock,
    o311_city: engine.Runtime,
    conn: Connection,
) -> None:
    settings = o311_settings.model_copy(update={"open311_rate_per_minute": 3})
    key = await issue_key(conn)
    async with o311_client(settings, db, o311_clock) as http:
        replies = [await http.post("/open311/v2/requests.json", data=good(key)) for _ in range(4)]
    assert [r.status_code for r in replies] == [201, 201, 201, 429]
    assert int(replies[-1].headers["Retry-After"]) >= 1
    assert replies[-1].json()[0]["code"] == 429
    async with o311_client(settings, db, o311_clock) as other_address:
        assert (await other_address.post("/open311/v2/requests.json", data=good(key))).status_code == 201

    slow = await issue_key(conn, rate_per_minute=2)
    async with o311_client(o311_settings, db, o311_clock) as http:
        replies = [await http.post("/open311/v2/requests.json", data=good(slow)) for _ in range(3)]
    assert [r.status_code for r in replies] == [201, 201, 429]
    assert "api key" in replies[-1].json()[0]["description"]


async def test_a_service_without_anonymous_reports_needs_a_signed_in_citizen(
    o311_http: httpx.AsyncClient, o311_key: str, o311_bearer: Bearer, conn: Connection
) -> None:
    vending = {"api_key": o311_key, "service_code": "street_vending", "lat": str(LAT), "long": str(LON)}
    descriptions = await refused(o311_http, form(**vending, description="Stalls block the pavement."), 403)
    assert "signed-in citizens only" in descriptions[0]
    reply = await o311_http.post(
        "/open311/v2/requests.json",
        data=form(**vending, description="Stalls block the pavement."),
        headers=await o311_bearer(CITIZEN),
    )
    assert reply.status_code == 201, reply.text
    reporter = await conn.fetchval(
        "SELECT reporter FROM grid.cases WHERE number = $1", reply.json()[0]["service_request_id"]
    )
    assert reporter == CITIZEN.subject
    bad_token = await o311_http.post(
        "/open311/v2/requests.json", data=form(**vending), headers={"Authorization": "Bearer nonsense"}
    )
    assert bad_token.status_code == 401
    assert bad_token.json()[0]["code"] == 401


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (
            {"description": "A pothole\x00 at the crossing."},
            "description: control characters are not allowed",
        ),
        (
            {"description": "A pothole\x01 at the crossing."},
            "description: control characters are not allowed",
        ),
        ({"description": "A pothole\x1b[31m"}, "description: control characters are not allowed"),
        (
            {"lat": None, "long": None, "address_string": "12 Riverside Road\n3rd floor"},
            "address_string: one line",
        ),
        ({"lat": None, "long": None, "address_string": "12 Riverside\x00 Road"}, "address_string: one line"),
        ({"address_id": "A-12\x7f"}, "address_id: one line"),
        ({"service_code": "road_damage\x00"}, "service_code: one line"),
        ({"first_name": "Li\x00"}, "first_name: one line"),
        ({"attributes": {"hazards": ["pothole\x02"], "width_cm": "40"}}, "attribute[hazards][]: control"),
        ({"attri\x01bute": "x"}, "a parameter's name holds control characters"),
    ],
)
async def test_control_characters_are_refused_in_the_spec_format_and_nothing_is_written(
    o311_http: httpx.AsyncClient, o311_key: str, conn: Connection, change: dict[str, Any], says: str
) -> None:
    """NUL cannot be stored and no C0 control can be carried by XML 1.0: each is a 400 in
    Open311's own error array (JSON and XML), never a 500 nor a stored case that breaks a feed."""
    before = await cases(conn)
    data = good(o311_key, **change)
    descriptions = await refused(o311_http, data, 400)
    assert any(d.startswith(says) for d in descriptions), descriptions
    reply = await o311_http.post("/open311/v2/requests.xml", data=data)
    assert reply.status_code == 400
    assert xml(reply).tag == "errors"  # well-formed: the name or value is not echoed raw
    assert await cases(conn) == before
    assert await conn.fetchval("SELECT count(*) FROM channels.open311_requests") == 0


async def test_line_breaks_are_kept_where_text_runs_over_lines(
    o311_http: httpx.AsyncClient, o311_key: str, conn: Connection
) -> None:
    """A description and a text attribute may have line breaks; a string attribute is one line."""
    dumping = {"api_key": o311_key, "service_code": "illegal_dumping", "lat": str(LAT), "long": str(LON)}
    ok = await o311_http.post(
        "/open311/v2/requests.json",
        data=form(
            **dumping,
            description="Bags by the gate.\r\nAnd a mattress.",
            attributes={"waste_type": "bulky", "details": "Two bags,\nmostly paper.\tOld."},
        ),
    )
    assert ok.status_code == 201, ok.text
    number = ok.json()[0]["service_request_id"]
    stored = await conn.fetchval("SELECT description FROM grid.cases WHERE number = $1", number)
    assert "\n" in stored
    light = {"api_key": o311_key, "service_code": "street_light", "lat": str(LAT), "long": str(LON)}
    descriptions = await refused(
        o311_http,
        form(**light, attributes={"lights_out": "1", "pattern": "off", "pole_number": "RL\n12"}),
        400,
    )
    assert descriptions == ["attribute[pole_number]: one line, without control characters"]


async def test_control_characters_in_an_update_are_refused(
    o311_http: httpx.AsyncClient, o311_key: str, conn: Connection
) -> None:
    created = await o311_http.post("/open311/v2/requests.json", data=good(o311_key))
    number = created.json()[0]["service_request_id"]
    notes = "SELECT count(*) FROM grid.case_history WHERE action = 'note'"
    for change, says in [
        ({"description": "Worse\x00 now."}, "description: control characters"),
        ({"description": "Worse\x01 now."}, "description: control characters"),
        ({"update_id": "fms\n77"}, "update_id: one line"),
        ({"service_request_id": number + "\x00"}, "service_request_id: one line"),
    ]:
        fields = {"api_key": o311_key, "service_request_id": number, "description": "Worse now."} | change
        descriptions = await refused(o311_http, fields, 400, path="servicerequestupdates.json")
        assert any(d.startswith(says) for d in descriptions), descriptions
    assert await conn.fetchval(notes) == 0
    fine = {"api_key": o311_key, "service_request_id": number, "description": "Worse now.\nAnd wider."}
    assert (await o311_http.post("/open311/v2/servicerequestupdates.json", data=fine)).status_code == 201


async def test_control_characters_in_a_query_or_path_are_400(o311_http: httpx.AsyncClient) -> None:
    for path, params in [
        ("/open311/v2/requests.json", {"service_request_id": "GC-2026-000001\x00"}),
        ("/open311/v2/requests.json", {"service_code": "street_light\x01"}),
        ("/open311/v2/servicerequestupdates.json", {"start_date": "2026-09-28T00:00:00Z\n"}),
        ("/open311/v2/requests/GC-2026-000001%00.json", {}),
        ("/open311/v2/services.xml", {"jurisdiction_id": "\x01"}),
    ]:
        reply = await o311_http.get(path, params=params)
        assert reply.status_code == 400, (path, params, reply.text)
        if path.endswith(".xml"):
            assert xml(reply).findtext("error/code") == "400"
        else:
            assert reply.json()[0]["code"] == 400


async def test_an_api_key_in_the_url_is_refused(
    o311_http: httpx.AsyncClient, o311_key: str, conn: Connection
) -> None:
    """A key in the query string lands in access logs: only the form body of a POST carries it."""
    data = good(o311_key)
    del data["api_key"]
    reply = await o311_http.post("/open311/v2/requests.json", params={"api_key": o311_key}, data=data)
    assert reply.status_code == 400
    assert reply.json()[0]["description"].startswith("api_key: not accepted in the URL")
    both = await o311_http.post(
        "/open311/v2/requests.json", params={"api_key": o311_key}, data=good(o311_key)
    )
    assert both.status_code == 400
    update = await o311_http.post(
        "/open311/v2/servicerequestupdates.xml",
        params={"api_key": o311_key},
        data={"service_request_id": "GC-2026-000001", "description": "x"},
    )
    assert update.status_code == 400
    assert xml(update).findtext("error/description").startswith("api_key: not accepted in the URL")
    read = await o311_http.get("/open311/v2/requests.json", params={"api_key": o311_key})
    assert read.status_code == 400
    assert await cases(conn) == 0
