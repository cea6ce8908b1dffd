"""A real outbox drainer in a process of its own, for the kill test in tests/test_outbox.py.

The test SIGKILLs this process in the middle of a batch, so what it proves must not depend on
anything this process could clean up: the subscriber writes its ledger row through the
drainer's `conn` (it commits only with the batch) and counts each invocation through a separate
autocommit connection (that count survives the kill and shows the redelivery).

Run as `python -m tests.outbox_worker DSN` from the repository root; it drains until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import os

import asyncpg

from onewindow.db import Connection, PoolDatabase, connect
from onewindow.events import Envelope, Subscription
from onewindow.outbox import DrainPolicy, drain_once
from onewindow.settings import load_settings

TOPIC = "test.kill.ping"
SUBSCRIBER = "kill-test-ledger"
# Deliberately without a unique key: a redelivery that was committed twice shows up as two rows.
LEDGER = "public.outbox_kill_ledger"
INVOCATIONS = "public.outbox_kill_invocations"
BATCH_SIZE = 20


def ledger_subscription(counter: asyncpg.Connection[asyncpg.Record], *, delay: float) -> Subscription:
    """The subscriber: count the call outside the batch, work a little, record the event in it."""

    async def record(conn: Connection, envelope: Envelope) -> None:
        await counter.execute(
            f"INSERT INTO {INVOCATIONS} (event_id, pid) VALUES ($1, $2)", envelope.id, os.getpid()
        )
        await asyncio.sleep(delay)
        await conn.execute(f"INSERT INTO {LEDGER} (event_id) VALUES ($1)", envelope.id)

    return Subscription(SUBSCRIBER, record, topics=("test.kill.*",))


async def main(dsn: str, delay: float) -> None:
    db = await PoolDatabase.open(load_settings(database_url=dsn, db_pool_max=2), dsn)
    counter = await connect(dsn)
    subscriptions = [ledger_subscription(counter, delay=delay)]
    policy = DrainPolicy(batch_size=BATCH_SIZE)
    while True:
        if not await drain_once(db, subscriptions, policy):
            await asyncio.sleep(0.02)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dsn")
    parser.add_argument("--delay", type=float, default=0.05)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.dsn, arguments.delay))
