"""The transactional outbox on a real PostgreSQL: what is promised in DESIGN.md "Events".

Most tests need transactions that really commit (NOTIFY, SKIP LOCKED, a second process), so
they use `committing_db`, which empties the outbox afterwards. They inspect the tables through
connections of that pool, never through the rolled-back `conn` fixture: a read there would hold
a lock until after `committing_db`'s TRUNCATE, which would then wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import msgspec
import pytest

from onewindow.db import Connection, PoolDatabase, connect
from onewindow.events import Envelope, Event, Subscription
from onewindow.outbox import Drainer, DrainPolicy, backlog, drain_once, prune, publish
from tests import outbox_worker

REPO = Path(__file__).resolve().parent.parent

# A long first retry, so a failed event is certainly not due again until a test makes it so.
POLICY = DrainPolicy(retry_base_seconds=60.0)


class CaseClosed(Event, frozen=True, kw_only=True):
    topic = "grid.case.closed"
    case_id: UUID
    district: str


class PermitGranted(Event, frozen=True, kw_only=True):
    topic = "services.permit.granted"
    permit: str


class Recorder:
    """A subscriber that remembers every envelope it is handed and fails its first `failures` calls."""

    def __init__(self, name: str, topics: tuple[str, ...] = ("*",), *, failures: int = 0) -> None:
        self.name = name
        self.topics = topics
        self.failures = failures
        self.calls: list[Envelope] = []

    async def __call__(self, conn: Connection, envelope: Envelope) -> None:
        self.calls.append(envelope)
        if self.failures:
            self.failures -= 1
            raise RuntimeError(f"{self.name} is down")

    @property
    def subscription(self) -> Subscription:
        return Subscription(self.name, self, self.topics)


async def publish_committed(db: PoolDatabase, *events: Event) -> list[UUID]:
    async with db.transaction() as conn:
        return [await publish(conn, event) for event in events]


async def outbox_row(db: PoolDatabase, event_id: UUID) -> asyncpg.Record:
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT state, attempts, last_error, delivered_at,"
            " extract(epoch FROM next_attempt_at - now())::float8 AS due_in"
            " FROM onewindow.outbox WHERE id = $1",
            event_id,
        )
    assert row is not None, f"event {event_id} is not in the outbox"
    return row


async def delivered_to(db: PoolDatabase, event_id: UUID) -> list[str]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT subscriber FROM onewindow.outbox_deliveries WHERE event_id = $1 ORDER BY subscriber",
            event_id,
        )
    return [row["subscriber"] for row in rows]


async def make_due(db: PoolDatabase, event_id: UUID) -> None:
    """Skip the retry back-off instead of waiting for it."""
    async with db.connection() as conn:
        await conn.execute("UPDATE onewindow.outbox SET next_attempt_at = now() WHERE id = $1", event_id)


async def wait_until(condition: Callable[[], Awaitable[bool]], within: float) -> bool:
    """Poll `condition` until it holds or `within` seconds have passed; whether it held."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.02)
    return await condition()


def a_case() -> CaseClosed:
    return CaseClosed(case_id=uuid4(), district="Kreuzberg")


async def test_event_published_in_a_rolled_back_transaction_is_never_delivered(
    committing_db: PoolDatabase,
) -> None:
    """The event and the change it announces share a transaction: no change, no event."""
    subscriber = Recorder("everything")
    async with committing_db.connection() as conn:
        transaction = conn.transaction()
        await transaction.start()
        event_id = await publish(conn, a_case())
        # The row really was written, so what follows is the rollback's doing.
        assert await conn.fetchval("SELECT count(*) FROM onewindow.outbox WHERE id = $1", event_id) == 1
        await transaction.rollback()

    assert await drain_once(committing_db, [subscriber.subscription], POLICY) == 0
    assert subscriber.calls == []
    async with committing_db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM onewindow.outbox") == 0


