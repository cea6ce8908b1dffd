"""The admin API over HTTP: units, persons, role assignments, clients, signing keys, the audit log.

The demo city is seeded in each test's transaction; tokens are minted for its accounts with the
roles they really hold. PostgreSQL's now() is the start of the test's transaction, fixed for the
whole test.
"""

from __future__ import annotations

import base64
import time
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from identity import sessions, store
from identity.admin import redirect_uri_problem, role_allowed_at
from identity.api import ROLES
from identity.credentials import normalise_national_id, normalise_phone, prc_id_check_character
from identity.keys import KeyRing
from identity.registration import PersonalData
from identity.seed import DEMO_ACCOUNTS, DEMO_UNITS
from identity.tokens import issue_access_token
from onewindow.db import Connection
from onewindow.settings import Settings

A = "/api/v1/identity/admin"
GOOD_PASSWORD = "correct horse battery staple"
PHONE = "+86 138 0013 8000"
NATIONAL_ID = "11010519491231002" + prc_id_check_character("11010519491231002")


# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def http(browser: httpx.AsyncClient) -> httpx.AsyncClient:
    """The demo city's app (tests/identity/conftest.py `browser`), under this file's name."""
    return browser


async def person_id(conn: Connection, username: str) -> UUID:
    person = await store.person_by_login(conn, login=username, phone_hash=None)
    assert person is not None
    return person.id


async def bearer_for(conn: Connection, ring: KeyRing, settings: Settings, username: str) -> dict[str, str]:
    """A staff console token for a demo account, carrying the roles it holds."""
    subject = await person_id(conn, username)
    token, _ = await issue_access_token(
        ring,
        issuer=settings.public_url,
        subject=str(subject),
        client_id="console",
        scope="openid staff",
        lifetime=300,
        roles=await store.active_roles(conn, subject),
    )
    return {"Authorization": f"Bearer {token}"}


