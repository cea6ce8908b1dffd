"""The engine against the real PostgreSQL: routing, joins, clocks, escalation, versions, refusals."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest

from onewindow.db import Connection
from onewindow.errors import Conflict, Forbidden, NotFound, PreconditionFailed, RuleViolation
from tests.workflows.conftest import (
    Clock,
    Subjects,
    applicant,
    hooks,
    officer,
    open_task,
    staff_member,
    upload,
)
from workflows import engine, store
from workflows.api import ActionResult, Actor, InstanceView, SubjectContext
from workflows.store import TaskRow

SHANGHAI = ZoneInfo("Asia/Shanghai")

PERMIT = """
key: permit
name: Permit
start: accept
deadline: P10D
states:
  accept:
    type: task
    role: officer
    unit: owner
    deadline: P2D
    actions:
      accept: {target: review}
      return: {target: correction, require: [comment]}
  correction:
    type: wait
    reason: correction
    actions:
      resubmit: {target: accept}
      withdraw: {target: withdrawn}
  review:
    type: task
    role: officer
    unit: owner
    deadline:
      duration: P3D
      on_breach:
        - notify: supervisor
        - reassign: {role: supervisor}
    actions:
      approve: {target: approved}
      back: {target: accept, require: [comment]}
      reject: {target: rejected, require: [comment]}
  approved: {type: end, outcome: approved}
  rejected: {type: end, outcome: rejected}
  withdrawn: {type: end, outcome: withdrawn}
"""


def joint(join: str, decide: str = "early") -> str:
    branches = ""
    for code in ("market", "fire", "urban"):
        branches += f"""
  {code}_review:
    type: task
    role: officer
    unit: {{fixed: {code}}}
    actions:
      approve: {{target: reviews, outcome: approved}}
      reject: {{target: reviews, outcome: rejected, require: [comment]}}
"""
    return f"""
key: joint
name: Joint review
start: reviews
states:
  reviews:
    type: parallel
    branches: {{market: market_review, fire: fire_review, urban: urban_review}}
    join: {join}
    decide: {decide}
    next: {{approved: approved, rejected: rejected}}
{branches}
  approved: {{type: end, outcome: approved}}
  rejected: {{type: end, outcome: rejected}}
