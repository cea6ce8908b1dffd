"""E-certificates: issue (signed with the certificate key, published in a JWKS), who holds them,
public verification (valid, expired, revoked, a tampered row), revocation, counter hand-over."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from joserfc import jws
from joserfc.jwk import ECKey, KeySet

from identity.tokens import RoleGrant
from onewindow.db import Connection, PoolDatabase
from onewindow.settings import Settings
from services import certificates
from tests.services.certificate_fixtures import Decided, insert_application
from tests.services.conftest import ITEMS, Bearer, People
from tests.workflows.conftest import Clock
from workflows.api import Actor


async def issue_for(
    conn: Connection, settings: Settings, clock: Clock, holder: str, item: str = "t-business", **kw: Any
) -> certificates.CertificateRow:
    _, (item_id,) = await insert_application(conn, applicant=holder, items=[Decided(item=item)], at=clock())
    return await certificates.issue(
        conn,
        application_item_id=item_id,
        application_number="YC-2026-000123",
        holder=holder,
        item_code=item,
        item_name=ITEMS[item].name,
        valid_days=kw.get("valid_days", ITEMS[item].valid_days),
        now=clock(),
        settings=settings,
    )


Issue = Callable[..., Awaitable[certificates.CertificateRow]]


@pytest.fixture
def issue(conn: Connection, settings: Settings, clock: Clock) -> Issue:
    """`issue_for` with the test's connection, settings and clock: issue(holder, item=..., valid_days=...)."""

    async def issue(holder: str, item: str = "t-business", **kw: Any) -> certificates.CertificateRow:
        return await issue_for(conn, settings, clock, holder, item, **kw)

    return issue


async def test_issue_signs_a_certificate_that_verifies_against_the_published_keys(
    conn: Connection, settings: Settings, clock: Clock, people: People, issue: Issue
) -> None:
    row = await issue(people.citizen.subject)

    assert row.number == "YC-CERT-2026-000001"
    published = KeySet.import_key_set(await certificates.jwks(conn))  # type: ignore[arg-type]
    signed = jws.deserialize_compact(row.jws, published, algorithms=["ES256"])
    claims = json.loads(signed.payload)
    assert signed.headers() == {"alg": "ES256", "kid": row.kid, "typ": "onewindow-certificate+jws"}
    assert claims["number"] == row.number
    assert claims["holder"] == claims["sub"] == people.citizen.subject
    assert claims["holder_name"] == "张三"
    assert claims["item"] == {"code": "t-business", "name": {"zh": "营业执照", "en": "Business licence"}}
    assert claims["application_number"] == "YC-2026-000123"
    assert claims["iss"] == settings.public_url
    assert claims["iat"] == claims["nbf"] == int(clock().timestamp())
    assert claims["exp"] == int((clock() + timedelta(days=365 * 5)).timestamp())
    assert claims["verification_url"] == f"{settings.public_url}/api/v1/certificates/{row.number}/verify"
    assert row.valid_until == clock() + timedelta(days=365 * 5)


async def test_the_private_key_is_stored_encrypted(conn: Connection, people: People, issue: Issue) -> None:
    row = await issue(people.citizen.subject)
    stored: bytes = await conn.fetchval(
        "SELECT private_key FROM services.certificate_keys WHERE kid = $1", row.kid
    )
    assert b"PRIVATE KEY" not in stored
    public = await conn.fetchval("SELECT public_jwk FROM services.certificate_keys WHERE kid = $1", row.kid)
    assert "d" not in public


async def test_numbers_count_up_and_one_key_signs_them_all(
    conn: Connection, people: People, issue: Issue
) -> None:
    first = await issue(people.citizen.subject)
    second = await issue(people.other.subject, item="t-food")
    assert (first.number, second.number) == ("YC-CERT-2026-000001", "YC-CERT-2026-000002")
    assert first.kid == second.kid
    assert len((await certificates.jwks(conn))["keys"]) == 1


