"""End to end: OneWindow's OpenID Connect provider as real clients see it, over real HTTP.

`onewindow serve --demo` runs as a child process on a database of its own, with
ONEWINDOW_PUBLIC_URL set to the address it really listens on (the issuer in every token and in
discovery must be the URL the clients use). Two client libraries that share no code with the
provider's JOSE stack drive it:

- authlib's OAuth 2.0 client (httpx): code + PKCE for the citizen app through the login page,
  refresh with rotation, UserInfo, revocation, introspection (as the console), RP-initiated
  logout; client credentials for the IOC (client_secret_basic) and for a client holding a key
  pair (private_key_jwt, with replay refused).
- idpyoidc / cryptojwt (the Identity Python stack): validates the discovery document and the
  ID token's signature and claims against the keys it fetches from the JWKS URL itself.
"""

from __future__ import annotations

import html
import re
import secrets
import time
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
import pytest
from authlib.integrations.base_client import OAuthError
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from cryptojwt.exception import BadSignature  # type: ignore[import-untyped]  # no type information shipped
from cryptojwt.key_jar import KeyJar  # type: ignore[import-untyped]
from idpyoidc import verified_claim_name  # type: ignore[import-untyped]
from idpyoidc.exception import NotForMe  # type: ignore[import-untyped]
from idpyoidc.message.oidc import (  # type: ignore[import-untyped]
    ProviderConfigurationResponse,
    verify_id_token,
)
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from identity.keys import KeyRing
from identity.tokens import issue_access_token
from onewindow.db import connect
from onewindow.settings import Settings
from tests.conftest import (
    RollbackDatabase,
    free_port,
)
from tests.e2e.conftest import Provider, run_async, running_provider

