"""The transactional outbox: `publish` inside the caller's transaction, `Drainer` delivers.

Delivery is at least once. Each subscriber's success is recorded in `outbox_deliveries` in the
same transaction as whatever the subscriber wrote through `conn`, so a subscriber that keeps its
state in PostgreSQL sees every event exactly once even when a worker dies mid-batch (the batch's
transaction rolls back and the rows are claimed again). A failing subscriber is retried with
exponential back-off; after `outbox_max_attempts` failures the event is dead-lettered and stays
in the table for an operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from onewindow.db import UNREACHABLE_ON_CONNECT, Connection, Database, connect
from onewindow.errors import Unavailable
from onewindow.events import Envelope, Event, Subscription
from onewindow.retry import backoff
from onewindow.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "onewindow_outbox"
_MAX_RETRY_DELAY = 3600.0
_DATABASE_DOWN: tuple[type[Exception], ...] = (Unavailable, *UNREACHABLE_ON_CONNECT)
_LISTEN_FAILED: tuple[type[Exception], ...] = (asyncpg.PostgresError, *UNREACHABLE_ON_CONNECT)


async def publish(conn: Connection, event: Event) -> UUID:
    """Store `event` in the outbox within the caller's transaction; it is delivered after commit."""
    # NOTIFY is transactional too: the drainer wakes only if this transaction commits. One
    # statement for both: a step that publishes several events pays one round trip for each.
    event_id: UUID = await conn.fetchval(
        "WITH stored AS (INSERT INTO onewindow.outbox (topic, payload) VALUES ($1, $2) RETURNING id)"
        " SELECT id FROM stored, pg_notify($3, '')",
        type(event).topic,
        msgspec.to_builtins(event),
        CHANNEL,
    )
    return event_id


def staged(events: Sequence[Event], param: int) -> tuple[str, list[dict[str, Any]]]:
    """`publish` for several events inside a caller's larger statement (one round trip for a
    whole step's writes): a data-modifying CTE body that stores `events` in order and notifies
    the drainer, and the value to bind as parameter `$param`. Use it as
    `WITH published AS (<sql>) ... FROM published` or in a CTE list; nothing is stored when
    `events` is empty."""
    sql = (
        "INSERT INTO onewindow.outbox (topic, payload)"
        f" SELECT e.topic, e.payload FROM ROWS FROM (json_to_recordset(${param}::json)"
        " AS (topic text, payload jsonb)) WITH ORDINALITY AS e(topic, payload, n)"
        f" CROSS JOIN LATERAL (SELECT pg_notify('{CHANNEL}', '')) AS woken ORDER BY e.n RETURNING id"
    )
    # The json parameter's encoder (msgspec) writes each event as it is: no to_builtins copy first.
    return sql, [{"topic": type(event).topic, "payload": event} for event in events]


class _Row(msgspec.Struct, frozen=True):
    id: UUID
    topic: str
    payload: dict[str, Any]
    occurred_at: datetime
    attempts: int


_CLAIM = """
SELECT id, topic, payload, occurred_at, attempts
FROM onewindow.outbox
WHERE state = 'pending' AND next_attempt_at <= now()
ORDER BY next_attempt_at, seq
LIMIT $1
FOR UPDATE SKIP LOCKED
"""

_DELIVERED_TO = """
SELECT event_id, subscriber FROM onewindow.outbox_deliveries WHERE event_id = ANY($1::uuid[])
"""


@dataclass(frozen=True, slots=True)
class DrainPolicy:
    batch_size: int = 100
    max_attempts: int = 10
    retry_base_seconds: float = 2.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DrainPolicy:
        return cls(
            batch_size=settings.outbox_batch_size,
            max_attempts=settings.outbox_max_attempts,
            retry_base_seconds=settings.outbox_retry_base_seconds,
        )

    def retry_delay(self, attempts: int) -> float:
        return backoff(attempts, base=self.retry_base_seconds, cap=_MAX_RETRY_DELAY)


async def drain_once(db: Database, subscriptions: Sequence[Subscription], policy: DrainPolicy) -> int:
    """Claim one batch of due events, deliver them, record the outcome. Returns how many were claimed."""
    async with db.transaction() as conn:
        rows = [
            msgspec.convert(r, _Row, from_attributes=True)
            for r in await conn.fetch(_CLAIM, policy.batch_size)
        ]
        if not rows:
            return 0
        done: set[tuple[UUID, str]] = {
            (r["event_id"], r["subscriber"])
            for r in await conn.fetch(_DELIVERED_TO, [row.id for row in rows])
        }
        for row in rows:
            await _deliver(conn, row, subscriptions, done, policy)
        return len(rows)


