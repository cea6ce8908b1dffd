"""Access tokens (RFC 9068) and the guards the rest of OneWindow puts on its routes."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from litestar import Request, get
from litestar.connection import ASGIConnection
from litestar.params import FromPath

from identity.api import Principal, current_principal, require_role, require_scope
from identity.keys import KeyRing, create_key, rotate_if_due
from identity.tokens import InvalidToken, RoleGrant, VerifiedCache, issue_access_token, verify_access_token
from onewindow.db import Connection, PoolDatabase
from onewindow.settings import Settings, load_settings
from tests.conftest import TEST_SECRET, RollbackDatabase, app_client, build_app

ISSUER = "http://127.0.0.1:8000"
OFFICER_MARKET = RoleGrant(role="officer", unit="market", path="demo/market")
WORKER_GRID = RoleGrant(role="grid_worker", unit="G-0107", path="demo/central/riverside/riverside-1/G-0107")
SUPERVISOR_COMMUNITY = RoleGrant(
    role="supervisor", unit="riverside-1", path="demo/central/riverside/riverside-1"
)


@pytest.fixture
async def ring(db: RollbackDatabase) -> KeyRing:
    keys = KeyRing(db, TEST_SECRET.encode())
    await keys.load()
    return keys


async def _token(
    ring: KeyRing,
    *,
    roles: tuple[RoleGrant, ...] = (),
    scope: str = "openid",
    lifetime: int = 300,
    subject: str = "person-1",
    client_id: str = "console",
) -> str:
    token, _ = await issue_access_token(
        ring, issuer=ISSUER, subject=subject, client_id=client_id, scope=scope, lifetime=lifetime, roles=roles
    )
    return token


async def test_an_issued_token_verifies_and_carries_roles_and_scope(ring: KeyRing) -> None:
    token = await _token(ring, roles=(OFFICER_MARKET,), scope="openid staff")
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    assert header["kid"]
    claims = await verify_access_token(ring, token, issuer=ISSUER)
    assert claims.sub == "person-1"
    assert claims.client_id == "console"
    assert claims.aud == ISSUER + "/api"
    assert claims.scope == "openid staff"
    assert claims.roles == (OFFICER_MARKET,)
    assert claims.exp - claims.iat == 300


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB"),  # signature
        lambda t: (
            t.split(".")[0]
            + "."
            + base64.urlsafe_b64encode(b'{"sub":"admin"}').decode().rstrip("=")
            + "."
            + t.split(".")[2]
        ),
        lambda t: "not.a.token",
        lambda t: "",
    ],
)
async def test_tampered_or_garbage_tokens_are_refused(ring: KeyRing, mangle: Any) -> None:
    token = await _token(ring)
    with pytest.raises(InvalidToken):
        await verify_access_token(ring, mangle(token), issuer=ISSUER)


async def test_expired_token_is_refused(ring: KeyRing) -> None:
    token = await _token(ring, lifetime=-120)
    with pytest.raises(InvalidToken):
        await verify_access_token(ring, token, issuer=ISSUER)


async def test_wrong_issuer_or_foreign_key_is_refused(ring: KeyRing) -> None:
    token = await _token(ring)
    with pytest.raises(InvalidToken):
        await verify_access_token(ring, token, issuer="https://evil.example")
    same_kid = str((await ring.signing_key()).kid)  # a forger who copies our kid
    foreign = RSAKey.generate_key(2048, parameters={"kid": same_kid})
    forged = jwt.encode(
        {"alg": "RS256", "kid": foreign.kid, "typ": "at+jwt"},
        {
            "iss": ISSUER,
            "sub": "x",
            "aud": ISSUER + "/api",
            "exp": int(time.time()) + 60,
            "iat": int(time.time()),
            "jti": "j",
            "client_id": "c",
        },
        foreign,
    )
    with pytest.raises(InvalidToken):
        await verify_access_token(ring, forged, issuer=ISSUER)


async def test_an_id_token_or_unsigned_token_is_not_an_access_token(ring: KeyRing) -> None:
    key = await ring.signing_key()
    claims = {
        "iss": ISSUER,
        "sub": "x",
        "aud": ISSUER + "/api",
        "exp": int(time.time()) + 60,
        "iat": int(time.time()),
        "jti": "j",
        "client_id": "c",
    }
    id_like = jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "JWT"}, claims, key)
    with pytest.raises(InvalidToken, match="not an access token"):
        await verify_access_token(ring, id_like, issuer=ISSUER)
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt"}').decode().rstrip("=")
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(InvalidToken):
        await verify_access_token(ring, f"{header}.{body}.", issuer=ISSUER)


async def test_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key(
    ring: KeyRing, conn: Connection, db: RollbackDatabase
) -> None:
    old_token = await _token(ring)
    old_kid = (await ring.signing_key()).kid
    new_kid = await create_key(conn, TEST_SECRET.encode(), grace=timedelta(minutes=6))
    # Another process: it learns of the new key from the database.
    other = KeyRing(db, TEST_SECRET.encode())
    await other.load()
    assert (await other.signing_key()).kid == new_kid
    assert {k["kid"] for k in other.jwks()["keys"]} == {old_kid, new_kid}
    assert (await verify_access_token(other, old_token, issuer=ISSUER)).sub == "person-1"
    # The first process meets a token signed with a kid it has not seen, and reloads once.
    new_token = await _token(other)
    ring._loaded_at = 0.0  # as if the last reload was long ago
    assert (await verify_access_token(ring, new_token, issuer=ISSUER)).sub == "person-1"
    # Once the grace period is over, the old key is no longer published, and its tokens fail.
    await conn.execute(
        "UPDATE identity.signing_keys SET unpublish_after = now() - interval '1 s' WHERE kid = $1", old_kid
    )
    await other.load()
    assert [k["kid"] for k in other.jwks()["keys"]] == [new_kid]
    with pytest.raises(InvalidToken):
        await verify_access_token(other, old_token, issuer=ISSUER)


def test_the_verified_cache_forgets_expired_tokens_and_stays_bounded() -> None:
    cache: VerifiedCache[str] = VerifiedCache(size=4)
    now = int(time.time())
    cache.put("live", "principal", expires=now + 60)
    assert cache.get("live") == "principal"
    # Dropped once expired (plus the clock-skew leeway), not served on.
    cache.put("expired", "principal", expires=now - 31)
    assert cache.get("expired") is None
    assert cache.get("never-seen") is None
    for n in range(6):  # bounded: older entries make room
        cache.put(f"t{n}", "principal", expires=now + 60)
    assert len(cache) <= 4


async def test_a_cached_principal_is_no_shortcut_for_a_tampered_or_expired_token(
    http: httpx.AsyncClient, ring: KeyRing
) -> None:
    token = await _token(ring, roles=(OFFICER_MARKET,))
    assert (await http.get("/test/staff", headers=_bearer(token))).status_code == 200
    assert (await http.get("/test/staff", headers=_bearer(token))).status_code == 200  # from the cache
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert (await http.get("/test/staff", headers=_bearer(tampered))).status_code == 401


def test_role_grants_cover_their_unit_and_below_only() -> None:
    principal = Principal(
        subject="p",
        client_id="console",
        kind="person",
        scopes=frozenset(),
        roles=(SUPERVISOR_COMMUNITY, OFFICER_MARKET),
    )
    assert principal.has_role("supervisor", within="demo/central/riverside/riverside-1/G-0107")
    assert principal.has_role("supervisor", within="demo/central/riverside/riverside-1")
    assert not principal.has_role("supervisor", within="demo/central/riverside")
    assert not principal.has_role("supervisor", within="demo/central/riverside/riverside-10")
    assert principal.has_role("officer", within="demo/market")
    assert not principal.has_role("officer", within="demo/fire")
    assert not principal.has_role("admin")


# Routes guarded as the contexts will guard theirs.
async def _unit_of_task(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return {"t-market": "demo/market", "t-fire": "demo/fire"}[connection.path_params["task"]]


@get("/test/staff", operation_id="test_staff", middleware=[require_role("officer")])
async def staff_only(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {"sub": current_principal(request).subject}


@get(
    "/test/tasks/{task:str}",
    operation_id="test_task",
    middleware=[require_role("officer", unit=_unit_of_task)],
)
async def task(task: FromPath[str]) -> dict[str, str]:
    return {"task": task}


@get("/test/feed", operation_id="test_feed", middleware=[require_scope("ioc.feed")])
async def feed() -> dict[str, bool]:
    return {"ok": True}


@get(
    "/test/grid",
    operation_id="test_grid",
    middleware=[require_role("grid_worker", unit="demo/central/riverside/riverside-1/G-0107")],
)
async def grid() -> dict[str, bool]:
    return {"ok": True}


@pytest.fixture
async def http(settings: Settings, db: RollbackDatabase) -> AsyncIterator[httpx.AsyncClient]:
    test_settings = settings.model_copy(update={"public_url": ISSUER})
    async with app_client(build_app(test_settings, db, [staff_only, task, feed, grid])) as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_no_token_is_401_with_www_authenticate(http: httpx.AsyncClient) -> None:
    reply = await http.get("/test/staff")
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert reply.headers["content-type"] == "application/problem+json"
    malformed = await http.get("/test/staff", headers={"Authorization": "Basic abc"})
    assert malformed.status_code == 401
    assert 'error="invalid_request"' in malformed.headers["www-authenticate"]


async def test_invalid_token_is_401_invalid_token(http: httpx.AsyncClient, ring: KeyRing) -> None:
    expired = await _token(ring, roles=(OFFICER_MARKET,), lifetime=-120)
    reply = await http.get("/test/staff", headers=_bearer(expired))
    assert reply.status_code == 401
    assert 'error="invalid_token"' in reply.headers["www-authenticate"]


# Every role, against every guard: who gets in where.
@pytest.mark.parametrize(
    ("roles", "scope", "expected"),
    [
        (
            (OFFICER_MARKET,),
            "",
            {
                "/test/staff": 200,
                "/test/tasks/t-market": 200,
                "/test/tasks/t-fire": 403,
                "/test/feed": 403,
                "/test/grid": 403,
            },
        ),
        (
            (WORKER_GRID,),
            "",
            {
                "/test/staff": 403,
                "/test/tasks/t-market": 403,
                "/test/tasks/t-fire": 403,
                "/test/feed": 403,
                "/test/grid": 200,
            },
        ),
        (
            (SUPERVISOR_COMMUNITY,),
            "",
            {
                "/test/staff": 403,
                "/test/tasks/t-market": 403,
                "/test/tasks/t-fire": 403,
                "/test/feed": 403,
                "/test/grid": 403,
            },
        ),
        (
            (RoleGrant(role="citizen", unit="demo", path="demo"),),
            "openid",
            {
                "/test/staff": 403,
                "/test/tasks/t-market": 403,
                "/test/tasks/t-fire": 403,
                "/test/feed": 403,
                "/test/grid": 403,
            },
        ),
        (
            (),
            "ioc.feed ioc.update",
            {
                "/test/staff": 403,
                "/test/tasks/t-market": 403,
                "/test/tasks/t-fire": 403,
                "/test/feed": 200,
                "/test/grid": 403,
            },
        ),
    ],
    ids=[
        "officer-of-market",
        "grid-worker-of-G-0107",
        "supervisor-of-community",
        "citizen",
        "ioc-machine-client",
    ],
)
async def test_each_role_reaches_only_what_its_scope_allows(
    http: httpx.AsyncClient, ring: KeyRing, roles: tuple[RoleGrant, ...], scope: str, expected: dict[str, int]
) -> None:
    token = await _token(ring, roles=roles, scope=scope)
    seen = {path: (await http.get(path, headers=_bearer(token))).status_code for path in expected}
    assert seen == expected


async def test_rotate_if_due_rotates_only_an_old_key(conn: Connection) -> None:
    master = TEST_SECRET.encode()
    grace = timedelta(minutes=6)
    assert await rotate_if_due(conn, master, grace=grace, max_age=timedelta(days=90)) is None
    await conn.execute(
        "UPDATE identity.signing_keys SET created_at = now() - interval '91 days' WHERE retired_at IS NULL"
    )
    new_kid = await rotate_if_due(conn, master, grace=grace, max_age=timedelta(days=90))
    assert new_kid is not None
    assert await conn.fetchval("SELECT kid FROM identity.signing_keys WHERE retired_at IS NULL") == new_kid


async def test_a_reload_never_waits_for_the_pool_its_callers_hold(database_url: str) -> None:
    """Requests hold pooled connections while the ring reloads; it must not need one of them."""
    settings = load_settings(database_url=database_url, db_pool_min=1, db_pool_max=1, db_acquire_timeout=1.0)
    pool = await PoolDatabase.open(settings, database_url)
    try:
        ring = KeyRing(pool, TEST_SECRET.encode(), dsn=database_url)
        await ring.load()
        async with pool.transaction():  # the only pooled connection is busy, as under load
            ring._loaded_at = 0.0  # the active key is due for a re-read
            key = await asyncio.wait_for(ring.signing_key(), timeout=5)
        assert key.kid
    finally:
        await pool.close()
