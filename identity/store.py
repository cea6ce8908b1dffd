"""Identity's SQL. Functions take a connection first and never commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from identity.tokens import RoleGrant
from onewindow.db import Connection


class UnitRow(msgspec.Struct, frozen=True):
    id: UUID
    code: str
    kind: str
    parent_id: UUID | None
    path: str
    name_zh: str
    name_en: str


class PersonRow(msgspec.Struct, frozen=True):
    id: UUID
    username: str | None
    display_name: str
    email: str | None
    email_verified_at: datetime | None
    phone_verified_at: datetime | None
    identity_verified_at: datetime | None
    locale: str
    disabled_at: datetime | None
    version: int


class ClientRow(msgspec.Struct, frozen=True):
    client_id: str
    name: str
    kind: str
    secret_hash: str | None
    jwks: dict[str, Any] | None
    token_endpoint_auth_method: str
    grant_types: list[str]
    redirect_uris: list[str]
    allow_loopback_redirects: bool
    post_logout_redirect_uris: list[str]
    scopes: list[str]
    disabled_at: datetime | None


_UNIT_COLUMNS = "id, code, kind, parent_id, path, name_zh, name_en"
_PERSON_COLUMNS = (
    "id, username, display_name, email, email_verified_at, phone_verified_at, identity_verified_at,"
    " locale, disabled_at, version"
)
_CLIENT_COLUMNS = (
    "client_id, name, kind, secret_hash, jwks, token_endpoint_auth_method, grant_types, redirect_uris,"
    " allow_loopback_redirects, post_logout_redirect_uris, scopes, disabled_at"
)


async def unit_by_code(conn: Connection, code: str) -> UnitRow | None:
    row = await conn.fetchrow(f"SELECT {_UNIT_COLUMNS} FROM identity.org_units WHERE code = $1", code)
    return msgspec.convert(row, UnitRow, from_attributes=True) if row else None


async def upsert_unit(
    conn: Connection, *, code: str, kind: str, parent: UnitRow | None, name_zh: str, name_en: str
) -> UnitRow:
    """Create the unit, or update its names in place (its place in the tree never moves here)."""
    path = f"{parent.path}/{code}" if parent else code
    row = await conn.fetchrow(
        f"""
        INSERT INTO identity.org_units (code, kind, parent_id, path, name_zh, name_en)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (code) DO UPDATE SET name_zh = excluded.name_zh, name_en = excluded.name_en,
            updated_at = CASE WHEN (org_units.name_zh, org_units.name_en) = (excluded.name_zh, excluded.name_en)
                              THEN org_units.updated_at ELSE now() END
        RETURNING {_UNIT_COLUMNS}
        """,
        code,
        kind,
        parent.id if parent else None,
        path,
        name_zh,
        name_en,
    )
    return msgspec.convert(row, UnitRow, from_attributes=True)


async def person_by_id(conn: Connection, person_id: UUID) -> PersonRow | None:
    row = await conn.fetchrow(f"SELECT {_PERSON_COLUMNS} FROM identity.persons WHERE id = $1", person_id)
    return msgspec.convert(row, PersonRow, from_attributes=True) if row else None


async def person_by_login(conn: Connection, *, login: str, phone_hash: bytes | None) -> PersonRow | None:
    """By username, e-mail (case-insensitive) or phone number (through its keyed hash)."""
    row = await conn.fetchrow(
        f"SELECT {_PERSON_COLUMNS} FROM identity.persons"
        " WHERE username = lower($1) OR email = lower($1) OR ($2::bytea IS NOT NULL AND phone_hash = $2)"
        " ORDER BY (username = lower($1)) DESC LIMIT 1",
        login,
        phone_hash,
    )
    return msgspec.convert(row, PersonRow, from_attributes=True) if row else None


async def upsert_person_by_username(
    conn: Connection, *, username: str, display_name: str, email: str | None, locale: str = "zh"
) -> PersonRow:
    row = await conn.fetchrow(
        f"""
        INSERT INTO identity.persons (username, display_name, email, email_verified_at, locale)
        VALUES ($1, $2, $3, CASE WHEN $3::text IS NULL THEN NULL ELSE now() END, $4)
        ON CONFLICT (username) DO UPDATE SET display_name = excluded.display_name
        RETURNING {_PERSON_COLUMNS}
        """,
        username,
        display_name,
        email,
        locale,
    )
    return msgspec.convert(row, PersonRow, from_attributes=True)


async def set_password_hash(conn: Connection, person_id: UUID, password_hash: str) -> None:
    await conn.execute(
        "INSERT INTO identity.passwords (person_id, hash) VALUES ($1, $2)"
        " ON CONFLICT (person_id) DO UPDATE SET hash = excluded.hash, changed_at = now()",
        person_id,
        password_hash,
    )


async def password_hash(conn: Connection, person_id: UUID) -> str | None:
    found: str | None = await conn.fetchval(
        "SELECT hash FROM identity.passwords WHERE person_id = $1", person_id
    )
    return found


async def grant_role(
    conn: Connection, *, person_id: UUID, role: str, unit_id: UUID, granted_by: UUID | None
) -> bool:
    """Grant `role` in the unit; False when the person already holds it there."""
    result: str = await conn.execute(
        "INSERT INTO identity.role_assignments (person_id, role, unit_id, granted_by) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (person_id, role, unit_id) WHERE revoked_at IS NULL DO NOTHING",
        person_id,
        role,
        unit_id,
        granted_by,
    )
    return result.endswith(" 1")


async def active_roles(conn: Connection, person_id: UUID) -> tuple[RoleGrant, ...]:
    rows = await conn.fetch(
        "SELECT r.role, u.code AS unit, u.path FROM identity.role_assignments r"
        " JOIN identity.org_units u ON u.id = r.unit_id"
        " WHERE r.person_id = $1 AND r.revoked_at IS NULL ORDER BY r.role, u.path",
        person_id,
    )
    return tuple(RoleGrant(role=r["role"], unit=r["unit"], path=r["path"]) for r in rows)


async def client_by_id(conn: Connection, client_id: str) -> ClientRow | None:
    row = await conn.fetchrow(
        f"SELECT {_CLIENT_COLUMNS} FROM identity.clients WHERE client_id = $1", client_id
    )
    return msgspec.convert(row, ClientRow, from_attributes=True) if row else None


async def upsert_client(conn: Connection, client: ClientRow) -> None:
    """Create or reconfigure a client (secret included); used by the admin API and the demo seed."""
    await conn.execute(
        """
        INSERT INTO identity.clients (client_id, name, kind, secret_hash, jwks, token_endpoint_auth_method,
            grant_types, redirect_uris, allow_loopback_redirects, post_logout_redirect_uris, scopes)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (client_id) DO UPDATE SET name = excluded.name, kind = excluded.kind,
            secret_hash = excluded.secret_hash, jwks = excluded.jwks,
            token_endpoint_auth_method = excluded.token_endpoint_auth_method,
            grant_types = excluded.grant_types, redirect_uris = excluded.redirect_uris,
            allow_loopback_redirects = excluded.allow_loopback_redirects,
            post_logout_redirect_uris = excluded.post_logout_redirect_uris, scopes = excluded.scopes
        """,
        client.client_id,
        client.name,
        client.kind,
        client.secret_hash,
        client.jwks,
        client.token_endpoint_auth_method,
        client.grant_types,
        client.redirect_uris,
        client.allow_loopback_redirects,
        client.post_logout_redirect_uris,
        client.scopes,
    )


async def audit(
    conn: Connection,
    *,
    action: str,
    actor_id: UUID | None = None,
    client_id: str | None = None,
    subject: str | None = None,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
) -> None:
    """One row of the audit trail. `detail` never holds personal data (ids and kinds only)."""
    await conn.execute(
        "INSERT INTO identity.audit_log (actor_id, client_id, action, subject, outcome, detail)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        actor_id,
        client_id,
        action,
        subject,
        outcome,
        detail or {},
    )


# --- OAuth: authorization codes, refresh-token families, access-token records ---------------


class CodeRow(msgspec.Struct, frozen=True):
    client_id: str
    person_id: UUID
    session_hash: bytes | None
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: datetime
    acr: str
    amr: list[str]


class RefreshRow(msgspec.Struct, frozen=True):
    token_hash: bytes
    family_id: UUID
    client_id: str
    person_id: UUID
    session_hash: bytes | None
    scope: str
    auth_time: datetime
    acr: str
    amr: list[str]
    expires_at: datetime


_CODE_COLUMNS = (
    "client_id, person_id, session_hash, redirect_uri, scope, nonce, code_challenge, code_challenge_method,"
    " auth_time, acr, amr"
)
_REFRESH_COLUMNS = (
    "token_hash, family_id, client_id, person_id, session_hash, scope, auth_time, acr, amr, expires_at"
)


async def save_code(conn: Connection, code_hash: bytes, code: CodeRow, *, lifetime_seconds: int) -> None:
    await conn.execute(
        f"INSERT INTO identity.authorization_codes (code_hash, {_CODE_COLUMNS}, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now() + make_interval(secs => $13))",
        code_hash,
        *msgspec.structs.astuple(code),
        lifetime_seconds,
    )


async def consume_code(conn: Connection, code_hash: bytes, client_id: str) -> CodeRow | None:
    """Use a code once. A second use (or use by another client) returns None and revokes every token
    the first use issued (RFC 6749 section 4.1.2)."""
    row = await conn.fetchrow(
        f"UPDATE identity.authorization_codes SET used_at = now()"
        f" WHERE code_hash = $1 AND client_id = $2 AND used_at IS NULL AND expires_at > now()"
        f" RETURNING {_CODE_COLUMNS}",
        code_hash,
        client_id,
    )
    if row is not None:
        return msgspec.convert(row, CodeRow, from_attributes=True)
    family: UUID | None = await conn.fetchval(
        "SELECT family_id FROM identity.authorization_codes WHERE code_hash = $1 AND used_at IS NOT NULL",
        code_hash,
    )
    if family is not None:
        await revoke_family(conn, family)
    return None


async def code_nonce_used(conn: Connection, client_id: str, nonce: str) -> bool:
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM identity.authorization_codes WHERE client_id = $1 AND nonce = $2"
        " AND expires_at > now() - interval '1 day')",
        client_id,
        nonce,
    )
    return found


async def link_code_to_family(conn: Connection, code_hash: bytes, family_id: UUID) -> None:
    await conn.execute(
        "UPDATE identity.authorization_codes SET family_id = $2 WHERE code_hash = $1", code_hash, family_id
    )


async def save_refresh_token(
    conn: Connection, row: RefreshRow, *, lifetime_seconds: int | None = None
) -> None:
    """A new member of a family; the family keeps the expiry of its first sign-in unless given."""
    await conn.execute(
        f"INSERT INTO identity.refresh_tokens ({_REFRESH_COLUMNS})"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
        " CASE WHEN $10::int IS NULL THEN $11 ELSE now() + make_interval(secs => $10::int) END)",
        row.token_hash,
        row.family_id,
        row.client_id,
        row.person_id,
        row.session_hash,
        row.scope,
        row.auth_time,
        row.acr,
        row.amr,
        lifetime_seconds,
        row.expires_at,
    )


async def consume_refresh_token(conn: Connection, token_hash: bytes) -> RefreshRow | None:
    """Use a refresh token once (rotation). Presenting one already used revokes its whole family."""
    row = await conn.fetchrow(
        f"UPDATE identity.refresh_tokens SET used_at = now()"
        f" WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()"
        f" RETURNING {_REFRESH_COLUMNS}",
        token_hash,
    )
    if row is not None:
        return msgspec.convert(row, RefreshRow, from_attributes=True)
    family: UUID | None = await conn.fetchval(
        "SELECT family_id FROM identity.refresh_tokens WHERE token_hash = $1 AND used_at IS NOT NULL",
        token_hash,
    )
    if family is not None:
        await revoke_family(conn, family)
    return None


async def refresh_token(conn: Connection, token_hash: bytes) -> tuple[RefreshRow, bool] | None:
    """A refresh token and whether it is still usable (for revocation and introspection)."""
    row = await conn.fetchrow(
        f"SELECT {_REFRESH_COLUMNS}, (used_at IS NULL AND revoked_at IS NULL AND expires_at > now()) AS live"
        " FROM identity.refresh_tokens WHERE token_hash = $1",
        token_hash,
    )
    if row is None:
        return None
    data = dict(row.items())
    live = bool(data.pop("live"))
    return msgspec.convert(data, RefreshRow), live


async def revoke_family(conn: Connection, family_id: UUID) -> None:
    await conn.execute(
        "UPDATE identity.refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
        family_id,
    )
    await conn.execute(
        "UPDATE identity.access_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
        family_id,
    )


async def record_access_token(
    conn: Connection,
    *,
    jti: str,
    family_id: UUID | None,
    client_id: str,
    person_id: UUID | None,
    scope: str,
    expires_at: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO identity.access_tokens (jti, family_id, client_id, person_id, scope, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        jti,
        family_id,
        client_id,
        person_id,
        scope,
        expires_at,
    )


async def access_token_revoked(conn: Connection, jti: str) -> bool:
    """True when revoked, or when we have no record of it (then it was not issued here)."""
    revoked: bool | None = await conn.fetchval(
        "SELECT revoked_at IS NOT NULL FROM identity.access_tokens WHERE jti = $1", jti
    )
    return revoked is not False


async def revoke_access_token(conn: Connection, jti: str) -> None:
    await conn.execute(
        "UPDATE identity.access_tokens SET revoked_at = now() WHERE jti = $1 AND revoked_at IS NULL", jti
    )


async def remember_assertion(conn: Connection, client_id: str, jti: str, expires_at: datetime) -> bool:
    """A private_key_jwt assertion id, once: False when it was seen before (a replay)."""
    result: str = await conn.execute(
        "INSERT INTO identity.used_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING",
        client_id,
        jti,
        expires_at,
    )
    return result.endswith(" 1")
