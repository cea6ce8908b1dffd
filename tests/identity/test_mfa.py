"""The second factor: staff enrol TOTP at their first sign-in, then need a code every time."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import pytest

from identity.credentials import totp_now
from identity.oidc import LOA_HIGH, LOA_LOW, LOA_SUBSTANTIAL
from onewindow.db import Connection
from onewindow.settings import Settings
from tests.identity.conftest import field, sign_in_with_password


@pytest.fixture
def browser(browser: httpx.AsyncClient, settings: Settings) -> httpx.AsyncClient:
    assert settings.mfa_required_for_staff  # outside demo mode, the default
    return browser


async def _password(browser: httpx.AsyncClient, username: str, return_to: str = "/after") -> httpx.Response:
    return await sign_in_with_password(browser, username, return_to)


async def _post_code(browser: httpx.AsyncClient, path: str, code: str) -> httpx.Response:
    page = (await browser.get(path)).text
    return await browser.post(
        path, data={"csrf_token": field(page, "csrf_token"), "lang": "en", "code": code}
    )


async def _session(conn: Connection, username: str) -> tuple[str, list[str]] | None:
    row = await conn.fetchrow(
        "SELECT s.acr, s.amr FROM identity.sessions s JOIN identity.persons p ON p.id = s.person_id"
        " WHERE p.username = $1 AND s.ended_at IS NULL ORDER BY s.created_at DESC LIMIT 1",
        username,
    )
    return (row["acr"], list(row["amr"])) if row else None


async def _enrol(browser: httpx.AsyncClient, username: str) -> tuple[str, list[str]]:
    """First sign-in of a staff member: password, then the enrolment page; the secret and codes."""
    first = await _password(browser, username)
    assert first.status_code == 303
    assert first.headers["location"] == "/login/mfa/setup?lang=en"
    page = (await browser.get("/login/mfa/setup")).text
    assert "<svg" in page  # the QR code, inline, no script
    secret = re.search(r'id="totp-secret">([^<]+)<', page)
    assert secret
    key = secret.group(1).replace(" ", "")
    done = await browser.post(
        "/login/mfa/setup",
        data={
            "csrf_token": field(page, "csrf_token"),
            "lang": "en",
            "code": totp_now(key, datetime.now(UTC)),
        },
    )
    assert done.status_code == 200, done.text
    codes = re.findall(r"<li><code>([^<]+)</code></li>", done.text)
    assert len(codes) == 10
    assert 'href="/after"' in done.text
    return key, codes


async def test_a_citizen_signs_in_with_the_password_alone(
    browser: httpx.AsyncClient, conn: Connection
) -> None:
    reply = await _password(browser, "citizen1")
    assert reply.status_code == 303
    assert reply.headers["location"] == "/after"
    assert await _session(conn, "citizen1") == (LOA_LOW, ["pwd"])


async def test_staff_enrol_at_first_sign_in_and_are_then_signed_in_substantially(
    browser: httpx.AsyncClient, conn: Connection
) -> None:
    assert await _session(conn, "officer1") is None
    await _enrol(browser, "officer1")
    assert await _session(conn, "officer1") == (LOA_SUBSTANTIAL, ["pwd", "otp"])


async def test_after_enrolment_a_code_is_needed_and_each_works_once(
    browser: httpx.AsyncClient, conn: Connection
) -> None:
    key, codes = await _enrol(browser, "officer1")
    await conn.execute("UPDATE identity.sessions SET ended_at = now()")
    second = await _password(browser, "officer1")
    assert second.headers["location"] == "/login/mfa?lang=en"
    assert await _session(conn, "officer1") is None  # nothing signed in between the two steps
    # The code just used for enrolment is for the same time step: a replay, refused.
    replay = await _post_code(browser, "/login/mfa", totp_now(key, datetime.now(UTC)))
    assert replay.status_code == 401
    wrong = await _post_code(browser, "/login/mfa", "000000")
    assert wrong.status_code == 401
    recovered = await _post_code(browser, "/login/mfa", codes[0])
    assert recovered.status_code == 303
    assert recovered.headers["location"] == "/after"
    assert await _session(conn, "officer1") == (LOA_SUBSTANTIAL, ["pwd", "otp"])
    await conn.execute("UPDATE identity.sessions SET ended_at = now()")
    await _password(browser, "officer1")
    again = await _post_code(browser, "/login/mfa", codes[0])
    assert again.status_code == 401
    assert (await _post_code(browser, "/login/mfa", codes[1])).status_code == 303


async def test_identity_verified_in_person_plus_second_factor_is_high(
    browser: httpx.AsyncClient, conn: Connection
) -> None:
    await conn.execute(
        "UPDATE identity.persons SET identity_verified_at = now(), identity_method = 'counter'"
        " WHERE username = 'officer2'"
    )
    await _enrol(browser, "officer2")
    assert await _session(conn, "officer2") == (LOA_HIGH, ["pwd", "otp"])


async def test_the_second_step_needs_the_signed_pending_cookie(browser: httpx.AsyncClient) -> None:
    reply = await browser.get("/login/mfa")
    assert reply.status_code == 303
    assert reply.headers["location"].startswith("/login")
    await _password(browser, "officer1")
    pending = browser.cookies.get("ow_mfa", path="/login")
    assert pending
    browser.cookies.set("ow_mfa", pending.replace(".", "x", 1), path="/login")
    forged = await browser.get("/login/mfa/setup")
    assert forged.status_code == 303


async def test_demo_mode_makes_staff_mfa_optional(settings: Settings) -> None:
    assert not settings.model_copy(update={"demo": True}).mfa_required_for_staff
    assert settings.model_copy(update={"demo": True, "staff_mfa": "required"}).mfa_required_for_staff
