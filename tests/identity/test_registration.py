"""Citizens' accounts: self-registration with a one-time code, and verification at a counter.

A typed fake behind the `Sender` Protocol captures what would have been sent. PostgreSQL's now()
is the start of the test's transaction, fixed for the whole test: a code expires by moving its
expiry back.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from identity import store
from identity.credentials import (
    normalise_national_id,
    normalise_phone,
    prc_id_check_character,
    verify_password,
)
from identity.keys import KeyRing
from identity.oidc import LOA_HIGH, LOA_LOW, LOA_SUBSTANTIAL
from identity.registration import (
    CODES_PER_TARGET,
    MAX_CODE_ATTEMPTS,
    REGISTRATIONS_PER_SOURCE,
    PersonalData,
    unique_or_conflict,
)
from identity.seed import seed_demo
from identity.senders import STATE_KEY, Channel, LogSender, Sender
from onewindow.db import Connection
from onewindow.errors import Conflict
from onewindow.settings import Settings
from tests.conftest import RollbackDatabase, app_client, build_app
from tests.identity.test_admin import bearer_for, machine_bearer, pointers, problem

R = "/api/v1/identity/registrations"
C = "/api/v1/identity/counter"
PASSWORD = "a long and unusual passphrase"
PHONE = "+86 138 0013 8000"


def resident_id(first_17: str) -> str:
    return first_17 + prc_id_check_character(first_17)


ID_ONE = resident_id("11010519491231002")
ID_TWO = resident_id("44030419850617123")


@dataclass(frozen=True)
class Sent:
    channel: str
    to: str
    purpose: str
    code: str
    locale: str


class CapturingSender:
    """What a real SMS gateway or mail server would have been asked to deliver."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.failing = False

    async def send(self, *, channel: Channel, to: str, purpose: str, code: str, locale: str) -> None:
        if self.failing:
            raise ConnectionError("gateway down")
        self.sent.append(Sent(channel=channel, to=to, purpose=purpose, code=code, locale=locale))


def _is_a_sender(sender: CapturingSender) -> Sender:
    return sender  # the type checker confirms the fake fits the Protocol


@pytest.fixture
def sender() -> CapturingSender:
    return CapturingSender()


@pytest.fixture
async def http(
    settings: Settings, db: RollbackDatabase, conn: Connection, sender: CapturingSender
) -> AsyncIterator[httpx.AsyncClient]:
    await seed_demo(conn, settings)
    app = build_app(settings, db)
    app.state[STATE_KEY] = _is_a_sender(sender)
    async with app_client(app) as client:
        yield client


@pytest.fixture
async def clerk(
    conn: Connection, ring: KeyRing, settings: Settings, http: httpx.AsyncClient
) -> dict[str, str]:
    return await bearer_for(conn, ring, settings, "clerk1")


