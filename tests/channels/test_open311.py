"""Open311 GeoReport v2 over HTTP against the real PostgreSQL: discovery, services and their
definitions, reporting (a grid case in the same transaction), tokens, finding requests, both
formats, and every JSON reply validated against the shared schemas."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from grid import seed as grid_seed
from onewindow.db import Connection
from tests.channels.open311_fixtures import form, valid, xml

pytest_plugins = ["tests.channels.open311_fixtures"]

LAT, LON = grid_seed.grid_centre("G-0107")


def light(key: str, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "api_key": key,
        "service_code": "street_light",
        "lat": str(LAT),
        "long": str(LON),
        "description": "Two lights out by the bus stop.",
        "attributes": {"lights_out": "2", "pattern": "off"},
    }
    fields.update(extra)
    return form(**fields)


async def report(http: httpx.AsyncClient, key: str, **extra: Any) -> dict[str, Any]:
    reply = await http.post("/open311/v2/requests.json", data=light(key, **extra))
    assert reply.status_code == 201, reply.text
    created: dict[str, Any] = reply.json()[0]
    return created


async def test_discovery_names_the_base_url_and_both_formats(o311_http: httpx.AsyncClient) -> None:
    body = (await o311_http.get("/open311/v2/discovery.json")).json()
    endpoint = body["endpoints"][0]
    assert endpoint["url"].endswith("/open311/v2")
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert set(endpoint["formats"]) == {"text/xml", "application/json"}
    root = xml(await o311_http.get("/open311/v2/discovery.xml"))
    assert root.tag == "discovery"
    assert [f.text for f in root.findall("endpoints/endpoint/formats/format")] == [
        "text/xml",
        "application/json",
    ]


async def test_every_citizen_reportable_category_is_a_service(o311_http: httpx.AsyncClient) -> None:
    services = valid("services.json", (await o311_http.get("/open311/v2/services.json")).json())
    codes = {s["service_code"] for s in services}
    assert "street_light" in codes
    assert "graffiti" not in codes  # not reported by citizens
    light_service = next(s for s in services if s["service_code"] == "street_light")
    assert light_service["metadata"] is True
    assert light_service["service_name"] == "Street light out"
    root = xml(await o311_http.get("/open311/v2/services.xml"))
    assert root.tag == "services"
    assert {s.findtext("service_code") for s in root.findall("service")} == codes
    assert root.find("service/metadata").text in ("true", "false")


async def test_service_definitions_have_every_datatype(o311_http: httpx.AsyncClient) -> None:
    seen: set[str] = set()
    for code in ("street_light", "road_damage", "illegal_dumping", "fire_hazard", "blocked_drain"):
        reply = await o311_http.get(f"/open311/v2/services/{code}.json")
        definition = valid("service-definition.json", reply.json())
        assert definition["service_code"] == code
        seen |= {a["datatype"] for a in definition["attributes"]}
    assert seen == {"string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"}
    root = xml(await o311_http.get("/open311/v2/services/street_light.xml"))
    assert root.tag == "service_definition"
    pattern = next(a for a in root.findall("attributes/attribute") if a.findtext("code") == "pattern")
    assert pattern.findtext("datatype") == "singlevaluelist"
    assert [v.findtext("key") for v in pattern.findall("values/value")] == ["off", "flickering", "day"]


async def test_a_report_becomes_a_located_grid_case_and_its_token_finds_it(
    o311_http: httpx.AsyncClient, o311_key: str, conn: Connection
) -> None:
    created = await report(o311_http, o311_key)
    number, token = created["service_request_id"], created["token"]
    assert number.startswith("GC-")
    case = await conn.fetchrow(
        "SELECT source, grid_code, category, status FROM grid.cases WHERE number = $1", number
    )
    assert case is not None
    assert dict(case) == {
        "source": "citizen",
        "grid_code": "G-0107",
        "category": "street_light",
        "status": "registering",
    }

    tokens = (await o311_http.get(f"/open311/v2/tokens/{token}.json")).json()
    assert tokens == [{"service_request_id": number, "token": token}]
    root = xml(await o311_http.get(f"/open311/v2/tokens/{token}.xml"))
    assert root.tag == "service_requests"
    assert root.findtext("request/service_request_id") == number

    requests = valid("requests.json", (await o311_http.get(f"/open311/v2/requests/{number}.json")).json())
    request = requests[0]
    assert request["status"] == "open"
    assert request["service_code"] == "street_light"
    assert request["agency_responsible"] == "Urban Management Department"
    assert request["requested_datetime"].endswith("+08:00")  # the city's time zone, with its offset
    assert request["lat"] == pytest.approx(LAT)
    root = xml(await o311_http.get(f"/open311/v2/requests/{number}.xml"))
    assert root.findtext("request/service_request_id") == number
    assert root.findtext("request/status") == "open"


async def test_a_report_in_xml_answers_in_xml(o311_http: httpx.AsyncClient, o311_key: str) -> None:
    reply = await o311_http.post("/open311/v2/requests.xml", data=light(o311_key))
    assert reply.status_code == 201
    root = xml(reply)
    assert root.tag == "service_requests"
    assert root.findtext("request/service_request_id").startswith("GC-")
    assert root.findtext("request/token")