async def test_committed_event_is_delivered_once_to_each_matching_subscriber(
    committing_db: PoolDatabase,
) -> None:
    grid = Recorder("grid-feed", ("grid.*",))
    everything = Recorder("audit", ("*",))
    services = Recorder("permits", ("services.*",))
    exact = Recorder("case-closed", ("other.topic", "grid.case.closed"))
    nobody = Recorder("nobody", ("grid", "grid.case", "Grid.*"))  # a pattern matches the whole topic
    subscribers = (grid, everything, services, exact, nobody)
    case, permit = a_case(), PermitGranted(permit="B-2024-17")
    case_id, permit_id = await publish_committed(committing_db, case, permit)

    assert await drain_once(committing_db, [s.subscription for s in subscribers], POLICY) == 2

    def received(subscriber: Recorder) -> list[tuple[UUID, str, int]]:
        return sorted((e.id, e.topic, e.attempt) for e in subscriber.calls)

    assert received(grid) == received(exact) == [(case_id, "grid.case.closed", 1)]
    assert received(services) == [(permit_id, "services.permit.granted", 1)]
    assert received(everything) == sorted(
        [(case_id, "grid.case.closed", 1), (permit_id, "services.permit.granted", 1)]
    )
    assert nobody.calls == []
    # The payload converts back to the event that was published.
    assert msgspec.convert(grid.calls[0].payload, CaseClosed) == case
    assert msgspec.convert(services.calls[0].payload, PermitGranted) == permit

    for event_id in (case_id, permit_id):
        row = await outbox_row(committing_db, event_id)
        assert row["state"] == "delivered"
        assert row["delivered_at"] is not None
        assert (row["attempts"], row["last_error"]) == (1, None)
    assert await delivered_to(committing_db, case_id) == ["audit", "case-closed", "grid-feed"]
    assert await delivered_to(committing_db, permit_id) == ["audit", "permits"]

    # Delivered means done: another drain hands nothing to anybody.
    assert await drain_once(committing_db, [s.subscription for s in subscribers], POLICY) == 0
    assert [len(s.calls) for s in subscribers] == [1, 2, 1, 1, 0]


async def test_failed_subscriber_is_retried_with_back_off_and_alone(committing_db: PoolDatabase) -> None:
    flaky = Recorder("flaky", failures=2)
    steady = Recorder("steady")
    subscriptions = [flaky.subscription, steady.subscription]
    [event_id] = await publish_committed(committing_db, a_case())

    assert await drain_once(committing_db, subscriptions, POLICY) == 1
    row = await outbox_row(committing_db, event_id)
    assert row["state"] == "pending"
    assert row["attempts"] == 1
    assert "flaky" in row["last_error"]
    assert "steady" not in row["last_error"]
    assert row["delivered_at"] is None
    assert 50 < row["due_in"] <= 60  # retry_base_seconds
    assert await delivered_to(committing_db, event_id) == ["steady"]
    # Not due yet, so not claimed.
    assert await drain_once(committing_db, subscriptions, POLICY) == 0
    assert len(flaky.calls) == 1

    await make_due(committing_db, event_id)
    assert await drain_once(committing_db, subscriptions, POLICY) == 1
    row = await outbox_row(committing_db, event_id)
    assert (row["state"], row["attempts"]) == ("pending", 2)
    assert 110 < row["due_in"] <= 120  # the delay doubles

    await make_due(committing_db, event_id)
    assert await drain_once(committing_db, subscriptions, POLICY) == 1
    row = await outbox_row(committing_db, event_id)
    assert (row["state"], row["attempts"], row["last_error"]) == ("delivered", 3, None)
    assert row["delivered_at"] is not None
    assert [envelope.attempt for envelope in flaky.calls] == [1, 2, 3]
    assert {envelope.id for envelope in flaky.calls} == {event_id}
    # Its delivery was recorded on the first pass, so the retries left it alone.
    assert len(steady.calls) == 1
    assert await delivered_to(committing_db, event_id) == ["flaky", "steady"]


