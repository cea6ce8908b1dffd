"""The IOC feed's SQL (schema `channels`, tables `ioc_*`). Functions take `conn` first and never commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from uuid import UUID

import msgspec

from onewindow.db import Connection, row_as, rows_as

# pg_advisory_xact_lock keys: the feed's append lock, one per incident for inbound updates, the
# settings' endpoint, and the seed of the per-lane (endpoint, incident) keys.
_FEED_LOCK: Final = 7_309_001
_UPDATE_LOCK: Final = 7_309_002
_CONFIGURE_LOCK: Final = 7_309_003
_LANE_SEED: Final = 7_309_004

# --- endpoints -----------------------------------------------------------------------------------


class EndpointRow(msgspec.Struct, frozen=True):
    id: UUID
    name: str
    url: str
    configured: bool
    enabled: bool
    created_by: str
    created_at: datetime
    updated_at: datetime
    version: int


class SecretRow(msgspec.Struct, frozen=True):
    id: UUID
    endpoint_id: UUID
    secret: bytes
    hint: str
    created_at: datetime
    retired_at: datetime | None


_ENDPOINT = "id, name, url, configured, enabled, created_by, created_at, updated_at, version"
_SECRET = "id, endpoint_id, secret, hint, created_at, retired_at"


# Creation times from clock_timestamp(): two endpoints (or secrets) made in one transaction still
# list in the order they were made.
async def insert_endpoint(
    conn: Connection, *, endpoint_id: UUID, name: str, url: str, configured: bool, by: str
) -> EndpointRow:
    row = await conn.fetchrow(
        "INSERT INTO channels.ioc_endpoints (id, name, url, configured, created_by, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, clock_timestamp(), clock_timestamp())"
        f" RETURNING {_ENDPOINT}",
        endpoint_id,
        name,
        url,
        configured,
        by,
    )
    return row_as(row, EndpointRow)


async def endpoint(conn: Connection, endpoint_id: UUID, *, lock: bool = False) -> EndpointRow | None:
    row = await conn.fetchrow(
        f"SELECT {_ENDPOINT} FROM channels.ioc_endpoints WHERE id = $1" + (" FOR UPDATE" if lock else ""),
        endpoint_id,
    )
    return row_as(row, EndpointRow) if row else None


async def lock_configured(conn: Connection) -> None:
    """Held to the end of the transaction: processes starting at once configure the settings'
    endpoint one after the other (the second finds the first's row instead of inserting another)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _CONFIGURE_LOCK)


async def configured_endpoint(conn: Connection) -> EndpointRow | None:
    row = await conn.fetchrow(f"SELECT {_ENDPOINT} FROM channels.ioc_endpoints WHERE configured FOR UPDATE")
    return row_as(row, EndpointRow) if row else None


async def endpoints(
    conn: Connection, *, after: tuple[datetime, UUID] | None, limit: int
) -> list[EndpointRow]:
    rows = await conn.fetch(
        f"SELECT {_ENDPOINT} FROM channels.ioc_endpoints"
        " WHERE $1::timestamptz IS NULL OR (created_at, id) > ($1, $2)"
        " ORDER BY created_at, id LIMIT $3",
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return rows_as(rows, EndpointRow)


async def update_endpoint(
    conn: Connection, endpoint_id: UUID, *, name: str, url: str, enabled: bool, at: datetime
) -> EndpointRow:
    row = await conn.fetchrow(
        "UPDATE channels.ioc_endpoints SET name = $2, url = $3, enabled = $4, updated_at = $5,"
        f" version = version + 1 WHERE id = $1 RETURNING {_ENDPOINT}",
        endpoint_id,
        name,
        url,
        enabled,
        at,
    )
    return row_as(row, EndpointRow)


async def delete_endpoint(conn: Connection, endpoint_id: UUID) -> None:
    # Its deliveries and their log go with it (ON DELETE CASCADE); the feed itself stays.
    await conn.execute("DELETE FROM channels.ioc_endpoints WHERE id = $1", endpoint_id)


async def add_secret(
    conn: Connection, *, secret_id: UUID, endpoint_id: UUID, sealed: bytes, hint: str
) -> None:
    await conn.execute(
        "INSERT INTO channels.ioc_endpoint_secrets (id, endpoint_id, secret, hint, created_at)"
        " VALUES ($1, $2, $3, $4, clock_timestamp())",
        secret_id,
        endpoint_id,
        sealed,
        hint,
    )


async def secrets_of(conn: Connection, endpoint_ids: list[UUID], *, active_only: bool) -> list[SecretRow]:
    rows = await conn.fetch(
        f"SELECT {_SECRET} FROM channels.ioc_endpoint_secrets WHERE endpoint_id = ANY($1::uuid[])"
        " AND (NOT $2 OR retired_at IS NULL) ORDER BY created_at, id",
        endpoint_ids,
        active_only,
    )
    return rows_as(rows, SecretRow)


async def retire_secrets(conn: Connection, endpoint_id: UUID, secret_ids: list[UUID], *, at: datetime) -> int:
    result: str = await conn.execute(
        "UPDATE channels.ioc_endpoint_secrets SET retired_at = $3"
        " WHERE endpoint_id = $1 AND id = ANY($2::uuid[]) AND retired_at IS NULL",
        endpoint_id,
        secret_ids,
        at,
    )
    return int(result.rsplit(maxsplit=1)[-1])


async def touch_endpoint(conn: Connection, endpoint_id: UUID, *, at: datetime) -> None:
    await conn.execute(
        "UPDATE channels.ioc_endpoints SET updated_at = $2, version = version + 1 WHERE id = $1",
        endpoint_id,
        at,
    )


# --- the feed ------------------------------------------------------------------------------------


async def lock_feed(conn: Connection) -> None:
    """Held to the end of the transaction: feed positions commit in the order they are given."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _FEED_LOCK)


async def event_recorded(conn: Connection, event_id: UUID) -> bool:
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM channels.ioc_events WHERE id = $1)", event_id
    )
    return found


async def insert_event(
    conn: Connection, *, event_id: UUID, case_id: UUID, sequence: int, type_: str, cloudevent: dict[str, Any]
) -> int:
    position: int = await conn.fetchval(
        "INSERT INTO channels.ioc_events (id, case_id, sequence, type, cloudevent) VALUES ($1, $2, $3, $4, $5)"
        " RETURNING position",
        event_id,
        case_id,
        sequence,
        type_,
        cloudevent,
    )
    return position


async def add_deliveries(conn: Connection, *, position: int, case_id: UUID, sequence: int) -> int:
    """One pending delivery of the event per enabled endpoint, each waiting in its lane; then each
    lane without a head gets one (this delivery, or an earlier one of the incident that arrived
    late). How many deliveries were added."""
    rows = await conn.fetch(
        "INSERT INTO channels.ioc_deliveries (endpoint_id, event_position, case_id, sequence, next_attempt_at)"
        " SELECT id, $1, $2, $3, 'infinity' FROM channels.ioc_endpoints WHERE enabled RETURNING endpoint_id",
        position,
        case_id,
        sequence,
    )
    lanes = [(row["endpoint_id"], case_id) for row in rows]
    await _lock_lanes(conn, lanes)
    await _release(conn, lanes)
    return len(lanes)


# --- lanes: per (endpoint, incident), one delivery at a time, in `sequence` order ------------------
# Every change of which delivery heads a lane (adding one, finishing the head, replaying dead
# ones) holds the lane's advisory lock, taken in a statement of its own before the change: under
# READ COMMITTED each later statement then sees what the previous holder committed. Several lanes
# are locked in a stable order; the feed's writers (the drainer, replays) hold the feed lock first,
# and a pusher finishing a delivery holds one lane only, so the locks cannot deadlock.


async def _lock_lanes(conn: Connection, lanes: list[tuple[UUID, UUID]]) -> None:
    if lanes:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(l.endpoint_id::text || l.case_id::text, $3))"
            " FROM unnest($1::uuid[], $2::uuid[]) AS l(endpoint_id, case_id)"
            " ORDER BY l.endpoint_id, l.case_id",
            [endpoint_id for endpoint_id, _ in lanes],
            [case_id for _, case_id in lanes],
            _LANE_SEED,
        )


# A head that is not being sent (not leased, or its worker's lease ran out) steps back behind a
# waiting delivery of a lower sequence: an event that reached the feed late (its outbox delivery
# was retried) still goes first when it can. A head being sent is left alone (the claim re-checks
# its row after this, and the other way round: the lease condition is evaluated on the row as
# locked), and the late event follows it.
_DEMOTE = """
UPDATE channels.ioc_deliveries d SET next_attempt_at = 'infinity', lease = NULL, leased_until = NULL
FROM (SELECT DISTINCT endpoint_id, case_id FROM unnest($1::uuid[], $2::uuid[]) AS l(endpoint_id, case_id)) lane
WHERE d.endpoint_id = lane.endpoint_id AND d.case_id = lane.case_id AND d.state = 'pending'
  AND d.next_attempt_at <> 'infinity' AND (d.lease IS NULL OR d.leased_until < clock_timestamp())
  AND EXISTS (
      SELECT 1 FROM channels.ioc_deliveries w
      WHERE w.endpoint_id = d.endpoint_id AND w.case_id = d.case_id AND w.state = 'pending'
        AND w.next_attempt_at = 'infinity' AND w.sequence < d.sequence
  )
"""

# A lane without a head (no pending delivery that is due, leased or waiting for a retry): its
# waiting delivery with the lowest sequence becomes the head, due now.
_RELEASE = """
WITH lane AS (
    SELECT DISTINCT l.endpoint_id, l.case_id FROM unnest($1::uuid[], $2::uuid[]) AS l(endpoint_id, case_id)
), first AS (
    SELECT DISTINCT ON (w.endpoint_id, w.case_id) w.id, w.next_attempt_at
    FROM lane JOIN channels.ioc_deliveries w
      ON w.endpoint_id = lane.endpoint_id AND w.case_id = lane.case_id AND w.state = 'pending'
    ORDER BY w.endpoint_id, w.case_id, w.sequence
)
UPDATE channels.ioc_deliveries d SET next_attempt_at = clock_timestamp()
FROM first
WHERE d.id = first.id AND first.next_attempt_at = 'infinity'
  AND NOT EXISTS (
      SELECT 1 FROM channels.ioc_deliveries h
      WHERE h.endpoint_id = d.endpoint_id AND h.case_id = d.case_id AND h.state = 'pending'
        AND h.next_attempt_at <> 'infinity'
  )
"""


async def _release(conn: Connection, lanes: list[tuple[UUID, UUID]], *, reorder: bool = True) -> None:
    """Give each lane its head: the lowest sequence pending (`reorder`: even if that means taking
    the turn from a head not being sent). The caller holds the lanes' locks."""
    if lanes:
        endpoint_ids, case_ids = [e for e, _ in lanes], [c for _, c in lanes]
        if reorder:
            await conn.execute(_DEMOTE, endpoint_ids, case_ids)
        await conn.execute(_RELEASE, endpoint_ids, case_ids)


class FeedRow(msgspec.Struct, frozen=True):
    position: int
    cloudevent: dict[str, Any]


async def events_after(conn: Connection, *, after: int, limit: int) -> list[FeedRow]:
    rows = await conn.fetch(
        "SELECT position, cloudevent FROM channels.ioc_events WHERE position > $1 ORDER BY position LIMIT $2",
        after,
        limit,
    )
    return rows_as(rows, FeedRow)


# --- deliveries ----------------------------------------------------------------------------------


class ClaimRow(msgspec.Struct, frozen=True):
    id: UUID
    lease: UUID
    endpoint_id: UUID
    case_id: UUID
    url: str
    attempts: int
    event_id: UUID
    cloudevent: dict[str, Any]


# statement_timestamp(), not now(): the time of this statement, not of the transaction's start (a
# long transaction, or a test's single one, must still see retries fall due); and not
# clock_timestamp(), which is volatile and so no index condition: the scan of an endpoint's due
# heads stops at the first one not due, instead of reading its retries and waiting ones too.
# Per enabled endpoint (disabled ones are not read at all), its due heads, oldest first: at most
# $1 less what this worker is already sending to it ($3/$4), so one slow endpoint cannot take
# every slot; then at most $2 of them in all. Only lane heads are ever due (the others wait at
# 'infinity'); a leased head is due again only when its lease ran out (its worker died), as the
# claim moves next_attempt_at to the lease's end. SKIP LOCKED: two workers claiming at once take
# different rows; the lease then keeps them apart while sending.
_CLAIM = """
WITH due AS (
    SELECT p.id, p.next_attempt_at FROM channels.ioc_endpoints e
    LEFT JOIN unnest($3::uuid[], $4::int[]) AS busy(endpoint_id, sending) ON busy.endpoint_id = e.id
    CROSS JOIN LATERAL (
        SELECT d.id, d.next_attempt_at FROM channels.ioc_deliveries d
        WHERE d.endpoint_id = e.id AND d.state = 'pending' AND d.next_attempt_at <= statement_timestamp()
        ORDER BY d.next_attempt_at
        LIMIT greatest($1 - coalesce(busy.sending, 0), 0)
        FOR UPDATE SKIP LOCKED
    ) p
    WHERE e.enabled
    ORDER BY p.next_attempt_at
    LIMIT $2
)
UPDATE channels.ioc_deliveries d
SET lease = gen_random_uuid(), leased_until = clock_timestamp() + make_interval(secs => $5),
    next_attempt_at = clock_timestamp() + make_interval(secs => $5), attempts = d.attempts + 1
FROM due, channels.ioc_events ev, channels.ioc_endpoints e
WHERE d.id = due.id AND ev.position = d.event_position AND e.id = d.endpoint_id
RETURNING d.id, d.lease, d.endpoint_id, d.case_id, e.url, d.attempts, ev.id AS event_id, ev.cloudevent
"""


async def claim(
    conn: Connection, *, limit: int, per_endpoint: int, sending: dict[UUID, int], lease_seconds: float
) -> list[ClaimRow]:
    """Take up to `limit` due deliveries, at most `per_endpoint` per endpoint counting the ones
    this worker is `sending` already, and lease them for `lease_seconds`."""
    rows = await conn.fetch(_CLAIM, per_endpoint, limit, list(sending), list(sending.values()), lease_seconds)
    return rows_as(rows, ClaimRow)


async def finish(
    conn: Connection,
    claimed: ClaimRow,
    *,
    state: str,
    status_code: int | None,
    error: str | None,
    retry_in: float,
    started_at: datetime,
    duration_ms: int,
) -> bool:
    """Record one attempt's outcome and log it; False when the lease was lost meanwhile (the
    attempt is still logged, it happened, unless the delivery is gone: its endpoint was deleted).
    A head that is delivered or dead hands its lane on to the next waiting delivery."""
    lane = [(claimed.endpoint_id, claimed.case_id)]
    if not await _hold_endpoint(conn, claimed.endpoint_id):
        return False  # deleted meanwhile, with its deliveries
    await _lock_lanes(conn, lane)
    kept = await conn.fetchval(
        "UPDATE channels.ioc_deliveries SET state = $3, last_status = $4, last_error = $5,"
        " next_attempt_at = clock_timestamp() + make_interval(secs => $6), lease = NULL, leased_until = NULL,"
        " delivered_at = CASE WHEN $3 = 'delivered' THEN clock_timestamp() END"
        " WHERE id = $1 AND lease = $2 RETURNING true",
        claimed.id,
        claimed.lease,
        state,
        status_code,
        error,
        retry_in,
    )
    # The endpoint is held (above), so its deliveries cannot vanish now; FOR KEY SHARE keeps the row.
    await conn.execute(
        "INSERT INTO channels.ioc_delivery_attempts"
        " (delivery_id, endpoint_id, attempt, started_at, duration_ms, status_code, error, outcome)"
        " SELECT d.id, d.endpoint_id, $2, $3, $4, $5, $6, $7 FROM channels.ioc_deliveries d"
        " WHERE d.id = $1 FOR KEY SHARE",
        claimed.id,
        claimed.attempts,
        started_at,
        duration_ms,
        status_code,
        error,
        "retry" if state == "pending" else state,
    )
    if kept and state != "pending":
        await _release(conn, lane, reorder=False)  # the head just left: no head to step back
    return bool(kept)


async def _hold_endpoint(conn: Connection, endpoint_id: UUID) -> bool:
    """Take the endpoint's row in KEY SHARE before any of its deliveries: a delete of the endpoint
    (FOR UPDATE on it, then the cascade to its deliveries) is waited for here, not met halfway (it
    holding the endpoint and waiting for a delivery we hold: a deadlock). False: it is gone."""
    found = await conn.fetchval(
        "SELECT true FROM channels.ioc_endpoints WHERE id = $1 FOR KEY SHARE", endpoint_id
    )
    return bool(found)


class DeliveryRow(msgspec.Struct, frozen=True):
    id: UUID
    endpoint_id: UUID
    event_id: UUID
    event_position: int
    event_type: str
    case_id: UUID
    sequence: int
    state: str
    attempts: int
    # None while it waits for an earlier event of its incident (pending behind its lane's head).
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


_DELIVERY = """
SELECT d.id, d.endpoint_id, ev.id AS event_id, d.event_position, ev.type AS event_type, d.case_id,
       d.sequence, d.state, d.attempts, NULLIF(d.next_attempt_at, 'infinity') AS next_attempt_at,
       d.last_status, d.last_error, d.created_at,
       d.delivered_at
FROM channels.ioc_deliveries d JOIN channels.ioc_events ev ON ev.position = d.event_position
"""


async def deliveries(
    conn: Connection, endpoint_id: UUID, *, state: str | None, after: int | None, limit: int
) -> list[DeliveryRow]:
    rows = await conn.fetch(
        _DELIVERY + " WHERE d.endpoint_id = $1 AND ($2::text IS NULL OR d.state = $2)"
        " AND ($3::bigint IS NULL OR d.event_position > $3) ORDER BY d.event_position LIMIT $4",
        endpoint_id,
        state,
        after,
        limit,
    )
    return rows_as(rows, DeliveryRow)


async def delivery(conn: Connection, endpoint_id: UUID, delivery_id: UUID) -> DeliveryRow | None:
    row = await conn.fetchrow(_DELIVERY + " WHERE d.endpoint_id = $1 AND d.id = $2", endpoint_id, delivery_id)
    return row_as(row, DeliveryRow) if row else None


async def replay(conn: Connection, endpoint_id: UUID, delivery_id: UUID | None) -> int:
    """Dead deliveries (one, or all of the endpoint's) back to pending with fresh attempts, each
    in its lane (sent when it is the lane's lowest pending sequence); logged."""
    await lock_feed(conn)  # before the lanes, as the drainer takes them: no deadlock
    if not await _hold_endpoint(conn, endpoint_id):
        return 0
    cases = await conn.fetch(
        "SELECT DISTINCT case_id FROM channels.ioc_deliveries"
        " WHERE endpoint_id = $1 AND state = 'dead' AND ($2::uuid IS NULL OR id = $2)",
        endpoint_id,
        delivery_id,
    )
    lanes = [(endpoint_id, row["case_id"]) for row in cases]
    await _lock_lanes(conn, lanes)
    rows = await conn.fetch(
        """
        WITH replayed AS (
            UPDATE channels.ioc_deliveries SET state = 'pending', attempts = 0, next_attempt_at = 'infinity',
                lease = NULL, leased_until = NULL
            WHERE endpoint_id = $1 AND state = 'dead' AND ($2::uuid IS NULL OR id = $2)
            RETURNING id
        ), logged AS (
            INSERT INTO channels.ioc_delivery_attempts
                (delivery_id, endpoint_id, attempt, started_at, duration_ms, outcome)
            SELECT id, $1, 0, now(), 0, 'replayed' FROM replayed
        )
        SELECT id FROM replayed
        """,
        endpoint_id,
        delivery_id,
    )
    await _release(conn, lanes)
    return len(rows)


class AttemptRow(msgspec.Struct, frozen=True):
    id: int
    delivery_id: UUID
    attempt: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None
    outcome: str


async def attempts(
    conn: Connection, endpoint_id: UUID, *, delivery_id: UUID | None, after: int | None, limit: int
) -> list[AttemptRow]:
    rows = await conn.fetch(
        "SELECT id, delivery_id, attempt, started_at, duration_ms, status_code, error, outcome"
        " FROM channels.ioc_delivery_attempts WHERE endpoint_id = $1"
        " AND ($2::uuid IS NULL OR delivery_id = $2) AND ($3::bigint IS NULL OR id > $3)"
        " ORDER BY id LIMIT $4",
        endpoint_id,
        delivery_id,
        after,
        limit,
    )
    return rows_as(rows, AttemptRow)


# --- inbound updates -----------------------------------------------------------------------------


async def lock_incident_updates(conn: Connection, case_id: UUID) -> None:
    """One inbound update of an incident at a time: the stale check and the write go together."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _UPDATE_LOCK, str(case_id))


class UpdateRow(msgspec.Struct, frozen=True):
    case_id: UUID
    fingerprint: bytes
    reply: dict[str, Any]


async def update(conn: Connection, client_id: str, update_id: str) -> UpdateRow | None:
    row = await conn.fetchrow(
        "SELECT case_id, fingerprint, reply FROM channels.ioc_updates WHERE client_id = $1 AND update_id = $2",
        client_id,
        update_id,
    )
    return row_as(row, UpdateRow) if row else None


async def latest_update_at(conn: Connection, case_id: UUID) -> datetime | None:
    latest: datetime | None = await conn.fetchval(
        "SELECT max(occurred_at) FROM channels.ioc_updates WHERE case_id = $1 AND NOT stale", case_id
    )
    return latest


async def insert_update(
    conn: Connection,
    *,
    client_id: str,
    update_id: str,
    case_id: UUID,
    status: str,
    note: str | None,
    occurred_at: datetime,
    stale: bool,
    effect: str,
    fingerprint: bytes,
    reply: dict[str, Any],
) -> bool:
    """False when the update id was taken meanwhile (by a request about another incident)."""
    inserted = await conn.fetchval(
        "INSERT INTO channels.ioc_updates (client_id, update_id, case_id, status, note, occurred_at, stale,"
        " effect, fingerprint, reply) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT DO NOTHING RETURNING true",
        client_id,
        update_id,
        case_id,
        status,
        note,
        occurred_at,
        stale,
        effect,
        fingerprint,
        reply,
    )
    return bool(inserted)