async def test_a_certificate_without_validity_never_expires(people: People, issue: Issue) -> None:
    row = await issue(people.citizen.subject, item="t-clinic")
    assert row.valid_until is None
    assert certificates.claims_of(row).exp is None


async def test_issuing_again_for_the_same_item_returns_the_first_certificate(
    conn: Connection, settings: Settings, clock: Clock, people: People
) -> None:
    _, (item_id,) = await insert_application(
        conn, applicant=people.citizen.subject, items=[Decided(item="t-business")], at=clock()
    )
    rows = [
        await certificates.issue(
            conn,
            application_item_id=item_id,
            application_number="YC-2026-000001",
            holder=people.citizen.subject,
            item_code="t-business",
            item_name=ITEMS["t-business"].name,
            valid_days=10,
            now=clock(),
            settings=settings,
        )
        for _ in range(2)
    ]
    assert rows[0] == rows[1]
    assert await conn.fetchval("SELECT count(*) FROM services.certificates") == 1


async def test_held_by_lists_a_holders_certificates_and_with_a_time_only_the_valid_ones(
    conn: Connection, clock: Clock, people: People, issue: Issue
) -> None:
    short = await issue(people.citizen.subject, valid_days=1)
    long = await issue(people.citizen.subject, item="t-food")
    await issue(people.other.subject, item="t-clinic")

    held = await certificates.held_by(conn, people.citizen.subject)
    assert {row.number for row in held} == {short.number, long.number}
    valid_later = await certificates.held_by(
        conn, people.citizen.subject, valid_at=clock() + timedelta(days=2)
    )
    assert [row.number for row in valid_later] == [long.number]


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("张三", "张*"),
        ("欧阳娜娜", "欧***"),
        ("Citizen One", "C*** One"),
        ("Ann Mary Lee", "A*** M*** Lee"),
        ("", None),
    ],
)
def test_names_are_masked_for_the_public(name: str, masked: str | None) -> None:
    assert certificates.mask_name(name) == masked


# --- over HTTP -----------------------------------------------------------------------------------

ADMIN = Actor(subject="admin-test", kind="person", roles=(RoleGrant(role="admin", unit="demo", path="demo"),))


async def test_the_jwks_is_public_and_verifies_a_certificate_read_by_its_holder(
    http: httpx.AsyncClient, people: People, bearer: Bearer, issue: Issue
) -> None:
    row = await issue(people.citizen.subject)

    keys = await http.get("/api/v1/certificates/jwks.json")
    mine = await http.get(f"/api/v1/certificates/{row.number}", headers=await bearer(people.citizen))

    assert keys.status_code == 200
    assert mine.status_code == 200
    body = mine.json()
    signed = jws.deserialize_compact(body["jws"], KeySet.import_key_set(keys.json()), algorithms=["ES256"])
    assert json.loads(signed.payload) == body["claims"]
    assert body["verification_url"].endswith(f"/api/v1/certificates/{row.number}/verify")
    assert (body["status"], body["holder_name"], body["item"]["code"]) == ("valid", "张三", "t-business")


async def test_verify_says_valid_with_a_masked_name_and_no_other_personal_data(
    http: httpx.AsyncClient, clock: Clock, people: People, issue: Issue
) -> None:
    row = await issue(people.citizen.subject)

    reply = await http.get(f"/api/v1/certificates/{row.number}/verify")

    assert reply.status_code == 200
    assert reply.json() == {
        "number": row.number,
        "status": "valid",
        "item": {"code": "t-business", "name": {"zh": "营业执照", "en": "Business licence"}},
        "holder": "张*",
        "issued_at": clock().isoformat().replace("+00:00", "Z"),
        "valid_until": (clock() + timedelta(days=365 * 5)).isoformat().replace("+00:00", "Z"),
        "revoked_at": None,
        "revoked_reason": None,
    }