async def test_event_is_dead_lettered_after_max_attempts(committing_db: PoolDatabase) -> None:
    broken = Recorder("broken", failures=1_000)
    policy = DrainPolicy(max_attempts=3, retry_base_seconds=60.0)
    [event_id] = await publish_committed(committing_db, a_case())

    for attempt in (1, 2, 3):
        assert await drain_once(committing_db, [broken.subscription], policy) == 1
        row = await outbox_row(committing_db, event_id)
        assert row["attempts"] == attempt
        assert row["state"] == ("dead" if attempt == 3 else "pending")
        await make_due(committing_db, event_id)

    # Even when due, a dead letter is not claimed again: it waits for an operator.
    assert await drain_once(committing_db, [broken.subscription], policy) == 0
    assert len(broken.calls) == 3
    row = await outbox_row(committing_db, event_id)
    assert row["state"] == "dead"
    assert "broken: RuntimeError: broken is down" in row["last_error"]
    assert row["delivered_at"] is None
    async with committing_db.connection() as conn:
        assert await backlog(conn) == (0, 1)


async def test_retry_delay_is_capped_however_often_an_event_failed(committing_db: PoolDatabase) -> None:
    """A long-failing event must not jam the drainer: 2.0 ** 1024 overflows a float, and the
    error would roll back every batch that event is claimed in, for ever."""
    broken = Recorder("broken", failures=1)
    policy = DrainPolicy(max_attempts=5_000, retry_base_seconds=2.0)
    [event_id] = await publish_committed(committing_db, a_case())
    async with committing_db.connection() as conn:
        await conn.execute("UPDATE onewindow.outbox SET attempts = 1100 WHERE id = $1", event_id)

    assert await drain_once(committing_db, [broken.subscription], policy) == 1

    row = await outbox_row(committing_db, event_id)
    assert (row["state"], row["attempts"]) == ("pending", 1101)
    assert 3590 < row["due_in"] <= 3600  # the one-hour cap


@pytest.fixture
async def writes_table(committing_db: PoolDatabase) -> AsyncIterator[str]:
    """A table subscribers write to through the drainer's connection; dropped afterwards."""
    table = "public.outbox_test_writes"
    async with committing_db.connection() as conn:
        await conn.execute(f"CREATE TABLE {table} (event_id uuid NOT NULL, subscriber text NOT NULL)")
    try:
        yield table
    finally:
        async with committing_db.connection() as conn:
            await conn.execute(f"DROP TABLE IF EXISTS {table}")


async def test_subscriber_writes_commit_with_its_success_and_roll_back_with_its_failure(
    committing_db: PoolDatabase, writes_table: str
) -> None:
    """Each subscriber runs in a savepoint, so a failing one (even with a database error that
    aborts the transaction) takes back only its own writes, and the batch goes on."""

    async def fails_first_in_sql(conn: Connection, envelope: Envelope) -> None:
        await conn.execute(f"INSERT INTO {writes_table} VALUES ($1, 'sql-fails')", envelope.id)
        if envelope.attempt == 1:
            # A database error aborts the transaction: only the savepoint brings it back.
            await conn.execute("SELECT 1 / 0")

    async def writer(conn: Connection, envelope: Envelope) -> None:
        await conn.execute(f"INSERT INTO {writes_table} VALUES ($1, 'writer')", envelope.id)

    # The failing one goes first, so the writer and the outbox update run after the abort.
    subscriptions = [Subscription("sql-fails", fails_first_in_sql), Subscription("writer", writer)]
    [event_id] = await publish_committed(committing_db, a_case())

    async def written() -> list[str]:
        async with committing_db.connection() as conn:
            rows = await conn.fetch(
                f"SELECT subscriber FROM {writes_table} WHERE event_id = $1 ORDER BY subscriber", event_id
            )
        return [row["subscriber"] for row in rows]

    assert await drain_once(committing_db, subscriptions, POLICY) == 1
    assert await written() == ["writer"]
    row = await outbox_row(committing_db, event_id)
    assert (row["state"], row["attempts"]) == ("pending", 1)
    assert "sql-fails: DivisionByZeroError" in row["last_error"]
    assert await delivered_to(committing_db, event_id) == ["writer"]

    await make_due(committing_db, event_id)
    assert await drain_once(committing_db, subscriptions, POLICY) == 1
    assert await written() == ["sql-fails", "writer"]
    assert (await outbox_row(committing_db, event_id))["state"] == "delivered"