async def machine_bearer(ring: KeyRing, settings: Settings) -> dict[str, str]:
    token, _ = await issue_access_token(
        ring,
        issuer=settings.public_url,
        subject="ioc",
        client_id="ioc",
        scope="ioc.feed ioc.update",
        lifetime=300,
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def admin(
    conn: Connection, ring: KeyRing, settings: Settings, http: httpx.AsyncClient
) -> dict[str, str]:
    return await bearer_for(conn, ring, settings, "admin1")


def problem(reply: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = reply.json()
    assert body["type"] == f"urn:onewindow:problem:{slug}"
    return body


def pointers(body: dict[str, Any]) -> set[str]:
    return {error["pointer"] or error.get("parameter", "") for error in body["errors"]}


async def audit_rows(conn: Connection, action: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT actor_id, client_id, subject, detail FROM identity.audit_log WHERE action = $1 ORDER BY id",
        action,
    )
    return [dict(row.items()) for row in rows]


async def all_pages(http: httpx.AsyncClient, headers: dict[str, str], path: str, **params: Any) -> list[Any]:
    items: list[Any] = []
    cursor = None
    for _ in range(50):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        reply = await http.get(path, params=query, headers=headers)
        assert reply.status_code == 200, reply.text
        items += reply.json()["items"]
        cursor = reply.json()["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the cursor never ran out")


# --- who may call what ---------------------------------------------------------------------------

ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/units", None),
    ("GET", "/units/demo", None),
    ("POST", "/units", {"code": "x", "kind": "district", "parent": "demo", "name_zh": "x", "name_en": "x"}),
    ("PATCH", "/units/demo", {"name_en": "Renamed"}),
    ("GET", "/persons", None),
    ("POST", "/persons/search", {"phone": PHONE}),
    ("GET", "/persons/{citizen}", None),
    ("POST", "/persons", {"username": "newstaff", "display_name": "New", "password": GOOD_PASSWORD}),
    ("PATCH", "/persons/{citizen}", {"display_name": "Renamed"}),
    ("POST", "/persons/{citizen}/disable", None),
    ("POST", "/persons/{citizen}/enable", None),
    ("POST", "/persons/{citizen}/unlock", None),
    ("GET", "/persons/{citizen}/roles", None),
    ("POST", "/persons/{citizen}/roles", {"role": "officer", "unit": "fire"}),
    ("DELETE", "/persons/{citizen}/roles/{assignment}", None),
    ("GET", "/clients", None),
    ("GET", "/clients/ioc", None),
    ("POST", "/clients", {"client_id": "x1", "name": "x", "token_endpoint_auth_method": "none"}),
    ("POST", "/clients/ioc/secret", None),
    ("POST", "/clients/ioc/disable", None),
    ("POST", "/clients/ioc/enable", None),
    ("GET", "/signing-keys", None),
    ("POST", "/signing-keys/rotate", None),
    ("GET", "/audit", None),
]


async def _call_every_route(
    http: httpx.AsyncClient, conn: Connection, headers: dict[str, str]
) -> dict[str, int]:
    citizen = await person_id(conn, "citizen1")
    assignment = await conn.fetchval("SELECT id FROM identity.role_assignments WHERE person_id = $1", citizen)
    seen = {}
    for method, template, body in ROUTES:
        path = A + template.format(citizen=citizen, assignment=assignment)
        reply = await http.request(method, path, json=body, headers=headers)
        seen[f"{method} {template}"] = reply.status_code
    return seen


@pytest.mark.parametrize("username", ["citizen1", "clerk1", "officer1", "supervisor1", "worker1"])
async def test_every_admin_route_refuses_every_other_role(
    http: httpx.AsyncClient, conn: Connection, ring: KeyRing, settings: Settings, username: str
) -> None:
    headers = await bearer_for(conn, ring, settings, username)
    seen = await _call_every_route(http, conn, headers)
    assert set(seen.values()) == {403}, seen


async def test_every_admin_route_refuses_a_machine_client_and_no_token(
    http: httpx.AsyncClient, conn: Connection, ring: KeyRing, settings: Settings
) -> None:
    machine = await _call_every_route(http, conn, await machine_bearer(ring, settings))
    assert set(machine.values()) == {403}, machine
    anonymous = await _call_every_route(http, conn, {})
    assert set(anonymous.values()) == {401}, anonymous


async def test_every_admin_route_answers_an_admin(
    http: httpx.AsyncClient, conn: Connection, admin: dict[str, str]
) -> None:
    seen = await _call_every_route(http, conn, admin)
    # Each route's own behaviour is tested below; here: none is refused to an administrator, and
    # none fails (the placeholder bodies are either accepted or refused as bad input).
    assert not {status for status in seen.values() if status in (401, 403) or status >= 500}, seen
    assert seen["PATCH /persons/{citizen}"] == 428  # no If-Match


async def test_a_disabled_admin_is_refused_at_once_though_the_token_is_still_valid(
    http: httpx.AsyncClient, conn: Connection, ring: KeyRing, settings: Settings, admin: dict[str, str]
) -> None:
    second = await http.post(
        f"{A}/persons",
        json={"username": "admin2", "display_name": "Second admin", "password": GOOD_PASSWORD},
        headers=admin,
    )
    assert second.status_code == 201, second.text
    granted = await http.post(
        f"{A}/persons/{second.json()['id']}/roles", json={"role": "admin", "unit": "demo"}, headers=admin
    )
    assert granted.status_code == 201, granted.text
    second_token = await bearer_for(conn, ring, settings, "admin2")
    assert (await http.get(f"{A}/units", headers=second_token)).status_code == 200
    disabled = await http.post(f"{A}/persons/{second.json()['id']}/disable", headers=admin)
    assert disabled.status_code == 200, disabled.text
    problem(await http.get(f"{A}/units", headers=second_token), 403, "forbidden")


# --- organisation units --------------------------------------------------------------------------


async def test_units_list_in_tree_order_page_by_page_and_filter(
    http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    units = await all_pages(http, admin, f"{A}/units", limit=3)
    paths = [unit["path"] for unit in units]
    assert paths == sorted(paths)
    assert len(paths) == len(set(paths)) == len(DEMO_UNITS)
    departments = await all_pages(http, admin, f"{A}/units", kind="department")
    assert {unit["code"] for unit in departments} == {
        "bureau",
        "market",
        "fire",
        "urban",
        "water",
        "health",
        "housing",
        "planning",
    }
    children = await all_pages(http, admin, f"{A}/units", parent="riverside-1")
    assert {unit["code"] for unit in children} == {"G-0107", "G-0108"}
    assert {unit["parent"] for unit in children} == {"riverside-1"}
    problem(await http.get(f"{A}/units", params={"parent": "nowhere"}, headers=admin), 404, "not-found")


async def test_a_bad_cursor_or_limit_is_a_400_naming_the_parameter(
    http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    for cursor in ("not-a-cursor!", base64.urlsafe_b64encode(b'{"x": 1}').decode()):
        body = problem(
            await http.get(f"{A}/persons", params={"cursor": cursor}, headers=admin), 400, "validation"
        )
        assert pointers(body) == {"query.cursor"}
    for limit in ("0", "101", "many"):
        body = problem(
            await http.get(f"{A}/units", params={"limit": limit}, headers=admin), 400, "validation"
        )
        assert "query.limit" in pointers(body)


async def test_units_nest_as_the_city_is_organised_and_the_path_is_computed(
    http: httpx.AsyncClient, conn: Connection, admin: dict[str, str]
) -> None:
    chain = [
        ("north", "district", "demo"),
        ("north-1", "street", "north"),
        ("north-1-a", "community", "north-1"),
        ("G-0900", "grid", "north-1-a"),
    ]
    for code, kind, parent in chain:
        reply = await http.post(
            f"{A}/units",
            json={"code": code, "kind": kind, "parent": parent, "name_zh": "北", "name_en": "North"},
            headers=admin,
        )
        assert reply.status_code == 201, reply.text
        assert reply.headers["location"] == f"{A}/units/{code}"
    grid = (await http.get(f"{A}/units/G-0900", headers=admin)).json()
    assert grid["path"] == "demo/north/north-1/north-1-a/G-0900"
    assert grid["parent"] == "north-1-a"
    audited = await audit_rows(conn, "create_unit")
    assert [row["subject"] for row in audited] == [f"unit:{code}" for code, _, _ in chain]
    assert audited[0]["detail"] == {"kind": "district", "parent": "demo"}
    assert audited[0]["actor_id"] == await person_id(conn, "admin1")


@pytest.mark.parametrize(
    ("body", "status", "slug", "pointer"),
    [
        ({"code": "s", "kind": "street", "parent": "demo"}, 422, "rule-violation", None),
        ({"code": "g", "kind": "grid", "parent": "riverside"}, 422, "rule-violation", None),
        ({"code": "d", "kind": "department", "parent": "central"}, 422, "rule-violation", None),
        ({"code": "c2", "kind": "city"}, 422, "rule-violation", None),
        ({"code": "c3", "kind": "city", "parent": "demo"}, 400, "validation", "/parent"),
        ({"code": "d2", "kind": "district"}, 400, "validation", "/parent"),
        ({"code": "d3", "kind": "district", "parent": "nowhere"}, 400, "validation", "/parent"),
        ({"code": "fire", "kind": "department", "parent": "demo"}, 409, "conflict", None),
        ({"code": "bad code!", "kind": "department", "parent": "demo"}, 400, "validation", "/code"),
        ({"code": "k", "kind": "kingdom", "parent": "demo"}, 400, "validation", "/kind"),
    ],
)
async def test_units_that_do_not_fit_the_tree_are_refused(
    http: httpx.AsyncClient,
    admin: dict[str, str],
    body: dict[str, str],
    status: int,
    slug: str,
    pointer: str | None,
) -> None:
    reply = await http.post(f"{A}/units", json={"name_zh": "名", "name_en": "Name", **body}, headers=admin)
    found = problem(reply, status, slug)
    if pointer is not None:
        assert pointer in pointers(found)


async def test_a_unit_is_renamed_and_the_rename_audited(
    http: httpx.AsyncClient, conn: Connection, admin: dict[str, str]
) -> None:
    reply = await http.patch(f"{A}/units/fire", json={"name_en": "Fire Brigade"}, headers=admin)
    assert reply.status_code == 200, reply.text
    assert reply.json()["name_en"] == "Fire Brigade"
    assert reply.json()["name_zh"] == "消防救援支队"
    assert (await audit_rows(conn, "rename_unit"))[0]["detail"] == {"fields": ["name_en"]}
    problem(await http.patch(f"{A}/units/fire", json={}, headers=admin), 400, "validation")
    problem(await http.patch(f"{A}/units/nowhere", json={"name_en": "x"}, headers=admin), 404, "not-found")


# --- persons -------------------------------------------------------------------------------------


async def test_a_staff_account_is_created_with_a_policy_checked_password(
    http: httpx.AsyncClient, conn: Connection, admin: dict[str, str]
) -> None:
    weak = await http.post(
        f"{A}/persons",
        json={"username": "X", "display_name": "Weak", "password": "password", "email": "not-an-address"},
        headers=admin,
    )
    body = problem(weak, 400, "validation")
    assert pointers(body) == {"/username", "/email", "/password"}
    assert {e["detail"] for e in body["errors"] if e["pointer"] == "/password"} >= {"too_short", "common"}
    created = await http.post(
        f"{A}/persons",
        json={
            "username": "Officer9",
            "display_name": "Officer Nine",
            "password": GOOD_PASSWORD,
            "email": "Officer9@Demo.Onewindow.Invalid",
            "locale": "en",
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    person = created.json()
    assert person["username"] == "officer9"
    assert person["email"] == "officer9@demo.onewindow.invalid"
    assert person["has_password"] is True
    assert person["assurance"] == "urn:onewindow:loa:low"
    assert created.headers["etag"] == '"1"'
    assert created.headers["location"] == f"{A}/persons/{person['id']}"
    assert (await audit_rows(conn, "create_person"))[0]["detail"] == {"kind": "staff"}
    again = await http.post(
        f"{A}/persons",
        json={"username": "officer9", "display_name": "Again", "password": GOOD_PASSWORD},
        headers=admin,
    )
    assert pointers(problem(again, 409, "conflict")) == {"/username"}


async def test_a_person_shows_phone_and_id_masked_and_is_found_by_them_only_in_a_body(
    http: httpx.AsyncClient, conn: Connection, settings: Settings, admin: dict[str, str]
) -> None:
    citizen = await person_id(conn, "citizen1")
    personal = PersonalData(settings.master_secret)
    phone = normalise_phone(PHONE)
    national_id = normalise_national_id(NATIONAL_ID)
    await conn.execute(
        "UPDATE identity.persons SET phone_hash = $2, phone_enc = $3, national_id_hash = $4,"
        " national_id_enc = $5 WHERE id = $1",
        citizen,
        personal.phone_hash(phone),
        personal.seal_phone(citizen, phone),
        personal.national_id_hash(national_id),
        personal.seal_national_id(citizen, national_id),
    )
    shown = (await http.get(f"{A}/persons/{citizen}", headers=admin)).json()
    assert shown["phone_masked"] == "*" * (len(phone) - 4) + "8000"
    assert shown["national_id_masked"] == "*" * 14 + national_id[-4:]
    assert phone not in str(shown)
    assert national_id not in str(shown)
    for search in ({"phone": "+86 138-0013-8000"}, {"national_id": NATIONAL_ID.lower()}):
        found = await http.post(f"{A}/persons/search", json=search, headers=admin)
        assert found.status_code == 200, found.text
        assert [p["id"] for p in found.json()["items"]] == [str(citizen)]
    nobody = await http.post(f"{A}/persons/search", json={"phone": "+86 139 0000 0000"}, headers=admin)
    assert nobody.json()["items"] == []
    bad = await http.post(f"{A}/persons/search", json={"phone": "call me", "national_id": "?"}, headers=admin)
    assert pointers(problem(bad, 400, "validation")) == {"/phone", "/national_id"}
    problem(await http.post(f"{A}/persons/search", json={}, headers=admin), 400, "validation")
    searches = await audit_rows(conn, "search_persons")
    assert [row["detail"] for row in searches] == [
        {"by": ["phone"], "found": 1},
        {"by": ["national_id"], "found": 1},
        {"by": ["phone"], "found": 0},
    ]


async def test_persons_list_by_prefix_and_page_by_page(
    http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    everyone = await all_pages(http, admin, f"{A}/persons", limit=2)
    assert len(everyone) == len({p["id"] for p in everyone}) == len(DEMO_ACCOUNTS)
    officers = await all_pages(http, admin, f"{A}/persons", q="officer")
    assert {p["username"] for p in officers} == {f"officer{n}" for n in range(1, 8)}
    by_name = await all_pages(http, admin, f"{A}/persons", q="Grid Worker O")
    assert [p["username"] for p in by_name] == ["worker1"]
    by_email = await all_pages(http, admin, f"{A}/persons", q="clerk1@")
    assert [p["username"] for p in by_email] == ["clerk1"]
    # LIKE's wildcards are taken literally.
    assert await all_pages(http, admin, f"{A}/persons", q="%") == []
    assert await all_pages(http, admin, f"{A}/persons", disabled="true") == []


async def test_updates_need_the_current_etag_and_a_stale_one_is_412(
    http: httpx.AsyncClient, conn: Connection, admin: dict[str, str]
) -> None:
    citizen = await person_id(conn, "citizen1")
    path = f"{A}/persons/{citizen}"
    etag = (await http.get(path, headers=admin)).headers["etag"]
    problem(await http.patch(path, json={"display_name": "New"}, headers=admin), 428, "precondition-required")
    first = await http.patch(path, json={"display_name": "Citizen Uno"}, headers={**admin, "If-Match": etag})
    assert first.status_code == 200, first.text
    assert first.json()["display_name"] == "Citizen Uno"
    assert first.headers["etag"] != etag
    # A second writer who read before the first write:
    stale = await http.patch(path, json={"locale": "zh"}, headers={**admin, "If-Match": etag})
    problem(stale, 412, "precondition-failed")
    weak = await http.patch(
        path, json={"locale": "zh"}, headers={**admin, "If-Match": f"W/{first.headers['etag']}"}
    )
    problem(weak, 412, "precondition-failed")
    taken = await http.patch(
        path,
        json={"email": "clerk1@demo.onewindow.invalid"},
        headers={**admin, "If-Match": first.headers["etag"]},
    )
    assert pointers(problem(taken, 409, "conflict")) == {"/email"}
    updates = await audit_rows(conn, "update_person")
    assert [row["detail"] for row in updates] == [{"fields": ["display_name"], "version": 2}]
    assert "Citizen Uno" not in str(updates)


async def test_disabling_ends_sessions_and_tokens_and_enabling_restores_the_account(
    http: httpx.AsyncClient, conn: Connection, settings: Settings, admin: dict[str, str]
) -> None:
    officer = await person_id(conn, "officer1")
    await sessions.start_session(conn, settings, officer, amr=["pwd"], acr="urn:onewindow:loa:low")
    disabled = await http.post(f"{A}/persons/{officer}/disable", headers=admin)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["disabled_at"] is not None
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM identity.sessions WHERE person_id = $1 AND ended_at IS NULL", officer
        )
        == 0
    )
    again = await http.post(f"{A}/persons/{officer}/disable", headers=admin)  # idempotent, one audit row
    assert again.json()["version"] == disabled.json()["version"]
    assert [row["detail"] for row in await audit_rows(conn, "disable_person")] == [{"sessions_ended": 1}]
    listed = await all_pages(http, admin, f"{A}/persons", disabled="true")
    assert [p["username"] for p in listed] == ["officer1"]
    enabled = await http.post(f"{A}/persons/{officer}/enable", headers=admin)
    assert enabled.json()["disabled_at"] is None
    assert len(await audit_rows(conn, "enable_person")) == 1
    problem(await http.post(f"{A}/persons/{uuid4()}/disable", headers=admin), 404, "not-found")


async def test_an_admin_cannot_disable_themselves_or_remove_the_last_admin(
    http: httpx.AsyncClient, conn: Connection, admin: dict[str, str]
) -> None:
    me = await person_id(conn, "admin1")
    problem(await http.post(f"{A}/persons/{me}/disable", headers=admin), 422, "rule-violation")
    roles = (await http.get(f"{A}/persons/{me}/roles", headers=admin)).json()["items"]
    (admin_role,) = [r for r in roles if r["role"] == "admin"]
    problem(
        await http.delete(f"{A}/persons/{me}/roles/{admin_role['id']}", headers=admin), 422, "rule-violation"
    )


async def test_unlock_lifts_a_lock_and_says_whether_there_was_one(
    http: httpx.AsyncClient, conn: Connection, admin: dict[str, str]
) -> None:
    clerk = await person_id(conn, "clerk1")
    await conn.execute(
        "INSERT INTO identity.account_locks (person_id, locked_until, reason)"
        " VALUES ($1, now() + interval '10 minutes', 'too_many_failures')",
        clerk,
    )
    assert (await http.get(f"{A}/persons/{clerk}", headers=admin)).json()["locked_until"] is not None
    unlocked = await http.post(f"{A}/persons/{clerk}/unlock", headers=admin)
    assert unlocked.json() == {"was_locked": True}
    assert (await http.post(f"{A}/persons/{clerk}/unlock", headers=admin)).json() == {"was_locked": False}
    audited = await audit_rows(conn, "unlock_account")
    assert [(row["subject"], row["actor_id"]) for row in audited] == [
        (str(clerk), await person_id(conn, "admin1"))
    ]


# --- role assignments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "unit", "allowed"),
    [
        ("grid_worker", "G-0107", True),
        ("grid_worker", "riverside-1", False),
        ("officer", "fire", True),
        ("officer", "central", False),
        ("supervisor", "fire", True),
        ("supervisor", "central", True),
        ("supervisor", "riverside", True),
        ("supervisor", "riverside-1", True),
        ("supervisor", "G-0107", False),
        ("supervisor", "demo", False),
        ("command_centre", "riverside", True),
        ("command_centre", "demo", True),
        ("command_centre", "riverside-1", False),
        ("command_centre", "market", False),
        ("clerk", "bureau", True),
        ("clerk", "central", False),
        ("citizen", "demo", True),
        ("citizen", "fire", False),
        ("admin", "demo", True),
        ("admin", "bureau", False),
    ],
)
async def test_roles_are_granted_only_at_their_kind_of_unit(
    http: httpx.AsyncClient, conn: Connection, admin: dict[str, str], role: str, unit: str, allowed: bool
) -> None:
    person = (
        await store.upsert_person_by_username(conn, username="newcomer", display_name="New", email=None)
    ).id
    reply = await http.post(f"{A}/persons/{person}/roles", json={"role": role, "unit": unit}, headers=admin)
    if allowed:
        assert reply.status_code == 201, reply.text
        assert (reply.json()["role"], reply.json()["unit"]) == (role, unit)
    else:
        problem(reply, 422, "rule-violation")


def test_every_role_has_a_place_in_the_tree() -> None:
    for role in ROLES:
        assert any(role_allowed_at(role, kind) for kind in ("city", "department", "grid", "street"))


async def test_a_role_is_granted_listed_and_revoked_with_who_and_when(
    http: httpx.AsyncClient, conn: Connection, admin: dict[str, str]
) -> None:
    worker = await person_id(conn, "worker1")
    me = await person_id(conn, "admin1")
    path = f"{A}/persons/{worker}/roles"
    granted = await http.post(path, json={"role": "grid_worker", "unit": "G-0108"}, headers=admin)
    assert granted.status_code == 201, granted.text
    assert granted.json()["granted_by"] == str(me)
    assert granted.json()["unit_path"] == "demo/central/riverside/riverside-1/G-0108"
    problem(
        await http.post(path, json={"role": "grid_worker", "unit": "G-0108"}, headers=admin), 409, "conflict"
    )
    body = problem(
        await http.post(path, json={"role": "grid_worker", "unit": "nowhere"}, headers=admin),
        400,
        "validation",
    )
    assert pointers(body) == {"/unit"}
    problem(await http.post(path, json={"role": "mayor", "unit": "demo"}, headers=admin), 400, "validation")
    active = (await http.get(path, headers=admin)).json()["items"]
    assert {(r["role"], r["unit"]) for r in active} == {("grid_worker", "G-0107"), ("grid_worker", "G-0108")}
    revoked = await http.delete(f"{path}/{granted.json()['id']}", headers=admin)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_by"] == str(me)
    assert revoked.json()["revoked_at"] is not None
    problem(await http.delete(f"{path}/{granted.json()['id']}", headers=admin), 409, "conflict")
    problem(await http.delete(f"{path}/{uuid4()}", headers=admin), 404, "not-found")
    assert [r["unit"] for r in (await http.get(path, headers=admin)).json()["items"]] == ["G-0107"]
    history = await all_pages(http, admin, path, include_revoked="true", limit=1)
    # Both were granted at the same now() (one transaction): the id breaks the tie, so no order.
    assert sorted(r["unit"] for r in history) == ["G-0107", "G-0108"]
    assert [r.unit for r in await store.active_roles(conn, worker)] == ["G-0107"]
    assert [row["detail"]["role"] for row in await audit_rows(conn, "grant_role")] == ["grid_worker"]
    assert [row["detail"]["unit"] for row in await audit_rows(conn, "revoke_role")] == ["G-0108"]


# --- OpenID Connect clients ----------------------------------------------------------------------


def test_redirect_uris_must_be_https_loopback_or_a_private_use_scheme() -> None:
    for good in (
        "https://portal.city.example/callback",
        "http://127.0.0.1/callback",
        "http://[::1]:8080/cb",
        "city.onewindow.app:/callback",
        "com.example.app:/oauth2redirect",
    ):
        assert redirect_uri_problem(good) is None, good
    for bad in (
        "http://portal.city.example/callback",
        "http://localhost/callback",
        "https://portal.city.example/cb#fragment",
        "https://user:pass@portal.city.example/cb",
        "https:///no-host",
        "javascript:alert(1)",
        "myapp:/callback",
        "city.onewindow.app://host/callback",
        "http://127.0.0.1:port/cb",
        "not a uri",
    ):
        assert redirect_uri_problem(bad) is not None, bad


async def test_a_public_client_is_registered_with_pkce_redirects(
    http: httpx.AsyncClient, conn: Connection, admin: dict[str, str]
) -> None:
    created = await http.post(
        f"{A}/clients",
        json={
            "client_id": "grid-app",
            "name": "Grid workers' app",
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "scopes": ["openid", "staff", "offline_access"],
            "redirect_uris": ["city.onewindow.app:/grid", "http://127.0.0.1/callback"],
            "allow_loopback_redirects": True,
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    assert created.json()["kind"] == "public"
    assert created.json()["client_secret"] is None
    assert created.json()["has_secret"] is False
    audited = (await audit_rows(conn, "create_client"))[0]
    assert audited["subject"] == "client:grid-app"
    assert audited["detail"]["kind"] == "public"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"token_endpoint_auth_method": "none", "grant_types": ["authorization_code"]}, {"/redirect_uris"}),
        (
            {
                "token_endpoint_auth_method": "none",
                "grant_types": ["client_credentials"],
                "redirect_uris": ["http://city.example/cb"],
            },
            {"/grant_types", "/redirect_uris/0"},
        ),
        (
            {
                "token_endpoint_auth_method": "client_secret_basic",
                "grant_types": ["refresh_token"],
                "scopes": ["openid", "admin:everything"],
                "allow_loopback_redirects": True,
                "post_logout_redirect_uris": ["javascript:alert(1)"],
            },
            {"/grant_types", "/scopes/1", "/allow_loopback_redirects", "/post_logout_redirect_uris/0"},
        ),
        ({"token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"]}, {"/jwks"}),
        (
            {
                "token_endpoint_auth_method": "client_secret_basic",
                "grant_types": ["client_credentials"],
                "jwks": {"keys": []},
            },
            {"/jwks"},
        ),
    ],
)
async def test_client_registrations_that_break_the_rules_list_every_offending_field(
    http: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any], expected: set[str]
) -> None:
    reply = await http.post(
        f"{A}/clients",
        json={"client_id": "bad-client", "name": "Bad", "scopes": ["openid"], **body},
        headers=admin,
    )
    assert pointers(problem(reply, 400, "validation")) == expected


