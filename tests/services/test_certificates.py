"""E-certificates: issue (signed with the certificate key, published in a JWKS), who holds them,
public verification (valid, expired, revoked, a tampered row), revocation, counter hand-over."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import KeySet

from onewindow.db import Connection
from onewindow.settings import Settings
from services import certificates
from tests.services.certificate_fixtures import Decided, insert_application
from tests.services.conftest import ITEMS, People
from tests.workflows.conftest import Clock


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


async def test_issue_signs_a_certificate_that_verifies_against_the_published_keys(
    conn: Connection, settings: Settings, clock: Clock, people: People
) -> None:
    row = await issue_for(conn, settings, clock, people.citizen.subject)

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


async def test_the_private_key_is_stored_encrypted(
    conn: Connection, settings: Settings, clock: Clock, people: People
) -> None:
    row = await issue_for(conn, settings, clock, people.citizen.subject)
    stored: bytes = await conn.fetchval(
        "SELECT private_key FROM services.certificate_keys WHERE kid = $1", row.kid
    )
    assert b"PRIVATE KEY" not in stored
    public = await conn.fetchval("SELECT public_jwk FROM services.certificate_keys WHERE kid = $1", row.kid)
    assert "d" not in public


async def test_numbers_count_up_and_one_key_signs_them_all(
    conn: Connection, settings: Settings, clock: Clock, people: People
) -> None:
    first = await issue_for(conn, settings, clock, people.citizen.subject)
    second = await issue_for(conn, settings, clock, people.other.subject, item="t-food")
    assert (first.number, second.number) == ("YC-CERT-2026-000001", "YC-CERT-2026-000002")
    assert first.kid == second.kid
    assert len((await certificates.jwks(conn))["keys"]) == 1


async def test_a_certificate_without_validity_never_expires(
    conn: Connection, settings: Settings, clock: Clock, people: People
) -> None:
    row = await issue_for(conn, settings, clock, people.citizen.subject, item="t-clinic")
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
    conn: Connection, settings: Settings, clock: Clock, people: People
) -> None:
    short = await issue_for(conn, settings, clock, people.citizen.subject, valid_days=1)
    long = await issue_for(conn, settings, clock, people.citizen.subject, item="t-food")
    await issue_for(conn, settings, clock, people.other.subject, item="t-clinic")

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