"""


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


async def start(conn: Connection, key: str, subject: str = "s-1", version: int | None = None) -> InstanceView:
    return await engine.start(
        conn,
        subject_kind="test",
        subject_id=subject,
        definition_key=key,
        actor=Actor.system("intake"),
        version=version,
    )


async def history_events(conn: Connection, instance_id: object) -> list[str]:
    return [
        f"{h.event}:{h.from_state or ''}->{h.to_state or ''}"
        for h in await store.history(conn, instance_id)  # type: ignore[arg-type]
    ]


# --- sequential routing, send-back, the applicant and the paused clock ----------------------------


async def test_sequential_approval_calls_the_owner_at_every_step(
    conn: Connection, wf: engine.Runtime
) -> None:
    await upload(conn, PERMIT)
    started = await start(conn, "permit")
    accept = await open_task(conn, started.id, "accept")
    await engine.act(conn, accept.id, action="accept", actor=officer())
    review = await open_task(conn, started.id, "review")
    result = await engine.act(conn, review.id, action="approve", actor=officer())
    assert result.instance.status == "ended"
    assert result.instance.outcome == "approved"
    assert result.instance.open_tasks == ()
    assert await hooks(conn, "s-1") == [
        "transitioned:accept->review",
        "transitioned:review->approved",
        "ended:approved",
    ]
    assert await history_events(conn, started.id) == [
        "started:->accept",
        "action:accept->review",
        "action:review->approved",
        "ended:->",
    ]


async def test_send_back_to_a_named_earlier_step_needs_its_comment(
    conn: Connection, wf: engine.Runtime
) -> None:
    await upload(conn, PERMIT)
    started = await start(conn, "permit")
    await engine.act(conn, (await open_task(conn, started.id)).id, action="accept", actor=officer())
    review = await open_task(conn, started.id, "review")
    with pytest.raises(RuleViolation) as refused:
        await engine.act(conn, review.id, action="back", actor=officer())
    assert [e.pointer for e in refused.value.errors] == ["/comment"]
    await engine.act(
        conn, review.id, action="back", actor=officer(), comment="The floor plan is missing a page"
    )
    again = await open_task(conn, started.id)
    assert again.state == "accept"
    entry = (await store.history(conn, started.id))[-1]
    assert (entry.from_state, entry.to_state, entry.comment) == (
        "review",
        "accept",
        "The floor plan is missing a page",
    )


async def test_return_to_the_applicant_pauses_both_clocks_across_a_holiday(
    conn: Connection, wf: engine.Runtime, clock: Clock
) -> None:
    # National Day: Thursday 1 and Friday 2 October 2026 are holidays; Saturday 10 is worked.
    await store.put_calendar_day(
        conn, day=local(2026, 10, 1).date(), working=False, name="National Day", by="t"
    )
    await store.put_calendar_day(
        conn, day=local(2026, 10, 2).date(), working=False, name="National Day", by="t"
    )
    await store.put_calendar_day(
        conn, day=local(2026, 10, 10).date(), working=True, name="Make-up day", by="t"
    )
    await upload(conn, PERMIT)
    clock.now = local(2026, 9, 28, 10, 0)  # Monday
    started = await start(conn, "permit")
    accept = await open_task(conn, started.id)
    # 2 working days for the task; 10 for the whole: 29, 30, 5, 6, 7, 8, 9, 10 (Sat, worked), 12, 13.
    assert accept.due_at == local(2026, 9, 30, 10, 0)
    assert started.due_at == local(2026, 10, 13, 10, 0)

    clock.now = local(2026, 9, 29, 10, 0)  # one working day used of each
    result = await engine.act(conn, accept.id, action="return", actor=officer(), comment="Sign page 2")
    assert result.instance.paused
    assert result.instance.due_at is None
    wait = await open_task(conn, started.id)
    assert (wait.kind, wait.assignee) == ("wait", "citizen-1")

    clock.now = local(2026, 10, 5, 15, 0)  # Monday after the holiday: the clocks continue
    result = await engine.act(conn, wait.id, action="resubmit", actor=applicant())
    assert not result.instance.paused
    resumed = await open_task(conn, started.id)
    assert resumed.state == "accept"
    assert resumed.due_at == local(2026, 10, 6, 15, 0)  # the one working day it had left
    # nine working days left: 6, 7, 8, 9, 10, 12, 13, 14, 15
    assert result.instance.due_at == local(2026, 10, 15, 15, 0)


async def test_only_the_applicant_acts_on_a_wait_step(conn: Connection, wf: engine.Runtime) -> None:
    await upload(conn, PERMIT)
    started = await start(conn, "permit")
    await engine.act(
        conn, (await open_task(conn, started.id)).id, action="return", actor=officer(), comment="x"
    )
    wait = await open_task(conn, started.id)
    with pytest.raises(NotFound):
        await engine.act(conn, wait.id, action="resubmit", actor=officer())
    with pytest.raises(NotFound):
        await engine.act(conn, wait.id, action="resubmit", actor=applicant("someone-else"))
    done = await engine.act(conn, wait.id, action="withdraw", actor=applicant())
    assert done.instance.outcome == "withdrawn"


async def test_a_wait_action_kept_for_the_system_refuses_the_applicant(
    conn: Connection, wf: engine.Runtime
) -> None:
    await upload(
        conn,
        PERMIT.replace("withdraw: {target: withdrawn}", "withdraw: {target: withdrawn, roles: [system]}"),
    )
    started = await start(conn, "permit")
    await engine.act(
        conn, (await open_task(conn, started.id)).id, action="return", actor=officer(), comment="x"
    )
    wait = await open_task(conn, started.id)
    view = await engine.task(conn, wait.id, applicant())
    assert {a.name: a.roles for a in view.actions} == {"resubmit": ("applicant",), "withdraw": ("system",)}
    with pytest.raises(Forbidden):
        await engine.act(conn, wait.id, action="withdraw", actor=applicant())
    assert (await open_task(conn, started.id)).id == wait.id  # nothing happened
    done = await engine.act(conn, wait.id, action="withdraw", actor=Actor.system("timer"))
    assert done.instance.outcome == "withdrawn"


# --- refusals ------------------------------------------------------------------------------------


async def test_refusals_name_why_and_change_nothing(conn: Connection, wf: engine.Runtime) -> None:
    await upload(conn, PERMIT)
    started = await start(conn, "permit")
    accept = await open_task(conn, started.id)
    with pytest.raises(RuleViolation, match="not an action"):
        await engine.act(conn, accept.id, action="approve", actor=officer())
    with pytest.raises(NotFound):  # another department's officer does not even see it
        await engine.act(conn, accept.id, action="accept", actor=officer("demo/fire"))
    with pytest.raises(Forbidden, match="needs the role officer"):  # sees it, may not act
        await engine.act(conn, accept.id, action="accept", actor=officer(role="supervisor"))
    with pytest.raises(PreconditionFailed):
        await engine.act(
            conn, accept.id, action="accept", actor=officer(), expected_version=accept.version + 1
        )
    await engine.claim(conn, accept.id, actor=officer(subject="officer-2"))
    with pytest.raises(Conflict, match="claimed"):
        await engine.act(conn, accept.id, action="accept", actor=officer())
    assert await history_events(conn, started.id) == ["started:->accept", "claimed:accept->"]
    await engine.act(conn, accept.id, action="accept", actor=officer(subject="officer-2"))
    with pytest.raises(Conflict, match="no longer open"):
        await engine.act(conn, accept.id, action="accept", actor=officer(subject="officer-2"))


async def test_an_owner_that_refuses_rolls_the_whole_step_back(
    conn: Connection, wf: engine.Runtime, subjects: Subjects
) -> None:
    await upload(conn, PERMIT)
    started = await start(conn, "permit")
    accept = await open_task(conn, started.id)
    subjects.fail_on = "review"
    with pytest.raises(RuntimeError):
        async with conn.transaction():
            await engine.act(conn, accept.id, action="accept", actor=officer())
    still = await open_task(conn, started.id)
    assert (still.id, still.status, still.version) == (accept.id, "open", accept.version)
    assert await history_events(conn, started.id) == ["started:->accept"]


async def test_out_of_office_delegate_acts_on_claimed_tasks(
    conn: Connection, wf: engine.Runtime, clock: Clock
) -> None:
    await upload(conn, PERMIT)
    started = await start(conn, "permit")
    accept = await open_task(conn, started.id)
    await engine.claim(conn, accept.id, actor=officer(subject="away"))
    stand_in = await staff_member(conn)
    with pytest.raises(Conflict):
        await engine.act(conn, accept.id, action="accept", actor=officer(subject=stand_in))
    for nobody in ("citizen-1", str(uuid4())):  # no staff role; no such person
        with pytest.raises(RuleViolation, match="member of staff"):
            await engine.delegate(
                conn,
                officer(subject="away"),
                to=nobody,
                starts_at=None,
                ends_at=clock.now + timedelta(days=3),
                reason="Leave",
            )
    await engine.delegate(
        conn,
        officer(subject="away"),
        to=stand_in,
        starts_at=None,
        ends_at=clock.now + timedelta(days=3),
        reason="Leave",
    )
    mine = await engine.inbox(conn, officer(subject=stand_in), view="mine")
    assert [t.id for t in mine] == [accept.id]
    await engine.act(conn, accept.id, action="accept", actor=officer(subject=stand_in))


async def test_supervisor_reassigns_with_a_reason(
    conn: Connection, wf: engine.Runtime, departments: None
) -> None:
    await upload(conn, PERMIT)
    started = await start(conn, "permit")
    accept = await open_task(conn, started.id)
    with pytest.raises(Forbidden):
        await engine.reassign(conn, accept.id, actor=officer(), reason="x", unit_code="fire")
    boss = officer("demo", subject="boss", role="supervisor")
    moved = await engine.reassign(
        conn, accept.id, actor=boss, reason="Fire safety question", unit_code="fire"
    )
    assert (moved.unit_path, moved.assignee) == ("demo/fire", None)
    entry = (await store.history(conn, started.id))[-1]
    assert entry.event == "reassigned"
    assert entry.comment == "Fire safety question"
    await engine.act(conn, accept.id, action="accept", actor=officer("demo/fire"))


# --- parallel reviews ----------------------------------------------------------------------------


async def _branches(conn: Connection, instance_id: UUID) -> dict[str, TaskRow]:
    return {t.state.removesuffix("_review"): t for t in await store.open_tasks(conn, instance_id)}


async def _decide(conn: Connection, tasks: dict[str, TaskRow], code: str, action: str) -> ActionResult:
    task = tasks[code]
    return await engine.act(
        conn,
        task.id,
        action=action,
        actor=officer(f"demo/{code}"),
        comment="reason",
    )


@pytest.mark.usefixtures("departments")
async def test_all_of_three_departments(conn: Connection, wf: engine.Runtime) -> None:
    await upload(conn, joint("all"))
    started = await start(conn, "joint")
    tasks = await _branches(conn, started.id)
    assert sorted(tasks) == ["fire", "market", "urban"]
    assert (await _decide(conn, tasks, "market", "approve")).instance.status == "running"
    assert (await _decide(conn, tasks, "fire", "approve")).instance.status == "running"
    done = await _decide(conn, tasks, "urban", "approve")
    assert (done.instance.status, done.instance.outcome) == ("ended", "approved")


@pytest.mark.usefixtures("departments")
async def test_any_first_approval_cancels_the_rest(conn: Connection, wf: engine.Runtime) -> None:
    await upload(conn, joint("any"))
    started = await start(conn, "joint")
    tasks = await _branches(conn, started.id)
    done = await _decide(conn, tasks, "fire", "approve")
    assert done.instance.outcome == "approved"
    statuses = {t.state: t.status for t in await store.instance_tasks(conn, started.id)}
    assert statuses == {"market_review": "cancelled", "fire_review": "completed", "urban_review": "cancelled"}


@pytest.mark.usefixtures("departments")
async def test_two_of_three_with_one_rejection(conn: Connection, wf: engine.Runtime) -> None:
    await upload(conn, joint("2_of_3"))
    started = await start(conn, "joint")
    tasks = await _branches(conn, started.id)
    await _decide(conn, tasks, "market", "approve")
    assert (await _decide(conn, tasks, "fire", "reject")).instance.status == "running"
    done = await _decide(conn, tasks, "urban", "approve")
    assert done.instance.outcome == "approved"


@pytest.mark.usefixtures("departments")
async def test_two_of_three_fails_once_two_reject(conn: Connection, wf: engine.Runtime) -> None:
    await upload(conn, joint("2_of_3"))
    started = await start(conn, "joint")
    tasks = await _branches(conn, started.id)
    await _decide(conn, tasks, "market", "reject")
    done = await _decide(conn, tasks, "fire", "reject")
    assert done.instance.outcome == "rejected"
    joined = [h for h in await store.history(conn, started.id) if h.event == "joined"]
    assert joined[0].data == {"result": "rejected", "approved": 0, "rejected": 2, "cancelled": 1}


@pytest.mark.usefixtures("departments")
async def test_a_rejection_under_all_ends_at_once_or_waits_when_told(
    conn: Connection, wf: engine.Runtime
) -> None:
    await upload(conn, joint("all"))
    early = await start(conn, "joint", "early")
    done = await _decide(conn, await _branches(conn, early.id), "fire", "reject")
    assert done.instance.outcome == "rejected"

    await upload(conn, joint("all", decide="all_done"))
    patient = await start(conn, "joint", "patient")
    tasks = await _branches(conn, patient.id)
    assert (await _decide(conn, tasks, "fire", "reject")).instance.status == "running"
    assert (await _decide(conn, tasks, "market", "approve")).instance.status == "running"
    assert (await _decide(conn, tasks, "urban", "approve")).instance.outcome == "rejected"


# --- decisions and versions ----------------------------------------------------------------------

ROUTED = """
key: routed
name: Routed
start: route
states:
  route:
    type: decision
    cases:
      - when: {">": [{"var": "subject.area"}, 200]}
        target: inspect
    otherwise: done
  inspect:
    type: task
    role: officer
    unit: owner
    actions:
      pass: {target: done}
  done: {type: end, outcome: approved}
