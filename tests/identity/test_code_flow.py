"""The authorization code flow with PKCE, through the login page, as a browser and an app do it.

Covers the OpenID Foundation Basic OP cases that apply: code reuse, wrong redirect URI,
missing response type, prompt=none without a session, max_age forcing a new sign-in, nonce
echoed, refresh rotation and reuse detection, tampered tokens refused; plus single sign-on for
a second client, acr_values failing closed, UserInfo and RP-initiated logout.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from identity.oidc import LOA_LOW
from onewindow.db import Connection
from onewindow.settings import Settings
from tests.identity.conftest import APP, APP_REDIRECT, Pkce, redeem

CONSOLE = ("console", "console-demo-secret")


def _authorize_url(pkce: Pkce | None, **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": APP,
        "redirect_uri": APP_REDIRECT,
        "scope": "openid profile email offline_access",
        "state": "state-1",
        # A fresh nonce each time: the provider refuses a nonce it has seen (replay).
        "nonce": secrets.token_urlsafe(8),
    }
    if pkce is not None:
        params |= {"code_challenge": pkce.challenge, "code_challenge_method": "S256"}
    params |= extra
    return "/oauth2/authorize?" + urlencode({k: v for k, v in params.items() if v != ""})


async def _sign_in(
    browser: httpx.AsyncClient,
    login_location: str,
    username: str = "citizen1",
    password: str = "onewindow-demo",
) -> str:
    """Fill the login form the authorize endpoint sent us to; return where the form sends us next."""
    page = await browser.get(login_location)
    assert page.status_code == 200, page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    return_to = re.search(r'name="return_to" value="([^"]+)"', page.text)
    assert csrf
    assert return_to
    posted = await browser.post(
        "/login",
        data={
            "csrf_token": csrf.group(1),
            "return_to": return_to.group(1).replace("&amp;", "&"),
            "lang": "en",
            "login": username,
            "password": password,
        },
    )
    assert posted.status_code == 303, posted.text
    return posted.headers["location"]


async def _code(browser: httpx.AsyncClient, pkce: Pkce | None, **extra: str) -> dict[str, list[str]]:
    """Run /authorize (signing in if asked) until the redirect back to the app; its query."""
    reply = await browser.get(_authorize_url(pkce, **extra))
    if reply.status_code == 303 and reply.headers["location"].startswith("/login"):
        reply = await browser.get(await _sign_in(browser, reply.headers["location"]))
    assert reply.status_code == 302, reply.text
    location = reply.headers["location"]
    assert location.startswith(APP_REDIRECT), location
    return parse_qs(urlsplit(location).query)


async def _jwks(browser: httpx.AsyncClient) -> KeySet:
    return KeySet.import_key_set((await browser.get("/oauth2/jwks")).json())


async def _introspect(browser: httpx.AsyncClient, token: str) -> bool:
    reply = await browser.post("/oauth2/introspect", data={"token": token}, auth=CONSOLE)
    return bool(reply.json()["active"])


async def test_code_flow_with_pkce_gives_tokens_and_a_valid_id_token(
    browser: httpx.AsyncClient, settings: Settings
) -> None:
    pkce = Pkce.new()
    query = await _code(browser, pkce, nonce="nonce-1")
    assert query["state"] == ["state-1"]
    tokens = await redeem(browser, query["code"][0], pkce)
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert {"access_token", "id_token", "refresh_token", "expires_in", "token_type"} <= set(body)
    id_token = jwt.decode(body["id_token"], await _jwks(browser), algorithms=["RS256"])
    claims = id_token.claims
    assert id_token.header["kid"]
    assert claims["iss"] == settings.public_url
    assert claims["aud"] == [APP]
    assert claims["nonce"] == "nonce-1"
    assert claims["acr"] == LOA_LOW
    assert claims["amr"] == ["pwd"]
    assert claims["name"] == "Citizen One"
    assert claims["exp"] - claims["iat"] == settings.id_token_seconds
    assert isinstance(claims["auth_time"], int)
    # UserInfo with the access token, in the header and in a form body.
    info = await browser.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200
    assert info.json()["sub"] == claims["sub"]
    assert info.json()["email"] == "citizen1@demo.onewindow.invalid"
    posted = await browser.post("/oauth2/userinfo", data={"access_token": body["access_token"]})
    assert posted.json()["sub"] == claims["sub"]
    tampered = body["access_token"][:-3] + ("abc" if not body["access_token"].endswith("abc") else "xyz")
    refused = await browser.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {tampered}"})
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]


async def test_a_reused_nonce_is_refused(browser: httpx.AsyncClient) -> None:
    pkce = Pkce.new()
    await _code(browser, pkce, nonce="only-once")
    replay = await browser.get(_authorize_url(pkce, nonce="only-once"))
    assert replay.status_code == 302
    assert parse_qs(urlsplit(replay.headers["location"]).query)["error"] == ["invalid_request"]


async def test_a_code_used_twice_fails_and_revokes_what_the_first_use_issued(
    browser: httpx.AsyncClient,
) -> None:
    pkce = Pkce.new()
    code = (await _code(browser, pkce))["code"][0]
    first = (await redeem(browser, code, pkce)).json()
    assert await _introspect(browser, first["access_token"])
    second = await redeem(browser, code, pkce)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    assert not await _introspect(browser, first["access_token"])
    assert not await _introspect(browser, first["refresh_token"])


async def test_wrong_verifier_or_redirect_uri_at_the_token_endpoint_is_invalid_grant(
    browser: httpx.AsyncClient,
) -> None:
    pkce = Pkce.new()
    code = (await _code(browser, pkce))["code"][0]
    wrong = await redeem(browser, code, Pkce.new())
    assert wrong.json()["error"] == "invalid_grant"
    code = (await _code(browser, pkce))["code"][0]
    other_port = await browser.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://127.0.0.1:1/callback",
            "client_id": APP,
            "code_verifier": pkce.verifier,
        },
    )
    assert other_port.json()["error"] == "invalid_grant"


async def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_family(
    browser: httpx.AsyncClient,
) -> None:
    pkce = Pkce.new()
    tokens = (await redeem(browser, (await _code(browser, pkce))["code"][0], pkce)).json()

    async def refresh(token: str) -> httpx.Response:
        return await browser.post(
            "/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": token, "client_id": APP}
        )

    rotated = await refresh(tokens["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    assert await _introspect(browser, new["access_token"])
    reused = await refresh(tokens["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    # The whole family is gone: the rotated refresh token and its access token too.
    assert (await refresh(new["refresh_token"])).json()["error"] == "invalid_grant"
    assert not await _introspect(browser, new["access_token"])


async def test_revoking_a_refresh_token_ends_the_family(browser: httpx.AsyncClient) -> None:
    pkce = Pkce.new()
    tokens = (await redeem(browser, (await _code(browser, pkce))["code"][0], pkce)).json()
    revoked = await browser.post("/oauth2/revoke", data={"token": tokens["refresh_token"], "client_id": APP})
    assert revoked.status_code == 200
    assert not await _introspect(browser, tokens["refresh_token"])
    assert not await _introspect(browser, tokens["access_token"])


async def test_single_sign_on_for_a_second_client(browser: httpx.AsyncClient, settings: Settings) -> None:
    await _code(browser, Pkce.new())  # signs in through the citizen app
    console_redirect = f"{settings.public_url}/console/callback"
    reply = await browser.get(
        "/oauth2/authorize?"
        + urlencode(
            {
                "response_type": "code",
                "client_id": "console",
                "redirect_uri": console_redirect,
                "scope": "openid profile",
                "state": "s2",
            }
        )
    )
    assert reply.status_code == 302, reply.text  # no login page: the session signs the person in
    query = parse_qs(urlsplit(reply.headers["location"]).query)
    assert query["state"] == ["s2"]
    tokens = await browser.post(
        "/oauth2/token",
        data={"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": console_redirect},
        auth=CONSOLE,
    )
    assert tokens.status_code == 200, tokens.text


async def test_prompt_none_without_a_session_redirects_login_required(browser: httpx.AsyncClient) -> None:
    reply = await browser.get(_authorize_url(Pkce.new(), prompt="none"))
    assert reply.status_code == 302
    query = parse_qs(urlsplit(reply.headers["location"]).query)
    assert query["error"] == ["login_required"]
    assert query["state"] == ["state-1"]


async def test_prompt_login_and_max_age_force_a_new_sign_in(
    browser: httpx.AsyncClient, conn: Connection
) -> None:
    await _code(browser, Pkce.new())
    forced = await browser.get(_authorize_url(Pkce.new(), prompt="login"))
    assert forced.status_code == 303
    assert forced.headers["location"].startswith("/login")
    # After signing in again, the same request completes (and does not loop back to the login page).
    resumed = await browser.get(await _sign_in(browser, forced.headers["location"]))
    assert resumed.status_code == 302
    assert "code=" in resumed.headers["location"]
    await conn.execute("UPDATE identity.sessions SET auth_time = now() - interval '1 hour'")
    stale = await browser.get(_authorize_url(Pkce.new(), max_age="60"))
    assert stale.status_code == 303
    assert stale.headers["location"].startswith("/login")
    fresh_enough = await browser.get(_authorize_url(Pkce.new(), max_age="7200"))
    assert fresh_enough.status_code == 302


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            {"code_challenge": "", "code_challenge_method": ""},
            "invalid_request",
        ),  # public client without PKCE
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"response_type": ""}, None),  # missing response type: refused, see below
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "openid ioc.feed"}, None),  # a scope the client may not have is dropped, not granted
        ({"acr_values": "urn:onewindow:loa:high"}, "unmet_authentication_requirements"),
    ],
)
async def test_bad_authorization_requests_are_redirected_with_the_error(
    browser: httpx.AsyncClient, change: dict[str, str], error: str | None
) -> None:
    await _code(browser, Pkce.new())  # signed in, so only the request itself is judged
    reply = await browser.get(_authorize_url(Pkce.new(), **change))
    if error is None and change.get("response_type") == "":
        assert reply.status_code in (302, 400)
        if reply.status_code == 302:
            assert "error=" in reply.headers["location"]
        return
    assert reply.status_code == 302, reply.text
    query = parse_qs(urlsplit(reply.headers["location"]).query)
    if error is None:
        assert "code" in query
        return
    assert query["error"] == [error]
    assert query["state"] == ["state-1"]


@pytest.mark.parametrize(
    "redirect_uri",
    ["https://evil.example/callback", "http://127.0.0.1:53999/other", 'http://127.0.0.1/"><script>', ""],
)
async def test_an_unverified_redirect_uri_gets_a_page_never_a_redirect(
    browser: httpx.AsyncClient, redirect_uri: str
) -> None:
    reply = await browser.get(_authorize_url(Pkce.new(), redirect_uri=redirect_uri))
    assert reply.status_code == 400
    assert "location" not in reply.headers
    assert reply.headers["content-type"].startswith("text/html")
    assert "<script>" not in reply.text
    unknown = await browser.get(_authorize_url(Pkce.new(), client_id="no-such-app"))
    assert unknown.status_code == 400
    assert "location" not in unknown.headers


async def test_logout_with_id_token_hint_ends_the_session_and_returns_to_the_app(
    browser: httpx.AsyncClient,
) -> None:
    pkce = Pkce.new()
    tokens = (await redeem(browser, (await _code(browser, pkce))["code"][0], pkce)).json()
    reply = await browser.get(
        "/oauth2/logout?"
        + urlencode(
            {
                "id_token_hint": tokens["id_token"],
                "post_logout_redirect_uri": "http://127.0.0.1/signed-out",
                "state": "bye",
            }
        )
    )
    assert reply.status_code == 303
    assert reply.headers["location"] == "http://127.0.0.1/signed-out?state=bye"
    again = await browser.get(_authorize_url(Pkce.new()))
    assert again.status_code == 303
    assert again.headers["location"].startswith("/login")
    unregistered = await browser.get(
        "/oauth2/logout?"
        + urlencode(
            {
                "id_token_hint": tokens["id_token"],
                "post_logout_redirect_uri": "https://evil.example/",
            }
        )
    )
    assert unregistered.status_code == 400
    assert "location" not in unregistered.headers
    no_hint = await browser.get("/oauth2/logout")
    assert no_hint.status_code == 303
    assert no_hint.headers["location"] == "/logout"


async def test_signing_out_ends_refresh_tokens_of_that_session_unless_offline(
    browser: httpx.AsyncClient,
) -> None:
    online_pkce, offline_pkce = Pkce.new(), Pkce.new()
    online = (
        await redeem(
            browser, (await _code(browser, online_pkce, scope="openid profile"))["code"][0], online_pkce
        )
    ).json()
    offline = (await redeem(browser, (await _code(browser, offline_pkce))["code"][0], offline_pkce)).json()
    assert "offline_access" in offline["scope"]
    assert await _introspect(browser, online["refresh_token"])
    reply = await browser.get("/oauth2/logout?" + urlencode({"id_token_hint": online["id_token"]}))
    assert reply.status_code == 200  # signed out, no redirect asked for
    assert not await _introspect(browser, online["refresh_token"])
    refused = await browser.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": online["refresh_token"], "client_id": APP},
    )
    assert refused.json()["error"] == "invalid_grant"
    kept = await browser.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": offline["refresh_token"], "client_id": APP},
    )
    assert kept.status_code == 200, kept.text


async def test_logout_by_form_post_and_a_bad_target_signs_nobody_out(browser: httpx.AsyncClient) -> None:
    pkce = Pkce.new()
    tokens = (await redeem(browser, (await _code(browser, pkce))["code"][0], pkce)).json()
    bad = await browser.post(
        "/oauth2/logout",
        data={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "https://evil.example/"},
    )
    assert bad.status_code == 400
    still = await browser.get(_authorize_url(Pkce.new()))
    assert still.status_code == 302  # still signed in: the refused request changed nothing
    posted = await browser.post(
        "/oauth2/logout",
        data={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "http://127.0.0.1/signed-out"},
    )
    assert posted.status_code == 303
    assert (await browser.get(_authorize_url(Pkce.new()))).status_code == 303  # to the login page


async def test_login_hint_fills_in_the_login_field(browser: httpx.AsyncClient) -> None:
    reply = await browser.get(_authorize_url(Pkce.new(), login_hint="citizen1"))
    assert reply.status_code == 303
    page = await browser.get(reply.headers["location"])
    assert 'name="login" type="text" value="citizen1"' in page.text
