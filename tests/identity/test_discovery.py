"""Discovery and the JWKS: what clients fetch before they trust a token."""

from __future__ import annotations

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from identity.keys import KeyRing
from identity.tokens import issue_access_token
from onewindow.settings import Settings
from tests.conftest import TEST_SECRET, RollbackDatabase


async def test_discovery_names_the_issuer_and_its_endpoints(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    reply = await client.get("/.well-known/openid-configuration")
    assert reply.status_code == 200
    document = reply.json()
    issuer = settings.public_url
    assert document["issuer"] == issuer
    assert document["jwks_uri"] == issuer + "/oauth2/jwks"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "urn:onewindow:loa:high" in document["acr_values_supported"]
    assert (await client.get("/.well-known/oauth-authorization-server")).json() == document


async def test_jwks_publishes_the_public_key_that_verifies_tokens(
    client: httpx.AsyncClient, db: RollbackDatabase
) -> None:
    reply = await client.get("/oauth2/jwks")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/jwk-set+json")
    document = reply.json()
    assert all("d" not in key and "p" not in key for key in document["keys"])  # never a private part
    ring = KeyRing(db, TEST_SECRET.encode())
    token, _ = await issue_access_token(
        ring, issuer="http://x", subject="s", client_id="c", scope="", lifetime=60
    )
    decoded = jwt.decode(token, KeySet.import_key_set(document), algorithms=["RS256"])
    assert decoded.claims["sub"] == "s"
