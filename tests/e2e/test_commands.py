"""`onewindow seed` and `onewindow worker` as an operator runs them, against a real database."""

from __future__ import annotations

import secrets
import signal
import time
from pathlib import Path
from typing import ClassVar

import asyncpg
import pytest

from onewindow.db import connect
from onewindow.events import Event
from onewindow.outbox import publish
from tests.conftest import TEST_SECRET, clean_env, stop
from tests.e2e.conftest import Child, launch, run_async, run_command

pytestmark = pytest.mark.e2e


class WorkerPing(Event, frozen=True, kw_only=True):
    topic: ClassVar[str] = "e2e.worker.ping"
    n: int


def test_seed_demo_twice_on_a_fresh_database_succeeds_both_times(
    empty_database: str, servers: tuple[str, str], tmp_path: Path
) -> None:
    """The seed migrates a database that has nothing yet, and a second run changes nothing and
    does not fail (operators re-run it; `serve --demo` runs it on every start)."""
    env = clean_env(DATABASE_URL=empty_database, REDIS_URL=servers[1], ONEWINDOW_DATA_DIR=str(tmp_path))
    for attempt in (1, 2):
        result = run_command(["seed", "--demo"], env)
        assert result.returncode == 0, f"run {attempt}: {result.stderr}"
        assert "demo city seeded" in result.stdout
        assert "Traceback" not in result.stderr
    assert run_async(_applied_migrations(empty_database)) >= 1


async def _applied_migrations(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM public.schema_migrations")
    finally:
        await conn.close()
    return count


async def _listening(url: str) -> bool:
    """Whether a OneWindow connection to this database has issued its LISTEN."""
    conn = await asyncpg.connect(url)
    try:
        found: bool = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'onewindow' AND query ILIKE 'LISTEN%')"
        )
    finally:
        await conn.close()
    return found


async def _publish(url: str) -> str:
    conn = await connect(url)
    try:
        async with conn.transaction():
            event_id = await publish(conn, WorkerPing(n=1))
    finally:
        await conn.close()
    return str(event_id)


async def _state(url: str, event_id: str) -> str | None:
    conn = await asyncpg.connect(url)
    try:
        state: str | None = await conn.fetchval(
            "SELECT state FROM onewindow.outbox WHERE id = $1::uuid", event_id
        )
    finally:
        await conn.close()
    return state


async def _forget(url: str, event_id: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DELETE FROM onewindow.outbox WHERE id = $1::uuid", event_id)
    finally:
        await conn.close()


def _wait_listening(url: str, worker: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            pytest.fail(f"the worker exited with {worker.process.returncode}:\n{worker.output()}")
        if run_async(_listening(url)):
            return
        time.sleep(0.1)
    pytest.fail(f"the worker did not LISTEN within {timeout} s:\n{worker.output()}")


def test_worker_delivers_a_committed_event_on_notify_and_stops_on_sigterm(
    migrated_database: str, servers: tuple[str, str], tmp_path: Path
) -> None:
    """The sweep is set to a minute, so delivery within seconds can only come from NOTIFY."""
    env = clean_env(
        DATABASE_URL=migrated_database,
        REDIS_URL=servers[1],
        ONEWINDOW_DATA_DIR=str(tmp_path),
        ONEWINDOW_OUTBOX_SWEEP_SECONDS="60",
        # A queue of its own, so a shared Redis's other users are not disturbed.
        ONEWINDOW_QUEUE_NAME=f"onewindow:e2e:{secrets.token_hex(4)}",
        ONEWINDOW_LOG_FORMAT="text",
    )
    worker = launch(["worker"], env, tmp_path / "worker.log")
    event_id = None
    try:
        _wait_listening(migrated_database, worker, timeout=30)
        # The drainer drains once right after it starts listening; let that pass, so the event
        # below is not simply caught by that first drain.
        time.sleep(0.5)
        event_id = run_async(_publish(migrated_database))
        deadline = time.monotonic() + 5
        state = run_async(_state(migrated_database, event_id))
        while state != "delivered" and time.monotonic() < deadline:
            time.sleep(0.1)
            state = run_async(_state(migrated_database, event_id))
        assert state == "delivered", worker.output()
        assert worker.process.poll() is None
        assert stop(worker.process, signal.SIGTERM) == 0, worker.output()
    finally:
        stop(worker.process, signal.SIGTERM)
        if event_id is not None:
            run_async(_forget(migrated_database, event_id))


def test_keys_rotate_makes_a_new_active_key_and_keeps_the_old_one_published(
    migrated_database: str, servers: tuple[str, str], tmp_path: Path
) -> None:
    env = clean_env(
        DATABASE_URL=migrated_database,
        REDIS_URL=servers[1],
        ONEWINDOW_DATA_DIR=str(tmp_path),
        ONEWINDOW_SECRET_KEY=TEST_SECRET,
    )
    not_due = run_command(["keys", "rotate", "--if-due"], env)
    assert not_due.returncode == 0, not_due.stderr
    assert "not due" in not_due.stdout
    rotated = run_command(["keys", "rotate"], env)
    assert rotated.returncode == 0, rotated.stderr
    kid = rotated.stdout.strip().rsplit(" ", 1)[-1]

    async def keys() -> list[tuple[str, bool, bool]]:
        conn = await connect(migrated_database)
        try:
            rows = await conn.fetch(
                "SELECT kid, retired_at IS NULL AS active, unpublish_after IS NOT NULL AS leaving"
                " FROM identity.signing_keys ORDER BY created_at"
            )
            return [(r["kid"], r["active"], r["leaving"]) for r in rows]
        finally:
            await conn.close()

    found = run_async(keys())
    assert len(found) == 2
    assert found[1] == (kid, True, False)
    assert found[0][1:] == (False, True)