async def _client_credentials(http: httpx.AsyncClient, client_id: str, secret: str) -> httpx.Response:
    return await http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "ioc.feed"},
        auth=(client_id, secret),
    )


async def test_a_confidential_client_secret_is_shown_once_works_rotates_and_the_client_disables(
    http: httpx.AsyncClient, conn: Connection, admin: dict[str, str]
) -> None:
    created = await http.post(
        f"{A}/clients",
        json={
            "client_id": "district-ioc",
            "name": "District operations centre",
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["client_credentials"],
            "scopes": ["ioc.feed"],
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    secret = created.json()["client_secret"]
    assert len(base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))) == 32
    shown = await http.get(f"{A}/clients/district-ioc", headers=admin)
    assert "client_secret" not in shown.json()
    assert "secret_hash" not in shown.json()
    assert secret not in shown.text
    assert shown.json()["has_secret"] is True
    listed = await all_pages(http, admin, f"{A}/clients", limit=2)
    assert [c["client_id"] for c in listed] == ["citizen-app", "console", "district-ioc", "ioc"]
    assert secret not in str(listed)
    token = await _client_credentials(http, "district-ioc", secret)
    assert token.status_code == 200, token.text
    assert token.json()["scope"] == "ioc.feed"

    rotated = await http.post(f"{A}/clients/district-ioc/secret", headers=admin)
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["client_secret"]
    assert new_secret != secret
    assert (await _client_credentials(http, "district-ioc", secret)).status_code == 401
    assert (await _client_credentials(http, "district-ioc", new_secret)).status_code == 200

    disabled = await http.post(f"{A}/clients/district-ioc/disable", headers=admin)
    assert disabled.json()["disabled_at"] is not None
    refused = await _client_credentials(http, "district-ioc", new_secret)
    assert refused.json()["error"] == "invalid_client"
    await http.post(f"{A}/clients/district-ioc/enable", headers=admin)
    assert (await _client_credentials(http, "district-ioc", new_secret)).status_code == 200

    for action in ("create_client", "rotate_client_secret", "disable_client", "enable_client"):
        rows = await audit_rows(conn, action)
        assert len(rows) == 1, action
        assert secret not in str(rows)
        assert new_secret not in str(rows)
    problem(await http.post(f"{A}/clients/citizen-app/secret", headers=admin), 422, "rule-violation")
    problem(await http.get(f"{A}/clients/nobody", headers=admin), 404, "not-found")
    again = await http.post(
        f"{A}/clients",
        json={
            "client_id": "district-ioc",
            "name": "Again",
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["client_credentials"],
            "scopes": ["ioc.feed"],
        },
        headers=admin,
    )
    problem(again, 409, "conflict")


