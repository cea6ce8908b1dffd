"""Races on real, separate connections whose transactions commit: one winner, nothing twice."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from onewindow import idempotency
from onewindow.db import PoolDatabase
from onewindow.errors import Conflict
from onewindow.worker import cron_jobs
from tests.workflows.conftest import Clock, officer, upload
from tests.workflows.test_engine import PERMIT, local
from workflows import engine, store
from workflows.api import ActionResult, Actor
from workflows.jobs import fire_deadlines


async def test_two_officers_act_at_once_and_one_wins(committed: PoolDatabase) -> None:
    async with committed.transaction() as conn:
        await upload(conn, PERMIT)
        started = await engine.start(
            conn, subject_kind="test", subject_id="race", definition_key="permit", actor=Actor.system()
        )
    task_id = started.open_tasks[0].id

    async def act(who: str) -> str:
        try:
            async with committed.transaction() as conn:
                await engine.act(conn, task_id, action="accept", actor=officer(subject=who))
                await asyncio.sleep(0.05)  # hold the lock a little: the other must wait, then lose
            return "won"
        except Conflict:
            return "409"

    results = await asyncio.gather(act("one"), act("two"), act("three"))
    assert sorted(results) == ["409", "409", "won"]
    async with committed.connection() as conn:
        history = await store.history(conn, started.id)
        tasks = await store.instance_tasks(conn, started.id)
    assert [h.event for h in history] == ["started", "action"]
    assert sorted((t.state, t.status) for t in tasks) == [("accept", "completed"), ("review", "open")]


async def test_two_timer_scans_fire_each_escalation_once(committed: PoolDatabase, clock: Clock) -> None:
    clock.now = local(2026, 9, 28, 10, 0)
    async with committed.transaction() as conn:
        await upload(conn, PERMIT)
        ids = []
        for n in range(20):
            started = await engine.start(
                conn,
                subject_kind="test",
                subject_id=f"late-{n}",
                definition_key="permit",
                actor=Actor.system(),
            )
            ids.append(started.id)
    clock.now = local(2026, 10, 30, 10, 0)  # long after every deadline: the worker was away

    async def scan() -> int:
        total = 0
        while True:
            async with committed.transaction() as conn:
                fired = await engine.fire_due_timers(conn, limit=7)
            total += fired
            if fired == 0:
                async with committed.connection() as conn:
                    left = await conn.fetchval(
                        "SELECT count(*) FROM workflows.timers WHERE fired_at IS NULL AND fire_at <= $1",
                        clock.now,
                    )
                if left == 0:
                    return total

    totals = await asyncio.gather(scan(), scan())
    # Per instance: the accept task's warning and breach, the instance's warning and breach.
    assert sum(totals) == 20 * 4
    async with committed.connection() as conn:
        breached = await conn.fetchval(
            "SELECT count(*) FROM workflows.history WHERE event = 'deadline_breached'"
        )
    assert breached == 40


async def test_the_worker_job_catches_up_in_batches(committed: PoolDatabase, clock: Clock) -> None:
    clock.now = local(2026, 9, 28, 10, 0)
    async with committed.transaction() as conn:
        await upload(conn, PERMIT)
        for n in range(60):
            await engine.start(
                conn,
                subject_kind="test",
                subject_id=f"job-{n}",
                definition_key="permit",
                actor=Actor.system(),
            )
    clock.now = local(2026, 10, 30, 10, 0)
    assert await fire_deadlines({"db": committed}) == 60 * 4
    assert await fire_deadlines({"db": committed}) == 0
    assert any(job.coroutine is fire_deadlines for job in cron_jobs())


async def test_one_idempotency_key_sent_twice_at_once_acts_once(committed: PoolDatabase) -> None:
    """The second request with a key waits for the first's transaction: committed, it gets the
    first reply (nothing acts twice); rolled back, it goes ahead as the first."""
    async with committed.transaction() as conn:
        await upload(conn, PERMIT)
        started = await engine.start(
            conn, subject_kind="test", subject_id="retry", definition_key="permit", actor=Actor.system()
        )
    task_id = started.open_tasks[0].id
    claim = idempotency.Claim.of(principal="one", scope="test.act", key="k-1", request=[str(task_id)])

    class Crash(Exception):
        pass

    async def send(*, hold: float, crash: bool = False) -> Any:
        async with committed.transaction() as conn:
            result = await engine.act_once(
                conn,
                engine.TaskAction(
                    task_id=task_id, claim=claim, action="accept", actor=officer(subject="one")
                ),
            )
            await asyncio.sleep(hold)  # the retry arrives meanwhile and must wait
            if crash:
                raise Crash
        return result

    async def retry() -> Any:
        await asyncio.sleep(0.05)
        return await send(hold=0)

    results: tuple[Any, Any] = await asyncio.gather(
        send(hold=0.3, crash=True), retry(), return_exceptions=True
    )
    crashed, acted = results
    assert isinstance(crashed, Crash)
    assert isinstance(acted, ActionResult)  # the first rolled back: the retry acted
    again, replay = await asyncio.gather(send(hold=0.3), retry())
    assert isinstance(again, idempotency.Stored)  # ... and its reply is what later sends get
    assert isinstance(replay, idempotency.Stored)
    assert replay.reply == msgspec.json.decode(msgspec.json.encode(acted))
    async with committed.connection() as conn:
        history = await store.history(conn, started.id)
    assert [h.event for h in history] == ["started", "action"]
    other = idempotency.Claim.of(principal="one", scope="test.act", key="k-1", request=["another"])
    async with committed.transaction() as conn:
        with pytest.raises(idempotency.KeyReused):
            await engine.act_once(
                conn,
                engine.TaskAction(
                    task_id=task_id, claim=other, action="accept", actor=officer(subject="one")
                ),
            )
