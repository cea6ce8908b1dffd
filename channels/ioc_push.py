"""Pushing the feed: POST each pending delivery to its endpoint, signed per Standard Webhooks.

`Pusher.push_once` claims due deliveries in one short transaction (FOR UPDATE SKIP LOCKED, then a
lease of `ioc_timeout_seconds` + 5 s), sends them with no transaction open, and records each
outcome in a transaction of its own. So:

- at least once: a worker that dies mid-POST leaves a lease that runs out; the delivery is then
  claimed again (the receiver dedupes on `webhook-id`, the CloudEvent's id);
- two workers never send the same delivery at once (the row lock while claiming, the lease after);
- per-incident order: a delivery is claimed only when no earlier event of its incident is still
  pending for the same endpoint (delivered or dead-lettered ones do not hold it back);
- failures (no 2xx in time) back off exponentially with jitter, from `ioc_retry_base_seconds`
  up to `ioc_retry_max_seconds`, and after `ioc_max_attempts` the delivery is dead until an admin
  replays it.

The delivery log records each attempt's time, status code or error kind and duration; bodies
(which carry case descriptions' neighbours: locations, notes) never reach a log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

import asyncpg
import httpx
import msgspec

from channels import ioc_store as store
from channels import webhooks
from channels.ioc_feed import WAKE_CHANNEL
from onewindow.db import UNREACHABLE_ON_CONNECT, Connection, Database, connect
from onewindow.errors import Unavailable
from onewindow.settings import Settings

log = logging.getLogger(__name__)

CONTENT_TYPE: Final = "application/cloudevents+json; charset=utf-8"
USER_AGENT: Final = "OneWindow-IOC-Feed/1"
_LEASE_MARGIN: Final = 5.0
_BATCH: Final = 50
_CONCURRENCY: Final = 16
_SWEEP_SECONDS: Final = 1.0
_DATABASE_DOWN: tuple[type[Exception], ...] = (Unavailable, *UNREACHABLE_ON_CONNECT)
_LISTEN_FAILED: tuple[type[Exception], ...] = (asyncpg.PostgresError, *UNREACHABLE_ON_CONNECT)


def retry_delay(settings: Settings, attempts: int, *, rng: random.Random | None = None) -> float:
    """Exponential back-off with "equal jitter": half the step is fixed, half random, so retries of
    many deliveries spread out but each still waits at least half its step."""
    step = min(settings.ioc_retry_base_seconds * 2.0 ** min(attempts - 1, 32), settings.ioc_retry_max_seconds)
    return step / 2 + (rng or random).uniform(0, step / 2)


class Pusher:
    """Delivers the feed. `run()` loops (woken by NOTIFY, else every second); `push_once()` is one
    pass, for tests and tools."""

    def __init__(self, db: Database, settings: Settings, *, client: httpx.AsyncClient | None = None) -> None:
        self.db = db
        self.settings = settings
        self._client = client
        self._wake = asyncio.Event()
        self._listener: Connection | None = None
        self._limit = asyncio.Semaphore(_CONCURRENCY)

    @property
    def lease_seconds(self) -> float:
        return self.settings.ioc_timeout_seconds + _LEASE_MARGIN

    async def push_once(self) -> int:
        """Claim due deliveries, send them concurrently, record the outcomes; how many were claimed."""
        async with self.db.transaction() as conn:
            claimed = await store.claim(conn, limit=_BATCH, lease_seconds=self.lease_seconds)
            if not claimed:
                return 0
            found = await store.secrets_of(conn, list({c.endpoint_id for c in claimed}), active_only=True)
        signing: dict[UUID, list[str]] = defaultdict(list)
        for row in found:
            try:
                signing[row.endpoint_id].append(
                    webhooks.unseal(self.settings.master_secret, row.secret, row.endpoint_id)
                )
            except webhooks.BadSecret:
                log.exception("ioc endpoint secret unreadable", extra={"endpoint_id": str(row.endpoint_id)})
        client = self._client or httpx.AsyncClient(timeout=self.settings.ioc_timeout_seconds)
        try:
            await asyncio.gather(*(self._deliver(client, c, signing[c.endpoint_id]) for c in claimed))
        finally:
            if self._client is None:
                await client.aclose()
        return len(claimed)

    async def _deliver(self, client: httpx.AsyncClient, claimed: store.ClaimRow, secrets: list[str]) -> None:
        async with self._limit:
            started_at = datetime.now(UTC)
            began = time.monotonic()
            status_code: int | None = None
            error: str | None = None
            try:
                body = msgspec.json.encode(claimed.cloudevent)
                headers = webhooks.headers(secrets, str(claimed.event_id), int(time.time()), body)
                response = await client.post(
                    claimed.url,
                    content=body,
                    headers={**headers, "content-type": CONTENT_TYPE, "user-agent": USER_AGENT},
                    timeout=self.settings.ioc_timeout_seconds,
                )
                status_code = response.status_code
                if not 200 <= status_code < 300:
                    error = f"HTTP {status_code}"
            except webhooks.BadSecret:
                error = "no active secret to sign with"
            except httpx.HTTPError as exc:
                error = type(exc).__name__  # the kind only: an exception's text may quote the URL
            duration_ms = round((time.monotonic() - began) * 1000)
        if error is None:
            state, retry_in = "delivered", 0.0
        elif claimed.attempts >= self.settings.ioc_max_attempts:
            state, retry_in = "dead", 0.0
        else:
            state, retry_in = "pending", retry_delay(self.settings, claimed.attempts)
        async with self.db.transaction() as conn:
            kept = await store.finish(
                conn,
                claimed,
                state=state,
                status_code=status_code,
                error=error,
                retry_in=retry_in,
                started_at=started_at,
                duration_ms=duration_ms,
            )
        extra = {
            "delivery_id": str(claimed.id),
            "endpoint_id": str(claimed.endpoint_id),
            "event_id": str(claimed.event_id),
            "attempt": claimed.attempts,
            "status_code": status_code,
            "error": error,
            "duration_ms": duration_ms,
        }
        if not kept:
            log.warning("ioc delivery lease lost before its outcome was recorded", extra=extra)
        elif state == "dead":
            log.error("ioc delivery dead-lettered", extra=extra)
        elif state == "pending":
            log.warning("ioc delivery failed; will retry", extra={**extra, "retry_in": round(retry_in, 1)})

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _listen(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        self._listener = None
        listener = None
        try:
            listener = await connect(self.settings.dsn, connect_timeout=5)
            await listener.add_listener(WAKE_CHANNEL, self._on_notify)
        except _LISTEN_FAILED:
            if listener is not None:
                listener.terminate()
            return  # the sweep carries on; listening is tried again next round
        self._listener = listener

    async def run(self) -> None:
        failures = 0
        try:
            while True:
                await self._listen()
                self._wake.clear()
                try:
                    claimed = await self.push_once()
                    failures = 0
                except _DATABASE_DOWN:
                    failures += 1
                    log.warning("ioc push: database unreachable", extra={"failures": failures})
                    await asyncio.sleep(min(0.5 * 2**failures, 10.0))
                    continue
                if claimed:
                    continue  # there may be more, or the next of an incident just became due
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=_SWEEP_SECONDS)
        finally:
            if self._listener is not None and not self._listener.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._listener.close(), timeout=2)
