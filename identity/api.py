"""Identity's public face for the rest of OneWindow: who is calling, and guards on routes.

    from identity.api import Principal, current_principal, require_role, require_scope

    @get("/tasks", middleware=[require_role("officer")])
    async def inbox(request: Request) -> ...:
        principal = current_principal(request)
        if not principal.has_role("officer", within=department_path): raise Forbidden(...)

Guards are route middleware (`middleware=[require_role(...)]` on a route, controller or
router), so they run before the handler's parameters are read. Bearer tokens are verified
locally against the key ring in memory (no network call per request). A route with a guard
answers 401 problem+json (with `WWW-Authenticate: Bearer`) without a valid token, and 403
when the token lacks the role or scope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

import msgspec
from litestar.connection import ASGIConnection
from litestar.middleware.base import DefineMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from identity import store
from identity.keys import KeyRing
from identity.tokens import InvalidToken, RoleGrant, VerifiedCache, verify_access_token
from onewindow.db import Connection
from onewindow.errors import Forbidden, Unauthorized
from onewindow.settings import Settings

__all__ = [
    "Contact",
    "IdentityRuntime",
    "Principal",
    "RoleGrant",
    "as_guard",
    "authenticate",
    "contact_details",
    "current_principal",
    "holds_role",
    "is_staff",
    "require_role",
    "require_scope",
    "require_signed_in",
    "role_holders",
    "unit_codes",
    "unit_name",
    "unit_path",
]

ROLES = ("citizen", "clerk", "officer", "supervisor", "grid_worker", "command_centre", "admin")

# A check raises Unauthorized or Forbidden, or returns. `as_guard` puts one in front of a route.
Check = Callable[[ASGIConnection[Any, Any, Any, Any]], Awaitable[None]]
Guard = DefineMiddleware
# Returns the unit path the request is about, or raises NotFound: never "no unit", which would
# turn a scoped guard into an unscoped one.
UnitResolver = Callable[[ASGIConnection[Any, Any, Any, Any]], Awaitable[str]]

_STATE_KEY = "identity"
_SCOPE_KEY = "onewindow.principal"


@dataclass(frozen=True, slots=True)
class IdentityRuntime:
    """What identity keeps per process: the issuer and the key ring. Built by the composition root."""

    issuer: str
    keys: KeyRing
    verified: VerifiedCache[Principal] = field(default_factory=VerifiedCache)


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: a person signed in through a client, or a machine client on its own."""

    subject: str
    client_id: str
    kind: Literal["person", "client"]
    scopes: frozenset[str]
    roles: tuple[RoleGrant, ...]
    acr: str | None = None
    name: str | None = None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def has_role(self, role: str, *, within: str | None = None) -> bool:
        """Holds `role` at all (`within=None`), or in a unit whose scope covers the unit path `within`."""
        return any(g.role == role and (within is None or g.covers(within)) for g in self.roles)

    def units(self, role: str) -> list[str]:
        """The unit paths where the principal holds `role` (for filtering lists by scope)."""
        return [g.path for g in self.roles if g.role == role]


def _runtime(connection: ASGIConnection[Any, Any, Any, Any]) -> IdentityRuntime:
    runtime: IdentityRuntime = connection.app.state[_STATE_KEY]
    return runtime


def install(state: Any, runtime: IdentityRuntime) -> None:
    """Called by the composition root at start-up."""
    state[_STATE_KEY] = runtime


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    # Straight from the ASGI scope: building litestar's Headers object for one header costs
    # more than the rest of the guard (this runs on every guarded request).
    raw = next((value for name, value in connection.scope["headers"] if name == b"authorization"), None)
    if not raw:
        return None
    header = raw.decode("latin-1")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "The Authorization header must be `Bearer <access token>`.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_request"'},
        )
    return token.strip()


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """The caller's principal from its bearer token, None without one; computed once per request."""
    if _SCOPE_KEY in connection.scope:
        cached: Principal | None = connection.scope[_SCOPE_KEY]  # type: ignore[literal-required]
        return cached
    token = _bearer(connection)
    principal = None
    if token is not None:
        runtime = _runtime(connection)
        principal = runtime.verified.get(token)
        if principal is None:
            principal = await _verified_principal(runtime, token)
    connection.scope[_SCOPE_KEY] = principal  # type: ignore[literal-required]
    return principal


