"""The SQL of e-certificates and their signing keys. Functions take `conn` first and never commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from onewindow.db import Connection, row_as, rows_as

# Two transactions that both find no certificate key must not both make one: the second waits
# on this lock (held to the end of its transaction) and then finds the first one's key.
_KEY_LOCK = "services.certificate_keys"


class CertificateKeyRow(msgspec.Struct, frozen=True, kw_only=True):
    kid: str
    algorithm: str
    public_jwk: dict[str, Any]
    private_key: bytes
    created_at: datetime
    retired_at: datetime | None


_KEY = "kid, algorithm, public_jwk, private_key, created_at, retired_at"


class CertificateRow(msgspec.Struct, frozen=True, kw_only=True):
    """A row of services.certificates: the signed JWS and what changes after issue (revocation,
    hand-over)."""

    number: str
    application_item_id: UUID
    holder: str
    item_code: str
    kid: str
    jws: str
    issued_at: datetime
    valid_from: datetime
    valid_until: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    revoked_reason: str | None
    delivery: Literal["online", "counter"]
    handed_over_at: datetime | None
    handed_over_by: str | None
    handed_over_note: str | None


_CERTIFICATE = (
    "number, application_item_id, holder, item_code, kid, jws, issued_at, valid_from, valid_until,"
    " revoked_at, revoked_by, revoked_reason, delivery, handed_over_at, handed_over_by, handed_over_note"
)


# --- keys --------------------------------------------------------------------------------------


async def active_key(conn: Connection) -> CertificateKeyRow | None:
    """The key that signs new certificates: the newest one not retired."""
    row = await conn.fetchrow(
        f"SELECT {_KEY} FROM services.certificate_keys WHERE retired_at IS NULL"
        " ORDER BY created_at DESC, kid DESC LIMIT 1"
    )
    return None if row is None else row_as(row, CertificateKeyRow)


async def lock_keys(conn: Connection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _KEY_LOCK)


async def insert_key(
    conn: Connection,
    *,
    kid: str,
    algorithm: str,
    public_jwk: dict[str, Any],
    private_key: bytes,
    created_at: datetime,
) -> CertificateKeyRow:
    row = await conn.fetchrow(
        "INSERT INTO services.certificate_keys (kid, algorithm, public_jwk, private_key, created_at)"
        f" VALUES ($1, $2, $3, $4, $5) RETURNING {_KEY}",
        kid,
        algorithm,
        public_jwk,
        private_key,
        created_at,
    )
    return msgspec.convert(row, CertificateKeyRow, from_attributes=True)


async def published_keys(conn: Connection) -> list[CertificateKeyRow]:
    """Every key ever used: retired keys stay published, so the certificates they signed verify."""
    rows = await conn.fetch(f"SELECT {_KEY} FROM services.certificate_keys ORDER BY created_at, kid")
    return rows_as(rows, CertificateKeyRow)


async def key(conn: Connection, kid: str) -> CertificateKeyRow | None:
    row = await conn.fetchrow(f"SELECT {_KEY} FROM services.certificate_keys WHERE kid = $1", kid)
    return None if row is None else row_as(row, CertificateKeyRow)


# --- certificates ------------------------------------------------------------------------------


async def insert_certificate(
    conn: Connection,
    *,
    number: str,
    application_item_id: UUID,
    holder: str,
    item_code: str,
    kid: str,
    jws: str,
    issued_at: datetime,
    valid_from: datetime,
    valid_until: datetime | None,
) -> CertificateRow:
    row = await conn.fetchrow(
        "INSERT INTO services.certificates (number, application_item_id, holder, item_code, kid, jws,"
        " issued_at, valid_from, valid_until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        f" RETURNING {_CERTIFICATE}",
        number,
        application_item_id,
        holder,
        item_code,
        kid,
        jws,
        issued_at,
        valid_from,
        valid_until,
    )
    return msgspec.convert(row, CertificateRow, from_attributes=True)


async def certificate(conn: Connection, number: str, *, lock: bool = False) -> CertificateRow | None:
    query = f"SELECT {_CERTIFICATE} FROM services.certificates WHERE number = $1"
    row = await conn.fetchrow(query + (" FOR UPDATE" if lock else ""), number)
    return None if row is None else row_as(row, CertificateRow)


async def certificate_of_item(conn: Connection, application_item_id: UUID) -> CertificateRow | None:
    row = await conn.fetchrow(
        f"SELECT {_CERTIFICATE} FROM services.certificates WHERE application_item_id = $1",
        application_item_id,
    )
    return None if row is None else row_as(row, CertificateRow)


async def certificates_of(
    conn: Connection, holder: str, *, valid_at: datetime | None
) -> list[CertificateRow]:
    """A holder's certificates, newest first; with `valid_at`, only those valid at that moment."""
    rows = await conn.fetch(
        f"SELECT {_CERTIFICATE} FROM services.certificates WHERE holder = $1"
        " AND ($2::timestamptz IS NULL OR (revoked_at IS NULL AND valid_from <= $2"
        " AND (valid_until IS NULL OR valid_until > $2)))"
        " ORDER BY issued_at DESC, number DESC",
        holder,
        valid_at,
    )
    return rows_as(rows, CertificateRow)


async def department_of(conn: Connection, application_item_id: UUID) -> str | None:
    """The department (unit code) that decided the application item a certificate was issued for."""
    department: str | None = await conn.fetchval(
        "SELECT department FROM services.application_items WHERE id = $1", application_item_id
    )
    return department


async def revoke(conn: Connection, number: str, *, by: str, reason: str, at: datetime) -> CertificateRow:
    row = await conn.fetchrow(
        "UPDATE services.certificates SET revoked_at = $2, revoked_by = $3, revoked_reason = $4"
        f" WHERE number = $1 RETURNING {_CERTIFICATE}",
        number,
        at,
        by,
        reason,
    )
    return msgspec.convert(row, CertificateRow, from_attributes=True)


async def hand_over(
    conn: Connection, number: str, *, by: str, note: str | None, at: datetime
) -> CertificateRow:
    row = await conn.fetchrow(
        "UPDATE services.certificates SET delivery = 'counter', handed_over_at = $2, handed_over_by = $3,"
        f" handed_over_note = $4 WHERE number = $1 RETURNING {_CERTIFICATE}",
        number,
        at,
        by,
        note,
    )
    return msgspec.convert(row, CertificateRow, from_attributes=True)


async def certificates_page(
    conn: Connection, holder: str, *, after: tuple[datetime, str] | None, limit: int
) -> list[CertificateRow]:
    """One page of a holder's certificates, newest first (limit + 1 rows: the page tells if there
    is a next one)."""
    rows = await conn.fetch(
        f"SELECT {_CERTIFICATE} FROM services.certificates WHERE holder = $1"
        " AND ($2::timestamptz IS NULL OR (issued_at, number) < ($2, $3))"
        " ORDER BY issued_at DESC, number DESC LIMIT $4",
        holder,
        after[0] if after else None,
        after[1] if after else None,
        limit + 1,
    )
    return rows_as(rows, CertificateRow)
