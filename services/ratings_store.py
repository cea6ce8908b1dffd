"""The SQL of ratings and their follow-ups. Functions take `conn` first and never commit."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from onewindow.db import Connection, row_as, rows_as


class RatingRow(msgspec.Struct, frozen=True, kw_only=True):
    application_id: UUID
    level: int
    comment: str | None
    rated_by: str
    rated_at: datetime


class FollowUpRow(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    application_id: UUID
    department: str
    status: str
    outcome: str | None
    note: str | None
    opened_at: datetime
    closed_at: datetime | None


_RATING = "application_id, level, comment, rated_by, rated_at"
_FOLLOW_UP = "id, application_id, department, status, outcome, note, opened_at, closed_at"


async def insert_rating(
    conn: Connection, *, application_id: UUID, level: int, comment: str | None, by: str, at: datetime
) -> RatingRow | None:
    """The new rating, or None when the application already has one (two clicks at once: the
    primary key decides, the second is told so)."""
    row = await conn.fetchrow(
        "INSERT INTO services.ratings (application_id, level, comment, rated_by, rated_at)"
        f" VALUES ($1, $2, $3, $4, $5) ON CONFLICT (application_id) DO NOTHING RETURNING {_RATING}",
        application_id,
        level,
        comment,
        by,
        at,
    )
    return None if row is None else row_as(row, RatingRow)


async def rating(conn: Connection, application_id: UUID) -> RatingRow | None:
    row = await conn.fetchrow(
        f"SELECT {_RATING} FROM services.ratings WHERE application_id = $1", application_id
    )
    return None if row is None else row_as(row, RatingRow)


async def insert_follow_up(
    conn: Connection, *, follow_up_id: UUID, application_id: UUID, department: str, at: datetime
) -> FollowUpRow:
    row = await conn.fetchrow(
        "INSERT INTO services.follow_ups (id, application_id, department, status, opened_at)"
        f" VALUES ($1, $2, $3, 'open', $4) RETURNING {_FOLLOW_UP}",
        follow_up_id,
        application_id,
        department,
        at,
    )
    return row_as(row, FollowUpRow)


async def follow_up(conn: Connection, follow_up_id: UUID) -> FollowUpRow | None:
    row = await conn.fetchrow(f"SELECT {_FOLLOW_UP} FROM services.follow_ups WHERE id = $1", follow_up_id)
    return None if row is None else row_as(row, FollowUpRow)


async def follow_ups_of(conn: Connection, application_id: UUID) -> list[FollowUpRow]:
    rows = await conn.fetch(
        f"SELECT {_FOLLOW_UP} FROM services.follow_ups WHERE application_id = $1 ORDER BY opened_at, department",
        application_id,
    )
    return rows_as(rows, FollowUpRow)


async def note_follow_up(conn: Connection, follow_up_id: UUID, note: str) -> None:
    await conn.execute("UPDATE services.follow_ups SET note = $2 WHERE id = $1", follow_up_id, note)


async def close_follow_up(conn: Connection, follow_up_id: UUID, *, outcome: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE services.follow_ups SET status = 'done', outcome = $2, closed_at = $3"
        " WHERE id = $1 AND status = 'open'",
        follow_up_id,
        outcome,
        at,
    )
