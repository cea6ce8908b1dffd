"""Notifications' SQL: preferences and the messages. Functions take `conn` first and never commit."""

from __future__ import annotations

from datetime import datetime
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


_PREFERENCE_COLUMNS = "person, channel, language, version, updated_at"


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


class ClaimedRow(msgspec.Struct, frozen=True):
    """A message claimed for sending: `lease` is the token every write of its outcome carries."""

    id: UUID
    lease: UUID
    recipient: str
    template: str
    channel: str
    language: str
    params: dict[str, Any] | None
    attempts: int


# The database's clock, not now() and not the worker's: statement_timestamp() in conditions (an
# index can use it; it moves with every statement, so a long transaction still sees time pass),
# clock_timestamp() for the times written.
# Due, and not claimed, or claimed by a sender whose lease ran out (it died mid-send). SKIP
# LOCKED: two workers claiming at once take different rows; the lease keeps them apart after.
_CLAIM = """
UPDATE channels.notifications n
   SET state = 'sending', attempts = n.attempts + 1, lease = gen_random_uuid(),
       lease_until = clock_timestamp() + make_interval(secs => $1), updated_at = clock_timestamp()
 WHERE n.id IN (
       SELECT id FROM channels.notifications
        WHERE state IN ('pending', 'failed', 'sending') AND next_attempt_at <= statement_timestamp()
          AND (state <> 'sending' OR lease_until < statement_timestamp())
        ORDER BY next_attempt_at
        LIMIT $2
          FOR UPDATE SKIP LOCKED)
RETURNING id, lease, recipient, template, channel, language, params, attempts
"""


async def claim_due(conn: Connection, *, lease_seconds: float, limit: int) -> list[ClaimedRow]:
    """Take up to `limit` due messages for sending, each with a new lease of `lease_seconds`.
    Each claim counts as an attempt."""
    rows = await conn.fetch(_CLAIM, lease_seconds, limit)
    return [msgspec.convert(r, ClaimedRow, from_attributes=True) for r in rows]


# Every outcome is written only while the writer still holds the lease (`state = 'sending'` and
# its token): a sender whose lease ran out, and whose message another sender took over, changes
# nothing. Each returns whether it did. Times are the database's, at the moment of writing.


async def mark_sent(conn: Connection, claimed: ClaimedRow, *, via: str) -> bool:
    # The message is out: what it needed to be rendered goes (it may hold a staff comment).
    kept = await conn.fetchval(
        "UPDATE channels.notifications SET state = 'sent', sent_via = $3, sent_at = clock_timestamp(),"
        " params = NULL, lease = NULL, lease_until = NULL, last_error = NULL, updated_at = clock_timestamp()"
        " WHERE id = $1 AND lease = $2 AND state = 'sending' RETURNING true",
        claimed.id,
        claimed.lease,
        via,
    )
    return bool(kept)


async def mark_failed(conn: Connection, claimed: ClaimedRow, *, error: str, retry_in: float) -> bool:
    """Failed this time: due again `retry_in` seconds from now."""
    kept = await conn.fetchval(
        "UPDATE channels.notifications SET state = 'failed', last_error = $3,"
        " next_attempt_at = clock_timestamp() + make_interval(secs => $4),"
        " lease = NULL, lease_until = NULL, updated_at = clock_timestamp()"
        " WHERE id = $1 AND lease = $2 AND state = 'sending' RETURNING true",
        claimed.id,
        claimed.lease,
        error,
        retry_in,
    )
    return bool(kept)


async def mark_final(conn: Connection, claimed: ClaimedRow, *, state: str, error: str) -> bool:
    """`dead` (failed for good) or `skipped` (nowhere to send it): either way, never sent."""
    kept = await conn.fetchval(
        "UPDATE channels.notifications SET state = $3, last_error = $4, params = NULL,"
        " lease = NULL, lease_until = NULL, updated_at = clock_timestamp()"
        " WHERE id = $1 AND lease = $2 AND state = 'sending' RETURNING true",
        claimed.id,
        claimed.lease,
        state,
        error,
    )
    return bool(kept)


async def release(conn: Connection, claims: list[tuple[UUID, UUID]], *, attempted: bool) -> int:
    """Give claimed messages back (their sender is stopping): due again at once, the lease gone.
    Not `attempted` (never tried): the claim's attempt is taken back; `attempted` (interrupted
    mid-send, so perhaps sent): it counts, and the message goes again (at least once). Only rows
    whose lease is still the one given change; returns how many were released."""
    if not claims:
        return 0
    result: str = await conn.execute(
        "UPDATE channels.notifications n"
        " SET state = CASE WHEN $3 OR n.attempts > 1 THEN 'failed' ELSE 'pending' END,"
        " attempts = CASE WHEN $3 THEN n.attempts ELSE n.attempts - 1 END,"
        " last_error = CASE WHEN $3 THEN 'interrupted' ELSE n.last_error END,"
        " lease = NULL, lease_until = NULL, next_attempt_at = clock_timestamp(), updated_at = clock_timestamp()"
        " FROM unnest($1::uuid[], $2::uuid[]) AS c(id, lease)"
        " WHERE n.id = c.id AND n.lease = c.lease AND n.state = 'sending'",
        [claimed_id for claimed_id, _ in claims],
        [lease for _, lease in claims],
        attempted,
    )
    return int(result.rsplit(maxsplit=1)[-1])


async def prune(conn: Connection, *, older_than_days: int) -> int:
    """Delete the records of messages that finished (sent, skipped, dead) more than
    `older_than_days` ago; returns how many."""
    result: str = await conn.execute(
        "DELETE FROM channels.notifications WHERE state IN ('sent', 'skipped', 'dead')"
        " AND updated_at < statement_timestamp() - make_interval(days => $1)",
        older_than_days,
    )
    return int(result.rsplit(maxsplit=1)[-1])