with warnings.catch_warnings():
    # authlib's httpx integration prefers the `httpx2` fork and warns (once, at import) when it
    # falls back to httpx. httpx is what OneWindow uses and what this client is meant to run on.
    warnings.filterwarnings("ignore", message="The httpx module is deprecated", category=DeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client

pytestmark = pytest.mark.e2e

APP = "citizen-app"
APP_SCOPE = "openid profile email offline_access"
SIGNED_OUT = "http://127.0.0.1/signed-out"  # the citizen app's registered post_logout_redirect_uri
CONSOLE = ("console", "console-demo-secret")
IOC = ("ioc", "ioc-demo-secret")
CITIZEN = ("citizen1", "onewindow-demo")
SENSOR = "sensor-hub"  # the private_key_jwt client this test registers


@pytest.fixture(scope="module")
def provider(
    servers: tuple[str, str], settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Provider]:
    """`onewindow serve --demo` on a database of its own."""
    with running_provider(
        servers, settings, tmp_path_factory.mktemp("oidc"), prefix="onewindow_oidc", demo_mode=True
    ) as running:
        yield running


def _sign_in(client: OAuth2Client, login_url: str) -> str:
    """Fill the login page as a browser without JavaScript would; return where it sends us."""
    page: httpx.Response = client.request("GET", login_url, withhold_token=True)
    assert page.status_code == 200, page.text
    assert "ow_csrf" in client.cookies  # the double-submit CSRF cookie comes with the form
    fields = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', page.text))
    assert {"csrf_token", "return_to", "lang"} <= set(fields), page.text
    form = {name: html.unescape(value) for name, value in fields.items()}
    form |= {"login": CITIZEN[0], "password": CITIZEN[1]}
    posted: httpx.Response = client.request(
        "POST", urljoin(login_url, "/login"), data=form, withhold_token=True
    )
    assert posted.status_code == 303, posted.text
    return urljoin(login_url, posted.headers["location"])


def _authorize(client: OAuth2Client, url: str, redirect_uri: str, *, allow_login: bool = True) -> str:
    """Follow /authorize (through the login page when it asks) to the redirect back to the app.

    Returns that final URL; nothing listens on the loopback port, a native app would read the
    code from the request its own listener receives.
    """
    for _ in range(5):
        reply: httpx.Response = client.request("GET", url, withhold_token=True)
        assert reply.status_code in (302, 303), f"{reply.status_code}: {reply.text}"
        location = urljoin(url, reply.headers["location"])
        if location.startswith(redirect_uri):
            return location
        assert urlsplit(location).path == "/login", location
        assert allow_login, "the provider asked for the password again"
        url = _sign_in(client, location)
    pytest.fail("too many redirects between /authorize and /login")


def _app_client() -> OAuth2Client:
    """The citizen app, a public native client: no secret, so authlib authenticates with the
    client_id alone ("none"); a loopback redirect on a port of its choosing (RFC 8252)."""
    return OAuth2Client(
        APP,
        scope=APP_SCOPE,
        redirect_uri=f"http://127.0.0.1:{free_port()}/callback",
        code_challenge_method="S256",
        timeout=10,
    )


def _code_flow(provider: Provider, client: OAuth2Client) -> tuple[dict[str, Any], str]:
    """Code + PKCE for the citizen app, signing in as citizen1; the tokens and the nonce sent."""
    redirect_uri: str = client.redirect_uri
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(12)
    url, state = client.create_authorization_url(
        provider.endpoint("authorization_endpoint"), code_verifier=verifier, nonce=nonce
    )
    assert "code_challenge_method=S256" in url
    callback = _authorize(client, url, redirect_uri)
    # authlib checks that the state came back unchanged before it redeems the code.
    token = client.fetch_token(
        provider.endpoint("token_endpoint"),
        authorization_response=callback,
        state=state,
        code_verifier=verifier,
    )
    return dict(token), nonce


def _console() -> OAuth2Client:
    return OAuth2Client(*CONSOLE, token_endpoint_auth_method="client_secret_basic", timeout=10)


def _active(provider: Provider, token: str) -> bool:
    with _console() as console:
        reply = console.introspect_token(provider.endpoint("introspection_endpoint"), token=token)
    assert reply.status_code == 200, reply.text
    return bool(reply.json()["active"])


def _userinfo(provider: Provider, access_token: str) -> httpx.Response:
    return httpx.get(
        provider.endpoint("userinfo_endpoint"),
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )


def _jwks(provider: Provider) -> KeySet:
    """The provider's published keys, fetched afresh (joserfc: the ordinary JOSE verification)."""
    return KeySet.import_key_set(httpx.get(provider.endpoint("jwks_uri"), timeout=5).json())


def _tamper_signature(token: str) -> str:
    """The same header and claims with one signature byte changed (the middle one: the last
    base64url character may carry only padding bits)."""
    head, claims, signature = token.split(".")
    middle = len(signature) // 2
    swapped = "A" if signature[middle] != "A" else "B"
    return f"{head}.{claims}.{signature[:middle]}{swapped}{signature[middle + 1 :]}"


# --- discovery and the ID token, through the second library ----------------------------------


def test_idpyoidc_accepts_discovery_and_verifies_the_id_token_against_the_jwks(provider: Provider) -> None:
    raw = httpx.get(provider.base_url + "/.well-known/openid-configuration", timeout=5).text
    discovery = ProviderConfigurationResponse().from_json(raw)
    # allow_http: the test server is plain HTTP on loopback; every other rule of Discovery applies.
    assert discovery.verify(allow_http=True)
    # OpenID Connect Discovery 1.0, section 4.3: the issuer is exactly the URL discovery was read from.
    assert discovery["issuer"] == provider.base_url
    assert "S256" in discovery["code_challenge_methods_supported"]
    assert "plain" not in discovery["code_challenge_methods_supported"]

    with _app_client() as client:
        token, nonce = _code_flow(provider, client)
    keyjar = KeyJar()
    keyjar.add_url(discovery["issuer"], discovery["jwks_uri"])  # fetched by cryptojwt, not by us
    message = {"id_token": token["id_token"], "access_token": token["access_token"]}
    # Signature (RS256 only), iss, aud, exp/iat, nonce, and at_hash against the access token.
    assert verify_id_token(
        message,
        check_hash=True,
        keyjar=keyjar,
        iss=provider.base_url,
        client_id=APP,
        nonce=nonce,
        allowed_sign_alg="RS256",
        skew=30,
    )
    claims = message[verified_claim_name("id_token")]
    assert claims["aud"] == [APP]
    assert claims["acr"] == "urn:onewindow:loa:low"
    assert claims["amr"] == ["pwd"]
    assert claims["name"] == "Citizen One"
    assert claims["auth_time"] <= claims["iat"]
    assert claims.jws_header["kid"] in {key.kid for key in _jwks(provider).keys}

    # The same ID token with its signature altered, or checked for another client, is refused.
    with pytest.raises(BadSignature):
        verify_id_token(
            {"id_token": _tamper_signature(token["id_token"])},
            keyjar=keyjar,
            iss=provider.base_url,
            client_id=APP,
            allowed_sign_alg="RS256",
        )
    with pytest.raises(NotForMe):
        verify_id_token(message | {}, keyjar=keyjar, iss=provider.base_url, client_id="console")


# --- the citizen app with authlib: code + PKCE, refresh, UserInfo, revoke, introspect, logout --


def test_code_flow_refresh_userinfo_revocation_introspection_and_logout(provider: Provider) -> None:
    with _app_client() as client:
        first, _ = _code_flow(provider, client)
        assert {"access_token", "refresh_token", "id_token", "expires_in"} <= set(first)
        assert first["token_type"].lower() == "bearer"
        assert set(first["scope"].split()) == set(APP_SCOPE.split())

        # UserInfo through the client itself: authlib attaches the bearer token.
        info = client.get(provider.endpoint("userinfo_endpoint"))
        assert info.status_code == 200, info.text
        subject = info.json()["sub"]
        assert info.json()["email"] == "citizen1@demo.onewindow.invalid"
        id_claims = jwt.decode(first["id_token"], _jwks(provider)).claims
        assert id_claims["sub"] == subject

        # Refresh rotates: a new refresh token each time, and the new access token works.
        second = dict(client.refresh_token(provider.endpoint("token_endpoint")))
        assert second["refresh_token"] != first["refresh_token"]
        assert second["access_token"] != first["access_token"]
        assert client.get(provider.endpoint("userinfo_endpoint")).json()["sub"] == subject

        # Introspection is for confidential clients: the console asks, the app may not.
        assert _active(provider, second["access_token"])
        assert _active(provider, second["refresh_token"])
        assert not _active(provider, first["refresh_token"])  # used up by the rotation
        refused = client.introspect_token(
            provider.endpoint("introspection_endpoint"), token=second["access_token"]
        )
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_client"

        # Revocation (RFC 7009) of the access token: introspection and UserInfo both see it.
        revoked = client.revoke_token(
            provider.endpoint("revocation_endpoint"),
            token=second["access_token"],
            token_type_hint="access_token",
        )
        assert revoked.status_code == 200, revoked.text
        assert not _active(provider, second["access_token"])
        after = _userinfo(provider, second["access_token"])
        assert after.status_code == 401
        assert 'error="invalid_token"' in after.headers["www-authenticate"]
        # Revoking the refresh token ends the family: it cannot be used to refresh again.
        assert (
            client.revoke_token(
                provider.endpoint("revocation_endpoint"), token=second["refresh_token"]
            ).status_code
            == 200
        )
        with pytest.raises(OAuthError) as refresh_refused:
            client.refresh_token(provider.endpoint("token_endpoint"), refresh_token=second["refresh_token"])
        assert refresh_refused.value.error == "invalid_grant"

        # RP-initiated logout, at the end_session_endpoint discovery names, with the ID token as hint.
        logout = client.request(
            "GET",
            provider.endpoint("end_session_endpoint")
            + "?"
            + urlencode(
                {"id_token_hint": first["id_token"], "post_logout_redirect_uri": SIGNED_OUT, "state": "bye"}
            ),
            withhold_token=True,
        )
        assert logout.status_code == 303, logout.text
        assert logout.headers["location"] == f"{SIGNED_OUT}?state=bye"
        # The sign-on session is over: the next authorization request goes to the login page.
        again, _ = client.create_authorization_url(
            provider.endpoint("authorization_endpoint"), code_verifier=secrets.token_urlsafe(48)
        )
        reply = client.request("GET", again, withhold_token=True)
        assert reply.status_code == 303
        assert urlsplit(reply.headers["location"]).path == "/login"


def test_a_reused_refresh_token_revokes_the_family_and_sso_serves_a_second_client(provider: Provider) -> None:
    with _app_client() as client:
        first, _ = _code_flow(provider, client)
        token_endpoint = provider.endpoint("token_endpoint")
        rotated = dict(client.refresh_token(token_endpoint))
        with pytest.raises(OAuthError) as reuse:
            client.refresh_token(token_endpoint, refresh_token=first["refresh_token"])
        assert reuse.value.error == "invalid_grant"
        # Presenting a used refresh token is taken as theft: everything of that family is revoked.
        assert not _active(provider, rotated["refresh_token"])
        assert not _active(provider, rotated["access_token"])

        # Single sign-on: the console, a second client, gets a code from the same browser session
        # without the password (allow_login=False fails if the login page comes up).
        console_redirect = f"{provider.base_url}/console/callback"
        with _console() as console:
            console.cookies = client.cookies
            url, state = console.create_authorization_url(
                provider.endpoint("authorization_endpoint"),
                redirect_uri=console_redirect,
                scope="openid profile",
            )
            callback = _authorize(console, url, console_redirect, allow_login=False)
            tokens = console.fetch_token(
                token_endpoint, authorization_response=callback, state=state, redirect_uri=console_redirect
            )
        console_claims = jwt.decode(tokens["id_token"], _jwks(provider)).claims
        assert console_claims["aud"] == ["console"]
        assert console_claims["sub"] == jwt.decode(first["id_token"], _jwks(provider)).claims["sub"]


# --- machine clients: client credentials -----------------------------------------------------


def test_client_credentials_with_client_secret_basic(provider: Provider) -> None:
    token_endpoint = provider.endpoint("token_endpoint")
    with OAuth2Client(
        *IOC, token_endpoint_auth_method="client_secret_basic", scope="ioc.feed", timeout=10
    ) as ioc:
        token = ioc.fetch_token(token_endpoint, grant_type="client_credentials")
        assert token["scope"] == "ioc.feed"
        assert "refresh_token" not in token  # no person, nothing to refresh
        decoded = jwt.decode(token["access_token"], _jwks(provider))
        # RFC 9068: typed as an access token, the machine client is its own subject.
        assert decoded.header["typ"] == "at+jwt"
        assert decoded.claims["client_id"] == "ioc"
        assert decoded.claims["sub"] == "ioc"
        assert decoded.claims["iss"] == provider.base_url
        assert _active(provider, token["access_token"])
        # A guarded route of OneWindow's own API accepts it (verified locally against the keys).
        me = ioc.get(provider.base_url + "/api/v1/identity/me")
        assert me.status_code == 200, me.text
        assert me.json()["client_id"] == "ioc"
    with OAuth2Client("ioc", "not-the-secret", token_endpoint_auth_method="client_secret_basic") as wrong:
        with pytest.raises(OAuthError) as refused:
            wrong.fetch_token(token_endpoint, grant_type="client_credentials")
        assert refused.value.error == "invalid_client"


async def _register_key_client(database_url: str, public_jwks: dict[str, Any]) -> None:
    """A confidential client that proves itself with a key pair: its public keys, no secret."""
    conn = await connect(database_url)
    try:
        await conn.execute(
            """
            INSERT INTO identity.clients (client_id, name, kind, secret_hash, jwks, token_endpoint_auth_method,
                grant_types, scopes)
            VALUES ($1, 'Sensor hub (test)', 'confidential', NULL, $2, 'private_key_jwt',
                ARRAY['client_credentials'], ARRAY['ioc.feed'])
            ON CONFLICT (client_id) DO UPDATE SET jwks = excluded.jwks
            """,
            SENSOR,
            public_jwks,
        )
    finally:
        await conn.close()


def _assertion_auth(token_endpoint: str, **claims: Any) -> PrivateKeyJWT:
    # A fresh claims dict each time: authlib writes the jti it generates into the dict it is
    # given. Without an `exp` here, authlib's default (an hour) applies, which OneWindow accepts.
    return PrivateKeyJWT(token_endpoint, claims=dict(claims))


def test_client_credentials_with_private_key_jwt_refuses_a_replayed_assertion(provider: Provider) -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "sensor-1", "alg": "RS256", "use": "sig"})
    run_async(_register_key_client(provider.database_url, {"keys": [key.as_dict(private=False)]}))
    token_endpoint = provider.endpoint("token_endpoint")

    def fetch(auth: PrivateKeyJWT) -> dict[str, Any]:
        with OAuth2Client(
            SENSOR, key, token_endpoint_auth_method=auth, scope="ioc.feed", timeout=10
        ) as sensor:
            return dict(sensor.fetch_token(token_endpoint, grant_type="client_credentials"))

    token = fetch(_assertion_auth(token_endpoint))
    claims = jwt.decode(token["access_token"], _jwks(provider)).claims
    assert claims["client_id"] == SENSOR
    # Two assertions, each fresh, both work; the same assertion id twice does not.
    jti = secrets.token_urlsafe(16)
    assert fetch(_assertion_auth(token_endpoint, jti=jti))["access_token"]
    with pytest.raises(OAuthError) as replayed:
        fetch(_assertion_auth(token_endpoint, jti=jti))
    assert replayed.value.error == "invalid_client"
    # An assertion meant to live for hours is refused, and says why.
    with pytest.raises(OAuthError) as long_lived:
        fetch(_assertion_auth(token_endpoint, exp=int(time.time()) + 7200))
    assert "at most one hour" in str(long_lived.value.description)
    # An assertion signed by another key is no proof at all.
    stranger = RSAKey.generate_key(2048, parameters={"kid": "sensor-1", "alg": "RS256"})
    with (
        pytest.raises(OAuthError) as forged,
        OAuth2Client(
            SENSOR, stranger, token_endpoint_auth_method=_assertion_auth(token_endpoint), timeout=10
        ) as impostor,
    ):
        impostor.fetch_token(token_endpoint, grant_type="client_credentials")
    assert forged.value.error == "invalid_client"


