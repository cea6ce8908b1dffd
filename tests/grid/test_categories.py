"""Case categories: admins add and change them (If-Match), everyone staff reads them."""

from __future__ import annotations

from typing import Any

import httpx

from identity.tokens import RoleGrant
from tests.grid.conftest import WORKER
from workflows.api import Actor

ADMIN = Actor(subject="admin-1", kind="person", roles=(RoleGrant(role="admin", unit="demo", path="demo"),))
NEW = {
    "code": "broken_bench",
    "kind": "component",
    "name_zh": "座椅损坏",
    "name_en": "Broken bench",
    "department": "urban",
    "register_limit": "PT4H",
    "handle_limit": "P3D",
}


async def test_an_admin_adds_and_changes_a_category_with_if_match(
    http: httpx.AsyncClient, bearer: Any
) -> None:
    admin, worker = await bearer(ADMIN), await bearer(WORKER)
    created = await http.post("/api/v1/grid/categories", json=NEW, headers=admin)
    assert created.status_code == 201, created.text
    assert created.headers["etag"] == '"1"'
    assert (await http.post("/api/v1/grid/categories", json=NEW, headers=admin)).status_code == 409
    read = (await http.get("/api/v1/grid/categories/broken_bench", headers=worker)).json()
    assert (read["severity"], read["citizen_reportable"], read["active"]) == ("normal", True, True)

    change = {k: v for k, v in NEW.items() if k != "code"} | {"severity": "high", "handle_limit": "P2D"}
    path = "/api/v1/grid/categories/broken_bench"
    assert (await http.put(path, json=change, headers=admin)).status_code == 428
    assert (await http.put(path, json=change, headers={**admin, "If-Match": '"7"'})).status_code == 412
    changed = await http.put(path, json=change, headers={**admin, "If-Match": '"1"'})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["severity"], changed.json()["handle_limit"], changed.json()["version"]) == (
        "high",
        "P2D",
        2,
    )
    assert (await http.put(path, json=change, headers={**admin, "If-Match": '"1"'})).status_code == 412


async def test_bad_categories_and_non_admins_are_refused(http: httpx.AsyncClient, bearer: Any) -> None:
    admin, worker = await bearer(ADMIN), await bearer(WORKER)
    assert (await http.post("/api/v1/grid/categories", json=NEW, headers=worker)).status_code == 403
    for bad in (
        {"department": "nowhere"},
        {"handle_limit": "3 days"},
        {"code": "Bad Code"},
        {"kind": "rumour"},
    ):
        reply = await http.post("/api/v1/grid/categories", json=NEW | bad, headers=admin)
        assert reply.status_code == 400, (bad, reply.text)
        assert reply.headers["content-type"].startswith("application/problem+json")
    assert (await http.get("/api/v1/grid/categories/broken_bench", headers=worker)).status_code == 404
