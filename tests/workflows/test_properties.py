"""Random valid action sequences never break the engine's invariants (hypothesis)."""

from __future__ import annotations

import itertools
from collections import Counter
from uuid import UUID

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onewindow.db import Connection
from tests.workflows.conftest import Clock, upload
from workflows import engine, store
from workflows.api import Actor

PROPERTY = """
key: prop
name: Every kind of state
start: accept
deadline: P5D
states:
  accept:
    type: task
    role: officer
    unit: owner
    deadline: P1D
    actions:
      forward: {target: reviews}
      return: {target: fix, require: [comment]}
      refuse: {target: refused}
  fix:
    type: wait
    reason: correction
    actions:
      resubmit: {target: accept}
      withdraw: {target: withdrawn}
  reviews:
    type: parallel
    branches: {a: a_check, b: b_check, c: c_check}
    join: 2_of_3
    next: {approved: sign, rejected: refused}
  a_check:
    type: task
    role: officer
    unit: owner
    deadline: P2D
    actions:
      ok: {target: a_review}
      return: {target: a_fix}
  a_fix:
    type: wait
    reason: correction
    actions:
      resubmit: {target: a_check}
  a_review:
    type: task
    role: officer
    unit: owner
    actions:
      approve: {target: reviews, outcome: approved}
      reject: {target: reviews, outcome: rejected}
      back: {target: a_check}
  b_check:
    type: task
    role: officer
    unit: owner
    actions:
      approve: {target: reviews, outcome: approved}
      reject: {target: reviews, outcome: rejected}
  c_check:
    type: task
    role: officer
    unit: owner
    actions:
      approve: {target: reviews, outcome: approved}
      reject: {target: reviews, outcome: rejected}
  sign:
    type: task
    role: officer
    unit: owner
    actions:
      sign: {target: approved}
      back: {target: accept}
  approved: {type: end, outcome: approved}
  refused: {type: end, outcome: refused}
  withdrawn: {type: end, outcome: withdrawn}
"""

_subjects = itertools.count()
_moves = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 30)), max_size=30)


async def check_invariants(conn: Connection, instance_id: UUID) -> None:
    instance = await store.instance(conn, instance_id)
    assert instance is not None
    tasks = await store.instance_tasks(conn, instance_id)
    tokens = {t.id: t for t in await store.tokens(conn, instance_id)}
    history = await store.history(conn, instance_id)
    open_tasks = [t for t in tasks if t.status == "open"]
    # Running: at least one open task; ended: none, and exactly one end in the history.
    if instance.status == "running":
        assert open_tasks, "a running instance with nothing to do"
        assert not any(h.event == "ended" for h in history)
    else:
        assert not open_tasks
        assert [h.data["outcome"] for h in history if h.event == "ended"] == [instance.outcome]
    # Every open task sits where its token is; every active token has exactly one open task.
    for task in open_tasks:
        token = tokens[task.token_id]
        assert (token.status, token.state) == ("active", task.state)
    active = [t for t in tokens.values() if t.status == "active"]
    assert Counter(t.token_id for t in open_tasks) == Counter(t.id for t in active)
    # No task completed twice; every completed task has exactly one action in the history.
    actions = Counter(h.task_id for h in history if h.event == "action")
    assert all(count == 1 for count in actions.values())
    assert set(actions) == {t.id for t in tasks if t.status == "completed"}
    # The clock is paused exactly while some branch waits for the applicant.
    waiting = sum(1 for t in open_tasks if t.kind == "wait")
    assert instance.pauses == waiting
    assert (instance.due_at is None) == (waiting > 0 or instance.status == "ended")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moves=_moves)
async def test_random_action_sequences_keep_the_invariants(
    conn: Connection, wf: engine.Runtime, clock: Clock, moves: list[tuple[int, int, int]]
) -> None:
    savepoint = conn.transaction()
    await savepoint.start()
    try:
        await upload(conn, PROPERTY)
        started = await engine.start(
            conn,
            subject_kind="test",
            subject_id=f"p-{next(_subjects)}",
            definition_key="prop",
            actor=Actor.system(),
        )
        await check_invariants(conn, started.id)
        for pick, choice, hours in moves:
            clock.advance(hours=hours)
            await engine.fire_due_timers(conn)
            open_tasks = sorted(await store.open_tasks(conn, started.id), key=lambda t: t.state)
            if not open_tasks:
                break
            task = open_tasks[pick % len(open_tasks)]
            _, definition = await engine.load_definition(conn, task.definition_id)
            actions = sorted(definition.states[task.state].actions)  # type: ignore[union-attr]
            await engine.act(
                conn, task.id, action=actions[choice % len(actions)], actor=Actor.system(), comment="because"
            )
            await check_invariants(conn, started.id)
    finally:
        await savepoint.rollback()