# --- tokens that must not work -----------------------------------------------------------------


async def _expired_access_token(provider: Provider, settings: Settings, subject: str) -> str:
    """An access token signed with the provider's own active key, expired two minutes ago.

    ONEWINDOW_ACCESS_TOKEN_SECONDS is at least 30 and verification allows 30 s of clock skew,
    so a token from a short-lived server would need a minute's wait. The test run holds the
    secret the signing key is encrypted with (ONEWINDOW_SECRET_KEY), so it mints one instead.
    """
    conn = await connect(provider.database_url)
    try:
        ring = KeyRing(RollbackDatabase(conn), settings.master_secret)
        token, _ = await issue_access_token(
            ring, issuer=provider.base_url, subject=subject, client_id=APP, scope=APP_SCOPE, lifetime=-120
        )
    finally:
        await conn.close()
    return token


def test_expired_and_tampered_access_tokens_are_refused_at_userinfo(
    provider: Provider, settings: Settings
) -> None:
    with _app_client() as client:
        token, _ = _code_flow(provider, client)
    good = _userinfo(provider, token["access_token"])
    assert good.status_code == 200, good.text
    subject = good.json()["sub"]

    expired = run_async(_expired_access_token(provider, settings, subject))
    # It differs from the good one only in its age: signed by the same published key.
    old = jwt.decode(expired, _jwks(provider))
    assert old.header["kid"] == jwt.decode(token["access_token"], _jwks(provider)).header["kid"]
    assert old.claims["exp"] < time.time() - 60  # past the 30 s of clock skew allowed
    for bad in (expired, _tamper_signature(token["access_token"]), token["access_token"] + "x", "not-a-jwt"):
        refused = _userinfo(provider, bad)
        assert refused.status_code == 401, (bad, refused.text)
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    # The tampered and the expired token are no more use to the rest of the API than to UserInfo.
    for bad in (expired, _tamper_signature(token["access_token"])):
        guarded = httpx.get(
            provider.base_url + "/api/v1/identity/me", headers={"Authorization": f"Bearer {bad}"}, timeout=10
        )
        assert guarded.status_code == 401, guarded.text