async def test_a_private_key_jwt_client_registers_public_keys_only_and_signs_in_with_them(
    http: httpx.AsyncClient, settings: Settings, admin: dict[str, str]
) -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})

    def registration(jwks: dict[str, Any]) -> dict[str, Any]:
        return {
            "client_id": "sensor-hub",
            "name": "Sensor hub",
            "token_endpoint_auth_method": "private_key_jwt",
            "grant_types": ["client_credentials"],
            "scopes": ["ioc.update"],
            "jwks": jwks,
        }

    private = await http.post(
        f"{A}/clients", json=registration({"keys": [key.as_dict(private=True)]}), headers=admin
    )
    assert pointers(problem(private, 400, "validation")) == {"/jwks/keys/0"}
    ec_private = ECKey.generate_key("P-256").as_dict(private=True)
    assert pointers(
        problem(
            await http.post(f"{A}/clients", json=registration({"keys": [ec_private]}), headers=admin),
            400,
            "validation",
        )
    ) == {"/jwks/keys/0"}
    symmetric = {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}
    problem(await http.post(f"{A}/clients", json=registration(symmetric), headers=admin), 400, "validation")
    small = RSAKey.generate_key(1024).as_dict(private=False)
    problem(
        await http.post(f"{A}/clients", json=registration({"keys": [small]}), headers=admin),
        400,
        "validation",
    )
    garbage = {"keys": [{"kty": "RSA", "n": "AQAB" * 100, "e": 5}]}
    problem(await http.post(f"{A}/clients", json=registration(garbage), headers=admin), 400, "validation")

    created = await http.post(
        f"{A}/clients", json=registration({"keys": [key.as_dict(private=False)]}), headers=admin
    )
    assert created.status_code == 201, created.text
    assert created.json()["client_secret"] is None
    assert set(created.json()["jwks"]["keys"][0]) >= {"kty", "n", "e"}
    assert "d" not in created.json()["jwks"]["keys"][0]
    now = int(time.time())
    assertion = jwt.encode(
        {"alg": "RS256", "kid": "k1"},
        {
            "iss": "sensor-hub",
            "sub": "sensor-hub",
            "aud": settings.public_url + "/oauth2/token",
            "iat": now,
            "exp": now + 60,
            "jti": uuid4().hex,
        },
        key,
    )
    token = await http.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "scope": "ioc.update",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )
    assert token.status_code == 200, token.text


