"""Identity's SQL. Functions take a connection first and never commit."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec

from identity.oidc import LOA_HIGH, LOA_LOW, LOA_SUBSTANTIAL
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


async def unit_codes(conn: Connection) -> frozenset[str]:
    return frozenset(row["code"] for row in await conn.fetch("SELECT code FROM identity.org_units"))


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


# A refresh token lives as long as the sign-on session it came from (signing out ends it),
# unless the client was granted offline_access.
_SESSION_LIVE = """
    (refresh_tokens.session_hash IS NULL OR ' ' || refresh_tokens.scope || ' ' LIKE '% offline_access %'
     OR EXISTS (SELECT 1 FROM identity.sessions s WHERE s.id_hash = refresh_tokens.session_hash
                AND s.ended_at IS NULL AND s.expires_at > now()))
"""


async def consume_refresh_token(conn: Connection, token_hash: bytes) -> RefreshRow | None:
    """Use a refresh token once (rotation). Presenting one already used revokes its whole family."""
    row = await conn.fetchrow(
        f"UPDATE identity.refresh_tokens SET used_at = now()"
        f" WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()"
        f" AND {_SESSION_LIVE} RETURNING {_REFRESH_COLUMNS}",
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
        f"SELECT {_REFRESH_COLUMNS},"
        f" (used_at IS NULL AND revoked_at IS NULL AND expires_at > now() AND {_SESSION_LIVE}) AS live"
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


# --- Admin API: organisation units, persons, role assignments, clients, keys, audit ----------
# Lists are keyset-paginated: each takes the sort key of the last row already seen and returns
# up to `limit` rows after it, so a page costs the same however deep into the list it is.


class UnitDetailRow(msgspec.Struct, frozen=True):
    id: UUID
    code: str
    kind: str
    parent_code: str | None
    path: str
    name_zh: str
    name_en: str
    created_at: datetime
    updated_at: datetime


_UNIT_DETAIL_COLUMNS = (
    "u.id, u.code, u.kind, p.code AS parent_code, u.path, u.name_zh, u.name_en, u.created_at, u.updated_at"
)


async def list_units(
    conn: Connection, *, parent_id: UUID | None, kind: str | None, after_path: str | None, limit: int
) -> list[UnitDetailRow]:
    """Units in tree order (by path), optionally only the children of one unit or of one kind."""
    rows = await conn.fetch(
        f"SELECT {_UNIT_DETAIL_COLUMNS} FROM identity.org_units u"
        " LEFT JOIN identity.org_units p ON p.id = u.parent_id"
        " WHERE ($1::uuid IS NULL OR u.parent_id = $1) AND ($2::text IS NULL OR u.kind = $2)"
        " AND ($3::text IS NULL OR u.path > $3)"
        " ORDER BY u.path LIMIT $4",
        parent_id,
        kind,
        after_path,
        limit,
    )
    return [msgspec.convert(r, UnitDetailRow, from_attributes=True) for r in rows]


async def unit_detail(conn: Connection, code: str) -> UnitDetailRow | None:
    row = await conn.fetchrow(
        f"SELECT {_UNIT_DETAIL_COLUMNS} FROM identity.org_units u"
        " LEFT JOIN identity.org_units p ON p.id = u.parent_id WHERE u.code = $1",
        code,
    )
    return msgspec.convert(row, UnitDetailRow, from_attributes=True) if row else None


async def insert_unit(
    conn: Connection, *, code: str, kind: str, parent: UnitRow | None, name_zh: str, name_en: str
) -> bool:
    """Create a unit; False when its code (and so its path) is already taken."""
    result: str = await conn.execute(
        "INSERT INTO identity.org_units (code, kind, parent_id, path, name_zh, name_en)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        code,
        kind,
        parent.id if parent else None,
        f"{parent.path}/{code}" if parent else code,
        name_zh,
        name_en,
    )
    return result.endswith(" 1")


async def rename_unit(conn: Connection, code: str, *, name_zh: str | None, name_en: str | None) -> bool:
    """Change a unit's names (either or both); False when there is no such unit."""
    result: str = await conn.execute(
        "UPDATE identity.org_units SET name_zh = coalesce($2, name_zh), name_en = coalesce($3, name_en),"
        " updated_at = now() WHERE code = $1",
        code,
        name_zh,
        name_en,
    )
    return result != "UPDATE 0"


