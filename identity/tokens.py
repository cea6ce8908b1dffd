"""Access tokens: JWTs per RFC 9068, signed with the active key, verified locally.

A resource server (every OneWindow route) verifies a token against the key ring in memory: no
network call and no database query per request. The price is that a revoked access token stays
usable until it expires, which is why access tokens live minutes (ONEWINDOW_ACCESS_TOKEN_SECONDS);
introspection does check revocation.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Generic, TypeVar

import msgspec
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jws import extract_compact

from identity.keys import ALGORITHM, KeyRing

T = TypeVar("T")

ACCESS_TOKEN_TYPE = "at+jwt"
_LEEWAY = 30  # seconds of clock skew tolerated between OneWindow processes


class RoleGrant(msgspec.Struct, frozen=True):
    """A role held within an organisation unit. `path` is the unit's chain of codes from the city."""

    role: str
    unit: str
    path: str

    def covers(self, unit_path: str) -> bool:
        """Whether this grant reaches `unit_path`: the unit itself or anything below it."""
        return unit_path == self.path or unit_path.startswith(self.path + "/")


class AccessClaims(msgspec.Struct, frozen=True, kw_only=True):
    iss: str
    sub: str
    aud: str
    exp: int
    iat: int
    jti: str
    client_id: str
    scope: str = ""
    roles: tuple[RoleGrant, ...] = ()
    acr: str | None = None
    auth_time: int | None = None
    name: str | None = None


class InvalidToken(Exception):
    """The token is not one we issued, is tampered with, expired, or not an access token."""


def resource_audience(issuer: str) -> str:
    """OneWindow's own API is the audience of the access tokens it issues."""
    return issuer + "/api"


async def issue_access_token(
    ring: KeyRing,
    *,
    issuer: str,
    subject: str,
    client_id: str,
    scope: str,
    lifetime: int,
    roles: tuple[RoleGrant, ...] = (),
    acr: str | None = None,
    auth_time: int | None = None,
    name: str | None = None,
) -> tuple[str, AccessClaims]:
    key = await ring.signing_key()
    now = int(time.time())
    claims = AccessClaims(
        iss=issuer,
        sub=subject,
        aud=resource_audience(issuer),
        exp=now + lifetime,
        iat=now,
        jti=secrets.token_urlsafe(16),
        client_id=client_id,
        scope=scope,
        roles=roles,
        acr=acr,
        auth_time=auth_time,
        name=name,
    )
    payload: dict[str, Any] = msgspec.to_builtins(claims, builtin_types=None)
    payload = {k: v for k, v in payload.items() if v is not None and v != []}
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": ACCESS_TOKEN_TYPE}
    return jwt.encode(header, payload, key, algorithms=[ALGORITHM], default_type=None), claims


class VerifiedCache(Generic[T]):
    """What was made from a token whose signature has been verified, kept until the token expires.

    A client calls many routes with one token; checking an RS256 signature each time costs more
    than the rest of a small request. The signature and claims of a token never change, so once
    verified only the expiry needs checking again. Bounded: when full, the oldest half goes.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._entries: dict[str, tuple[T, int]] = {}

    def get(self, token: str) -> T | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if entry[1] + _LEEWAY <= time.time():
            del self._entries[token]
            return None
        return entry[0]

    def put(self, token: str, value: T, *, expires: int) -> None:
        if len(self._entries) >= self._size:
            for old in list(self._entries)[: self._size // 2]:
                del self._entries[old]
        self._entries[token] = (value, expires)

    def __len__(self) -> int:
        return len(self._entries)


async def verify_access_token(ring: KeyRing, token: str, *, issuer: str) -> AccessClaims:
    """Check signature, type, issuer, audience and expiry; raise `InvalidToken` on any failure."""
    try:
        header = extract_compact(token.encode()).protected
    except (JoseError, ValueError, UnicodeError) as exc:
        raise InvalidToken("malformed token") from exc
    if header.get("alg") != ALGORITHM or header.get("typ", "").lower() not in (
        ACCESS_TOKEN_TYPE,
        "application/at+jwt",
    ):
        raise InvalidToken("not an access token")
    keys = await ring.verification_keys(header.get("kid"))
    try:
        decoded = jwt.decode(token, keys, algorithms=[ALGORITHM])
        registry = jwt.JWTClaimsRegistry(
            leeway=_LEEWAY,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": resource_audience(issuer)},
            exp={"essential": True},
            sub={"essential": True},
            client_id={"essential": True},
        )
        registry.validate(decoded.claims)
        return msgspec.convert(decoded.claims, AccessClaims)
    except (JoseError, ValueError, msgspec.ValidationError) as exc:
        raise InvalidToken(str(exc) or type(exc).__name__) from exc