# --- signing keys --------------------------------------------------------------------------------


async def test_key_rotation_changes_the_published_kid_set_and_keeps_the_old_key_for_its_tokens(
    http: httpx.AsyncClient, conn: Connection, settings: Settings, admin: dict[str, str]
) -> None:
    before = {key["kid"] for key in (await http.get("/oauth2/jwks")).json()["keys"]}
    listed = (await http.get(f"{A}/signing-keys", headers=admin)).json()["items"]
    active = [key for key in listed if key["active"]]
    assert len(active) == 1
    assert active[0]["kid"] in before
    rotated = await http.post(f"{A}/signing-keys/rotate", headers=admin)
    assert rotated.status_code == 201, rotated.text
    new_kid = rotated.json()["kid"]
    assert rotated.json()["active"] is True
    after = {key["kid"] for key in (await http.get("/oauth2/jwks")).json()["keys"]}
    assert after == before | {new_kid}
    keys = await all_pages(http, admin, f"{A}/signing-keys", limit=1)
    assert keys[0]["kid"] == new_kid
    old = next(key for key in keys if key["kid"] == active[0]["kid"])
    assert old["active"] is False
    assert old["published"] is True
    grace = await conn.fetchval(
        "SELECT extract(epoch FROM unpublish_after - retired_at) FROM identity.signing_keys WHERE kid = $1",
        old["kid"],
    )
    assert grace == max(settings.access_token_seconds, settings.id_token_seconds) + 60
    # The admin's token, signed with the old key, still works; and the app now signs with the new one.
    assert (await http.get(f"{A}/signing-keys", headers=admin)).status_code == 200
    issued = await http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "ioc.feed"},
        auth=("ioc", "ioc-demo-secret"),
    )
    header = issued.json()["access_token"].split(".")[0]
    assert new_kid in base64.urlsafe_b64decode(header + "==").decode()
    assert (await audit_rows(conn, "rotate_signing_key"))[0]["subject"] == f"key:{new_kid}"