@pytest.fixture
async def kill_tables(committing_db: PoolDatabase) -> AsyncIterator[None]:
    """The ledger and invocation count of tests/outbox_worker.py; dropped afterwards."""
    async with committing_db.connection() as conn:
        await conn.execute(
            f"CREATE TABLE {outbox_worker.LEDGER} (event_id uuid NOT NULL);"
            f" CREATE TABLE {outbox_worker.INVOCATIONS} (event_id uuid NOT NULL, pid integer NOT NULL)"
        )
    try:
        yield
    finally:
        async with committing_db.connection() as conn:
            await conn.execute(
                f"DROP TABLE IF EXISTS {outbox_worker.LEDGER}; DROP TABLE IF EXISTS {outbox_worker.INVOCATIONS}"
            )


class KillTestEvent(Event, frozen=True, kw_only=True):
    topic = outbox_worker.TOPIC
    n: int


async def test_worker_killed_mid_batch_loses_nothing_and_duplicates_nothing(
    committing_db: PoolDatabase, database_url: str, kill_tables: None, tmp_path: Path
) -> None:
    """DESIGN.md: nothing is lost if a process dies, and a consumer keeping its state in
    PostgreSQL sees each event once, because its writes commit with the delivery record."""
    events = 60
    event_ids = await publish_committed(committing_db, *(KillTestEvent(n=n) for n in range(events)))

    async def count(sql: str) -> int:
        async with committing_db.connection() as conn:
            value: int = await conn.fetchval(sql)
        return value

    def invocations() -> Awaitable[int]:
        return count(f"SELECT count(*) FROM {outbox_worker.INVOCATIONS}")

    def delivered() -> Awaitable[int]:
        return count("SELECT count(*) FROM onewindow.outbox WHERE state = 'delivered'")

    async def mid_second_batch() -> bool:
        return await invocations() >= outbox_worker.BATCH_SIZE * 3 // 2

    log_path = tmp_path / "outbox_worker.log"
    with log_path.open("w") as log:
        worker = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "tests.outbox_worker", database_url, "--delay", "0.05"),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        # Half-way through the second batch: the first is committed, the second is not.
        started = await wait_until(mid_second_batch, within=15)
        os.kill(worker.pid, signal.SIGKILL)
        await asyncio.wait_for(worker.wait(), timeout=10)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    assert started, f"the drainer did not get going:\n{log_path.read_text()}"
    assert worker.returncode == -signal.SIGKILL
    delivered_at_kill = await delivered()
    invoked_at_kill = await invocations()
    assert delivered_at_kill < events, "the drainer finished before it was killed"
    assert invoked_at_kill > delivered_at_kill  # the killed batch had started

    # Another drainer takes over (the killed one's locks go with its connection).
    counter = await connect(database_url)
    try:
        subscriptions = [outbox_worker.ledger_subscription(counter, delay=0)]
        policy = DrainPolicy(batch_size=outbox_worker.BATCH_SIZE)

        async def drained() -> bool:
            await drain_once(committing_db, subscriptions, policy)
            return await delivered() == events

        assert await wait_until(drained, within=15)
    finally:
        await counter.close()

    async with committing_db.connection() as conn:
        ledger = [row["event_id"] for row in await conn.fetch(f"SELECT event_id FROM {outbox_worker.LEDGER}")]
        states = await conn.fetch(
            "SELECT state, count(*) FROM onewindow.outbox WHERE id = ANY($1::uuid[]) GROUP BY state",
            event_ids,
        )
        recorded = await conn.fetchval(
            "SELECT count(*) FROM onewindow.outbox_deliveries WHERE subscriber = $1", outbox_worker.SUBSCRIBER
        )
    assert sorted(ledger) == sorted(event_ids)  # every event exactly once
    assert [(row["state"], row["count"]) for row in states] == [("delivered", events)]
    assert recorded == events
    # The events of the killed batch were handed over twice, yet recorded once.
    assert await invocations() > events