async def city_unit(conn: Connection) -> UnitRow | None:
    """The root of the organisation tree (the oldest, should there ever be two)."""
    row = await conn.fetchrow(
        f"SELECT {_UNIT_COLUMNS} FROM identity.org_units WHERE kind = 'city' ORDER BY created_at, id LIMIT 1"
    )
    return msgspec.convert(row, UnitRow, from_attributes=True) if row else None


class PersonSummaryRow(msgspec.Struct, frozen=True):
    id: UUID
    username: str | None
    display_name: str
    email: str | None
    disabled_at: datetime | None
    created_at: datetime


class PersonDetailRow(msgspec.Struct, frozen=True):
    id: UUID
    username: str | None
    display_name: str
    email: str | None
    email_verified_at: datetime | None
    phone_enc: bytes | None
    phone_verified_at: datetime | None
    national_id_enc: bytes | None
    identity_verified_at: datetime | None
    identity_verified_by: UUID | None
    identity_method: str | None
    locale: str
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int
    has_password: bool
    totp_confirmed: bool
    locked_until: datetime | None


_PERSON_SUMMARY_COLUMNS = "id, username, display_name, email, disabled_at, created_at"


def _like_prefix(text: str) -> str:
    """`text%` for LIKE, with LIKE's own wildcards in `text` taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def list_persons(
    conn: Connection,
    *,
    prefix: str | None,
    disabled: bool | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[PersonSummaryRow]:
    """Persons in creation order; `prefix` matches the start of a username, e-mail or display name."""
    pattern = _like_prefix(prefix.lower()) if prefix else None
    rows = await conn.fetch(
        f"SELECT {_PERSON_SUMMARY_COLUMNS} FROM identity.persons"
        " WHERE ($1::text IS NULL OR username LIKE $1 OR email LIKE $1 OR lower(display_name) LIKE $1)"
        " AND ($2::boolean IS NULL OR (disabled_at IS NOT NULL) = $2)"
        " AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4::uuid))"
        " ORDER BY created_at, id LIMIT $5",
        pattern,
        disabled,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [msgspec.convert(r, PersonSummaryRow, from_attributes=True) for r in rows]


async def persons_by_identifier(
    conn: Connection, *, phone_hash: bytes | None, national_id_hash: bytes | None, email: str | None
) -> list[PersonSummaryRow]:
    """Persons matching any of the given identifiers (each is unique, so at most one per kind)."""
    rows = await conn.fetch(
        f"SELECT {_PERSON_SUMMARY_COLUMNS} FROM identity.persons"
        " WHERE phone_hash = $1 OR national_id_hash = $2 OR email = $3 ORDER BY created_at, id",
        phone_hash,
        national_id_hash,
        email,
    )
    return [msgspec.convert(r, PersonSummaryRow, from_attributes=True) for r in rows]


async def person_detail(conn: Connection, person_id: UUID) -> PersonDetailRow | None:
    row = await conn.fetchrow(
        "SELECT p.id, p.username, p.display_name, p.email, p.email_verified_at, p.phone_enc,"
        " p.phone_verified_at, p.national_id_enc, p.identity_verified_at, p.identity_verified_by,"
        " p.identity_method, p.locale, p.disabled_at, p.created_at, p.updated_at, p.version,"
        " EXISTS (SELECT 1 FROM identity.passwords w WHERE w.person_id = p.id) AS has_password,"
        " EXISTS (SELECT 1 FROM identity.totp t WHERE t.person_id = p.id AND t.confirmed_at IS NOT NULL)"
        "   AS totp_confirmed,"
        " (SELECT l.locked_until FROM identity.account_locks l WHERE l.person_id = p.id"
        "   AND l.locked_until > now()) AS locked_until"
        " FROM identity.persons p WHERE p.id = $1",
        person_id,
    )
    return msgspec.convert(row, PersonDetailRow, from_attributes=True) if row else None


async def contact_taken(conn: Connection, *, phone_hash: bytes | None, email: str | None) -> bool:
    """Whether an account already has this phone number (by its keyed hash) or e-mail address."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM identity.persons WHERE phone_hash = $1 OR email = $2)",
        phone_hash,
        email,
    )
    return found


