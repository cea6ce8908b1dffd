"""The job boundary: an arq task body runs in one transaction and its failures are counted in Redis.

The jobs run on `committing_db`, because what is tested is precisely what gets committed; they
write to the outbox (which that fixture empties afterwards) so no table of their own is needed.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator, Awaitable
from typing import Protocol, cast
from uuid import UUID

import pytest
from redis.asyncio import Redis

from onewindow.db import Connection, PoolDatabase
from onewindow.events import Event
from onewindow.jobs import JobContext, transactional
from onewindow.metrics import JOB_FAILURES_KEY
from onewindow.outbox import publish
from onewindow.settings import Settings
from onewindow.worker import prune_outbox


class Noted(Event, frozen=True, kw_only=True):
    topic = "test.job.noted"
    note: str


class JobFailed(Exception):
    """What the test job raises after it has written."""


class NoteJob(Protocol):
    """What `transactional` makes of the body below: an arq task taking the job context first."""

    __name__: str

    def __call__(self, ctx: JobContext, /, note: str, *, fail: bool = False) -> Awaitable[UUID]: ...


def note_job(name: str) -> NoteJob:
    """A job named `name` (the failure counter is keyed by it) that writes, then maybe raises."""

    async def body(conn: Connection, settings: Settings, note: str, *, fail: bool = False) -> UUID:
        event_id = await publish(conn, Noted(note=note))
        if fail:
            raise JobFailed(note)
        return event_id

    body.__name__ = body.__qualname__ = name
    return transactional(body)


async def notes(db: PoolDatabase, note: str) -> int:
    async with db.connection() as conn:
        found: int = await conn.fetchval(
            "SELECT count(*) FROM onewindow.outbox WHERE topic = 'test.job.noted' AND payload->>'note' = $1",
            note,
        )
    return found


async def failures(redis: Redis, job: str) -> int:
    """The job's failure count as /metrics reads it (redis-py's types do not know we are async)."""
    raw = await cast("Awaitable[bytes | None]", redis.hget(JOB_FAILURES_KEY, job))
    return int(raw or 0)


@pytest.fixture
async def job_name(redis: Redis) -> AsyncIterator[str]:
    """A job name no other run uses, and its failure count removed from Redis afterwards."""
    name = f"test_job_{secrets.token_hex(6)}"
    try:
        yield name
    finally:
        await cast("Awaitable[int]", redis.hdel(JOB_FAILURES_KEY, name))


async def test_job_commits_what_it_wrote_when_it_succeeds(
    committing_db: PoolDatabase, settings: Settings, redis: Redis, job_name: str
) -> None:
    ctx: JobContext = {"db": committing_db, "settings": settings, "redis": redis}
    note = secrets.token_hex(8)

    event_id = await note_job(job_name)(ctx, note)

    assert isinstance(event_id, UUID)
    assert await notes(committing_db, note) == 1  # seen from another connection: committed
    assert await failures(redis, job_name) == 0


async def test_failed_job_rolls_back_and_is_counted_in_redis(
    committing_db: PoolDatabase, settings: Settings, redis: Redis, job_name: str
) -> None:
    ctx: JobContext = {"db": committing_db, "settings": settings, "redis": redis}
    job = note_job(job_name)
    assert job.__name__ == job_name  # arq names the task after it

    for attempt in (1, 2):
        note = secrets.token_hex(8)
        with pytest.raises(JobFailed, match=note):
            await job(ctx, note, fail=True)
        assert await notes(committing_db, note) == 0
        assert await failures(redis, job_name) == attempt


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_failure_count_without_redis_does_not_hide_the_jobs_error(
    committing_db: PoolDatabase, settings: Settings, job_name: str
) -> None:
    unreachable = Redis.from_url(f"redis://127.0.0.1:{_closed_port()}/0", socket_connect_timeout=1)
    ctx: JobContext = {"db": committing_db, "settings": settings, "redis": unreachable}
    try:
        with pytest.raises(JobFailed):
            await note_job(job_name)(ctx, "redis is away", fail=True)
    finally:
        await unreachable.aclose()


async def test_prune_outbox_task_deletes_expired_delivered_events(
    committing_db: PoolDatabase, settings: Settings, redis: Redis
) -> None:
    async with committing_db.transaction() as conn:
        rows = await conn.fetch(
            "INSERT INTO onewindow.outbox (topic, payload, state, attempts, delivered_at)"
            " SELECT 'test.job.pruned', $1::jsonb, 'delivered', 1, now() - make_interval(days => d)"
            " FROM unnest($2::int[]) AS d RETURNING id, delivered_at",
            {},
            [settings.outbox_retention_days + 1, settings.outbox_retention_days - 1],
        )
    expired, recent = (row["id"] for row in sorted(rows, key=lambda row: row["delivered_at"]))
    ctx: JobContext = {"db": committing_db, "settings": settings, "redis": redis}

    assert await prune_outbox(ctx) == 1

    async with committing_db.connection() as conn:
        remaining = await conn.fetch(
            "SELECT id FROM onewindow.outbox WHERE id = ANY($1::uuid[])", [expired, recent]
        )
    assert [row["id"] for row in remaining] == [recent]