async def test_concurrent_drainers_never_deliver_an_event_twice(committing_db: PoolDatabase) -> None:
    """Several workers may drain at once; SKIP LOCKED must split the rows between them, and
    without blocking one behind the other."""
    both_busy = asyncio.Event()
    handled_by: dict[UUID, list[int]] = {}
    drainers_seen: set[int] = set()
    overlapped: list[bool] = []

    async def handler(conn: Connection, envelope: Envelope) -> None:
        first = not drainers_seen
        drainers_seen.add(conn.get_server_pid())
        if len(drainers_seen) == 2:
            both_busy.set()
        if first:
            # The very first call waits for the other drainer to reach a handler while this batch
            # is still open: with SKIP LOCKED its claim passes over the locked rows; with a plain
            # FOR UPDATE it would queue behind them and this wait would time out.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(both_busy.wait(), timeout=3)
                overlapped.append(True)
        handled_by.setdefault(envelope.id, []).append(conn.get_server_pid())
        await asyncio.sleep(0.002)

    subscriptions = [Subscription("counter", handler)]
    policy = DrainPolicy(batch_size=10)
    event_ids = await publish_committed(committing_db, *(a_case() for _ in range(60)))

    async def drain_all() -> int:
        claimed = 0
        while batch := await drain_once(committing_db, subscriptions, policy):
            claimed += batch
        return claimed

    claimed = await asyncio.gather(drain_all(), drain_all())

    assert overlapped, "the two drainers never worked at the same time"
    assert sum(claimed) == len(event_ids)
    assert sorted(handled_by) == sorted(event_ids)
    twice = {event_id: pids for event_id, pids in handled_by.items() if len(pids) > 1}
    assert twice == {}
    assert len({pid for pids in handled_by.values() for pid in pids}) == 2


async def _listening(db: PoolDatabase) -> int:
    async with db.connection() as conn:
        value: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND query LIKE 'LISTEN%onewindow_outbox%'"
        )
    return value


async def test_notify_wakes_the_drainer(committing_db: PoolDatabase, database_url: str) -> None:
    """An event goes out as soon as it is committed, not at the next sweep (30 s here)."""
    subscriber = Recorder("woken")
    drainer = Drainer(committing_db, database_url, [subscriber.subscription], POLICY, sweep_seconds=30)
    task = asyncio.create_task(drainer.run())

    async def delivered(event_id: UUID) -> bool:
        state: str = (await outbox_row(committing_db, event_id))["state"]
        return state == "delivered"

    try:
        # The first event may be found by the drainer's start-up drain; once it is delivered the
        # drainer is listening and then waits out its 30 s sweep.
        [first] = await publish_committed(committing_db, a_case())
        assert await wait_until(lambda: delivered(first), within=5)
        await asyncio.sleep(0.3)
        assert not task.done()

        [second] = await publish_committed(committing_db, a_case())
        started = time.monotonic()
        assert await wait_until(lambda: delivered(second), within=2), "NOTIFY did not wake the drainer"
        assert time.monotonic() - started < 2
        assert [envelope.id for envelope in subscriber.calls] == [first, second]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()

    # Cancelling closed its LISTEN connection.
    async def stopped_listening() -> bool:
        return await _listening(committing_db) == 0

    assert await wait_until(stopped_listening, within=3)


async def _insert(
    conn: Connection, *, state: str, age_days: int, delivered_days_ago: int | None = None
) -> UUID:
    event_id: UUID = await conn.fetchval(
        "INSERT INTO onewindow.outbox (topic, payload, occurred_at, state, attempts, delivered_at)"
        " VALUES ('test.prune.event', $1, now() - make_interval(days => $2), $3, 1,"
        " now() - make_interval(days => $4)) RETURNING id",
        {},
        age_days,
        state,
        delivered_days_ago,
    )
    return event_id


async def test_prune_deletes_only_delivered_events_past_the_retention(conn: Connection) -> None:
    old_delivered = await _insert(conn, state="delivered", age_days=40, delivered_days_ago=40)
    await conn.execute(
        "INSERT INTO onewindow.outbox_deliveries (event_id, subscriber) VALUES ($1, 'x')", old_delivered
    )
    kept = [
        await _insert(conn, state="delivered", age_days=40, delivered_days_ago=10),
        await _insert(conn, state="dead", age_days=40),
        await _insert(conn, state="pending", age_days=40),
    ]

    assert await prune(conn, older_than_days=30) == 1

    remaining = await conn.fetch("SELECT id FROM onewindow.outbox")
    assert sorted(row["id"] for row in remaining) == sorted(kept)
    assert await conn.fetchval("SELECT count(*) FROM onewindow.outbox_deliveries") == 0
    assert await prune(conn, older_than_days=30) == 0
