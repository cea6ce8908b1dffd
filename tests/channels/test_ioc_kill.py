"""A pusher killed (SIGKILL) in the middle of a POST loses nothing: its lease runs out and another
worker delivers the event, still in the incident's order; two workers never send one delivery at
once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from channels import ioc_endpoints, ioc_feed
from channels.ioc_push import Pusher
from onewindow.db import PoolDatabase
from onewindow.events import Envelope
from onewindow.settings import Settings
from tests.channels.ioc_fixtures import Receiver, receiver
from tests.conftest import REPO

__all__ = ["receiver"]  # fixtures

TIMEOUT = 1.0  # the killed worker's lease: this + 5 s


@pytest.fixture
async def feed_tables(committing_db: PoolDatabase) -> AsyncIterator[None]:
    """This test commits: the feed's tables are emptied afterwards."""
    try:
        yield
    finally:
        async with committing_db.connection() as conn:
            await conn.execute(
                "TRUNCATE channels.ioc_delivery_attempts, channels.ioc_deliveries, channels.ioc_events,"
                " channels.ioc_endpoint_secrets, channels.ioc_endpoints"
            )


def reported(
    case_id: uuid.UUID, number: str, topic: str = "grid.case.reported", sequence: int = 1
) -> Envelope:
    """A grid event as the outbox hands it to the feed's subscriber."""
    now = datetime.now(UTC)
    return Envelope(
        id=uuid.uuid4(),
        topic=topic,
        occurred_at=now,
        payload={
            "case_id": str(case_id),
            "number": number,
            "sequence": sequence,
            "status": "registering",
            "at": now.isoformat(),
        },
        attempt=1,
    )


async def states(db: PoolDatabase) -> list[tuple[str, int, str]]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT case_id::text AS case_id, sequence, state FROM channels.ioc_deliveries ORDER BY event_position"
        )
    return [(r["case_id"], r["sequence"], r["state"]) for r in rows]


async def test_a_worker_killed_mid_delivery_loses_nothing(
    committing_db: PoolDatabase,
    database_url: str,
    settings: Settings,
    receiver: Receiver,
    feed_tables: None,
    tmp_path: Path,
) -> None:
    fast = settings.model_copy(update={"ioc_timeout_seconds": TIMEOUT, "ioc_retry_base_seconds": 0.05})
    slow_case, other_case = uuid.uuid4(), uuid.uuid4()
    async with committing_db.transaction() as conn:
        view = await ioc_endpoints.create(
            conn, fast, ioc_endpoints.NewEndpoint(name="IOC", url=receiver.url), by="test"
        )
        for envelope in (
            reported(slow_case, "GC-K-1"),
            reported(slow_case, "GC-K-1", "grid.case.changed", 2),
            reported(other_case, "GC-K-2"),
        ):
            await ioc_feed.record(conn, envelope)
    assert view.new_secret is not None

    receiver.delay = 30.0  # the receiver hangs: the worker is killed while it waits
    log_path = tmp_path / "ioc_worker.log"
    with log_path.open("w") as log:
        worker = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "tests.channels.ioc_worker", database_url, "--timeout", "3"),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        await asyncio.wait_for(receiver.started.wait(), timeout=20)
        os.kill(worker.pid, signal.SIGKILL)
        await asyncio.wait_for(worker.wait(), timeout=10)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    assert worker.returncode == -signal.SIGKILL, log_path.read_text()
    in_flight = {json.loads(r.body)["id"] for r in receiver.received}
    assert await states(committing_db) == [
        (str(slow_case), 1, "pending"),
        (str(slow_case), 2, "pending"),
        (str(other_case), 1, "pending"),
    ]

    receiver.delay = 0.0
    async with httpx.AsyncClient(timeout=5) as client:
        pusher = Pusher(committing_db, fast, client=client)
        # The killed worker's leases still hold: nothing it had claimed is sent twice at once.
        assert await pusher.push_once() == 0
        deadline = asyncio.get_running_loop().time() + 40
        while asyncio.get_running_loop().time() < deadline:
            await pusher.push_once()
            if {s for _, _, s in await states(committing_db)} == {"delivered"}:
                break
            await asyncio.sleep(0.2)
    assert {s for _, _, s in await states(committing_db)} == {"delivered"}, log_path.read_text()
    delivered = [json.loads(r.body) for r in receiver.delivered]
    # Every event arrived (at least once); what was in flight at the kill came again, same id.
    assert {e["id"] for e in delivered} | in_flight == {e["id"] for e in delivered}
    slow = [e["data"]["sequence"] for e in delivered if e["subject"] == "GC-K-1"]
    assert slow == [1, 2]  # the incident's order held across the kill
    async with committing_db.connection() as conn:
        attempts = await conn.fetch("SELECT attempt, outcome FROM channels.ioc_delivery_attempts ORDER BY id")
    # The killed attempt left no outcome; its retry is the delivery's second attempt.
    assert sorted(a["attempt"] for a in attempts if a["outcome"] == "delivered") in ([1, 2, 2], [1, 1, 2])