async def register(http: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    body = {"display_name": "Wang Fang", "password": PASSWORD, **fields}
    return await http.post(R, json=body)


async def audit_text(conn: Connection) -> str:
    rows = await conn.fetch("SELECT subject, detail::text AS detail FROM identity.audit_log")
    return " ".join(f"{row['subject']} {row['detail']}" for row in rows)


# --- self-registration ---------------------------------------------------------------------------


async def test_a_citizen_registers_with_a_phone_and_the_code_sent_to_it(
    http: httpx.AsyncClient, conn: Connection, settings: Settings, sender: CapturingSender
) -> None:
    started = await register(http, phone=PHONE, locale="en")
    assert started.status_code == 202, started.text
    registration = started.json()
    assert registration["channel"] == "sms"
    (message,) = sender.sent
    assert (message.channel, message.to, message.purpose, message.locale) == (
        "sms",
        "+8613800138000",
        "register",
        "en",
    )
    assert len(message.code) == 6
    assert message.code.isdigit()
    # Nothing personal at rest in the clear: the registration holds the phone encrypted.
    stored = await conn.fetchrow("SELECT * FROM identity.pending_registrations")
    assert stored is not None
    assert b"13800138000" not in bytes(stored["target_enc"])

    verified = await http.post(f"{R}/{registration['registration_id']}/verify", json={"code": message.code})
    assert verified.status_code == 201, verified.text
    assert verified.json()["assurance"] == LOA_LOW
    person_id = UUID(verified.json()["person_id"])
    person = await conn.fetchrow(
        "SELECT display_name, locale, phone_hash, phone_enc, phone_verified_at, email, username"
        " FROM identity.persons WHERE id = $1",
        person_id,
    )
    assert person is not None
    personal = PersonalData(settings.master_secret)
    assert person["display_name"] == "Wang Fang"
    assert person["locale"] == "en"
    assert bytes(person["phone_hash"]) == personal.phone_hash("+8613800138000")
    assert personal.open_phone(person_id, bytes(person["phone_enc"])) == "+8613800138000"
    assert person["phone_verified_at"] is not None
    assert person["email"] is None
    # The login page finds the account by phone number, with the password given at registration.
    found = await store.person_by_login(
        conn, login=PHONE, phone_hash=personal.phone_hash(normalise_phone(PHONE))
    )
    assert found is not None
    assert found.id == person_id
    stored_hash = await store.password_hash(conn, person_id)
    assert stored_hash is not None
    assert verify_password(stored_hash, PASSWORD)
    assert [(g.role, g.unit) for g in await store.active_roles(conn, person_id)] == [("citizen", "demo")]
    assert await store.assurance_level(conn, person_id) == LOA_LOW
    (row,) = await conn.fetch(
        "SELECT actor_id, subject, detail FROM identity.audit_log WHERE action = 'register_citizen'"
    )
    assert row["actor_id"] == person_id
    assert row["detail"]["channel"] == "sms"
    # What the registration held is gone once it completed; a second use of the code is refused.
    cleared = await conn.fetchrow(
        "SELECT target_enc, password_hash, display_name FROM identity.pending_registrations"
    )
    assert cleared is not None
    assert tuple(cleared.values()) == (None, None, None)
    again = await http.post(f"{R}/{registration['registration_id']}/verify", json={"code": message.code})
    problem(again, 410, "verification-code-used")
    assert "13800138000" not in await audit_text(conn)
    assert "Wang Fang" not in await audit_text(conn)


async def test_a_citizen_registers_with_an_email_address(
    http: httpx.AsyncClient, conn: Connection, sender: CapturingSender
) -> None:
    started = await register(http, email=" Wang.Fang@Example.CN ")
    assert started.status_code == 202, started.text
    (message,) = sender.sent
    assert (message.channel, message.to) == ("email", "wang.fang@example.cn")
    verified = await http.post(
        f"{R}/{started.json()['registration_id']}/verify", json={"code": f" {message.code} "}
    )
    assert verified.status_code == 201, verified.text
    person = await store.person_by_id(conn, UUID(verified.json()["person_id"]))
    assert person is not None
    assert person.email == "wang.fang@example.cn"
    assert person.email_verified_at is not None
    assert "wang.fang" not in await audit_text(conn)


async def test_an_existing_account_gets_the_same_reply_a_notice_and_no_usable_code(
    http: httpx.AsyncClient, conn: Connection, sender: CapturingSender
) -> None:
    new = await register(http, email="someone.new@example.cn")
    existing = await register(http, email="citizen1@demo.onewindow.invalid")
    assert existing.status_code == new.status_code == 202
    assert set(existing.json()) == set(new.json())
    assert existing.json()["channel"] == "email"
    assert [(m.purpose, m.code) for m in sender.sent] == [
        ("register", sender.sent[0].code),
        ("account_exists", ""),
    ]
    for guess in ("000000", sender.sent[0].code):
        wrong = await http.post(f"{R}/{existing.json()['registration_id']}/verify", json={"code": guess})
        problem(wrong, 422, "verification-code-wrong")
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM identity.persons WHERE email = 'citizen1@demo.onewindow.invalid'"
        )
        == 1
    )


async def test_wrong_codes_are_counted_and_the_fifth_ends_the_registration(
    http: httpx.AsyncClient, sender: CapturingSender
) -> None:
    started = await register(http, phone=PHONE)
    path = f"{R}/{started.json()['registration_id']}/verify"
    right = sender.sent[0].code
    wrong_code = "123456" if right != "123456" else "654321"
    for left in range(MAX_CODE_ATTEMPTS - 1, 0, -1):
        body = problem(await http.post(path, json={"code": wrong_code}), 422, "verification-code-wrong")
        assert f"{left} attempt" in body["detail"]
    problem(await http.post(path, json={"code": wrong_code}), 410, "verification-code-exhausted")
    # Now even the right code is refused: the registration is dead.
    problem(await http.post(path, json={"code": right}), 410, "verification-code-exhausted")


