"""Open311's SQL: api keys, the service requests taken and their tokens, citizens' updates.
Functions take `conn` first and never commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from onewindow.db import Connection, row_as, rows_as

# --- api keys --------------------------------------------------------------------------------------


class KeyRow(msgspec.Struct, frozen=True):
    id: UUID
    app: str
    prefix: str
    rate_per_minute: int | None
    created_by: str
    created_at: datetime
    revoked_by: str | None
    revoked_at: datetime | None


_KEY = "id, app, prefix, rate_per_minute, created_by, created_at, revoked_by, revoked_at"


async def insert_key(
    conn: Connection, *, app: str, digest: bytes, prefix: str, rate_per_minute: int | None, by: str
) -> KeyRow | None:
    """None when a key with this digest exists already (the demo key, seeded twice)."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO channels.open311_keys (app, key_digest, prefix, rate_per_minute, created_by)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (key_digest) DO NOTHING
        RETURNING {_KEY}
        """,
        app,
        digest,
        prefix,
        rate_per_minute,
        by,
    )
    return row_as(row, KeyRow) if row else None


async def key_by_digest(conn: Connection, digest: bytes) -> KeyRow | None:
    row = await conn.fetchrow(f"SELECT {_KEY} FROM channels.open311_keys WHERE key_digest = $1", digest)
    return row_as(row, KeyRow) if row else None


async def keys(
    conn: Connection, *, after: tuple[datetime, UUID] | None, limit: int, revoked: bool
) -> list[KeyRow]:
    """Newest first, keyset-paginated on (created_at, id)."""
    rows = await conn.fetch(
        f"""
        SELECT {_KEY} FROM channels.open311_keys
        WHERE ($1 OR revoked_at IS NULL)
          AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
        ORDER BY created_at DESC, id DESC
        LIMIT $4
        """,
        revoked,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return rows_as(rows, KeyRow)


async def revoke_key(conn: Connection, key_id: UUID, *, by: str) -> KeyRow | None:
    """The key as it is after revoking (revoking twice keeps the first time); None: no such key."""
    row = await conn.fetchrow(
        f"""
        UPDATE channels.open311_keys
        SET revoked_by = coalesce(revoked_by, $2), revoked_at = coalesce(revoked_at, now())
        WHERE id = $1
        RETURNING {_KEY}
        """,
        key_id,
        by,
    )
    return row_as(row, KeyRow) if row else None


# --- service requests --------------------------------------------------------------------------------


class RequestRow(msgspec.Struct, frozen=True):
    case_id: UUID
    number: str
    token: UUID
    key_id: UUID
    service_code: str
    attributes: dict[str, Any]
    media_url: str | None
    address_id: str | None
    signed_in: bool
    requested_at: datetime


_REQUEST = (
    "case_id, number, token, key_id, service_code, attributes, media_url, address_id, signed_in, requested_at"
)


async def insert_request(conn: Connection, request: RequestRow) -> None:
    await conn.execute(
        f"INSERT INTO channels.open311_requests ({_REQUEST}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        request.case_id,
        request.number,
        request.token,
        request.key_id,
        request.service_code,
        request.attributes,
        request.media_url,
        request.address_id,
        request.signed_in,
        request.requested_at,
    )


async def request_by_token(conn: Connection, token: UUID) -> RequestRow | None:
    row = await conn.fetchrow(f"SELECT {_REQUEST} FROM channels.open311_requests WHERE token = $1", token)
    return row_as(row, RequestRow) if row else None


async def requests_of_cases(conn: Connection, case_ids: list[UUID]) -> dict[UUID, RequestRow]:
    rows = await conn.fetch(
        f"SELECT {_REQUEST} FROM channels.open311_requests WHERE case_id = ANY($1::uuid[])", case_ids
    )
    return {request.case_id: request for request in rows_as(rows, RequestRow)}


# --- citizens' updates -------------------------------------------------------------------------------


async def update_by_client_id(
    conn: Connection, key_id: UUID, client_update_id: str
) -> tuple[UUID, int] | None:
    """(case id, history id) of an update this app already sent with this id."""
    row = await conn.fetchrow(
        "SELECT case_id, history_id FROM channels.open311_updates WHERE key_id = $1 AND client_update_id = $2",
        key_id,
        client_update_id,
    )
    return (row["case_id"], row["history_id"]) if row else None


async def record_update(
    conn: Connection, *, key_id: UUID, client_update_id: str, case_id: UUID, history_id: int
) -> bool:
    """False when another request recorded this update id first (a concurrent retry)."""
    status: str = await conn.execute(
        "INSERT INTO channels.open311_updates (key_id, client_update_id, case_id, history_id)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        key_id,
        client_update_id,
        case_id,
        history_id,
    )
    return status == "INSERT 0 1"
