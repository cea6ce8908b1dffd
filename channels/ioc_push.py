"""Pushing the feed: POST each pending delivery to its endpoint, signed per Standard Webhooks.

The pusher claims due deliveries in one short transaction (FOR UPDATE SKIP LOCKED, then a lease
of `ioc_timeout_seconds` + 5 s), sends them with no transaction open, and records each outcome in
a transaction of its own. It claims only as many as it starts sending at once (16 at most, at
most 4 per endpoint), and each POST, from connecting to the last byte read, is bounded by
`ioc_timeout_seconds` in all: a delivery is always finished, or abandoned, within its lease. `run()`
claims again as soon as a send finishes, so one slow endpoint holds its own slots only. So:

- at least once: a worker that dies mid-POST leaves a lease that runs out; the delivery is then
  claimed again (the receiver dedupes on `webhook-id`, the CloudEvent's id);
- two workers never send the same delivery at once (the row lock while claiming, the lease after);
- per-incident order: per (endpoint, incident) only the head delivery is claimable, the lowest
  `sequence` pending; the next one becomes the head when it is delivered or dead-lettered
  (channels.ioc_store, "lanes");
- failures (no 2xx in time, or any error at all, such as a URL the client refuses) back off
  exponentially with jitter (onewindow.retry.backoff), from `ioc_retry_base_seconds` up to
  `ioc_retry_max_seconds`, and after `ioc_max_attempts` the delivery is dead until an admin
  replays it. One endpoint's failure never stops the others.

The delivery log records each attempt's time, status code or error kind and duration; bodies
(which carry case descriptions' neighbours: locations, statuses) never reach a log, and of a
response only the status and at most a few KiB are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, defaultdict
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
from onewindow.retry import backoff
from onewindow.settings import Settings

log = logging.getLogger(__name__)

CONTENT_TYPE: Final = "application/cloudevents+json; charset=utf-8"
USER_AGENT: Final = "OneWindow-IOC-Feed/1"
_LEASE_MARGIN: Final = 5.0
_CONCURRENCY: Final = 16
_PER_ENDPOINT: Final = 4
_MAX_RESPONSE_BYTES: Final = 4096
_SWEEP_SECONDS: Final = 1.0
_DATABASE_DOWN: tuple[type[Exception], ...] = (Unavailable, *UNREACHABLE_ON_CONNECT)
_LISTEN_FAILED: tuple[type[Exception], ...] = (asyncpg.PostgresError, *UNREACHABLE_ON_CONNECT)


def retry_delay(settings: Settings, attempts: int, *, rng: random.Random | None = None) -> float:
    """The wait after a delivery's `attempts`-th failure: the one back-off, with equal jitter."""
    return backoff(
        attempts,
        base=settings.ioc_retry_base_seconds,
        cap=settings.ioc_retry_max_seconds,
        jitter=True,
        rng=rng,
    )


class Pusher:
    """Delivers the feed. `run()` loops (woken by NOTIFY, by a finished send, else every second);
    `push_once()` is one pass that waits for its sends, for tests and tools. One HTTP client for
    the pusher's life (`client` to bring one's own; otherwise it is made on first use and closed
    by `aclose()` or when `run()` ends)."""

    def __init__(self, db: Database, settings: Settings, *, client: httpx.AsyncClient | None = None) -> None:
        self.db = db
        self.settings = settings
        self._client = client
        self._owns_client = client is None
        self._wake = asyncio.Event()
        self._listener: Connection | None = None
        self._sending: dict[asyncio.Task[None], UUID] = {}  # each send, and its endpoint

    @property
    def lease_seconds(self) -> float:
        return self.settings.ioc_timeout_seconds + _LEASE_MARGIN

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.settings.ioc_timeout_seconds,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=_CONCURRENCY, max_keepalive_connections=_CONCURRENCY),
            )
        return self._client

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def _claim(self, slots: int) -> list[tuple[store.ClaimRow, list[str]]]:
        """Lease up to `slots` due deliveries, with the secrets to sign each one with."""
        sending = Counter(self._sending.values())
        async with self.db.transaction() as conn:
            claimed = await store.claim(
                conn,
                limit=slots,
                per_endpoint=_PER_ENDPOINT,
                sending=dict(sending),
                lease_seconds=self.lease_seconds,
            )
            if not claimed:
                return []
            found = await store.secrets_of(conn, list({c.endpoint_id for c in claimed}), active_only=True)
        signing: dict[UUID, list[str]] = defaultdict(list)
        for row in found:
            try:
                signing[row.endpoint_id].append(
                    webhooks.unseal(self.settings.master_secret, row.secret, row.endpoint_id)
                )
            except webhooks.BadSecret:
                log.exception("ioc endpoint secret unreadable", extra={"endpoint_id": str(row.endpoint_id)})
        return [(c, signing[c.endpoint_id]) for c in claimed]

    async def push_once(self) -> int:
        """Claim what can be sent at once, send it, record the outcomes; how many were claimed."""
        batch = await self._claim(_CONCURRENCY)
        outcomes = await asyncio.gather(*(self._deliver(c, s) for c, s in batch), return_exceptions=True)
        for outcome in outcomes:
            _log_failure(outcome)
        return len(batch)

    async def _post(self, claimed: store.ClaimRow, secrets: list[str]) -> int:
        body = msgspec.json.encode(claimed.cloudevent)
        headers = webhooks.headers(secrets, str(claimed.event_id), int(time.time()), body)
        async with self._http().stream(
            "POST",
            claimed.url,
            content=body,
            headers={**headers, "content-type": CONTENT_TYPE, "user-agent": USER_AGENT},
        ) as response:
            read = 0
            async for chunk in response.aiter_raw():  # only the status counts: read a little, at most
                read += len(chunk)
                if read >= _MAX_RESPONSE_BYTES:
                    break
            return response.status_code

    async def _deliver(self, claimed: store.ClaimRow, secrets: list[str]) -> None:
        started_at = datetime.now(UTC)
        began = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(self.settings.ioc_timeout_seconds):
                status_code = await self._post(claimed, secrets)
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except webhooks.BadSecret:
            error = "no active secret to sign with"
        except Exception as exc:  # whatever one endpoint does is that delivery's failed attempt
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

    def _start(self, batch: list[tuple[store.ClaimRow, list[str]]]) -> None:
        for claimed, secrets in batch:
            task = asyncio.create_task(self._deliver(claimed, secrets))
            self._sending[task] = claimed.endpoint_id
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.pop(task, None)
        self._wake.set()  # a slot is free, and the next event of that incident may be due now
        if not task.cancelled():
            _log_failure(task.exception())

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
                slots = _CONCURRENCY - len(self._sending)
                if slots > 0:
                    try:
                        batch = await self._claim(slots)
                        failures = 0
                    except _DATABASE_DOWN:
                        failures += 1
                        log.warning("ioc push: database unreachable", extra={"failures": failures})
                        await asyncio.sleep(min(0.5 * 2**failures, 10.0))
                        continue
                    self._start(batch)
                    if len(batch) == slots:
                        continue  # there may be more due: claim again once a slot frees up
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=_SWEEP_SECONDS)
        finally:
            sending = list(self._sending)
            for task in sending:
                task.cancel()
            await asyncio.gather(*sending, return_exceptions=True)
            await self.aclose()
            if self._listener is not None and not self._listener.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._listener.close(), timeout=2)


def _log_failure(outcome: BaseException | None) -> None:
    """A send that could not record its outcome (the database went away): its lease runs out and
    the delivery is sent again."""
    if isinstance(outcome, Exception):
        log.warning("ioc delivery outcome not recorded", extra={"error": type(outcome).__name__})