async def _verified_principal(runtime: IdentityRuntime, token: str) -> Principal:
    try:
        claims = await verify_access_token(runtime.keys, token, issuer=runtime.issuer)
    except InvalidToken:
        raise Unauthorized(
            "The access token is not valid (expired, revoked by rotation, or not issued here).",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None
    principal = Principal(
        subject=claims.sub,
        client_id=claims.client_id,
        kind="client" if claims.sub == claims.client_id else "person",
        scopes=frozenset(claims.scope.split()),
        roles=claims.roles,
        acr=claims.acr,
        name=claims.name,
    )
    runtime.verified.put(token, principal, expires=claims.exp)
    return principal


async def _signed_in(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    principal = await authenticate(connection)
    if principal is None:
        raise Unauthorized(
            "Sign in first: this needs an access token.", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal


def current_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The principal a guard has already established for this request."""
    principal: Principal | None = connection.scope.get(_SCOPE_KEY)  # type: ignore[assignment]
    if principal is None:
        raise Unauthorized(
            "Sign in first: this needs an access token.", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal


class _GuardMiddleware:
    """Runs a check before the route. A route middleware, not a litestar guard: litestar copies
    the route handler for every guard it calls (about 19 us a request, measured), which was most
    of what a guard cost; a middleware stack is built once, at start-up."""

    def __init__(self, app: ASGIApp, check: Check) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            await self.check(ASGIConnection(scope, receive, send))
        await self.app(scope, receive, send)


def as_guard(check: Check) -> Guard:
    """Put `check` in front of a route, controller or router: `middleware=[as_guard(check)]`."""
    return DefineMiddleware(_GuardMiddleware, check=check)


def require_signed_in() -> Guard:
    return as_guard(_signed_in_check)


async def _signed_in_check(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    await _signed_in(connection)


def require_scope(*scopes: str) -> Guard:
    """Every one of `scopes` must have been granted to the token."""

    async def check(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        principal = await _signed_in(connection)
        missing = [scope for scope in scopes if not principal.has_scope(scope)]
        if missing:
            raise Forbidden(
                f"The token lacks the scope {' '.join(missing)}.",
                headers={
                    "WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{" ".join(scopes)}"'
                },
            )

    return as_guard(check)


def require_role(role: str, *, unit: str | UnitResolver | None = None) -> Guard:
    """The caller must hold `role`: anywhere, within a fixed unit path, or within the unit path a
    resolver finds for this request (e.g. the department that owns the application in the URL)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    async def check(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        principal = await _signed_in(connection)
        within = await unit(connection) if callable(unit) else unit
        if not principal.has_role(role, within=within):
            where = f" within {within}" if within else ""
            raise Forbidden(f"This needs the role {role}{where}.")

    return as_guard(check)


async def unit_path(conn: Connection, code: str) -> str | None:
    """The path of the organisation unit with `code` ("market" -> "demo/market"), None if unknown."""
    unit = await store.unit_by_code(conn, code)
    return unit.path if unit else None


async def unit_codes(conn: Connection) -> frozenset[str]:
    """Every organisation unit's code (what a workflow definition may name as a fixed unit)."""
    return await store.unit_codes(conn)


async def holds_role(conn: Connection, subject: str, role: str, *, within: str) -> bool:
    """Whether the person `subject` holds `role` now, in a unit whose scope covers `within`."""
    try:
        person_id = UUID(subject)
    except ValueError:
        return False
    return any(
        grant.role == role and grant.covers(within) for grant in await store.active_roles(conn, person_id)
    )


async def is_staff(conn: Connection, subject: str) -> bool:
    """Whether `subject` is an enabled person who holds a staff role now (anywhere)."""
    try:
        person_id = UUID(subject)
    except ValueError:
        return False
    person = await store.person_by_id(conn, person_id)
    if person is None or person.disabled_at is not None:
        return False
    return any(grant.role != "citizen" for grant in await store.active_roles(conn, person_id))


async def ensure_unit(
    conn: Connection,
    *,
    code: str,
    kind: Literal["district", "street", "community", "grid"],
    parent: str | None,
    name_zh: str | None = None,
    name_en: str | None = None,
) -> str | None:
    """The path of the unit `code` of `kind` under the unit `parent` (the city when None),
    created when missing; names given replace the ones it has, and a new unit without names is
    named by its code. None when `code` is already a unit of another kind or elsewhere in the
    tree, or `parent` is unknown: the caller reports it (units never move here)."""
    above = await store.unit_by_code(conn, parent) if parent else await store.city_unit(conn)
    if above is None:
        return None
    unit = await store.unit_by_code(conn, code)
    if unit is None:
        unit = await store.upsert_unit(
            conn, code=code, kind=kind, parent=above, name_zh=name_zh or code, name_en=name_en or code
        )
        return unit.path
    if unit.kind != kind or unit.parent_id != above.id:
        return None
    if (name_zh and name_zh != unit.name_zh) or (name_en and name_en != unit.name_en):
        await store.rename_unit(conn, code, name_zh=name_zh, name_en=name_en)
    return unit.path


async def city_path(conn: Connection) -> str | None:
    """The path of the city, the root of the organisation tree (None before it is seeded)."""
    city = await store.city_unit(conn)
    return city.path if city else None


class Contact(msgspec.Struct, frozen=True, kw_only=True):
    """How to reach a person (channels' notifications): personal data, never to be logged."""

    subject: str
    name: str
    email: str | None
    email_verified: bool
    phone: str | None
    phone_verified: bool
    locale: str


async def contact_details(conn: Connection, settings: Settings, subject: str) -> Contact | None:
    """The name, e-mail, phone (decrypted) and locale of the person `subject`; None for a subject
    that is no enabled person (a machine client, an anonymous reporter, a disabled account)."""
    # registration owns the personal-data keys, and imports this module.
    from identity.registration import PersonalData  # noqa: PLC0415

    try:
        person_id = UUID(subject)
    except ValueError:
        return None
    row = await store.person_contact(conn, person_id)
    if row is None:
        return None
    phone = PersonalData(settings.master_secret).open_phone(row.id, row.phone_enc) if row.phone_enc else None
    return Contact(
        subject=subject,
        name=row.display_name,
        email=row.email,
        email_verified=row.email_verified_at is not None,
        phone=phone,
        phone_verified=row.phone_verified_at is not None,
        locale=row.locale,
    )


async def role_holders(conn: Connection, role: str, *, within: str) -> list[str]:
    """The subjects of the people holding `role` nearest to the unit path `within`: in that unit,
    else in the closest unit above it that has any (who to tell about a task queued there)."""
    return [str(person_id) for person_id in await store.nearest_role_holders(conn, role, within)]


async def unit_name(conn: Connection, code: str, *, language: Literal["en", "zh"] = "en") -> str | None:
    """The name of the organisation unit `code` (a department's, for Open311's agency_responsible)."""
    unit = await store.unit_by_code(conn, code)
    if unit is None:
        return None
    return unit.name_en if language == "en" else unit.name_zh