async def insert_person(
    conn: Connection,
    *,
    person_id: UUID,
    username: str | None,
    display_name: str,
    email: str | None,
    email_verified: bool,
    phone_hash: bytes | None,
    phone_enc: bytes | None,
    phone_verified: bool,
    locale: str,
) -> PersonRow | None:
    """Create a person; None when the username, e-mail or phone number belongs to someone already.

    The id is chosen by the caller: personal data is encrypted with it as associated data, so
    it must be known before the row is written.
    """
    row = await conn.fetchrow(
        f"""
        INSERT INTO identity.persons (id, username, display_name, email, email_verified_at,
            phone_hash, phone_enc, phone_verified_at, locale)
        VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN now() END, $6, $7, CASE WHEN $8 THEN now() END, $9)
        ON CONFLICT DO NOTHING
        RETURNING {_PERSON_COLUMNS}
        """,
        person_id,
        username,
        display_name,
        email,
        email_verified,
        phone_hash,
        phone_enc,
        phone_verified,
        locale,
    )
    return msgspec.convert(row, PersonRow, from_attributes=True) if row else None


async def update_person(
    conn: Connection,
    person_id: UUID,
    *,
    expected_version: int,
    display_name: str | None,
    email: str | None,
    clear_email: bool,
    locale: str | None,
) -> PersonRow | None:
    """Change a person's profile if it is still at `expected_version`; None otherwise.

    An e-mail address set here counts as verified: only administrators call this, for staff
    accounts whose addresses the city itself hands out.
    """
    row = await conn.fetchrow(
        f"""
        UPDATE identity.persons SET
            display_name = coalesce($3, display_name),
            email = CASE WHEN $5 THEN NULL ELSE coalesce($4, email) END,
            email_verified_at = CASE WHEN $5 THEN NULL
                                     WHEN $4::text IS NOT NULL AND $4 IS DISTINCT FROM email THEN now()
                                     ELSE email_verified_at END,
            locale = coalesce($6, locale),
            updated_at = now(), version = version + 1
        WHERE id = $1 AND version = $2
        RETURNING {_PERSON_COLUMNS}
        """,
        person_id,
        expected_version,
        display_name,
        email,
        clear_email,
        locale,
    )
    return msgspec.convert(row, PersonRow, from_attributes=True) if row else None


async def email_taken(conn: Connection, email: str, *, except_person: UUID | None = None) -> bool:
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM identity.persons WHERE email = $1 AND id IS DISTINCT FROM $2)",
        email,
        except_person,
    )
    return found


async def set_person_disabled(conn: Connection, person_id: UUID, *, disabled: bool) -> PersonRow | None:
    """Disable or enable an account (a no-op when it already is); None when there is no such person."""
    row = await conn.fetchrow(
        f"""
        UPDATE identity.persons SET
            disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END,
            updated_at = CASE WHEN (disabled_at IS NOT NULL) = $2 THEN updated_at ELSE now() END,
            version = CASE WHEN (disabled_at IS NOT NULL) = $2 THEN version ELSE version + 1 END
        WHERE id = $1
        RETURNING {_PERSON_COLUMNS}
        """,
        person_id,
        disabled,
    )
    return msgspec.convert(row, PersonRow, from_attributes=True) if row else None


async def revoke_person_tokens(conn: Connection, person_id: UUID) -> None:
    """Revoke every refresh token and recorded access token of a person (their account is disabled)."""
    await conn.execute(
        "UPDATE identity.refresh_tokens SET revoked_at = now() WHERE person_id = $1 AND revoked_at IS NULL",
        person_id,
    )
    await conn.execute(
        "UPDATE identity.access_tokens SET revoked_at = now() WHERE person_id = $1 AND revoked_at IS NULL",
        person_id,
    )


async def person_by_national_id_hash(conn: Connection, national_id_hash: bytes) -> UUID | None:
    found: UUID | None = await conn.fetchval(
        "SELECT id FROM identity.persons WHERE national_id_hash = $1", national_id_hash
    )
    return found