"""


async def test_decision_on_the_subjects_data(
    conn: Connection, wf: engine.Runtime, subjects: Subjects
) -> None:
    await upload(conn, ROUTED)
    subjects.contexts["big"] = SubjectContext(data={"area": 350}, owner_unit="demo/fire")
    subjects.contexts["small"] = SubjectContext(data={"area": 80}, owner_unit="demo/fire")
    big = await start(conn, "routed", "big")
    small = await start(conn, "routed", "small")
    assert [t.state for t in big.open_tasks] == ["inspect"]
    assert big.open_tasks[0].unit_path == "demo/fire"
    assert small.status == "ended"


async def test_running_instances_keep_their_version(conn: Connection, wf: engine.Runtime) -> None:
    await upload(conn, PERMIT)
    old = await start(conn, "permit", "old")
    await upload(
        conn,
        PERMIT.replace(
            "accept: {target: review}", "accept: {target: approved}\n      review: {target: review}"
        ),
    )
    new = await start(conn, "permit", "new")
    assert (old.definition_version, new.definition_version) == (1, 2)
    after_old = await engine.act(conn, (await open_task(conn, old.id)).id, action="accept", actor=officer())
    after_new = await engine.act(conn, (await open_task(conn, new.id)).id, action="accept", actor=officer())
    assert [t.state for t in after_old.instance.open_tasks] == ["review"]
    assert after_new.instance.outcome == "approved"
    pinned = await start(conn, "permit", "pinned", version=1)
    assert pinned.definition_version == 1


async def test_one_instance_per_subject(conn: Connection, wf: engine.Runtime) -> None:
    await upload(conn, PERMIT)
    await start(conn, "permit")
    with pytest.raises(Conflict):
        await start(conn, "permit")
    with pytest.raises(NotFound):
        await start(conn, "no-such-key", "s-2")


# --- deadlines and escalation --------------------------------------------------------------------


async def test_breach_escalates_once_even_after_an_outage(
    conn: Connection, wf: engine.Runtime, clock: Clock
) -> None:
    await upload(conn, PERMIT)
    clock.now = local(2026, 9, 28, 10, 0)
    started = await start(conn, "permit")
    await engine.act(conn, (await open_task(conn, started.id)).id, action="accept", actor=officer())
    review = await open_task(conn, started.id, "review")
    assert review.due_at == local(2026, 10, 1, 10, 0)  # three working days, no holidays set here
    assert await engine.fire_due_timers(conn) == 0

    clock.now = local(2026, 10, 9, 12, 0)  # the worker was off for a week
    fired = await engine.fire_due_timers(conn)
    assert fired == 3  # the task's warning and breach, and the instance's warning (due 12 October)
    assert await engine.fire_due_timers(conn) == 0
    clock.advance(days=2)
    assert await engine.fire_due_timers(conn) == 0

    events = [(h.event, h.data) for h in await store.history(conn, started.id) if h.task_id == review.id]
    assert events == [
        ("deadline_warned", {}),
        ("deadline_breached", {}),
        ("escalated", {"notify": "supervisor"}),
        ("escalated", {"reassign": {"role": "supervisor", "unit": "demo/market"}}),
    ]
    moved = await open_task(conn, started.id, "review")
    assert (moved.role, moved.breached, moved.warned) == ("supervisor", True, True)
    topics = await conn.fetch(
        "SELECT topic, payload FROM onewindow.outbox WHERE payload->>'instance_id' = $1 ORDER BY seq",
        str(started.id),
    )
    breaches = [r["payload"] for r in topics if r["topic"] == "workflows.deadline.breached"]
    assert [b["notify"] for b in breaches] == [["supervisor"]]
    # The supervisor can now act on it; the officer no longer sees it.
    with pytest.raises(NotFound):
        await engine.act(conn, review.id, action="approve", actor=officer())
    await engine.act(conn, review.id, action="approve", actor=officer(role="supervisor"))


AUTO = """
key: auto
name: Auto withdraw
start: fix
states:
  fix:
    type: wait
    reason: correction
    deadline: {duration: P2D, clock: continuous, on_breach: [{action: withdraw}]}
    actions:
      resubmit: {target: done}
      withdraw: {target: withdrawn}
  done: {type: end, outcome: approved}
  withdrawn: {type: end, outcome: withdrawn}
