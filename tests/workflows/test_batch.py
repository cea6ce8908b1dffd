"""Task actions that arrive together, written together (workflows/batch.py): each still all or
nothing, each with its own answer; never two on one instance or with one key in a transaction."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any
from uuid import UUID, uuid4

import httpx
import msgspec
import pytest

from onewindow import idempotency
from onewindow.db import Connection, PoolDatabase
from onewindow.errors import RuleViolation, Unavailable
from tests.conftest import RollbackDatabase
from tests.workflows.conftest import Subjects, hooks, officer, upload
from tests.workflows.test_engine import PERMIT, joint, start
from tests.workflows.test_http import key
from workflows import engine, store
from workflows.api import ActionResult
from workflows.batch import ActionBatcher


def accept(
    task_id: UUID, *, subject: str = "officer-1", action: str = "accept", comment: str | None = None
) -> engine.TaskAction:
    """An officer of demo/market's action on the task, under a key of its own."""
    claim = idempotency.Claim.of(
        principal=subject, scope="test.act", key=f"k-{task_id}", request=[str(task_id), action, comment]
    )
    return engine.TaskAction(
        task_id=task_id, claim=claim, action=action, actor=officer(subject=subject), comment=comment
    )


async def first_tasks(conn: Connection, count: int, *, prefix: str = "s") -> list[UUID]:
    await upload(conn, PERMIT)
    return [(await start(conn, "permit", f"{prefix}-{n}")).open_tasks[0].id for n in range(count)]


def as_json(value: Any) -> Any:
    """A reply as a client reads it (and as its Idempotency-Key keeps it)."""
    return msgspec.json.decode(msgspec.json.encode(value))


async def action_xmins(conn: Connection, instance_id: UUID | None = None) -> list[int]:
    """The transaction (or savepoint) that wrote each action's history row (of one instance)."""
    rows = await conn.fetch(
        "SELECT xmin::text::bigint AS x FROM workflows.history"
        " WHERE event = 'action' AND ($1::uuid IS NULL OR instance_id = $1)",
        instance_id,
    )
    return [row["x"] for row in rows]


async def test_actions_that_arrive_together_share_a_transaction(
    db: RollbackDatabase, wf: engine.Runtime
) -> None:
    tasks = await first_tasks(db.conn, 12)
    batcher = ActionBatcher(db, most=8, concurrent=1)
    results = await asyncio.gather(*(batcher.act(accept(t)) for t in tasks))
    assert all(isinstance(r, ActionResult) and r.task.status == "completed" for r in results)
    # All twelve were waiting when the drain took its first turn: eight together, then four.
    assert sorted(Counter(await action_xmins(db.conn)).values()) == [4, 8]
    for n in range(12):
        assert await hooks(db.conn, f"s-{n}") == ["transitioned:accept->review"]
    kept = await db.conn.fetchval("SELECT count(*) FROM onewindow.idempotency_keys WHERE scope = 'test.act'")
    assert kept == 12
    again = await asyncio.gather(*(batcher.act(accept(t)) for t in tasks))
    assert all(isinstance(r, idempotency.Stored) for r in again)
    assert [r.reply for r in again if isinstance(r, idempotency.Stored)] == [as_json(r) for r in results]
    assert len(await action_xmins(db.conn)) == 12  # the replays acted on nothing