# --- the audit log -------------------------------------------------------------------------------


async def test_the_audit_log_filters_and_pages_newest_first_with_nothing_personal(
    http: httpx.AsyncClient, conn: Connection, ring: KeyRing, settings: Settings, admin: dict[str, str]
) -> None:
    me = await person_id(conn, "admin1")
    citizen = await person_id(conn, "citizen1")
    for name in ("Alpha", "Beta", "Gamma"):
        etag = (await http.get(f"{A}/persons/{citizen}", headers=admin)).headers["etag"]
        await http.patch(
            f"{A}/persons/{citizen}", json={"display_name": name}, headers={**admin, "If-Match": etag}
        )
    await http.post(f"{A}/persons/search", json={"phone": PHONE, "national_id": NATIONAL_ID}, headers=admin)
    await http.post(
        f"{A}/units",
        json={"code": "harbour", "kind": "district", "parent": "demo", "name_zh": "港", "name_en": "Harbour"},
        headers=admin,
    )

    updates = await all_pages(http, admin, f"{A}/audit", action="update_person", limit=2)
    assert [entry["detail"]["version"] for entry in updates] == [4, 3, 2]  # newest first
    assert {entry["subject"] for entry in updates} == {str(citizen)}
    assert {entry["actor_id"] for entry in updates} == {str(me)}
    assert {entry["client_id"] for entry in updates} == {"console"}
    by_subject = await all_pages(http, admin, f"{A}/audit", subject="unit:harbour")
    assert [entry["action"] for entry in by_subject] == ["create_unit"]
    by_actor = await all_pages(http, admin, f"{A}/audit", actor=str(me))
    assert len(by_actor) == 5
    since = await all_pages(http, admin, f"{A}/audit", since="2999-01-01T00:00:00Z")
    assert since == []
    problem(await http.get(f"{A}/audit", params={"since": "yesterday"}, headers=admin), 400, "validation")
    everything = str(await all_pages(http, admin, f"{A}/audit"))
    for personal in ("Alpha", "Beta", "Gamma", "8000", normalise_national_id(NATIONAL_ID)[-6:]):
        assert personal not in everything


async def test_the_openapi_document_names_every_admin_operation(
    http: httpx.AsyncClient,
) -> None:
    document = (await http.get("/schema/openapi.json")).json()
    operations = {
        operation["operationId"]
        for path, methods in document["paths"].items()
        if path.startswith(A)
        for operation in methods.values()
    }
    assert len(operations) == len(ROUTES)
    assert all(operation.startswith("identity_admin_") for operation in operations)