async def test_verify_says_expired_once_the_validity_is_over(
    http: httpx.AsyncClient, clock: Clock, people: People, issue: Issue
) -> None:
    row = await issue(people.citizen.subject, valid_days=30)
    clock.advance(days=29, hours=23)
    before = await http.get(f"/api/v1/certificates/{row.number}/verify")
    clock.advance(hours=1)
    after = await http.get(f"/api/v1/certificates/{row.number}/verify")
    assert (before.json()["status"], after.json()["status"]) == ("valid", "expired")


async def test_verify_says_revoked_with_the_reason(
    http: httpx.AsyncClient, people: People, bearer: Bearer, issue: Issue
) -> None:
    row = await issue(people.citizen.subject)
    revoked = await http.post(
        f"/api/v1/certificates/{row.number}/revoke",
        json={"reason": "The business closed."},
        headers=await bearer(people.officers["market"]),
    )
    reply = await http.get(f"/api/v1/certificates/{row.number}/verify")
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    assert (reply.json()["status"], reply.json()["revoked_reason"]) == ("revoked", "The business closed.")


@pytest.mark.parametrize("part", ["payload", "signature", "header"])
async def test_a_tampered_certificate_says_invalid(
    http: httpx.AsyncClient, conn: Connection, people: People, part: str, issue: Issue
) -> None:
    row = await issue(people.citizen.subject, valid_days=1)
    header, payload, signature = row.jws.split(".")
    if part == "payload":  # a longer validity, written into the row behind the application's back
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        claims["exp"] += 10 * 365 * 86400
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    elif part == "signature":
        signature = ("A" if signature[0] != "A" else "B") + signature[1:]
    else:
        header = (
            base64.urlsafe_b64encode(b'{"alg":"none","kid":"' + row.kid.encode() + b'"}').decode().rstrip("=")
        )
    await conn.execute(
        "UPDATE services.certificates SET jws = $2 WHERE number = $1",
        row.number,
        f"{header}.{payload}.{signature}",
    )

    reply = await http.get(f"/api/v1/certificates/{row.number}/verify")

    assert reply.status_code == 200
    assert reply.json()["status"] == "invalid"
    assert {k: v for k, v in reply.json().items() if v is not None} == {
        "number": row.number,
        "status": "invalid",
    }


async def test_a_certificate_signed_by_another_key_says_invalid(
    http: httpx.AsyncClient, conn: Connection, people: People, issue: Issue
) -> None:
    row = await issue(people.citizen.subject)
    stranger = ECKey.generate_key("P-256", parameters={"kid": row.kid, "alg": "ES256"})
    claims = base64.urlsafe_b64decode(row.jws.split(".")[1] + "==")
    forged = jws.serialize_compact(
        {"alg": "ES256", "kid": row.kid, "typ": certificates.TYPE}, claims, stranger, algorithms=["ES256"]
    )
    await conn.execute("UPDATE services.certificates SET jws = $2 WHERE number = $1", row.number, forged)
    reply = await http.get(f"/api/v1/certificates/{row.number}/verify")
    assert reply.json()["status"] == "invalid"


async def test_verify_of_an_unknown_number_is_a_404(http: httpx.AsyncClient) -> None:
    reply = await http.get("/api/v1/certificates/YC-CERT-2026-999999/verify")
    assert reply.status_code == 404
    assert reply.headers["content-type"].startswith("application/problem+json")


async def test_who_may_read_a_certificate(
    http: httpx.AsyncClient, people: People, bearer: Bearer, issue: Issue
) -> None:
    row = await issue(people.citizen.subject)
    url = f"/api/v1/certificates/{row.number}"
    statuses = {
        who: (await http.get(url, headers=await bearer(actor))).status_code
        for who, actor in {
            "holder": people.citizen,
            "other citizen": people.other,
            "market officer": people.officers["market"],
            "market supervisor": people.supervisors["market"],
            "fire officer": people.officers["fire"],
            "clerk": people.clerk,
            "admin": ADMIN,
        }.items()
    }
    anonymous = await http.get(url)
    assert statuses == {
        "holder": 200,
        "other citizen": 404,
        "market officer": 200,
        "market supervisor": 200,
        "fire officer": 404,
        "clerk": 200,
        "admin": 200,
    }
    assert anonymous.status_code == 401