async def set_identity_verified(
    conn: Connection,
    person_id: UUID,
    *,
    national_id_hash: bytes,
    national_id_enc: bytes,
    verified_by: UUID | None,
    method: str,
) -> PersonRow | None:
    """Record that a person's identity was checked (ID number kept encrypted and as a keyed hash).

    None when another account already holds this ID number (the unique keyed hash).
    """
    row = await conn.fetchrow(
        f"""
        UPDATE identity.persons SET national_id_hash = $2, national_id_enc = $3,
            identity_verified_at = now(), identity_verified_by = $4, identity_method = $5,
            updated_at = now(), version = version + 1
        WHERE id = $1 AND NOT EXISTS (
            SELECT 1 FROM identity.persons other WHERE other.national_id_hash = $2 AND other.id <> $1)
        RETURNING {_PERSON_COLUMNS}
        """,
        person_id,
        national_id_hash,
        national_id_enc,
        verified_by,
        method,
    )
    return msgspec.convert(row, PersonRow, from_attributes=True) if row else None


async def national_id_hash_of(conn: Connection, person_id: UUID) -> bytes | None:
    found: bytes | None = await conn.fetchval(
        "SELECT national_id_hash FROM identity.persons WHERE id = $1", person_id
    )
    return bytes(found) if found is not None else None


async def assurance_level(conn: Connection, person_id: UUID) -> str:
    """The highest level of assurance (an `acr` value) this person's account can reach.

    low: a password; substantial: and a confirmed TOTP second factor; high: substantial, and the
    identity checked in person or by a trusted eID. A sign-in reaches at most this level, and
    only with the factors it actually used.
    """
    row = await conn.fetchrow(
        "SELECT p.identity_verified_at IS NOT NULL AS verified,"
        " EXISTS (SELECT 1 FROM identity.totp t WHERE t.person_id = p.id AND t.confirmed_at IS NOT NULL)"
        "   AS second_factor"
        " FROM identity.persons p WHERE p.id = $1",
        person_id,
    )
    if row is None or not row["second_factor"]:
        return LOA_LOW
    return LOA_HIGH if row["verified"] else LOA_SUBSTANTIAL


class RoleAssignmentRow(msgspec.Struct, frozen=True):
    id: UUID
    person_id: UUID
    role: str
    unit: str
    unit_kind: str
    unit_path: str
    granted_by: UUID | None
    granted_at: datetime
    revoked_at: datetime | None
    revoked_by: UUID | None


_ASSIGNMENT_COLUMNS = (
    "r.id, r.person_id, r.role, u.code AS unit, u.kind AS unit_kind, u.path AS unit_path, r.granted_by,"
    " r.granted_at, r.revoked_at, r.revoked_by"
)


