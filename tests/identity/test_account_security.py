"""Anyone signed in enrols or removes their own TOTP at /account/security; a client asking for
more assurance than the session has gets the person stepped up with a code."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from identity.credentials import totp_at_step, totp_step
from identity.oidc import LOA_LOW, LOA_SUBSTANTIAL
from onewindow.db import Connection
from onewindow.settings import Settings
from tests.identity.conftest import APP, APP_REDIRECT, Pkce, field, redeem, sign_in_with_password

SECURITY = "/account/security"


async def _code_form(browser: httpx.AsyncClient, path: str, code: str) -> httpx.Response:
    """Fill the code field of the form on the page at `path` (its own action)."""
    page = (await browser.get(path)).text
    action = re.search(r'<form method="post" action="([^"]+)"', page)
    assert action, page
    return await browser.post(
        action.group(1), data={"csrf_token": field(page, "csrf_token"), "lang": "en", "code": code}
    )


def _next_code(key: str) -> str:
    """The app's code one time step ahead (allowed for clock drift): the current step was used."""
    return totp_at_step(key, totp_step(datetime.now(UTC)) + 1)


async def _enrol(
    browser: httpx.AsyncClient, conn: Connection, username: str = "citizen1"
) -> tuple[str, list[str]]:
    """Sign in with the password alone, then enrol on the account page; the key and recovery codes."""
    signed_in = await sign_in_with_password(browser, username, SECURITY)
    assert signed_in.status_code == 303, signed_in.text
    overview = await browser.get(SECURITY, params={"lang": "en"})
    assert overview.status_code == 200
    assert 'data-enrolled="false"' in overview.text
    assert f'href="{SECURITY}/totp?lang=en"' in overview.text
    page = await browser.get(f"{SECURITY}/totp", params={"lang": "en"})
    assert page.status_code == 200
    assert "<svg" in page.text  # the QR code of the otpauth URI, as the staff setup shows it
    secret = re.search(r'id="totp-secret">([^<]+)<', page.text)
    assert secret
    key = secret.group(1).replace(" ", "")
    csrf = field(page.text, "csrf_token")

    wrong = await browser.post(f"{SECURITY}/totp", data={"csrf_token": csrf, "lang": "en", "code": "000000"})
    assert wrong.status_code == 400
    assert "not right" in wrong.text
    assert key in wrong.text.replace(" ", "")  # the same secret again, not a new one
    assert not await _enrolled(conn, username)

    code = totp_at_step(key, totp_step(datetime.now(UTC)))
    done = await browser.post(f"{SECURITY}/totp", data={"csrf_token": csrf, "lang": "en", "code": code})
    assert done.status_code == 200, done.text
    codes = re.findall(r"<li><code>([^<]+)</code></li>", done.text)
    assert len(codes) == 10
    assert f'href="{SECURITY}?lang=en"' in done.text
    assert await _enrolled(conn, username)
    return key, codes


async def _enrolled(conn: Connection, username: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM identity.totp t JOIN identity.persons p ON p.id = t.person_id"
            " WHERE p.username = $1 AND t.confirmed_at IS NOT NULL)",
            username,
        )
    )


