"""Notifications' SQL: preferences and the messages. Functions take `conn` first and never commit."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import msgspec

from onewindow.db import Connection


class PreferenceRow(msgspec.Struct, frozen=True):
    person: str
    channel: Literal["email", "sms", "none"]
    language: Literal["zh-CN", "en"]
    version: int
    updated_at: datetime


class NotificationRow(msgspec.Struct, frozen=True):
    id: UUID
    event_id: UUID
    topic: str
    recipient: str
    template: str
    channel: str
    language: str
    params: dict[str, Any] | None
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    sent_via: str | None
    created_at: datetime
    sent_at: datetime | None


_PREFERENCE_COLUMNS = "person, channel, language, version, updated_at"
_NOTIFICATION_COLUMNS = (
    "id, event_id, topic, recipient, template, channel, language, params, state, attempts,"
    " next_attempt_at, last_error, sent_via, created_at, sent_at"
)


async def preference(conn: Connection, person: str) -> PreferenceRow | None:
    row = await conn.fetchrow(
        f"SELECT {_PREFERENCE_COLUMNS} FROM channels.notification_preferences WHERE person = $1", person
    )
    return msgspec.convert(row, PreferenceRow, from_attributes=True) if row else None


async def save_preference(conn: Connection, person: str, *, channel: str, language: str) -> PreferenceRow:
    row = await conn.fetchrow(
        f"""
        INSERT INTO channels.notification_preferences AS p (person, channel, language)
        VALUES ($1, $2, $3)
        ON CONFLICT (person) DO UPDATE
           SET channel = excluded.channel, language = excluded.language,
               version = p.version + 1, updated_at = now()
        RETURNING {_PREFERENCE_COLUMNS}
        """,
        person,
        channel,
        language,
    )
    return msgspec.convert(row, PreferenceRow, from_attributes=True)


async def add_notification(
    conn: Connection,
    *,
    event_id: UUID,
    topic: str,
    recipient: str,
    template: str,
    channel: str,
    language: str,
    params: dict[str, Any] | None,
    state: str = "pending",
    last_error: str | None = None,
) -> UUID | None:
    """The new message's id; None when this event already made this template for this person."""
    found: UUID | None = await conn.fetchval(
        """
        INSERT INTO channels.notifications
            (event_id, topic, recipient, template, channel, language, params, state, last_error)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT ON CONSTRAINT notifications_once DO NOTHING
        RETURNING id
        """,
        event_id,
        topic,
        recipient,
        template,
        channel,
        language,
        params,
        state,
        last_error,
    )
    return found


async def claim_due(
    conn: Connection, *, now: datetime, lease: timedelta, limit: int
) -> list[NotificationRow]:
    """Take up to `limit` due messages for sending (pending, failed and due again, or claimed by a
    sender whose lease ran out: it died mid-send). Each claim counts as an attempt."""
    rows = await conn.fetch(
        f"""
        UPDATE channels.notifications n
           SET state = 'sending', attempts = n.attempts + 1, lease_until = $1::timestamptz + $2::interval,
               updated_at = $1
         WHERE n.id IN (
               SELECT id FROM channels.notifications
                WHERE state IN ('pending', 'failed', 'sending') AND next_attempt_at <= $1
                  AND (state <> 'sending' OR lease_until < $1)
                ORDER BY next_attempt_at
                LIMIT $3
                  FOR UPDATE SKIP LOCKED)
        RETURNING {_NOTIFICATION_COLUMNS}
        """,
        now,
        lease,
        limit,
    )
    return [msgspec.convert(r, NotificationRow, from_attributes=True) for r in rows]


async def mark_sent(conn: Connection, notification_id: UUID, *, via: str, at: datetime) -> None:
    # The message is out: what it needed to be rendered goes (it may hold a staff comment).
    await conn.execute(
        "UPDATE channels.notifications SET state = 'sent', sent_via = $2, sent_at = $3, params = NULL,"
        " lease_until = NULL, last_error = NULL, updated_at = $3 WHERE id = $1",
        notification_id,
        via,
        at,
    )


async def mark_failed(
    conn: Connection, notification_id: UUID, *, error: str, retry_at: datetime, at: datetime
) -> None:
    await conn.execute(
        "UPDATE channels.notifications SET state = 'failed', last_error = $2, next_attempt_at = $3,"
        " lease_until = NULL, updated_at = $4 WHERE id = $1",
        notification_id,
        error,
        retry_at,
        at,
    )


async def mark_final(
    conn: Connection, notification_id: UUID, *, state: str, error: str, at: datetime
) -> None:
    """`dead` (failed for good) or `skipped` (nowhere to send it): either way, never sent."""
    await conn.execute(
        "UPDATE channels.notifications SET state = $2, last_error = $3, params = NULL,"
        " lease_until = NULL, updated_at = $4 WHERE id = $1",
        notification_id,
        state,
        error,
        at,
    )


async def notifications_of_event(conn: Connection, event_id: UUID) -> list[NotificationRow]:
    rows = await conn.fetch(
        f"SELECT {_NOTIFICATION_COLUMNS} FROM channels.notifications WHERE event_id = $1 ORDER BY created_at, id",
        event_id,
    )
    return [msgspec.convert(r, NotificationRow, from_attributes=True) for r in rows]