"""


async def test_automatic_action_on_breach(conn: Connection, wf: engine.Runtime, clock: Clock) -> None:
    await upload(conn, AUTO)
    started = await start(conn, "auto")
    clock.advance(days=2, seconds=1)
    assert await engine.fire_due_timers(conn) == 2
    view = await engine.instance(conn, started.id)
    assert view is not None
    assert view.outcome == "withdrawn"
    actions = [h for h in view.history if h.event == "action"]
    assert actions[0].actor == "deadline"
    assert actions[0].action == "withdraw"


async def test_inbox_scoping(conn: Connection, wf: engine.Runtime, subjects: Subjects) -> None:
    await upload(conn, PERMIT)
    subjects.contexts["m"] = SubjectContext(owner_unit="demo/market", applicant="c")
    subjects.contexts["f"] = SubjectContext(owner_unit="demo/fire", applicant="c")
    await start(conn, "permit", "m")
    await start(conn, "permit", "f")
    market = await engine.inbox(conn, officer("demo/market"))
    assert [t.subject_id for t in market] == ["m"]
    boss = await engine.inbox(conn, officer("demo", subject="boss", role="supervisor"))
    assert sorted(t.subject_id for t in boss) == ["f", "m"]
    assert await engine.inbox(conn, applicant("c")) == []
    task = market[0]
    with pytest.raises(NotFound):
        await engine.task(conn, task.id, officer("demo/fire"))


async def test_a_steps_actions_are_offered_in_the_order_the_author_wrote_them(
    conn: Connection, wf: engine.Runtime
) -> None:
    # jsonb would give them back sorted by length, then bytes: accept, return, withdraw_now.
    authored = ["withdraw_now", "return", "accept"]
    await upload(
        conn,
        PERMIT.replace("permit", "ordered").replace(
            "      accept: {target: review}\n      return: {target: correction, require: [comment]}\n",
            "      withdraw_now: {target: withdrawn}\n"
            "      return: {target: correction, require: [comment]}\n"
            "      accept: {target: review}\n",
        ),
    )
    started = await start(conn, "ordered")
    task = await open_task(conn, started.id)
    wf.definitions.clear()  # read the definition back from the database, not from this process
    view = await engine.task(conn, task.id, officer())
    assert [action.name for action in view.actions] == authored


# --- cancelled from outside the definition (an applicant's withdrawal) -----------------------------


@pytest.mark.usefixtures("departments")
async def test_cancel_ends_a_running_instance_with_its_open_branches(
    conn: Connection, wf: engine.Runtime
) -> None:
    await upload(conn, joint("all"))
    started = await start(conn, "joint", "s-9")
    tasks = await _branches(conn, started.id)
    await _decide(conn, tasks, "market", "approve")
    ended = await engine.cancel(
        conn, started.id, actor=Actor.system("services"), outcome="withdrawn", reason="applicant withdrew"
    )
    assert (ended.status, ended.outcome, ended.open_tasks) == ("ended", "withdrawn", ())
    assert await store.open_tasks(conn, started.id) == []
    assert await hooks(conn, "s-9") == ["transitioned:market_review->reviews", "ended:withdrawn"]
    events = await history_events(conn, started.id)
    assert events[-4] == "cancelled:->"  # the instance: who and why
    assert sorted(events[-3:-1]) == ["cancelled:fire_review->", "cancelled:urban_review->"]
    assert events[-1] == "ended:->"
    reasons = [h.comment for h in await store.history(conn, started.id) if h.event == "cancelled"]
    assert reasons[0] == "applicant withdrew"
    with pytest.raises(Conflict):
        await engine.cancel(
            conn, started.id, actor=Actor.system("services"), outcome="withdrawn", reason="again"
        )
    with pytest.raises(NotFound):
        await engine.cancel(conn, uuid4(), actor=Actor.system("services"), outcome="withdrawn", reason="none")
