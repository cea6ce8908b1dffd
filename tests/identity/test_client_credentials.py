"""Machine clients: client credentials, revocation and introspection at the token endpoints."""

from __future__ import annotations

import httpx
import pytest

from onewindow.db import Connection

IOC = ("ioc", "ioc-demo-secret")
CONSOLE = ("console", "console-demo-secret")


@pytest.fixture
def http(browser: httpx.AsyncClient) -> httpx.AsyncClient:
    """The demo city's app (tests/identity/conftest.py `browser`), under this file's name."""
    return browser


async def _ioc_token(http: httpx.AsyncClient, scope: str | None = "ioc.feed") -> httpx.Response:
    form = {"grant_type": "client_credentials"} | ({"scope": scope} if scope else {})
    return await http.post("/oauth2/token", data=form, auth=IOC)


async def test_client_credentials_gives_a_short_lived_jwt_with_the_asked_scope(
    http: httpx.AsyncClient,
) -> None:
    reply = await _ioc_token(http)
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    body = reply.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "ioc.feed"
    assert "refresh_token" not in body
    assert "id_token" not in body
    # The token works on OneWindow's own routes: introspected as active by a confidential client.
    seen = await http.post("/oauth2/introspect", data={"token": body["access_token"]}, auth=CONSOLE)
    assert seen.json()["active"] is True
    assert seen.json()["client_id"] == "ioc"
    assert seen.json()["sub"] == "ioc"


async def test_client_secret_post_works_and_a_wrong_secret_is_invalid_client(http: httpx.AsyncClient) -> None:
    posted = await http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": "ioc", "client_secret": "ioc-demo-secret"},
    )
    # The client is registered for client_secret_basic only: one method per client, no downgrade.
    assert posted.status_code in (400, 401)
    assert posted.json()["error"] == "invalid_client"
    wrong = await http.post("/oauth2/token", data={"grant_type": "client_credentials"}, auth=("ioc", "nope"))
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "client_credentials", "scope": "openid"}, "invalid_scope"),
        ({"grant_type": "password", "username": "a", "password": "b"}, "unsupported_grant_type"),
        ({}, "invalid_request"),
        ({"grant_type": "authorization_code", "code": "x"}, "unauthorized_client"),
    ],
)
async def test_bad_token_requests_get_the_specification_errors(
    http: httpx.AsyncClient, form: dict[str, str], error: str
) -> None:
    reply = await http.post("/oauth2/token", data=form, auth=IOC)
    assert 400 <= reply.status_code < 500
    assert reply.json()["error"] == error


async def test_malformed_bodies_are_oauth_errors_not_500(http: httpx.AsyncClient) -> None:
    as_json = await http.post("/oauth2/token", json={"grant_type": "client_credentials"}, auth=IOC)
    assert as_json.status_code == 400
    assert as_json.json()["error"] == "invalid_request"
    too_long = await http.post(
        "/oauth2/token", data={"grant_type": "client_credentials", "scope": "x" * 5000}, auth=IOC
    )
    assert too_long.status_code == 400
    quoted = await http.post("/oauth2/token", data={"grant_type": 'client"credentials\\'}, auth=IOC)
    assert quoted.status_code == 400


async def test_revoked_access_token_is_inactive(http: httpx.AsyncClient) -> None:
    token = (await _ioc_token(http)).json()["access_token"]
    revoked = await http.post(
        "/oauth2/revoke", data={"token": token, "token_type_hint": "nonsense"}, auth=IOC
    )
    assert revoked.status_code == 200
    seen = await http.post("/oauth2/introspect", data={"token": token}, auth=CONSOLE)
    assert seen.json() == {"active": False}


async def test_introspection_is_for_confidential_clients_only(http: httpx.AsyncClient) -> None:
    token = (await _ioc_token(http)).json()["access_token"]
    public = await http.post("/oauth2/introspect", data={"token": token, "client_id": "citizen-app"})
    assert public.status_code == 401
    assert public.json()["error"] == "invalid_client"
    garbage = await http.post("/oauth2/introspect", data={"token": "not-a-token"}, auth=CONSOLE)
    assert garbage.json() == {"active": False}


async def test_disabled_client_cannot_get_tokens(http: httpx.AsyncClient, conn: Connection) -> None:
    await conn.execute("UPDATE identity.clients SET disabled_at = now() WHERE client_id = 'ioc'")
    reply = await _ioc_token(http)
    assert reply.status_code == 401
    assert reply.json()["error"] == "invalid_client"


async def test_me_describes_the_machine_client_and_needs_a_token(http: httpx.AsyncClient) -> None:
    token = (await _ioc_token(http, "ioc.feed ioc.update")).json()["access_token"]
    for _ in range(2):  # the second time from the verified-token cache: the same answer
        me = await http.get("/api/v1/identity/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
        assert me.json() == {
            "subject": "ioc",
            "client_id": "ioc",
            "kind": "client",
            "scopes": ["ioc.feed", "ioc.update"],
            "roles": [],
            "acr": None,
            "name": None,
        }
    assert (await http.get("/api/v1/identity/me")).status_code == 401
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert (
        await http.get("/api/v1/identity/me", headers={"Authorization": f"Bearer {tampered}"})
    ).status_code == 401