@pytest.mark.parametrize("refusal", ["no comment", "owner refuses"])
async def test_a_refusal_in_a_batch_is_answered_alone_and_the_others_act(
    db: RollbackDatabase,
    wf: engine.Runtime,
    subjects: Subjects,
    caplog: pytest.LogCaptureFixture,
    refusal: str,
) -> None:
    tasks = await first_tasks(db.conn, 6)
    batcher = ActionBatcher(db, most=8, concurrent=1)
    actions = [accept(t) for t in tasks]
    if refusal == "no comment":
        actions[3] = accept(tasks[3], action="return")  # its comment is required
    else:
        subjects.fail_on = "correction"  # the owner's hook raises, after the earlier hooks wrote
        actions[3] = accept(tasks[3], action="return", comment="The plan is missing.")
    with caplog.at_level(logging.INFO, logger="workflows.batch"):
        results = await asyncio.gather(*(batcher.act(a) for a in actions), return_exceptions=True)
    refused = results.pop(3)
    assert isinstance(refused, RuleViolation if refusal == "no comment" else RuntimeError)
    assert all(isinstance(r, ActionResult) for r in results)
    assert "a batch of 6 rolled back" in caplog.text
    # Nothing twice, nothing of the refused one: one hook call and one history row per action.
    for n in (0, 1, 2, 4, 5):
        assert await hooks(db.conn, f"s-{n}") == ["transitioned:accept->review"]
    assert await hooks(db.conn, "s-3") == []
    assert len(await action_xmins(db.conn)) == 5
    assert (await store.task(db.conn, tasks[3])).status == "open"  # type: ignore[union-attr]


async def test_actions_on_one_instance_never_share_a_transaction(
    db: RollbackDatabase, wf: engine.Runtime, departments: None
) -> None:
    await upload(db.conn, joint("all"))
    started = await start(db.conn, "joint")
    reviews = {t.state: t.id for t in started.open_tasks}
    units = {"market_review": "demo/market", "fire_review": "demo/fire", "urban_review": "demo/urban"}
    batcher = ActionBatcher(db, most=8, concurrent=1)
    others = await first_tasks(db.conn, 1, prefix="other")

    def approve(state: str) -> engine.TaskAction:
        claim = idempotency.Claim.of(principal=state, scope="test.act", key=state, request=[state])
        actor = officer(unit=units[state], subject=state)
        return engine.TaskAction(task_id=reviews[state], claim=claim, action="approve", actor=actor)

    results = await asyncio.gather(
        batcher.act(accept(others[0])), *(batcher.act(approve(state)) for state in units)
    )
    assert all(isinstance(r, ActionResult) for r in results)
    last = results[-1]
    assert isinstance(last, ActionResult)
    assert last.instance.status == "ended"
    assert last.instance.outcome == "approved"
    # The other subject's action shared a transaction with one review; the three reviews had
    # one each (the later ones were put off to the next batch).
    assert len(set(await action_xmins(db.conn, started.id))) == 3
    assert len(set(await action_xmins(db.conn))) == 3


async def test_one_key_twice_in_a_batch_acts_once(db: RollbackDatabase, wf: engine.Runtime) -> None:
    tasks = await first_tasks(db.conn, 5)
    batcher = ActionBatcher(db, most=8, concurrent=1)
    twice = accept(tasks[1])
    results = await asyncio.gather(
        *(batcher.act(a) for a in (accept(tasks[0]), twice, twice, accept(tasks[2])))
    )
    acted, replayed = results[1], results[2]
    assert isinstance(acted, ActionResult)
    assert isinstance(replayed, idempotency.Stored)
    assert replayed.reply == as_json(acted)
    assert await hooks(db.conn, "s-1") == ["transitioned:accept->review"]
    assert len(await action_xmins(db.conn)) == 3
    # One key for two different requests (tasks) in one batch: the first acts, the second is a 422.
    first = accept(tasks[3])
    claim = idempotency.Claim(first.claim.principal, first.claim.scope, first.claim.key, b"another request")
    other = engine.TaskAction(task_id=tasks[4], claim=claim, action="accept", actor=officer())
    clashing = await asyncio.gather(batcher.act(first), batcher.act(other), return_exceptions=True)
    assert isinstance(clashing[0], ActionResult)
    assert isinstance(clashing[1], idempotency.KeyReused)
    assert len(await action_xmins(db.conn)) == 4
    assert await hooks(db.conn, "s-4") == []


