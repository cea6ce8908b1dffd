"""The catalog over HTTP: public search and reads, versions and comparison, the administrators'
edits with If-Match, and every refusal."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from onewindow.db import Connection
from tests.services.conftest import Bearer, Headers, People, make_person, seed_units
from workflows.api import Actor

C = "/api/v1/catalog"


@pytest.fixture
async def admin(conn: Connection, city: People) -> Actor:
    units = await seed_units(conn)
    return await make_person(conn, units, "Admin", ("admin", "demo"))


@pytest.fixture
async def as_admin(admin: Actor, bearer: Bearer) -> Headers:
    return await bearer(admin)


def problem(reply: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = reply.json()
    assert body["type"].endswith(kind)
    return body


def pointers(body: dict[str, Any]) -> set[str]:
    return {e["pointer"] for e in body.get("errors", [])}


SIGN: dict[str, Any] = {
    "department": "urban",
    "name": {"zh": "店招", "en": "Shop sign"},
    "legal_days": 10,
    "promised_days": 5,
    "form_schema": {
        "type": "object",
        "properties": {"owned": {"type": "boolean", "title": "自有 / Owned"}},
        "required": ["owned"],
    },
    "checklist": [
        {
            "code": "consent",
            "name": {"zh": "同意书", "en": "Consent"},
            "when": {"!": {"var": "form.owned"}},
            "later_allowed": True,
        }
    ],
    "life_events": ["open-business"],
    "keywords": ["招牌"],
}


async def test_public_search_by_keyword_department_life_event_and_channel(http: httpx.AsyncClient) -> None:
    every = await http.get(f"{C}/items")
    assert every.status_code == 200, every.text
    assert [i["code"] for i in every.json()["items"]] == [
        "t-business",
        "t-clinic",
        "t-fire",
        "t-food",
        "t-signage",
    ]
    by_word = await http.get(f"{C}/items", params={"q": "LICENCE"})
    assert [i["code"] for i in by_word.json()["items"]] == ["t-business", "t-food"]
    assert [i["code"] for i in (await http.get(f"{C}/items", params={"q": "食品"})).json()["items"]] == [
        "t-food"
    ]
    health = (await http.get(f"{C}/items", params={"department": "health"})).json()["items"]
    assert [i["code"] for i in health] == ["t-clinic", "t-food"]
    assert health[0]["department"] == {
        "code": "health",
        "name": {"zh": "卫生健康委员会", "en": "Health Commission"},
    }
    life = await http.get(f"{C}/items", params={"life_event": "open-business"})
    assert [i["code"] for i in life.json()["items"]] == ["t-business", "t-food"]
    counter_only = await http.get(f"{C}/items", params={"channel": "app"})
    assert "t-clinic" not in [i["code"] for i in counter_only.json()["items"]]
    first = (await http.get(f"{C}/items", params={"limit": 2})).json()
    assert [i["code"] for i in first["items"]] == ["t-business", "t-clinic"]
    second = (await http.get(f"{C}/items", params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert [i["code"] for i in second["items"]] == ["t-fire", "t-food"]
    problem(await http.get(f"{C}/items", params={"cursor": "nonsense!"}), 400, "validation")
    problem(await http.get(f"{C}/items", params={"limit": 0}), 400, "validation")
    problem(await http.get(f"{C}/items", params={"channel": "fax"}), 400, "validation")
    events = (await http.get(f"{C}/life-events")).json()
    assert events == [{"code": "open-business", "items": 2, "bundles": 1}]


async def test_an_item_and_a_bundle_with_their_forms_and_checklists(http: httpx.AsyncClient) -> None:
    reply = await http.get(f"{C}/items/t-food")
    assert reply.status_code == 200, reply.text
    assert reply.headers["etag"] == '"1"'
    body = reply.json()
    assert body["item"]["code"] == "t-food"
    assert list(body["form_schema"]["properties"]) == ["company_name", "address", "area"]
    assert [d["code"] for d in body["checklist"]] == ["id_card", "floor_plan", "business_licence"]
    assert body["checklist"][1]["when"] == {">": [{"var": "form.area"}, 50]}
    problem(await http.get(f"{C}/items/nothing"), 404, "not-found")
    bundle = await http.get(f"{C}/bundles/t-restaurant")
    assert bundle.status_code == 200, bundle.text
    detail = bundle.json()
    assert [i["code"] for i in detail["items"]] == ["t-business", "t-food", "t-fire", "t-signage"]
    assert len({i["department"]["code"] for i in detail["items"]}) == 4
    assert list(detail["form_schema"]["properties"]) == ["company_name", "address", "area", "sign_text"]
    documents = {d["code"]: d for d in detail["checklist"]}
    assert list(documents) == ["id_card", "lease", "floor_plan", "business_licence"]
    assert documents["floor_plan"]["items"] == ["t-food", "t-fire"]
    assert documents["id_card"]["items"] == ["t-business", "t-food"]
    assert (detail["fee_minor"], detail["promised_days"]) == (35000, 10)
    assert detail["channels"] == ["online", "counter"]
    assert [
        b["code"] for b in (await http.get(f"{C}/bundles", params={"q": "restaurant"})).json()["bundles"]
    ] == ["t-restaurant"]
    assert (await http.get(f"{C}/bundles", params={"q": "nothing-like-it"})).json()["bundles"] == []
    problem(await http.get(f"{C}/bundles/nothing"), 404, "not-found")


async def test_admin_creates_edits_compares_and_withdraws_an_item(
    http: httpx.AsyncClient, as_admin: Headers, admin: Actor
) -> None:
    created = await http.put(f"{C}/items/shop-sign", json=SIGN, headers={**as_admin, "X-Change-Note": "new"})
    assert created.status_code == 201, created.text
    assert created.headers["etag"] == '"1"'
    # An existing item needs If-Match; a stale one is refused.
    changed = {**SIGN, "fee_minor": 2000, "note": "a fee"}
    problem(
        await http.put(f"{C}/items/shop-sign", json=changed, headers=as_admin), 428, "precondition-required"
    )
    second = await http.put(f"{C}/items/shop-sign", json=changed, headers={**as_admin, "If-Match": '"1"'})
    assert second.status_code == 200, second.text
    assert second.headers["etag"] == '"2"'
    stale = await http.put(f"{C}/items/shop-sign", json=SIGN, headers={**as_admin, "If-Match": '"1"'})
    problem(stale, 412, "precondition-failed")
    # No change: the same version.
    same = await http.put(f"{C}/items/shop-sign", json=changed, headers={**as_admin, "If-Match": '"2"'})
    assert same.headers["etag"] == '"2"'
    withdrawn = await http.put(
        f"{C}/items/shop-sign", json={**changed, "active": False}, headers={**as_admin, "If-Match": '"2"'}
    )
    assert withdrawn.json()["item"]["active"] is False
    assert "shop-sign" not in [i["code"] for i in (await http.get(f"{C}/items")).json()["items"]]
    listed = await http.get(f"{C}/items", params={"include_inactive": "true"}, headers=as_admin)
    assert "shop-sign" in [i["code"] for i in listed.json()["items"]]
    # Versions: public without who, the administrator with.
    public = (await http.get(f"{C}/items/shop-sign/versions")).json()
    assert [(v["version"], v.get("note"), "changed_by" in v) for v in public] == [
        (3, "a fee", False),  # the body's note, sent again
        (2, "a fee", False),
        (1, "new", False),
    ]
    mine = (await http.get(f"{C}/items/shop-sign/versions", headers=as_admin)).json()
    assert {v["changed_by"] for v in mine} == {admin.subject}
    one = (await http.get(f"{C}/items/shop-sign/versions/1")).json()
    assert (one["item"]["fee_minor"], one["published"]["version"]) == (0, 1)
    problem(await http.get(f"{C}/items/shop-sign/versions/9"), 404, "not-found")
    compared = (await http.get(f"{C}/items/shop-sign/versions/1/compare/3")).json()
    assert compared["changes"] == [
        {"field": "fee_minor", "old": 0, "new": 2000},
        {"field": "active", "old": True, "new": False},
    ]
    problem(await http.get(f"{C}/items/shop-sign/versions/1/compare/7"), 404, "not-found")


async def test_every_problem_of_an_edit_is_listed_and_nothing_is_written(
    http: httpx.AsyncClient, as_admin: Headers, conn: Connection
) -> None:
    bad = {
        **SIGN,
        "department": "nowhere",
        "promised_days": 11,
        "fee_minor": -5,
        "form_schema": {"type": "string"},
        "checklist": [*SIGN["checklist"], SIGN["checklist"][0]],
    }
    reply = await http.put(f"{C}/items/shop-sign", json=bad, headers=as_admin)
    body = problem(reply, 400, "validation")
    assert pointers(body) >= {
        "/department",
        "/promised_days",
        "/fee_minor",
        "/form_schema/type",
        "/form_schema/properties",
        "/checklist/1/code",
    }
    assert await conn.fetchval("SELECT count(*) FROM services.items WHERE code = 'shop-sign'") == 0
    problem(await http.put(f"{C}/items/Not%20A%20Code", json=SIGN, headers=as_admin), 400, "validation")
    unknown = await http.put(f"{C}/items/shop-sign", json={**SIGN, "colour": "red"}, headers=as_admin)
    problem(unknown, 400, "validation")
    not_json = await http.put(f"{C}/items/shop-sign", content=b"{", headers=as_admin)
    assert not_json.status_code == 400
    assert not_json.headers["content-type"].startswith("application/problem+json")
    dry = await http.post(f"{C}/items/validate", json={**bad, "code": "shop-sign"}, headers=as_admin)
    assert pointers(problem(dry, 400, "validation")) == pointers(body)
    ok = await http.post(f"{C}/items/validate", json={**SIGN, "code": "shop-sign"}, headers=as_admin)
    assert ok.status_code == 200, ok.text
    assert ok.json()["valid"] is True
    assert await conn.fetchval("SELECT count(*) FROM services.items WHERE code = 'shop-sign'") == 0


async def test_admin_publishes_bundles(http: httpx.AsyncClient, as_admin: Headers) -> None:
    pair = {"name": {"zh": "两件事", "en": "Two things"}, "items": ["t-business", "t-fire"]}
    created = await http.put(f"{C}/bundles/pair", json=pair, headers=as_admin)
    assert created.status_code == 201, created.text
    assert created.json()["form_schema"]["required"] == ["company_name", "address", "area"]
    more = {**pair, "items": ["t-business", "t-fire", "t-signage"]}
    problem(await http.put(f"{C}/bundles/pair", json=more, headers=as_admin), 428, "precondition-required")
    second = await http.put(f"{C}/bundles/pair", json=more, headers={**as_admin, "If-Match": '"1"'})
    assert second.headers["etag"] == '"2"'
    assert [v["version"] for v in (await http.get(f"{C}/bundles/pair/versions")).json()] == [2, 1]
    assert (await http.get(f"{C}/bundles/pair/versions/1")).json()["bundle"]["items"] == [
        "t-business",
        "t-fire",
    ]
    bad = await http.put(f"{C}/bundles/odd", json={**pair, "items": ["t-fire", "nothing"]}, headers=as_admin)
    assert pointers(problem(bad, 400, "validation")) == {"/items/1"}
    dry = await http.post(
        f"{C}/bundles/validate", json={**pair, "code": "odd", "items": ["t-fire"]}, headers=as_admin
    )
    assert pointers(problem(dry, 400, "validation")) == {"/items"}


@pytest.mark.parametrize(
    "path",
    [
        "/items/t-fire/versions/99999999999",
        "/items/t-fire/versions/2147483648",
        "/items/t-fire/versions/0",
        "/items/t-fire/versions/-1",
        "/items/t-fire/versions/1/compare/99999999999",
        "/items/t-fire/versions/99999999999/compare/1",
        "/bundles/t-restaurant/versions/99999999999",
    ],
)
async def test_a_version_number_out_of_range_is_a_400_not_a_500(http: httpx.AsyncClient, path: str) -> None:
    problem(await http.get(f"{C}{path}"), 400, "validation")


async def test_the_largest_version_number_is_merely_not_found(http: httpx.AsyncClient) -> None:
    problem(await http.get(f"{C}/items/t-fire/versions/2147483647"), 404, "not-found")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/items/shop-sign", SIGN),
        ("POST", "/items/validate", {**SIGN, "code": "shop-sign"}),
        ("PUT", "/bundles/pair", {"name": {"zh": "两", "en": "Two"}, "items": ["t-business", "t-fire"]}),
        (
            "POST",
            "/bundles/validate",
            {"code": "pair", "name": {"zh": "两", "en": "Two"}, "items": ["t-fire"]},
        ),
    ],
)
async def test_only_administrators_edit_the_catalog(
    http: httpx.AsyncClient, people: People, bearer: Bearer, method: str, path: str, body: dict[str, Any]
) -> None:
    problem(await http.request(method, C + path, json=body), 401, "unauthorized")
    for actor in (people.citizen, people.officers["urban"], people.supervisors["urban"], people.clerk):
        problem(
            await http.request(method, C + path, json=body, headers=await bearer(actor)), 403, "forbidden"
        )


async def test_only_administrators_list_inactive_entries(
    http: httpx.AsyncClient, people: People, bearer: Bearer
) -> None:
    for what in ("items", "bundles"):
        problem(await http.get(f"{C}/{what}", params={"include_inactive": "true"}), 401, "unauthorized")
        officer = await bearer(people.officers["market"])
        problem(
            await http.get(f"{C}/{what}", params={"include_inactive": "true"}, headers=officer),
            403,
            "forbidden",
        )


async def test_every_catalog_route_is_documented_with_examples(http: httpx.AsyncClient) -> None:
    document = (await http.get("/schema/openapi.json")).json()
    operations = {
        (method, path): operation
        for path, entries in document["paths"].items()
        if path.startswith(C)
        for method, operation in entries.items()
        if method in ("get", "put", "post")
    }
    assert len(operations) == 14
    for (method, path), operation in operations.items():
        assert operation.get("operationId"), (method, path)
        assert operation.get("summary"), (method, path)
        assert operation.get("description"), (method, path)
        reply = operation["responses"]["200"]["content"]["application/json"]
        assert reply.get("examples"), (method, path)
        if method != "get":
            body = operation["requestBody"]["content"]["application/json"]
            assert body.get("examples") or body["schema"].get("examples"), (method, path)