async def test_an_expired_code_is_refused(
    http: httpx.AsyncClient, conn: Connection, sender: CapturingSender
) -> None:
    started = await register(http, phone=PHONE)
    await conn.execute("UPDATE identity.verification_codes SET expires_at = now() - interval '1 second'")
    reply = await http.post(
        f"{R}/{started.json()['registration_id']}/verify", json={"code": sender.sent[0].code}
    )
    problem(reply, 410, "verification-code-expired")
    problem(await http.post(f"{R}/{uuid4()}/verify", json={"code": "123456"}), 404, "not-found")
    # Not a registration id at all: no such route.
    problem(await http.post(f"{R}/not-a-uuid/verify", json={"code": "123456"}), 404, "not-found")


async def test_registrations_are_rate_limited_per_source_and_per_phone(
    http: httpx.AsyncClient, sender: CapturingSender
) -> None:
    for _ in range(CODES_PER_TARGET):
        assert (await register(http, phone=PHONE)).status_code == 202
    flooded = problem(await register(http, phone=PHONE), 429, "rate-limited")
    assert "codes" in flooded["detail"]
    for number in range(REGISTRATIONS_PER_SOURCE - CODES_PER_TARGET):
        assert (await register(http, email=f"person{number}@example.cn")).status_code == 202
    refused = await register(http, email="one.more@example.cn")
    problem(refused, 429, "rate-limited")
    assert 0 < int(refused.headers["retry-after"]) <= 601
    assert len(sender.sent) == REGISTRATIONS_PER_SOURCE


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"phone": PHONE, "email": "a@example.cn"}, {""}),
        ({}, {""}),
        ({"phone": "call me maybe"}, {"/phone"}),
        ({"email": "not-an-address"}, {"/email"}),
        ({"phone": PHONE, "password": "short"}, {"/password"}),
        ({"email": "zhangsan@example.cn", "password": "zhangsan-2024!!"}, {"/password"}),
        ({"phone": PHONE, "display_name": ""}, {"/display_name"}),
        ({"phone": PHONE, "locale": "fr"}, {"/locale"}),
        ({"phone": PHONE, "role": "admin"}, {""}),
    ],
)
async def test_bad_registrations_name_the_offending_fields(
    http: httpx.AsyncClient, sender: CapturingSender, body: dict[str, Any], expected: set[str]
) -> None:
    reply = await http.post(R, json={"display_name": "Wang Fang", "password": PASSWORD, **body})
    found = problem(reply, 400, "validation")
    assert pointers(found) == expected
    assert sender.sent == []


async def test_a_sender_failure_is_a_503_and_nothing_is_lost(
    http: httpx.AsyncClient, conn: Connection, sender: CapturingSender
) -> None:
    sender.failing = True
    problem(await register(http, phone=PHONE), 503, "unavailable")
    sender.failing = False
    assert (await register(http, phone=PHONE)).status_code == 202


# --- the development sender ----------------------------------------------------------------------


async def test_the_log_sender_shows_the_code_only_in_development_and_never_the_number(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="identity.senders")
    development = LogSender(settings.model_copy(update={"env": "development"}))
    production = LogSender(settings.model_copy(update={"env": "production"}))
    for sender in (development, production):
        await sender.send(channel="sms", to="+8613800138000", purpose="register", code="482913", locale="zh")
    dev, prod = caplog.records
    for record in (dev, prod):
        assert record.getMessage() == "verification code sent"
        assert (record.__dict__["channel"], record.__dict__["purpose"]) == ("sms", "register")
        assert "13800138000" not in str(record.__dict__)
    assert dev.__dict__["code"] == "482913"
    assert dev.__dict__["to_masked"].endswith("8000")
    assert "code" not in prod.__dict__
    assert "to_masked" not in prod.__dict__
    assert "482913" not in str(prod.__dict__)


# --- at the counter ------------------------------------------------------------------------------