async def test_an_action_whose_request_went_away_before_its_batch_never_acts(
    db: RollbackDatabase, wf: engine.Runtime
) -> None:
    tasks = await first_tasks(db.conn, 2)
    batcher = ActionBatcher(db, most=8, concurrent=1)
    kept = asyncio.create_task(batcher.act(accept(tasks[0])))
    gone = asyncio.create_task(batcher.act(accept(tasks[1])))
    await asyncio.sleep(0)  # both queued; the drain has not started
    gone.cancel()
    assert isinstance(await kept, ActionResult)
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert (await store.task(db.conn, tasks[1])).status == "open"  # type: ignore[union-attr]
    assert await hooks(db.conn, "s-1") == []


async def test_batches_on_real_connections_commit_each_action_once(committed: PoolDatabase) -> None:
    """Several batches at once on the pool, racing a second batcher (another process) that
    sends the same keys: every action acts once, every retry gets its first reply."""
    async with committed.transaction() as conn:
        tasks = await first_tasks(conn, 40)
    here = ActionBatcher(committed, most=6, concurrent=3)
    there = ActionBatcher(committed, most=4, concurrent=2)
    sent = [accept(t, subject=f"officer-{n % 3}") for n, t in enumerate(tasks)]
    results = await asyncio.gather(
        *(here.act(a) for a in sent), *(there.act(a) for a in reversed(sent)), return_exceptions=True
    )
    first, second = results[:40], list(reversed(results[40:]))
    for one, other in zip(first, second, strict=True):
        acted = [r for r in (one, other) if isinstance(r, ActionResult)]
        assert len(acted) == 1, (one, other)  # one of the two acted, the other replayed it
        stored = one if isinstance(one, idempotency.Stored) else other
        assert isinstance(stored, idempotency.Stored)
        assert stored.reply == as_json(acted[0])
    async with committed.connection() as conn:
        xmins = await action_xmins(conn)
        assert len(xmins) == 40
        assert len(set(xmins)) < 40  # some shared a transaction
        assert await conn.fetchval("SELECT count(*) FROM workflows.tasks WHERE status = 'completed'") == 40


async def test_many_actions_over_http_at_once(
    http: httpx.AsyncClient, db: RollbackDatabase, bearer: Any
) -> None:
    tasks = await first_tasks(db.conn, 10)
    market = await bearer("o1", ("officer", "demo/market"))
    bodies = [{"action": "accept"}] * 10
    bodies[4] = {"action": "return"}  # no comment: 422 for this one, the others go through
    replies = await asyncio.gather(
        *(
            http.post(f"/api/v1/tasks/{t}/actions", json=body, headers={**market, **key()})
            for t, body in zip(tasks, bodies, strict=True)
        )
    )
    assert [r.status_code for r in replies] == [200] * 4 + [422] + [200] * 5
    assert replies[4].headers["content-type"] == "application/problem+json"
    assert all(r.json()["task"]["status"] == "completed" for r in replies if r.status_code == 200)
    assert len(await action_xmins(db.conn)) == 9


class Unreachable:
    """A `Database` whose server is down: no connection, no transaction."""

    def __init__(self) -> None:
        self.attempts = 0

    async def __aenter__(self) -> Connection:
        self.attempts += 1
        raise Unavailable("The database cannot be reached; try again shortly.")

    async def __aexit__(self, *exc: object) -> None:
        return None

    def transaction(self) -> Unreachable:
        return self

    def connection(self) -> Unreachable:
        return self

    async def close(self) -> None:
        return None


async def test_a_batch_without_a_database_answers_503_at_once() -> None:
    """No connection for a batch: every action in it is a 503 at once, not one wait after another."""
    down = Unreachable()
    batcher = ActionBatcher(down, most=8, concurrent=1)
    results = await asyncio.gather(*(batcher.act(accept(uuid4())) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, Unavailable) for r in results)
    assert down.attempts == 1