async def _deliver(
    conn: Connection,
    row: _Row,
    subscriptions: Sequence[Subscription],
    done: set[tuple[UUID, str]],
    policy: DrainPolicy,
) -> None:
    envelope = Envelope(
        id=row.id, topic=row.topic, occurred_at=row.occurred_at, payload=row.payload, attempt=row.attempts + 1
    )
    failures: list[str] = []
    for subscription in subscriptions:
        if (row.id, subscription.name) in done or not subscription.wants(row.topic):
            continue
        try:
            async with conn.transaction():
                await subscription.handler(conn, envelope)
                await conn.execute(
                    "INSERT INTO onewindow.outbox_deliveries (event_id, subscriber) VALUES ($1, $2)",
                    row.id,
                    subscription.name,
                )
        except Exception as exc:
            if conn.is_closed():
                raise  # the database went away: the whole batch is retried, not the subscriber's fault
            failures.append(f"{subscription.name}: {type(exc).__name__}: {exc}"[:500])
            log.warning(
                "outbox subscriber failed",
                extra={
                    "event_id": str(row.id),
                    "topic": row.topic,
                    "subscriber": subscription.name,
                    "attempt": envelope.attempt,
                    "error": type(exc).__name__,
                },
            )
    if not failures:
        await conn.execute(
            "UPDATE onewindow.outbox SET state = 'delivered', delivered_at = now(), attempts = attempts + 1,"
            " last_error = NULL WHERE id = $1",
            row.id,
        )
        return
    attempts = row.attempts + 1
    dead = attempts >= policy.max_attempts
    await conn.execute(
        "UPDATE onewindow.outbox SET attempts = $2, last_error = $3,"
        " state = CASE WHEN $4 THEN 'dead' ELSE 'pending' END,"
        " next_attempt_at = now() + make_interval(secs => $5) WHERE id = $1",
        row.id,
        attempts,
        "\n".join(failures),
        dead,
        policy.retry_delay(attempts),
    )
    if dead:
        log.error("outbox event dead-lettered", extra={"event_id": str(row.id), "topic": row.topic})


async def backlog(conn: Connection) -> tuple[int, int]:
    """(pending, dead) event counts, for metrics and operators."""
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE state = 'pending') AS pending,"
        " count(*) FILTER (WHERE state = 'dead') AS dead"
        " FROM onewindow.outbox WHERE state <> 'delivered'"
    )
    return (int(row["pending"]), int(row["dead"])) if row else (0, 0)


async def prune(conn: Connection, *, older_than_days: int) -> int:
    """Delete delivered events older than the retention; dead letters stay until an operator acts."""
    result: str = await conn.execute(
        "DELETE FROM onewindow.outbox WHERE state = 'delivered'"
        " AND delivered_at < now() - make_interval(days => $1)",
        older_than_days,
    )
    return int(result.rsplit(maxsplit=1)[-1])


class Drainer:
    """Runs `drain_once` whenever NOTIFY says there is work, and every `sweep_seconds` regardless.

    The sweep is the safety net: a NOTIFY lost while the listening connection was down, or an
    event waiting for its retry time, is still picked up.
    """

    def __init__(
        self,
        db: Database,
        dsn: str,
        subscriptions: Sequence[Subscription],
        policy: DrainPolicy,
        *,
        sweep_seconds: float = 5.0,
    ) -> None:
        self._db = db
        self._dsn = dsn
        self._subscriptions = tuple(subscriptions)
        self._policy = policy
        self._sweep = sweep_seconds
        self._wake = asyncio.Event()
        self._listener: Connection | None = None

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _listen(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        self._listener = None
        listener = None
        try:
            listener = await connect(self._dsn, connect_timeout=5)
            await listener.add_listener(CHANNEL, self._on_notify)
        except _LISTEN_FAILED:
            if listener is not None:
                listener.terminate()
            return  # the sweep carries on; we try again next round
        self._listener = listener

    async def run(self) -> None:
        failures = 0
        try:
            while True:
                await self._listen()
                self._wake.clear()
                try:
                    claimed = await drain_once(self._db, self._subscriptions, self._policy)
                    failures = 0
                except _DATABASE_DOWN:
                    failures += 1
                    log.warning("outbox drain: database unreachable", extra={"failures": failures})
                    await asyncio.sleep(min(0.5 * 2**failures, self._sweep))
                    continue
                if claimed == self._policy.batch_size:
                    continue  # there is probably more
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._sweep)
        finally:
            if self._listener is not None and not self._listener.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._listener.close(), timeout=2)
