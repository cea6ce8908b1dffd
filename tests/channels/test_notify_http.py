"""The preferences API: a person reads and changes only their own channel and language; the
default comes from identity; refusals are problem+json."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from channels import notify
from identity.keys import KeyRing
from identity.tokens import issue_access_token
from onewindow.db import Connection
from onewindow.settings import Settings
from tests.channels.notify_fixtures import make_person, rows_of
from tests.conftest import TEST_SECRET, RollbackDatabase, app_client, build_app

URL = "/api/v1/channels/notifications/preferences"


@pytest.fixture
async def notify_http(settings: Settings, db: RollbackDatabase) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(build_app(settings, db)) as client:
        yield client


@pytest.fixture
async def notify_token(db: RollbackDatabase, settings: Settings) -> Any:
    keys = KeyRing(db, TEST_SECRET.encode())
    await keys.load()

    async def make(subject: str, *, client_id: str = "citizen-app") -> dict[str, str]:
        token, _ = await issue_access_token(
            keys,
            issuer=settings.public_url,
            subject=subject,
            client_id=client_id,
            scope="openid",
            lifetime=300,
        )
        return {"Authorization": f"Bearer {token}"}

    return make


async def test_without_a_token_it_is_401(notify_http: httpx.AsyncClient) -> None:
    for reply in (
        await notify_http.get(URL),
        await notify_http.put(URL, json={"channel": "sms", "language": "en"}),
    ):
        assert reply.status_code == 401
        assert reply.headers["content-type"].startswith("application/problem+json")
        assert reply.json()["type"] == "urn:onewindow:problem:unauthorized"


async def test_defaults_come_from_identity(
    notify_http: httpx.AsyncClient, notify_token: Any, conn: Connection, settings: Settings
) -> None:
    verified = await make_person(conn, settings, email="a@example.org", phone="+8613800000001", locale="en")
    phone_only = await make_person(conn, settings, phone="+8613800000002")
    unverified = await make_person(
        conn, settings, email="c@example.org", email_verified=False, phone="+8613800000003"
    )
    nothing_verified = await make_person(
        conn,
        settings,
        email="d@example.org",
        email_verified=False,
        phone="+8613800000005",
        phone_verified=False,
    )
    expected = {
        verified: {"channel": "email", "language": "en"},
        phone_only: {"channel": "sms", "language": "zh-CN"},
        unverified: {"channel": "sms", "language": "zh-CN"},  # an unverified e-mail is not the default
        nothing_verified: {"channel": "none", "language": "zh-CN"},  # nor is anything unverified
    }
    for subject, want in expected.items():
        reply = await notify_http.get(URL, headers=await notify_token(subject))
        assert reply.status_code == 200, reply.text
        assert reply.headers["etag"] == '"0"'
        assert {k: reply.json()[k] for k in ("channel", "language", "chosen")} == {**want, "chosen": False}
    assert (await notify_http.get(URL, headers=await notify_token(phone_only))).json()[
        "email_on_file"
    ] is False
    flags = (await notify_http.get(URL, headers=await notify_token(unverified))).json()
    assert {k: flags[k] for k in ("email_on_file", "email_verified", "phone_on_file", "phone_verified")} == {
        "email_on_file": True,
        "email_verified": False,
        "phone_on_file": True,
        "phone_verified": True,
    }


@pytest.mark.parametrize(
    ("channel", "detail"),
    [("email", "the e-mail address is not verified"), ("sms", "the phone number is not verified")],
)
async def test_a_channel_whose_address_is_not_verified_cannot_be_chosen(
    notify_http: httpx.AsyncClient,
    notify_token: Any,
    conn: Connection,
    settings: Settings,
    channel: str,
    detail: str,
) -> None:
    subject = await make_person(
        conn,
        settings,
        email="e@example.org",
        email_verified=False,
        phone="+8613800000006",
        phone_verified=False,
    )
    reply = await notify_http.put(
        URL, json={"channel": channel, "language": "en"}, headers=await notify_token(subject)
    )
    assert reply.status_code == 422, reply.text
    problem = reply.json()
    assert problem["type"] == "urn:onewindow:problem:rule-violation"
    assert "verified" in problem["detail"]
    assert [(e["pointer"], e["detail"]) for e in problem["errors"]] == [("/channel", detail)]
    saved = await conn.fetchval(
        "SELECT count(*) FROM channels.notification_preferences WHERE person = $1", subject
    )
    assert saved == 0
    # "none" needs no address at all.
    quiet = await notify_http.put(
        URL, json={"channel": "none", "language": "en"}, headers=await notify_token(subject)
    )
    assert quiet.status_code == 200, quiet.text


async def test_a_person_changes_their_own_and_nobody_elses(
    notify_http: httpx.AsyncClient, notify_token: Any, conn: Connection, settings: Settings
) -> None:
    mine = await make_person(conn, settings, email="me@example.org", phone="+8613800000004")
    theirs = await make_person(conn, settings, email="them@example.org")
    headers = await notify_token(mine)
    reply = await notify_http.put(URL, json={"channel": "sms", "language": "en"}, headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json()["channel"] == "sms"
    assert reply.json()["chosen"] is True
    assert reply.headers["etag"] == '"1"'
    again = await notify_http.get(URL, headers=headers)
    assert (again.json()["channel"], again.json()["language"]) == ("sms", "en")
    other = await notify_http.get(URL, headers=await notify_token(theirs))
    assert (other.json()["channel"], other.json()["chosen"]) == ("email", False)

    # Stale and current If-Match.
    stale = await notify_http.put(
        URL, json={"channel": "none", "language": "en"}, headers={**headers, "If-Match": '"0"'}
    )
    assert stale.status_code == 412
    current = await notify_http.put(
        URL, json={"channel": "none", "language": "zh-CN"}, headers={**headers, "If-Match": '"1"'}
    )
    assert current.status_code == 200
    assert current.headers["etag"] == '"2"'

    # The choice is what the subscriber follows: "none" writes nothing for this person.
    contact = await notify.effective_preference(conn, await _contact(conn, settings, mine))
    assert (contact.channel, contact.language, contact.chosen) == ("none", "zh-CN", True)
    assert await rows_of(conn, recipient=mine) == []


async def _contact(conn: Connection, settings: Settings, subject: str) -> Any:
    from identity import api as identity_api  # noqa: PLC0415

    found = await identity_api.contact_details(conn, settings, subject)
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("body", "status", "problem"),
    [
        ({"channel": "sms", "language": "en"}, 422, "rule-violation"),  # no phone on file
        ({"channel": "fax", "language": "en"}, 400, "validation"),
        ({"channel": "email", "language": "fr"}, 400, "validation"),
        ({"channel": "email"}, 400, "validation"),
        ({"channel": "email", "language": "en", "person": "someone-else"}, 400, "validation"),
    ],
)
async def test_bad_changes_are_refused_and_nothing_is_saved(
    notify_http: httpx.AsyncClient,
    notify_token: Any,
    conn: Connection,
    settings: Settings,
    body: dict[str, Any],
    status: int,
    problem: str,
) -> None:
    subject = await make_person(conn, settings, email="only-mail@example.org")
    reply = await notify_http.put(URL, json=body, headers=await notify_token(subject))
    assert reply.status_code == status, reply.text
    assert reply.json()["type"] == f"urn:onewindow:problem:{problem}"
    saved = await conn.fetchval(
        "SELECT count(*) FROM channels.notification_preferences WHERE person = $1", subject
    )
    assert saved == 0


async def test_a_machine_client_has_no_preferences(notify_http: httpx.AsyncClient, notify_token: Any) -> None:
    reply = await notify_http.get(URL, headers=await notify_token("ioc", client_id="ioc"))
    assert reply.status_code == 403
    assert reply.json()["type"] == "urn:onewindow:problem:forbidden"