async def test_my_certificates_page_newest_first(
    http: httpx.AsyncClient, clock: Clock, people: People, bearer: Bearer, issue: Issue
) -> None:
    numbers = []
    for item in ("t-business", "t-food", "t-clinic"):
        numbers.append((await issue(people.citizen.subject, item=item)).number)
        clock.advance(minutes=1)
    await issue(people.other.subject)
    headers = await bearer(people.citizen)

    first = await http.get("/api/v1/certificates", params={"limit": 2}, headers=headers)
    second = await http.get(
        "/api/v1/certificates", params={"limit": 2, "cursor": first.json()["next_cursor"]}, headers=headers
    )
    bad = await http.get("/api/v1/certificates", params={"cursor": "nonsense"}, headers=headers)

    assert [c["number"] for c in first.json()["items"]] == numbers[:0:-1]
    assert [c["number"] for c in second.json()["items"]] == numbers[:1]
    assert second.json()["next_cursor"] is None
    assert bad.status_code == 400


async def test_the_qr_code_encodes_the_verification_url(
    http: httpx.AsyncClient, people: People, bearer: Bearer, issue: Issue
) -> None:
    row = await issue(people.citizen.subject)
    reply = await http.get(f"/api/v1/certificates/{row.number}/qr.svg", headers=await bearer(people.citizen))
    other = await http.get(f"/api/v1/certificates/{row.number}/qr.svg", headers=await bearer(people.other))
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("image/svg+xml")
    assert reply.text.startswith("<svg")
    assert other.status_code == 404


async def test_who_may_revoke(http: httpx.AsyncClient, people: People, bearer: Bearer, issue: Issue) -> None:
    row = await issue(people.citizen.subject)
    url = f"/api/v1/certificates/{row.number}/revoke"
    refused = {
        who: (await http.post(url, json={"reason": "x"}, headers=await bearer(actor))).status_code
        for who, actor in {
            "holder": people.citizen,
            "other citizen": people.other,
            "fire officer": people.officers["fire"],
            "health supervisor": people.supervisors["health"],
            "clerk": people.clerk,
        }.items()
    }
    supervisor = await http.post(
        url, json={"reason": "Fraud"}, headers=await bearer(people.supervisors["market"])
    )
    again = await http.post(url, json={"reason": "again"}, headers=await bearer(ADMIN))

    assert refused == dict.fromkeys(refused, 403)
    assert supervisor.status_code == 200
    assert supervisor.json()["revoked_reason"] == "Fraud"
    assert again.status_code == 409
    assert (await http.post(url, json={"reason": "x"})).status_code == 401


async def test_an_admin_may_revoke_and_unknown_numbers_are_404(
    http: httpx.AsyncClient, people: People, bearer: Bearer, issue: Issue
) -> None:
    row = await issue(people.citizen.subject)
    admin = await bearer(ADMIN)
    assert (
        await http.post(f"/api/v1/certificates/{row.number}/revoke", json={"reason": "x"}, headers=admin)
    ).status_code == 200
    unknown = await http.post(
        "/api/v1/certificates/YC-CERT-2026-999999/revoke", json={"reason": "x"}, headers=admin
    )
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({}, "$.reason"),
        ({"reason": ""}, "$.reason"),
        ({"reason": "   "}, "$.reason"),
        ({"reason": "x", "extra": 1}, ""),
    ],
)
async def test_a_revocation_needs_a_reason(
    http: httpx.AsyncClient,
    conn: Connection,
    settings: Settings,
    clock: Clock,
    people: People,
    bearer: Bearer,
    body: dict[str, Any],
    pointer: str,
    issue: Issue,
) -> None:
    row = await issue(people.citizen.subject)
    reply = await http.post(
        f"/api/v1/certificates/{row.number}/revoke",
        json=body,
        headers=await bearer(people.officers["market"]),
    )
    assert reply.status_code == 400
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert (await certificates.verify(conn, row.number, now=clock(), settings=settings)).status == "valid"