async def test_a_clerk_makes_a_verified_citizen_account_at_the_counter(
    http: httpx.AsyncClient, conn: Connection, settings: Settings, clerk: dict[str, str]
) -> None:
    made = await http.post(
        f"{C}/citizens",
        json={
            "display_name": "Li Wei",
            "national_id": ID_ONE[:-1] + ID_ONE[-1].lower() + " ",
            "document": "resident_id",
            "document_checked": True,
            "phone": "+86 139 0000 1111",
            "password": PASSWORD,
        },
        headers=clerk,
    )
    assert made.status_code == 201, made.text
    reply = made.json()
    person_id = UUID(reply["person_id"])
    assert reply["national_id_masked"] == "*" * 14 + ID_ONE[-4:]
    assert reply["identity_method"] == "counter"
    assert reply["identity_verified_at"] is not None
    assert reply["assurance"] == LOA_LOW  # no second factor yet
    row = await conn.fetchrow(
        "SELECT national_id_hash, national_id_enc, identity_verified_by, phone_verified_at FROM identity.persons"
        " WHERE id = $1",
        person_id,
    )
    assert row is not None
    personal = PersonalData(settings.master_secret)
    assert bytes(row["national_id_hash"]) == personal.national_id_hash(normalise_national_id(ID_ONE))
    assert personal.open_national_id(person_id, bytes(row["national_id_enc"])) == ID_ONE
    clerk_account = await store.person_by_login(conn, login="clerk1", phone_hash=None)
    assert clerk_account is not None
    assert row["identity_verified_by"] == clerk_account.id
    assert row["phone_verified_at"] is None
    assert [g.role for g in await store.active_roles(conn, person_id)] == ["citizen"]
    # The same ID document cannot verify a second account; the refusal names nothing personal.
    second = await http.post(
        f"{C}/citizens",
        json={
            "display_name": "Impostor",
            "national_id": ID_ONE,
            "document": "resident_id",
            "document_checked": True,
            "email": "x@example.cn",
        },
        headers=clerk,
    )
    body = problem(second, 409, "conflict")
    assert ID_ONE[-4:] not in second.text
    assert "Li Wei" not in body["detail"]
    text = await audit_text(conn)
    assert ID_ONE not in text
    assert ID_ONE[-6:] not in text
    assert "1390000" not in text
    assert "Li Wei" not in text
    actions = [r["action"] for r in await conn.fetch("SELECT action FROM identity.audit_log ORDER BY id")]
    assert actions[-2:] == ["create_citizen", "verify_identity"]


async def test_a_clerk_verifies_an_existing_citizen_and_a_second_factor_makes_it_high(
    http: httpx.AsyncClient, conn: Connection, clerk: dict[str, str]
) -> None:
    citizen = await store.person_by_login(conn, login="citizen1", phone_hash=None)
    assert citizen is not None
    path = f"{C}/citizens/{citizen.id}/verify"
    verified = await http.post(
        path, json={"national_id": ID_TWO, "document": "resident_id", "document_checked": True}, headers=clerk
    )
    assert verified.status_code == 200, verified.text
    assert verified.json()["assurance"] == LOA_LOW
    assert await store.assurance_level(conn, citizen.id) == LOA_LOW
    await conn.execute(
        "INSERT INTO identity.totp (person_id, secret_enc, confirmed_at) VALUES ($1, '\\x00', now())",
        citizen.id,
    )
    assert await store.assurance_level(conn, citizen.id) == LOA_HIGH
    # The same document again is fine (a second visit); another one is not.
    again = await http.post(
        path, json={"national_id": ID_TWO, "document": "resident_id", "document_checked": True}, headers=clerk
    )
    assert again.json()["assurance"] == LOA_HIGH
    other = await http.post(
        path, json={"national_id": ID_ONE, "document": "resident_id", "document_checked": True}, headers=clerk
    )
    problem(other, 422, "rule-violation")
    staff = await store.person_by_login(conn, login="officer1", phone_hash=None)
    assert staff is not None
    body = {"national_id": ID_ONE, "document": "passport", "document_checked": True}
    problem(
        await http.post(f"{C}/citizens/{staff.id}/verify", json=body, headers=clerk), 422, "rule-violation"
    )
    problem(await http.post(f"{C}/citizens/{uuid4()}/verify", json=body, headers=clerk), 404, "not-found")