async def _audit(conn: Connection, action: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await conn.fetch(
        "SELECT outcome, detail FROM identity.audit_log WHERE action = $1 ORDER BY at, id", action
    )
    return [(row["outcome"], dict(row["detail"])) for row in rows]


def _authorize(challenge: str, **extra: str) -> str:
    query = {
        "response_type": "code",
        "client_id": APP,
        "redirect_uri": APP_REDIRECT,
        "scope": "openid profile",
        "state": "state-1",
        "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return "/oauth2/authorize?" + urlencode(query)


async def _tokens(browser: httpx.AsyncClient, location: str, pkce: Pkce) -> dict[str, Any]:
    assert location.startswith(APP_REDIRECT), location
    reply = await redeem(browser, parse_qs(urlsplit(location).query)["code"][0], pkce)
    assert reply.status_code == 200, reply.text
    keys = KeySet.import_key_set((await browser.get("/oauth2/jwks")).json())
    body: dict[str, Any] = reply.json()
    return {
        "id": jwt.decode(body["id_token"], keys, algorithms=["RS256"]).claims,
        "access": jwt.decode(body["access_token"], keys, algorithms=["RS256"]).claims,
    }


async def test_not_signed_in_is_sent_to_sign_in_and_back(browser: httpx.AsyncClient) -> None:
    for path in (SECURITY, f"{SECURITY}/totp"):
        reply = await browser.get(path, params={"lang": "en"})
        assert reply.status_code == 303
        location = urlsplit(reply.headers["location"])
        assert location.path == "/login"
        assert parse_qs(location.query)["return_to"] == [f"{SECURITY}?lang=en"]


async def test_a_citizen_enrols_and_is_stepped_up_when_a_client_asks_for_substantial(
    browser: httpx.AsyncClient, conn: Connection
) -> None:
    key, _ = await _enrol(browser, conn)
    enrolled = await _audit(conn, "mfa.enrolled")
    assert [outcome for outcome, _ in enrolled] == ["wrong_code", "ok"]
    assert all(detail == {"via": "account"} for _, detail in enrolled)
    rows = await conn.fetch("SELECT detail::text AS detail FROM identity.audit_log")
    assert not any(key in row["detail"] for row in rows)  # never the secret
    overview = await browser.get(SECURITY, params={"lang": "zh"})
    assert 'data-enrolled="true"' in overview.text
    assert "两步验证：已开启" in overview.text

    # The session was signed in with the password alone: a client asking for substantial gets
    # the person asked for a code (step-up), then the tokens say substantial.
    pkce = Pkce.new()
    silent = await browser.get(_authorize(pkce.challenge, acr_values=LOA_SUBSTANTIAL, prompt="none"))
    assert silent.status_code == 302  # prompt=none: no page may be shown, so no step-up
    assert parse_qs(urlsplit(silent.headers["location"]).query)["error"] == ["interaction_required"]
    asked = await browser.get(_authorize(pkce.challenge, acr_values=LOA_SUBSTANTIAL, ui_locales="en"))
    assert asked.status_code == 303, asked.text
    assert asked.headers["location"] == "/login/mfa?lang=en"
    wrong = await _code_form(browser, "/login/mfa", "000000")
    assert wrong.status_code == 401
    stepped = await _code_form(browser, "/login/mfa", _next_code(key))
    assert stepped.status_code == 303, stepped.text
    assert stepped.headers["location"].startswith("/oauth2/authorize?")
    back = await browser.get(stepped.headers["location"])
    assert back.status_code == 302, back.text
    claims = await _tokens(browser, back.headers["location"], pkce)
    assert claims["id"]["acr"] == LOA_SUBSTANTIAL
    assert claims["id"]["amr"] == ["pwd", "otp"]
    assert claims["access"]["acr"] == LOA_SUBSTANTIAL


async def test_a_new_sign_in_after_enrolment_asks_for_the_code_and_reaches_substantial(
    browser: httpx.AsyncClient, conn: Connection
) -> None:
    key, _ = await _enrol(browser, conn)
    await conn.execute("UPDATE identity.sessions SET ended_at = now()")
    pkce = Pkce.new()
    first = await browser.get(_authorize(pkce.challenge, acr_values=LOA_SUBSTANTIAL))
    assert first.status_code == 303
    assert first.headers["location"].startswith("/login?")
    return_to = parse_qs(urlsplit(first.headers["location"]).query)["return_to"][0]
    password = await sign_in_with_password(browser, "citizen1", return_to)
    assert password.headers["location"] == "/login/mfa?lang=en"
    coded = await _code_form(browser, "/login/mfa", _next_code(key))
    assert coded.status_code == 303
    back = await browser.get(coded.headers["location"])
    claims = await _tokens(browser, back.headers["location"], pkce)
    assert claims["id"]["acr"] == LOA_SUBSTANTIAL
    assert claims["access"]["acr"] == LOA_SUBSTANTIAL


async def test_without_a_second_factor_substantial_fails_closed_pointing_to_the_account_page(
    browser: httpx.AsyncClient, conn: Connection
) -> None:
    await sign_in_with_password(browser, "citizen1", "/")
    pkce = Pkce.new()
    reply = await browser.get(_authorize(pkce.challenge, acr_values=LOA_SUBSTANTIAL))
    assert reply.status_code == 302
    query = parse_qs(urlsplit(reply.headers["location"]).query)
    assert query["error"] == ["unmet_authentication_requirements"]
    assert SECURITY in query["error_description"][0]
    assert query["state"] == ["state-1"]
    # A low level is still met by the password alone.
    pkce = Pkce.new()
    low = await browser.get(_authorize(pkce.challenge, acr_values=LOA_LOW))
    assert (await _tokens(browser, low.headers["location"], pkce))["id"]["acr"] == LOA_LOW


async def test_removal_needs_a_current_code_and_a_recent_sign_in(
    browser: httpx.AsyncClient, conn: Connection
) -> None:
    key, codes = await _enrol(browser, conn)
    wrong = await _code_form(browser, SECURITY, "123456")
    assert wrong.status_code == 400
    assert await _enrolled(conn, "citizen1")
    # The same session an hour later: sign in again first.
    await conn.execute("UPDATE identity.sessions SET auth_time = auth_time - interval '1 hour'")
    stale = await _code_form(browser, SECURITY, _next_code(key))
    assert stale.status_code == 303
    assert stale.headers["location"].startswith("/login?")
    assert await _enrolled(conn, "citizen1")
    await conn.execute("UPDATE identity.sessions SET auth_time = auth_time + interval '1 hour'")
    removed = await _code_form(browser, SECURITY, codes[0])  # a recovery code works too
    assert removed.status_code == 200, removed.text
    assert 'data-enrolled="false"' in removed.text
    assert not await _enrolled(conn, "citizen1")
    assert not await conn.fetchval("SELECT count(*) FROM identity.recovery_codes")
    assert [outcome for outcome, _ in await _audit(conn, "mfa.removed")] == ["wrong_code", "ok"]


async def test_forms_without_the_csrf_token_are_refused(browser: httpx.AsyncClient, conn: Connection) -> None:
    await sign_in_with_password(browser, "citizen1", SECURITY)
    page = await browser.get(f"{SECURITY}/totp", params={"lang": "en"})
    secret = re.search(r'id="totp-secret">([^<]+)<', page.text)
    assert secret
    code = totp_at_step(secret.group(1).replace(" ", ""), totp_step(datetime.now(UTC)))
    for path in (f"{SECURITY}/totp", f"{SECURITY}/totp/remove"):
        forged = await browser.post(path, data={"csrf_token": "x" * 43, "lang": "en", "code": code})
        assert forged.status_code == 403
    assert not await _enrolled(conn, "citizen1")


async def test_wrong_codes_are_throttled_like_wrong_passwords(
    browser: httpx.AsyncClient, conn: Connection
) -> None:
    await _enrol(browser, conn)
    for _ in range(3):
        assert (await _code_form(browser, SECURITY, "000000")).status_code == 400
    throttled = await _code_form(browser, SECURITY, "000000")
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"]
    assert await _enrolled(conn, "citizen1")


async def test_staff_who_must_use_a_second_factor_cannot_remove_it(
    browser: httpx.AsyncClient, conn: Connection, settings: Settings
) -> None:
    assert settings.mfa_required_for_staff
    first = await sign_in_with_password(browser, "officer1", SECURITY)
    assert first.headers["location"] == "/login/mfa/setup?lang=en"
    page = (await browser.get("/login/mfa/setup")).text
    secret = re.search(r'id="totp-secret">([^<]+)<', page)
    assert secret
    key = secret.group(1).replace(" ", "")
    code = totp_at_step(key, totp_step(datetime.now(UTC)))
    enrolled = await browser.post(
        "/login/mfa/setup", data={"csrf_token": field(page, "csrf_token"), "lang": "en", "code": code}
    )
    assert enrolled.status_code == 200
    refused = await _code_form(browser, SECURITY, _next_code(key))
    assert refused.status_code == 403
    assert "cannot be turned off" in refused.text
    assert await _enrolled(conn, "officer1")