async def test_a_clerk_records_the_hand_over_once(
    http: httpx.AsyncClient, clock: Clock, people: People, bearer: Bearer, issue: Issue
) -> None:
    row = await issue(people.citizen.subject)
    url = f"/api/v1/counter/certificates/{row.number}/hand-over"
    clerk = await bearer(people.clerk)

    officer = await http.post(url, json={}, headers=await bearer(people.officers["market"]))
    holder = await http.post(url, json={}, headers=await bearer(people.citizen))
    first = await http.post(url, json={"note": "Collected by the holder in person."}, headers=clerk)
    second = await http.post(url, json={}, headers=clerk)
    unknown = await http.post(
        "/api/v1/counter/certificates/YC-CERT-2026-999999/hand-over", json={}, headers=clerk
    )

    assert (officer.status_code, holder.status_code) == (403, 403)
    assert first.status_code == 200
    assert first.json()["delivery"] == "counter"
    assert first.json()["handed_over_by"] == people.clerk.subject
    assert first.json()["handed_over_note"] == "Collected by the holder in person."
    assert first.json()["handed_over_at"] == clock().isoformat().replace("+00:00", "Z")
    assert second.status_code == 409
    assert unknown.status_code == 404


async def test_a_revoked_certificate_is_not_handed_over(
    http: httpx.AsyncClient, people: People, bearer: Bearer, issue: Issue
) -> None:
    row = await issue(people.citizen.subject)
    await http.post(
        f"/api/v1/certificates/{row.number}/revoke",
        json={"reason": "x"},
        headers=await bearer(people.officers["market"]),
    )
    reply = await http.post(
        f"/api/v1/counter/certificates/{row.number}/hand-over", json={}, headers=await bearer(people.clerk)
    )
    assert reply.status_code == 409


async def test_the_routes_are_in_the_openapi_document_with_examples(http: httpx.AsyncClient) -> None:
    document = (await http.get("/schema/openapi.json")).json()
    operations = {
        operation["operationId"]: operation
        for path in document["paths"].values()
        for operation in path.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    for operation_id in (
        "services_certificate_jwks",
        "services_certificate_verify",
        "services_my_certificates",
        "services_certificate",
        "services_certificate_qr",
        "services_certificate_revoke",
        "services_certificate_hand_over",
    ):
        operation = operations[operation_id]
        assert operation["summary"]
        assert operation["description"]
        assert any("examples" in media for media in operation["responses"]["200"]["content"].values())
    for operation_id in ("services_certificate_revoke", "services_certificate_hand_over"):
        body = operations[operation_id]["requestBody"]["content"]["application/json"]
        assert body.get("examples") or body["schema"].get("examples")


async def test_two_first_issues_at_once_make_one_key(committing_db: PoolDatabase, settings: Settings) -> None:
    """The second transaction waits for the first one's key instead of making its own."""
    now = datetime(2026, 9, 28, 9, 0, tzinfo=UTC)
    async with committing_db.connection() as c:
        assert await c.fetchval("SELECT count(*) FROM services.certificate_keys") == 0
    try:
        async with committing_db.transaction() as first:
            first_key = await certificates.signing_key(first, settings, now=now)

            async def second() -> str | None:
                async with committing_db.transaction() as other:
                    return (await certificates.signing_key(other, settings, now=now)).kid

            waiting = asyncio.create_task(second())
            await asyncio.sleep(0.3)
            assert not waiting.done()  # blocked on the first transaction's lock
        assert await waiting == first_key.kid
        async with committing_db.connection() as c:
            assert await c.fetchval("SELECT count(*) FROM services.certificate_keys") == 1
    finally:
        async with committing_db.connection() as c:
            await c.execute("DELETE FROM services.certificate_keys")