async def list_role_assignments(
    conn: Connection,
    person_id: UUID,
    *,
    include_revoked: bool,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[RoleAssignmentRow]:
    rows = await conn.fetch(
        f"SELECT {_ASSIGNMENT_COLUMNS} FROM identity.role_assignments r"
        " JOIN identity.org_units u ON u.id = r.unit_id"
        " WHERE r.person_id = $1 AND ($2 OR r.revoked_at IS NULL)"
        " AND ($3::timestamptz IS NULL OR (r.granted_at, r.id) > ($3, $4::uuid))"
        " ORDER BY r.granted_at, r.id LIMIT $5",
        person_id,
        include_revoked,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [msgspec.convert(r, RoleAssignmentRow, from_attributes=True) for r in rows]


async def role_assignment(conn: Connection, assignment_id: UUID) -> RoleAssignmentRow | None:
    row = await conn.fetchrow(
        f"SELECT {_ASSIGNMENT_COLUMNS} FROM identity.role_assignments r"
        " JOIN identity.org_units u ON u.id = r.unit_id WHERE r.id = $1",
        assignment_id,
    )
    return msgspec.convert(row, RoleAssignmentRow, from_attributes=True) if row else None


async def insert_role_assignment(
    conn: Connection, *, person_id: UUID, role: str, unit_id: UUID, granted_by: UUID | None
) -> UUID | None:
    """Grant `role` in the unit; the new assignment's id, or None when the person already holds it."""
    found: UUID | None = await conn.fetchval(
        "INSERT INTO identity.role_assignments (person_id, role, unit_id, granted_by) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (person_id, role, unit_id) WHERE revoked_at IS NULL DO NOTHING RETURNING id",
        person_id,
        role,
        unit_id,
        granted_by,
    )
    return found


async def revoke_role_assignment(conn: Connection, assignment_id: UUID, *, revoked_by: UUID | None) -> bool:
    """End an active assignment; False when it was already revoked."""
    result: str = await conn.execute(
        "UPDATE identity.role_assignments SET revoked_at = now(), revoked_by = $2"
        " WHERE id = $1 AND revoked_at IS NULL",
        assignment_id,
        revoked_by,
    )
    return result != "UPDATE 0"


async def active_holders(conn: Connection, role: str) -> int:
    """How many enabled accounts hold `role` somewhere (to keep the last administrator)."""
    found: int = await conn.fetchval(
        "SELECT count(DISTINCT r.person_id) FROM identity.role_assignments r"
        " JOIN identity.persons p ON p.id = r.person_id"
        " WHERE r.role = $1 AND r.revoked_at IS NULL AND p.disabled_at IS NULL",
        role,
    )
    return found


class ClientAdminRow(msgspec.Struct, frozen=True):
    """A client as administrators see it: everything but the secret's hash."""

    client_id: str
    name: str
    kind: str
    has_secret: bool
    jwks: dict[str, Any] | None
    token_endpoint_auth_method: str
    grant_types: list[str]
    redirect_uris: list[str]
    allow_loopback_redirects: bool
    post_logout_redirect_uris: list[str]
    scopes: list[str]
    disabled_at: datetime | None
    secret_rotated_at: datetime | None
    created_at: datetime


_CLIENT_ADMIN_COLUMNS = (
    "client_id, name, kind, secret_hash IS NOT NULL AS has_secret, jwks, token_endpoint_auth_method,"
    " grant_types, redirect_uris, allow_loopback_redirects, post_logout_redirect_uris, scopes, disabled_at,"
    " secret_rotated_at, created_at"
)


async def list_clients(conn: Connection, *, after_id: str | None, limit: int) -> list[ClientAdminRow]:
    rows = await conn.fetch(
        f"SELECT {_CLIENT_ADMIN_COLUMNS} FROM identity.clients"
        " WHERE ($1::text IS NULL OR client_id > $1) ORDER BY client_id LIMIT $2",
        after_id,
        limit,
    )
    return [msgspec.convert(r, ClientAdminRow, from_attributes=True) for r in rows]


async def client_admin(conn: Connection, client_id: str) -> ClientAdminRow | None:
    row = await conn.fetchrow(
        f"SELECT {_CLIENT_ADMIN_COLUMNS} FROM identity.clients WHERE client_id = $1", client_id
    )
    return msgspec.convert(row, ClientAdminRow, from_attributes=True) if row else None


async def insert_client(conn: Connection, client: ClientRow) -> bool:
    """Register a new client; False when the client_id is taken (never reconfigures one)."""
    result: str = await conn.execute(
        """
        INSERT INTO identity.clients (client_id, name, kind, secret_hash, jwks, token_endpoint_auth_method,
            grant_types, redirect_uris, allow_loopback_redirects, post_logout_redirect_uris, scopes)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (client_id) DO NOTHING
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
    return result.endswith(" 1")


async def set_client_secret(conn: Connection, client_id: str, secret_hash: str) -> bool:
    result: str = await conn.execute(
        "UPDATE identity.clients SET secret_hash = $2, secret_rotated_at = now() WHERE client_id = $1",
        client_id,
        secret_hash,
    )
    return result != "UPDATE 0"


async def set_client_disabled(conn: Connection, client_id: str, *, disabled: bool) -> bool:
    result: str = await conn.execute(
        "UPDATE identity.clients SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END"
        " WHERE client_id = $1",
        client_id,
        disabled,
    )
    return result != "UPDATE 0"


async def revoke_client_tokens(conn: Connection, client_id: str) -> None:
    """Revoke every refresh token and recorded access token a client holds (it was disabled)."""
    await conn.execute(
        "UPDATE identity.refresh_tokens SET revoked_at = now() WHERE client_id = $1 AND revoked_at IS NULL",
        client_id,
    )
    await conn.execute(
        "UPDATE identity.access_tokens SET revoked_at = now() WHERE client_id = $1 AND revoked_at IS NULL",
        client_id,
    )


class SigningKeyRow(msgspec.Struct, frozen=True):
    kid: str
    alg: str
    created_at: datetime
    retired_at: datetime | None
    unpublish_after: datetime | None
    published: bool


async def list_signing_keys(
    conn: Connection, *, before: tuple[datetime, str] | None, limit: int
) -> list[SigningKeyRow]:
    """Newest first: the active key, then the retired ones (published until `unpublish_after`)."""
    rows = await conn.fetch(
        "SELECT kid, alg, created_at, retired_at, unpublish_after,"
        " (unpublish_after IS NULL OR unpublish_after > now()) AS published"
        " FROM identity.signing_keys"
        " WHERE ($1::timestamptz IS NULL OR (created_at, kid) < ($1, $2::text))"
        " ORDER BY created_at DESC, kid DESC LIMIT $3",
        before[0] if before else None,
        before[1] if before else None,
        limit,
    )
    return [msgspec.convert(r, SigningKeyRow, from_attributes=True) for r in rows]


async def signing_key(conn: Connection, kid: str) -> SigningKeyRow | None:
    row = await conn.fetchrow(
        "SELECT kid, alg, created_at, retired_at, unpublish_after,"
        " (unpublish_after IS NULL OR unpublish_after > now()) AS published"
        " FROM identity.signing_keys WHERE kid = $1",
        kid,
    )
    return msgspec.convert(row, SigningKeyRow, from_attributes=True) if row else None


class AuditRow(msgspec.Struct, frozen=True):
    id: int
    at: datetime
    actor_id: UUID | None
    client_id: str | None
    action: str
    subject: str | None
    outcome: str
    detail: dict[str, Any]


async def list_audit(
    conn: Connection,
    *,
    subject: str | None,
    actor_id: UUID | None,
    action: str | None,
    since: datetime | None,
    before_id: int | None,
    limit: int,
) -> list[AuditRow]:
    """The audit trail, newest first."""
    rows = await conn.fetch(
        "SELECT id, at, actor_id, client_id, action, subject, outcome, detail FROM identity.audit_log"
        " WHERE ($1::text IS NULL OR subject = $1) AND ($2::uuid IS NULL OR actor_id = $2)"
        " AND ($3::text IS NULL OR action = $3) AND ($4::timestamptz IS NULL OR at >= $4)"
        " AND ($5::bigint IS NULL OR id < $5)"
        " ORDER BY id DESC LIMIT $6",
        subject,
        actor_id,
        action,
        since,
        before_id,
        limit,
    )
    return [msgspec.convert(r, AuditRow, from_attributes=True) for r in rows]


# --- Citizen self-registration: one-time codes and the registrations waiting for them ---------


class PendingRegistrationRow(msgspec.Struct, frozen=True):
    """A registration and its code. The person's data is None once the registration completed."""

    code_id: UUID
    code_digest: bytes
    attempts: int
    expired: bool
    consumed: bool
    channel: str
    target_enc: bytes | None
    display_name: str | None
    password_hash: str | None
    locale: str


async def recent_registrations(
    conn: Connection, *, source_hash: bytes, window: timedelta
) -> tuple[int, datetime | None]:
    """How many registrations this source started within `window`, and when the oldest of them was."""
    row = await conn.fetchrow(
        "SELECT count(*) AS started, min(created_at) AS oldest FROM identity.pending_registrations"
        " WHERE source_hash = $1 AND created_at > now() - $2::interval",
        source_hash,
        window,
    )
    if row is None:  # never: an aggregate without GROUP BY has one row
        return 0, None
    return int(row["started"]), row["oldest"]


async def recent_codes(
    conn: Connection, *, purpose: str, target_hash: bytes, window: timedelta
) -> tuple[int, datetime | None]:
    """How many codes went to this phone or e-mail for `purpose` within `window`, and the oldest's time."""
    row = await conn.fetchrow(
        "SELECT count(*) AS sent, min(created_at) AS oldest FROM identity.verification_codes"
        " WHERE target_hash = $1 AND purpose = $2 AND created_at > now() - $3::interval",
        target_hash,
        purpose,
        window,
    )
    if row is None:  # never: an aggregate without GROUP BY has one row
        return 0, None
    return int(row["sent"]), row["oldest"]


async def insert_verification_code(
    conn: Connection,
    *,
    code_id: UUID,
    purpose: str,
    target_hash: bytes,
    code_digest: bytes,
    lifetime: timedelta,
) -> datetime:
    """Store a code's digest; returns when it expires."""
    expires: datetime = await conn.fetchval(
        "INSERT INTO identity.verification_codes (id, purpose, target_hash, code_digest, expires_at)"
        " VALUES ($1, $2, $3, $4, now() + $5::interval) RETURNING expires_at",
        code_id,
        purpose,
        target_hash,
        code_digest,
        lifetime,
    )
    return expires


async def insert_pending_registration(
    conn: Connection,
    *,
    code_id: UUID,
    channel: str,
    target_enc: bytes,
    display_name: str,
    password_hash: str,
    locale: str,
    source_hash: bytes,
) -> None:
    await conn.execute(
        "INSERT INTO identity.pending_registrations"
        " (code_id, channel, target_enc, display_name, password_hash, locale, source_hash)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        code_id,
        channel,
        target_enc,
        display_name,
        password_hash,
        locale,
        source_hash,
    )


async def pending_registration_for_update(conn: Connection, code_id: UUID) -> PendingRegistrationRow | None:
    """A registration and its code, locked: concurrent attempts at one code are counted one by one."""
    row = await conn.fetchrow(
        "SELECT c.id AS code_id, c.code_digest, c.attempts, c.expires_at <= now() AS expired,"
        " c.consumed_at IS NOT NULL AS consumed, r.channel, r.target_enc, r.display_name,"
        " r.password_hash, r.locale"
        " FROM identity.verification_codes c"
        " JOIN identity.pending_registrations r ON r.code_id = c.id"
        " WHERE c.id = $1 AND c.purpose = 'register' FOR UPDATE OF c",
        code_id,
    )
    return msgspec.convert(row, PendingRegistrationRow, from_attributes=True) if row else None


async def record_code_attempt(conn: Connection, code_id: UUID) -> int:
    """Count a wrong code; the number of attempts made so far."""
    attempts: int = await conn.fetchval(
        "UPDATE identity.verification_codes SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts",
        code_id,
    )
    return attempts


async def complete_registration(conn: Connection, code_id: UUID) -> None:
    """The code is used, and what the registration held (password hash, encrypted target, name) is
    cleared; the row stays for the per-source count until the sweep."""
    await conn.execute("UPDATE identity.verification_codes SET consumed_at = now() WHERE id = $1", code_id)
    await conn.execute(
        "UPDATE identity.pending_registrations SET target_enc = NULL, display_name = NULL, password_hash = NULL"
        " WHERE code_id = $1",
        code_id,
    )


async def sweep_registrations(conn: Connection, *, older_than: timedelta, limit: int = 100) -> int:
    """Delete registration codes (and their registrations) that expired more than `older_than` ago,
    a bounded batch at a time. Returns how many went."""
    result: str = await conn.execute(
        "DELETE FROM identity.verification_codes WHERE id IN ("
        " SELECT id FROM identity.verification_codes"
        " WHERE purpose = 'register' AND expires_at < now() - $1::interval"
        " LIMIT $2 FOR UPDATE SKIP LOCKED)",
        older_than,
        limit,
    )
    return int(result.rsplit(" ", 1)[-1])


class ContactRow(msgspec.Struct, frozen=True):
    id: UUID
    display_name: str
    email: str | None
    email_verified_at: datetime | None
    phone_enc: bytes | None
    phone_verified_at: datetime | None
    locale: str


async def person_contact(conn: Connection, person_id: UUID) -> ContactRow | None:
    """How to reach an enabled person (the phone still encrypted); None when unknown or disabled."""
    row = await conn.fetchrow(
        "SELECT id, display_name, email, email_verified_at, phone_enc, phone_verified_at, locale"
        " FROM identity.persons WHERE id = $1 AND disabled_at IS NULL",
        person_id,
    )
    return msgspec.convert(row, ContactRow, from_attributes=True) if row else None


async def nearest_role_holders(conn: Connection, role: str, unit_path: str) -> list[UUID]:
    """The enabled people holding `role` in the unit nearest to `unit_path` that has holders: the
    unit itself, else its parent, and so on up (a grid's task reaches its street's command centre,
    not every command centre of the city)."""
    rows = await conn.fetch(
        """
        WITH covering AS (
            SELECT r.person_id, length(u.path) AS depth
              FROM identity.role_assignments r
              JOIN identity.org_units u ON u.id = r.unit_id
              JOIN identity.persons p ON p.id = r.person_id
             WHERE r.role = $1 AND r.revoked_at IS NULL AND p.disabled_at IS NULL
               AND ($2 = u.path OR starts_with($2, u.path || '/'))
        )
        SELECT DISTINCT person_id FROM covering
         WHERE depth = (SELECT max(depth) FROM covering)
         ORDER BY person_id
        """,
        role,
        unit_path,
    )
    return [r["person_id"] for r in rows]