async def test_assurance_is_low_then_substantial_then_high(conn: Connection, settings: Settings) -> None:
    await seed_demo(conn, settings)
    person = await store.person_by_login(conn, login="officer1", phone_hash=None)
    assert person is not None
    assert await store.assurance_level(conn, person.id) == LOA_LOW
    await conn.execute("INSERT INTO identity.totp (person_id, secret_enc) VALUES ($1, '\\x00')", person.id)
    assert await store.assurance_level(conn, person.id) == LOA_LOW  # enrolment not confirmed
    await conn.execute("UPDATE identity.totp SET confirmed_at = now() WHERE person_id = $1", person.id)
    assert await store.assurance_level(conn, person.id) == LOA_SUBSTANTIAL
    await conn.execute("UPDATE identity.persons SET identity_verified_at = now() WHERE id = $1", person.id)
    assert await store.assurance_level(conn, person.id) == LOA_HIGH
    assert await store.assurance_level(conn, uuid4()) == LOA_LOW


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"national_id": ID_ONE[:-1] + ("1" if ID_ONE[-1] != "1" else "2")}, {"/national_id"}),
        ({"document_checked": False}, {"/document_checked"}),
        ({"phone": None, "email": None}, {""}),
        ({"password": "12345"}, {"/password"}),
        ({"document": "library_card"}, {"/document"}),
    ],
)
async def test_bad_counter_requests_name_the_offending_fields(
    http: httpx.AsyncClient, clerk: dict[str, str], body: dict[str, Any], expected: set[str]
) -> None:
    request = {
        "display_name": "Li Wei",
        "national_id": ID_ONE,
        "document": "resident_id",
        "document_checked": True,
        "email": "li.wei@example.cn",
        **body,
    }
    found = problem(await http.post(f"{C}/citizens", json=request, headers=clerk), 400, "validation")
    assert pointers(found) == expected
    assert ID_ONE not in str(found)


@pytest.mark.parametrize("username", ["citizen1", "officer1", "supervisor1", "worker1", "admin1"])
async def test_counter_routes_are_for_clerks_only(
    http: httpx.AsyncClient, conn: Connection, ring: KeyRing, settings: Settings, username: str
) -> None:
    citizen = await store.person_by_login(conn, login="citizen1", phone_hash=None)
    assert citizen is not None
    body = {"national_id": ID_TWO, "document": "resident_id", "document_checked": True}
    for headers, status in (
        (await bearer_for(conn, ring, settings, username), 403),
        (await machine_bearer(ring, settings), 403),
        ({}, 401),
    ):
        for path in (f"{C}/citizens", f"{C}/citizens/{citizen.id}/verify"):
            reply = await http.post(path, json={**body, "display_name": "X", "phone": PHONE}, headers=headers)
            assert reply.status_code == status, (username, path, reply.text)


async def test_a_disabled_clerk_is_refused_at_the_counter(
    http: httpx.AsyncClient, conn: Connection, clerk: dict[str, str]
) -> None:
    await conn.execute("UPDATE identity.persons SET disabled_at = now() WHERE username = 'clerk1'")
    citizen = await store.person_by_login(conn, login="citizen1", phone_hash=None)
    assert citizen is not None
    body = {"national_id": ID_TWO, "document": "resident_id", "document_checked": True}
    problem(await http.post(f"{C}/citizens/{citizen.id}/verify", json=body, headers=clerk), 403, "forbidden")


async def test_a_unique_index_that_refuses_a_raced_write_is_a_conflict_and_the_request_goes_on(
    conn: Connection, settings: Settings
) -> None:
    await seed_demo(conn, settings)
    with pytest.raises(Conflict, match="taken"):
        async with unique_or_conflict(conn, "taken"):
            await conn.execute(
                "UPDATE identity.persons SET email = 'clerk1@demo.onewindow.invalid' WHERE username = 'admin1'"
            )
    # The savepoint was rolled back, not the transaction: the connection is still usable.
    assert await conn.fetchval("SELECT email FROM identity.persons WHERE username = 'admin1'") == (
        "admin1@demo.onewindow.invalid"
    )


async def test_the_openapi_document_names_every_registration_and_counter_operation(
    http: httpx.AsyncClient,
) -> None:
    document = (await http.get("/schema/openapi.json")).json()
    operations = {
        operation["operationId"]
        for path, methods in document["paths"].items()
        if path.startswith(("/api/v1/identity/registrations", "/api/v1/identity/counter"))
        for operation in methods.values()
    }
    assert operations == {
        "identity_registration_start",
        "identity_registration_verify",
        "identity_counter_create_citizen",
        "identity_counter_verify_citizen",
    }
