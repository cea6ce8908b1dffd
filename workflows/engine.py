"""The engine: starting instances, acting on tasks, joining branches, clocks and escalations.

Every change to an instance happens under its row lock (`store.lock_instance`), taken first:
two officers acting on one task, two departments finishing parallel branches at once and the
timer scan are serialised per instance, and the loser of a race sees the winner's result (409).
A step runs in the caller's transaction; history, outbox events and the subject owner's hook
are written in it, so nothing is half-applied.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import msgspec
from json_logic import builtins as logic_builtins
from json_logic import jsonLogic

from identity import api as identity_api
from onewindow import idempotency
from onewindow.db import Connection
from onewindow.errors import Conflict, FieldError, Forbidden, NotFound, PreconditionFailed, RuleViolation
from onewindow.events import Event
from onewindow.settings import Settings
from workflows import store
from workflows.calendar import WorkCalendar, infer_clock, parse_duration, parse_office_hours
from workflows.definitions import parse
from workflows.events import DeadlineBreached, DeadlineWarned, InstanceEnded, TaskAssigned, TaskCompleted
from workflows.model import (
    SYSTEM_ONLY,
    Action,
    AutoAction,
    Clock,
    Deadline,
    DecisionState,
    Definition,
    EndState,
    Notify,
    ParallelState,
    Reassign,
    State,
    TaskState,
    UnitRule,
    WaitState,
)
from workflows.store import InstanceRow, TaskRow, TimerRow, TokenRow
from workflows.views import (
    ActionResult,
    ActionView,
    Actor,
    Ending,
    HistoryEntry,
    InstanceView,
    SubjectContext,
    SubjectKind,
    TaskView,
    Transition,
)

log = logging.getLogger(__name__)

# No deadline sorts last in the inbox; shown as null.
NO_DEADLINE = datetime(9999, 12, 31, tzinfo=UTC)
_MAX_DECISION_DEPTH = 64
_OPERATIONS = {name: op for name, op in logic_builtins.BUILTINS.items() if name != "log"}


@dataclass(frozen=True, slots=True)
class DefinitionMeta:
    id: UUID
    key: str
    version: int


@dataclass(slots=True)
class Runtime:
    """Per process: the city's calendar rules, the subject kinds, and caches of immutable data."""

    tz: ZoneInfo
    weekend: frozenset[int]
    office_hours: tuple[tuple[Any, Any], ...]
    kinds: dict[str, SubjectKind] = field(default_factory=dict)
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    definitions: dict[UUID, tuple[DefinitionMeta, Definition]] = field(default_factory=dict)
    calendar: tuple[int, WorkCalendar] | None = None

    def register(self, kind: SubjectKind) -> None:
        self.kinds[kind.name] = kind

    def kind(self, name: str) -> SubjectKind:
        found = self.kinds.get(name)
        if found is None:
            raise RuleViolation(f"No subject kind {name!r} is registered with the workflow engine.")
        return found


_runtime: Runtime | None = None


def configure(
    settings: Settings, kinds: Iterable[SubjectKind] = (), *, now: Callable[[], datetime] | None = None
) -> Runtime:
    """Called once per process by the composition root (and by tests, with their own clock)."""
    global _runtime  # noqa: PLW0603 - one engine per process, built by the composition root
    runtime = Runtime(
        tz=ZoneInfo(settings.timezone),
        weekend=settings.weekend,
        office_hours=parse_office_hours(settings.office_hours),
    )
    if now is not None:
        runtime.now = now
    for kind in kinds:
        runtime.register(kind)
    _runtime = runtime
    return runtime


# Who sees every task in their units (not only their own role's): a department's or community's
# supervisor, and a street's command centre.
OVERSEERS = ("supervisor", "command_centre")


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("workflows.api.configure(settings) was not called at start-up")
    return _runtime


def now() -> datetime:
    """The engine's clock (a test's clock when it configured one): contexts stamp with it too."""
    return runtime().now()


async def load_definition(conn: Connection, definition_id: UUID) -> tuple[DefinitionMeta, Definition]:
    rt = runtime()
    cached = rt.definitions.get(definition_id)
    if cached is None:
        row = await store.definition_by_id(conn, definition_id)
        if row is None:
            raise NotFound("No such workflow definition.")
        cached = (
            DefinitionMeta(id=row.id, key=row.key, version=row.version),
            msgspec.convert(row.body, Definition),
        )
        rt.definitions[definition_id] = cached  # definitions never change once stored
    return cached


async def work_calendar(conn: Connection, version: int | None = None) -> WorkCalendar:
    """The city's calendar, reread only when an admin changed it (its version moved)."""
    rt = runtime()
    if version is None:
        version = await store.calendar_version(conn)
    if rt.calendar is None or rt.calendar[0] != version:
        days = await store.calendar_days(conn)
        rt.calendar = (
            version,
            WorkCalendar(
                tz=rt.tz,
                weekend=rt.weekend,
                office_hours=rt.office_hours,
                overrides={day.day: day.working for day in days},
            ),
        )
    return rt.calendar[1]


def evaluate(condition: Any, data: Mapping[str, Any]) -> bool:
    """A JSON Logic condition, evaluated as data: no code of the author's ever runs."""
    try:
        return bool(jsonLogic(condition, dict(data), _OPERATIONS))
    except (ReferenceError, TypeError, ValueError, KeyError, IndexError, ZeroDivisionError) as exc:
        raise RuleViolation(f"A condition of the workflow could not be evaluated: {exc}") from None


# --- one step on one instance --------------------------------------------------------------------


class _Step:
    """Everything done to one instance inside one transaction, under its lock."""

    def __init__(
        self,
        conn: Connection,
        instance: InstanceRow,
        meta: DefinitionMeta,
        definition: Definition,
        calendar: WorkCalendar,
        actor: Actor,
        now: datetime,
    ) -> None:
        self.conn = conn
        self.instance = instance
        self.meta = meta
        self.definition = definition
        self.calendar = calendar
        self.actor = actor
        self.now = now
        self.tokens: dict[UUID, TokenRow] = {}
        self.open: dict[UUID, TaskRow] = {}
        self._context: SubjectContext | None = None
        self._instance_changed = False
        # Written by `save`, in one round trip: nothing in the step reads them back (and a
        # subject's hook, called during the step, sees the workflow as it was before it).
        self._tasks: dict[UUID, TaskRow] = {}
        self._drop_timers: set[UUID] = set()
        self._tokens: dict[UUID, TokenRow] = {}
        self._history: list[store.HistoryEntry] = []
        self._events: list[Event] = []

    @classmethod
    async def locked(
        cls, conn: Connection, instance_id: UUID, actor: Actor, *, wait: bool = True
    ) -> _Step | None:
        found = await (store.lock_instance if wait else store.try_lock_instance)(conn, instance_id)
        return None if found is None else await cls._load(conn, found, actor)

    @classmethod
    async def of_task(cls, conn: Connection, found: store.LockedStep, actor: Actor) -> _Step:
        """The step on an instance `store.lock_step_of_task` locked and read."""
        step = await cls._prepare(conn, found.instance, found.calendar_version, actor)
        if found.instance.status == "running":
            step.tokens = {token.id: token for token in found.tokens}
            step.open = {task.id: task for task in found.tasks}
        return step

    @classmethod
    async def _load(cls, conn: Connection, found: tuple[InstanceRow, int], actor: Actor) -> _Step:
        instance, calendar_version = found
        step = await cls._prepare(conn, instance, calendar_version, actor)
        if instance.status == "running":
            tokens, tasks = await store.work(conn, instance.id)
            step.tokens = {token.id: token for token in tokens}
            step.open = {task.id: task for task in tasks}
        return step

    @classmethod
    async def _prepare(
        cls, conn: Connection, instance: InstanceRow, calendar_version: int, actor: Actor
    ) -> _Step:
        meta, definition = await load_definition(conn, instance.definition_id)
        calendar = await work_calendar(conn, calendar_version)
        return cls(conn, instance, meta, definition, calendar, actor, runtime().now())

    @property
    def kind(self) -> SubjectKind:
        return runtime().kind(self.instance.subject_kind)

    async def context(self) -> SubjectContext:
        if self._context is None:
            self._context = await self.kind.context(self.conn, self.instance.subject_id)
        return self._context

    async def publish(self, event: Event) -> None:
        self._events.append(event)

    async def history(self, event: str, **fields: Any) -> None:
        self._history.append(
            store.HistoryEntry(
                instance_id=self.instance.id,
                at=self.now,
                event=event,
                actor=self.actor.subject,
                actor_name=self.actor.name,
                **fields,
            )
        )

    def save_task(self, task: TaskRow, *, drop_timers: bool = False) -> None:
        """Stage the task's changes (its version moves once per step); `drop_timers`: its
        unfired timers go too (a closed task's deadline no longer runs)."""
        if task.id not in self._tasks:
            task.version += 1
            self._tasks[task.id] = task
        if drop_timers:
            self._drop_timers.add(task.id)

    def save_token(self, token: TokenRow) -> None:
        self._tokens[token.id] = token

    def staged(self, answer: idempotency.Answer | None = None) -> store.Staged | None:
        """What the step staged, handed over for writing (None: nothing): the instance row, the
        tasks and tokens it changed, its history, its events, and `answer` (the reply its
        Idempotency-Key keeps)."""
        if not (
            self._instance_changed or self._tasks or self._tokens or self._history or self._events or answer
        ):
            return None
        staged = store.Staged(
            instance=self.instance if self._instance_changed else None,
            tasks=list(self._tasks.values()),
            drop_timers=list(self._drop_timers),
            tokens=list(self._tokens.values()),
            history=self._history,
            events=self._events,
            answer=answer,
        )
        self._instance_changed, self._history, self._events = False, [], []
        self._tasks, self._drop_timers, self._tokens = {}, set(), {}
        return staged

    async def save(self) -> None:
        """Write what the step staged, in one round trip. Every operation on a step ends with it
        (or with `staged`, written together with other steps), before its transaction commits."""
        staged = self.staged()
        if staged is not None:
            await store.flush(self.conn, [staged])

    def state(self, name: str) -> State:
        return self.definition.states[name]

    # --- clocks ---

    def _budget_s(self, deadline: Deadline) -> int:
        return int(self.calendar.budget(deadline.days, deadline.seconds, deadline.clock).total_seconds())

    def _due(self, deadline: Deadline, remaining_s: int) -> datetime:
        return self.calendar.add(self.now, timedelta(seconds=remaining_s), deadline.clock)

    def _warn_at(self, deadline: Deadline, budget_s: int, remaining_s: int) -> datetime | None:
        """When the warning fires: once `warn_at` of the budget is used; None if it already is."""
        threshold = budget_s * (1 - deadline.warn_at)
        if remaining_s <= threshold:
            return None
        return self.calendar.add(self.now, timedelta(seconds=remaining_s - threshold), deadline.clock)

    def _remaining_s(self, deadline: Deadline, due_at: datetime) -> int:
        return int(self.calendar.elapsed(self.now, due_at, deadline.clock).total_seconds())

    def _clock(
        self, deadline: Deadline, budget_s: int, remaining_s: int, *, warned: bool
    ) -> tuple[datetime, datetime | None]:
        """When a deadline with `remaining_s` left falls due, and when it warns (None: no more)."""
        due_at = self._due(deadline, remaining_s)
        return due_at, None if warned else self._warn_at(deadline, budget_s, remaining_s)

    async def _arm_instance(self, deadline: Deadline, budget_s: int, remaining_s: int) -> datetime:
        due_at, warn_at = self._clock(deadline, budget_s, remaining_s, warned=self.instance.warned)
        await store.insert_timers(
            self.conn, instance_id=self.instance.id, task_id=None, warn_at=warn_at, breach_at=due_at
        )
        return due_at

    async def start_clock(self) -> None:
        deadline = self.definition.deadline
        if deadline is None:
            return
        budget = self._budget_s(deadline)
        self.instance.due_at = await self._arm_instance(deadline, budget, budget)
        self._instance_changed = True

    async def pause(self) -> None:
        """A branch waits for the applicant: the instance's clock stops (counted, for branches)."""
        self.instance.pauses += 1
        self._instance_changed = True
        deadline = self.definition.deadline
        if self.instance.pauses == 1 and deadline is not None and self.instance.due_at is not None:
            self.instance.remaining_s = self._remaining_s(deadline, self.instance.due_at)
            self.instance.due_at = None
            await store.drop_instance_timers(self.conn, self.instance.id)

    async def unpause(self) -> None:
        self.instance.pauses -= 1
        self._instance_changed = True
        deadline = self.definition.deadline
        if self.instance.pauses == 0 and deadline is not None and self.instance.remaining_s is not None:
            self.instance.due_at = await self._arm_instance(
                deadline, self._budget_s(deadline), self.instance.remaining_s
            )
            self.instance.remaining_s = None

    # --- moving tokens ---

    async def unit_path(self, rule: UnitRule) -> str:
        if rule.kind == "fixed":
            if not (rule.code is not None):
                raise RuntimeError("workflow invariant broken: rule.code is not None")
            path = await identity_api.unit_path(self.conn, rule.code)
            if path is None:
                raise RuleViolation(f"The workflow names the unit {rule.code!r}, which does not exist.")
            return path
        context = await self.context()
        path = context.owner_unit if rule.kind == "owner" else context.grid_unit
        if path is None:
            raise RuleViolation(f"The subject has no {rule.kind} unit to queue the task in.")
        return path

    async def enter(self, token: TokenRow, name: str, *, left: TaskRow | None = None, depth: int = 0) -> None:
        state = self.state(name)
        if isinstance(state, TaskState):
            await self._open_task(token, name, state)
        elif isinstance(state, WaitState):
            await self._open_wait(token, name, state, left)
        elif isinstance(state, DecisionState):
            if depth > _MAX_DECISION_DEPTH:
                raise RuleViolation("The workflow's decisions loop without reaching a task.")
            data = await self.condition_data({})
            target = next((case.target for case in state.cases if evaluate(case.when, data)), state.otherwise)
            await self.history("decided", from_state=name, to_state=target)
            await self.enter(token, target, depth=depth + 1)
        elif isinstance(state, ParallelState):
            token.state, token.status = name, "forked"
            self.save_token(token)
            for branch, first in state.branches.items():
                child = await store.insert_token(
                    self.conn, instance_id=self.instance.id, parent_id=token.id, branch=branch, state=first
                )
                self.tokens[child.id] = child
                await self.enter(child, first, depth=depth + 1)
        else:
            if not (isinstance(state, EndState)):
                raise TypeError("workflow invariant broken: isinstance(state, EndState)")
            token.state, token.status, token.outcome = name, "done", state.outcome
            self.save_token(token)
            if token.parent_id is None:
                await self.end(state.outcome)

    async def _open_task(self, token: TokenRow, name: str, state: TaskState) -> None:
        if state.unit.kind == "applicant":
            role, unit_path, assignee = state.role, None, (await self.context()).applicant
        else:
            role, unit_path, assignee = state.role, await self.unit_path(state.unit), None
        budget_s, due_at, warn_at = None, NO_DEADLINE, None
        if state.deadline is not None:
            budget_s = self._budget_s(state.deadline)
            remaining = budget_s
            if token.resume_state == name and token.resume_s is not None:
                remaining = token.resume_s  # back from the applicant: the clock continues
            due_at, warn_at = self._clock(state.deadline, budget_s, remaining, warned=False)
        token.state, token.resume_state, token.resume_s = name, None, None
        self.save_token(token)
        task = await store.insert_task(
            self.conn,
            instance=self.instance,
            token_id=token.id,
            state=name,
            kind="task",
            role=role,
            unit_path=unit_path,
            assignee=assignee,
            created_at=self.now,
            due_at=due_at,
            budget_s=budget_s,
            warn_at=warn_at,
        )
        self.open[task.id] = task
        await self.announce(task)

    async def _open_wait(self, token: TokenRow, name: str, state: WaitState, left: TaskRow | None) -> None:
        if left is not None and left.kind == "task" and left.budget_s is not None:
            left_state = self.state(left.state)
            if not (isinstance(left_state, TaskState) and left_state.deadline is not None):
                raise RuntimeError(
                    "workflow invariant broken: isinstance(left_state, TaskState) and left_state.deadline is not None"
                )
            token.resume_state = left.state
            token.resume_s = self._remaining_s(left_state.deadline, left.due_at)
        token.state = name
        self.save_token(token)
        budget_s, due_at, warn_at = None, NO_DEADLINE, None
        if state.deadline is not None:
            budget_s = self._budget_s(state.deadline)
            due_at, warn_at = self._clock(state.deadline, budget_s, budget_s, warned=False)
        task = await store.insert_task(
            self.conn,
            instance=self.instance,
            token_id=token.id,
            state=name,
            kind="wait",
            role=None,
            unit_path=None,
            assignee=(await self.context()).applicant,
            created_at=self.now,
            due_at=due_at,
            budget_s=budget_s,
            warn_at=warn_at,
        )
        if state.pauses_clock:
            await self.pause()
        self.open[task.id] = task
        await self.announce(task)

    async def announce(self, task: TaskRow) -> None:
        await self.publish(
            TaskAssigned(
                task_id=task.id,
                instance_id=task.instance_id,
                subject_kind=task.subject_kind,
                subject_id=task.subject_id,
                state=task.state,
                kind=task.kind,
                role=task.role,
                unit_path=task.unit_path,
                assignee=task.assignee,
                due_at=None if task.due_at == NO_DEADLINE else task.due_at,
            )
        )

    async def close_task(self, task: TaskRow, *, status: str, action: str | None) -> None:
        task.status, task.action = status, action
        task.completed_at, task.completed_by = self.now, self.actor.subject
        self.save_task(task, drop_timers=task.budget_s is not None)
        self.open.pop(task.id, None)
        state = self.state(task.state)
        if isinstance(state, WaitState) and state.pauses_clock:
            await self.unpause()

    async def finish_branch(self, token: TokenRow, outcome: str) -> None:
        token.status, token.outcome = "done", outcome
        self.save_token(token)
        if not (token.parent_id is not None):
            raise RuntimeError("workflow invariant broken: token.parent_id is not None")
        parent = self.tokens[token.parent_id]
        parallel = self.state(parent.state)
        if not (isinstance(parallel, ParallelState)):
            raise TypeError("workflow invariant broken: isinstance(parallel, ParallelState)")
        branches = [t for t in self.tokens.values() if t.parent_id == parent.id]
        approved = sum(1 for t in branches if t.status == "done" and t.outcome == "approved")
        running = [t for t in branches if t.status in ("active", "forked")]
        needed = parallel.join.n
        result: str | None = None
        if parallel.decide == "early":
            if approved >= needed:
                result = "approved"
            elif approved + len(running) < needed:
                result = "rejected"
        elif not running:
            result = "approved" if approved >= needed else "rejected"
        if result is None:
            return
        for branch in running:
            await self.cancel_token(branch)
        target = parallel.next[result]
        await self.history(
            "joined",
            from_state=parent.state,
            to_state=target,
            data={
                "result": result,
                "approved": approved,
                "rejected": sum(1 for t in branches if t.status == "done" and t.outcome != "approved"),
                "cancelled": len(running),
            },
        )
        parent.status = "active"
        await self.enter(parent, target)

    async def cancel_token(self, token: TokenRow) -> None:
        for child in [
            t for t in self.tokens.values() if t.parent_id == token.id and t.status in ("active", "forked")
        ]:
            await self.cancel_token(child)
        for task in [t for t in self.open.values() if t.token_id == token.id]:
            await self.close_task(task, status="cancelled", action=None)
            await self.history("cancelled", task_id=task.id, from_state=task.state)
        token.status = "cancelled"
        self.save_token(token)

    async def end(self, outcome: str) -> None:
        for task in list(self.open.values()):
            await self.close_task(task, status="cancelled", action=None)
        self.instance.status, self.instance.outcome, self.instance.ended_at = "ended", outcome, self.now
        if self.instance.due_at is not None:  # its clock runs: drop its timers (a paused one has none)
            await store.drop_instance_timers(self.conn, self.instance.id)
        self.instance.due_at, self.instance.remaining_s = None, None
        self._instance_changed = True
        await self.history("ended", data={"outcome": outcome})
        await self.kind.ended(
            self.conn,
            Ending(
                instance_id=self.instance.id,
                subject_id=self.instance.subject_id,
                definition_key=self.meta.key,
                outcome=outcome,
                at=self.now,
            ),
        )
        await self.publish(
            InstanceEnded(
                instance_id=self.instance.id,
                subject_kind=self.instance.subject_kind,
                subject_id=self.instance.subject_id,
                outcome=outcome,
            )
        )

    async def condition_data(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"subject": (await self.context()).data, "vars": self.instance.vars, "data": data}

    # --- acting ---

    async def authorise(self, task: TaskRow, state: State, spec: Action) -> tuple[str | None, str | None]:
        """Whether the actor may take `spec` on `task`; the (role, unit) it acts in."""
        if self.actor.kind == "system":
            return None, None
        if task.kind == "wait" or (task.role == "citizen" and task.unit_path is None):
            if SYSTEM_ONLY in spec.roles:
                raise Forbidden("Only the system takes this step (a confirmation, a time limit).")
            if task.assignee is not None and task.assignee in await self.people():
                return "applicant", None
            raise Forbidden("Only the applicant can act on this step.")
        if not (isinstance(state, TaskState) and task.unit_path is not None):
            raise RuntimeError(
                "workflow invariant broken: isinstance(state, TaskState) and task.unit_path is not None"
            )
        # The task's current role (the state's, unless an escalation or a supervisor moved it).
        allowed = {*spec.roles, task.role or state.role}
        grant = next((g for g in self.actor.roles if g.role in allowed and g.covers(task.unit_path)), None)
        if grant is None:
            roles = " or ".join(sorted(allowed))
            raise Forbidden(f"This action needs the role {roles} within {task.unit_path}.")
        if (
            task.assignee is not None
            and grant.role != "supervisor"
            and task.assignee not in await self.people()
        ):
            raise Conflict("Another person has claimed this task; they, or a supervisor, can release it.")
        return grant.role, grant.path

    async def people(self) -> list[str]:
        """The actor and everyone whose tasks the actor stands in for (out of office)."""
        return [self.actor.subject, *await store.delegators(self.conn, self.actor.subject, self.now)]

    async def apply(
        self,
        task: TaskRow,
        action: str,
        *,
        comment: str | None,
        attachments: list[Any],
        data: dict[str, Any],
        enforce: bool = True,
    ) -> None:
        state = self.state(task.state)
        if not (isinstance(state, TaskState | WaitState)):
            raise TypeError("workflow invariant broken: isinstance(state, TaskState | WaitState)")
        spec = state.actions.get(action)
        if spec is None:
            allowed = ", ".join(sorted(state.actions))
            raise RuleViolation(
                f"{action!r} is not an action of the step {task.state!r}; its actions are: {allowed}.",
                errors=[FieldError(pointer="/action", detail=f"one of: {allowed}")],
            )
        role, unit = await self.authorise(task, state, spec)
        if enforce:
            missing = _missing(spec, comment=comment, attachments=attachments, data=data)
            if missing:
                raise RuleViolation(
                    f"The action {action!r} needs: {', '.join(e.pointer.lstrip('/') for e in missing)}.",
                    errors=missing,
                )
        if spec.when is not None and not evaluate(spec.when, await self.condition_data(data)):
            raise RuleViolation(
                f"The action {action!r} is not possible for this subject (its condition does not hold)."
            )
        token = self.tokens[task.token_id]
        await self.close_task(task, status="completed", action=action)
        if data:
            self.instance.vars = {**self.instance.vars, **data}
            self._instance_changed = True
        await self.history(
            "action",
            task_id=task.id,
            actor_role=role,
            actor_unit=unit,
            action=action,
            from_state=task.state,
            to_state=spec.target,
            comment=comment,
            attachments=attachments,
            data=data,
            due_at=None if task.due_at == NO_DEADLINE else task.due_at,
        )
        await self.publish(
            TaskCompleted(
                task_id=task.id,
                instance_id=task.instance_id,
                subject_kind=task.subject_kind,
                subject_id=task.subject_id,
                state=task.state,
                action=action,
                actor=self.actor.subject,
                to_state=spec.target,
            )
        )
        await self.kind.transitioned(
            self.conn,
            Transition(
                instance_id=self.instance.id,
                subject_id=self.instance.subject_id,
                definition_key=self.meta.key,
                from_state=task.state,
                to_state=spec.target,
                action=action,
                actor=self.actor.subject,
                at=self.now,
                outcome=spec.outcome,
                comment=comment,
                data=data,
            ),
        )
        if spec.target == state.parent:
            if not (spec.outcome is not None):
                raise RuntimeError("workflow invariant broken: spec.outcome is not None")
            await self.finish_branch(token, spec.outcome)
        else:
            await self.enter(token, spec.target, left=task)

    # --- timers ---

    async def fire(self, timer: TimerRow) -> None:
        if timer.task_id is None:
            await self._fire_instance(timer)
            return
        task = self.open.get(timer.task_id)
        if task is None:
            return  # closed meanwhile (its timers went with it); nothing to escalate
        state = self.state(task.state)
        if not (isinstance(state, TaskState | WaitState) and state.deadline is not None):
            raise RuntimeError(
                "workflow invariant broken: isinstance(state, TaskState | WaitState) and state.deadline is not None"
            )
        fields: dict[str, Any] = {
            "instance_id": task.instance_id,
            "task_id": task.id,
            "subject_kind": task.subject_kind,
            "subject_id": task.subject_id,
            "state": task.state,
            "role": task.role,
            "unit_path": task.unit_path,
            "assignee": task.assignee,
            "due_at": task.due_at,
        }
        if timer.kind == "warn":
            task.warned = True
            self.save_task(task)
            await self.history("deadline_warned", task_id=task.id, from_state=task.state, due_at=task.due_at)
            await self.publish(DeadlineWarned(**fields))
            return
        task.breached = True
        self.save_task(task)
        await self.history("deadline_breached", task_id=task.id, from_state=task.state, due_at=task.due_at)
        notify = tuple(e.role for e in state.deadline.on_breach if isinstance(e, Notify))
        await self.publish(DeadlineBreached(**fields, notify=notify))
        for escalation in state.deadline.on_breach:
            if isinstance(escalation, Notify):
                await self.history(
                    "escalated", task_id=task.id, from_state=task.state, data={"notify": escalation.role}
                )
            elif isinstance(escalation, Reassign):
                unit_path = await self.unit_path(escalation.unit) if escalation.unit else task.unit_path
                task.role, task.unit_path, task.assignee = escalation.role, unit_path, None
                self.save_task(task)
                await self.history(
                    "escalated",
                    task_id=task.id,
                    from_state=task.state,
                    data={"reassign": {"role": escalation.role, "unit": unit_path}},
                )
                await self.announce(task)
            elif isinstance(escalation, AutoAction) and task.id in self.open:
                await self.history(
                    "escalated", task_id=task.id, from_state=task.state, data={"action": escalation.action}
                )
                await self.apply(
                    task,
                    escalation.action,
                    comment="Taken automatically: the deadline passed.",
                    attachments=[],
                    data={},
                    enforce=False,
                )

    async def _fire_instance(self, timer: TimerRow) -> None:
        deadline = self.definition.deadline
        if self.instance.status != "running" or deadline is None or self.instance.due_at is None:
            return
        context = await self.context()
        fields: dict[str, Any] = {
            "instance_id": self.instance.id,
            "task_id": None,
            "subject_kind": self.instance.subject_kind,
            "subject_id": self.instance.subject_id,
            "state": None,
            "role": None,
            "unit_path": context.owner_unit,
            "assignee": None,
            "due_at": self.instance.due_at,
        }
        self._instance_changed = True
        if timer.kind == "warn":
            self.instance.warned = True
            await self.history("deadline_warned", due_at=self.instance.due_at)
            await self.publish(DeadlineWarned(**fields))
            return
        self.instance.breached = True
        await self.history("deadline_breached", due_at=self.instance.due_at)
        notify = tuple(e.role for e in deadline.on_breach if isinstance(e, Notify))
        await self.publish(DeadlineBreached(**fields, notify=notify))
        for role in notify:
            await self.history("escalated", data={"notify": role})


def _missing(
    spec: Action, *, comment: str | None, attachments: list[Any], data: dict[str, Any]
) -> list[FieldError]:
    missing: list[FieldError] = []
    for need in spec.require:
        if need == "comment" and not (comment and comment.strip()):
            missing.append(FieldError(pointer="/comment", detail="required for this action"))
        elif need == "attachments" and not attachments:
            missing.append(
                FieldError(pointer="/attachments", detail="at least one is required for this action")
            )
        elif need.startswith("data."):
            key = need.removeprefix("data.")
            if data.get(key) in (None, "", [], {}):
                missing.append(FieldError(pointer=f"/data/{key}", detail="required for this action"))
    return missing


# --- the public functions --------------------------------------------------------------------------


async def start(
    conn: Connection,
    *,
    subject_kind: str,
    subject_id: str,
    definition_key: str,
    actor: Actor,
    version: int | None = None,
    vars: dict[str, Any] | None = None,
) -> InstanceView:
    """Start the latest (or a pinned) version of a definition for a subject, in `conn`'s transaction."""
    rt = runtime()
    rt.kind(subject_kind)
    row = await store.definition(conn, definition_key, version)
    if row is None:
        raise NotFound(
            f"No workflow definition {definition_key!r}" + (f" version {version}." if version else ".")
        )
    now = rt.now()
    instance = await store.insert_instance(
        conn,
        definition_id=row.id,
        subject_kind=subject_kind,
        subject_id=subject_id,
        vars=vars or {},
        started_by=actor.subject,
        started_at=now,
    )
    if instance is None:
        raise Conflict(f"The {subject_kind} {subject_id} already has a workflow.")
    meta, definition = await load_definition(conn, row.id)
    step = _Step(conn, instance, meta, definition, await work_calendar(conn), actor, now)
    await step.history("started", to_state=definition.start, data={"version": meta.version})
    await step.start_clock()
    root = await store.insert_token(
        conn, instance_id=instance.id, parent_id=None, branch=None, state=definition.start
    )
    step.tokens[root.id] = root
    await step.enter(root, definition.start)
    await step.save()
    return await _instance_view(step)


async def act(
    conn: Connection,
    task_id: UUID,
    *,
    action: str,
    actor: Actor,
    comment: str | None = None,
    attachments: list[Any] | None = None,
    data: dict[str, Any] | None = None,
    expected_version: int | None = None,
) -> ActionResult:
    """Take `action` on an open task. Refusals: 404 unknown, 409 already done or claimed by
    another, 412 stale `expected_version`, 403 not the actor's, 422 not allowed or incomplete."""
    step = await _visible(conn, await store.lock_step_of_task(conn, task_id), task_id, actor)
    result = await _act(step, task_id, action, comment, attachments or [], data or {}, expected_version)
    await step.save()
    return result


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskAction:
    """`act` under an Idempotency-Key (`claim`), as `act_once` and `act_together` take it."""

    task_id: UUID
    claim: idempotency.Claim
    action: str
    actor: Actor
    comment: str | None = None
    attachments: list[Any] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    expected_version: int | None = None


async def act_once(conn: Connection, action: TaskAction) -> ActionResult | idempotency.Stored:
    """`act` under an Idempotency-Key: the key is reserved in the step's first statement and
    the result kept under it in its last. A key already answered returns the reply it kept
    (`Stored`), and nothing else happens."""
    [outcome] = await act_together(conn, [action])
    if outcome is None:
        raise RuntimeError("workflow invariant broken: a lone action is never put off")
    return outcome


async def act_together(
    conn: Connection, actions: Sequence[TaskAction]
) -> list[ActionResult | idempotency.Stored | None]:
    """`act_once` for several actions in one transaction, with the round trips of one: one
    statement reserves every key and locks every instance, each action's step runs (its
    subject's hooks too, on `conn`), one statement writes every step. Per action, in order: its
    result, the reply its key kept, or None when it was put off (an earlier action here acts on
    the same instance, and this one must see its effect: act on it again in a later
    transaction). The same request sent twice with one key is put off so (its task's instance);
    one key sent with two different requests makes the keys' row clash when written. A refusal
    or an error raises, for the whole transaction: roll it back and act on each alone
    (`act_once`) to give each its own answer."""
    found = await store.lock_steps_of_tasks(conn, [(a.task_id, a.claim) for a in actions])
    outcomes: list[ActionResult | idempotency.Stored | None] = []
    staged: list[store.Staged] = []
    instances: set[UUID] = set()
    for action, (locked, reserved) in zip(actions, found, strict=True):
        if locked is not None and locked.instance.id in instances:
            outcomes.append(None)
            continue
        replay = idempotency.stored(reserved)
        if replay is not None:
            outcomes.append(replay)
            continue
        step = await _visible(conn, locked, action.task_id, action.actor)
        instances.add(step.instance.id)
        result = await _act(
            step,
            action.task_id,
            action.action,
            action.comment,
            action.attachments,
            action.data,
            action.expected_version,
        )
        outcomes.append(result)
        done = step.staged(action.claim.answer(200, result))
        if done is not None:
            staged.append(done)
    if staged:
        await store.flush(conn, staged)
    return outcomes


async def _act(
    step: _Step,
    task_id: UUID,
    action: str,
    comment: str | None,
    attachments: list[Any],
    data: dict[str, Any],
    expected_version: int | None,
) -> ActionResult:
    """The action on the step (staged, not yet written: the caller saves the step)."""
    task = step.open.get(task_id)
    if task is None:
        done = await store.task(step.conn, task_id)
        if not (done is not None):
            raise RuntimeError("workflow invariant broken: done is not None")
        raise Conflict(
            f"This task is no longer open: it was {done.status}"
            + (f" ({done.action})" if done.action else "")
            + (f" at {done.completed_at.isoformat()}." if done.completed_at else ".")
        )
    if expected_version is not None and task.version != expected_version:
        raise PreconditionFailed(
            f"The task changed since you read it (version {task.version}, you had {expected_version}); reload it."
        )
    await step.apply(task, action, comment=comment, attachments=attachments, data=data)
    return ActionResult(task=_task_view(step.definition, task, step.now), instance=await _instance_view(step))


async def claim(
    conn: Connection,
    task_id: UUID,
    *,
    actor: Actor,
    release: bool = False,
    expected_version: int | None = None,
) -> TaskView:
    """Take an open task from the unit's queue (or give it back). Claiming one's own is a no-op."""
    step = await _locked_for_task(conn, task_id, actor)
    task = step.open.get(task_id)
    if task is None:
        raise Conflict("This task is no longer open.")
    if expected_version is not None and task.version != expected_version:
        raise PreconditionFailed(f"The task changed since you read it (version {task.version}); reload it.")
    if task.kind == "wait" or task.unit_path is None:
        raise RuleViolation("This step waits for the applicant; it is not in a queue.")
    grant = actor.grant(task.role or "", task.unit_path) if task.role else None
    supervisor = actor.grant("supervisor", task.unit_path)
    if release:
        if task.assignee is None:
            return _task_view(step.definition, task, step.now)
        if task.assignee not in await step.people() and supervisor is None:
            raise Forbidden("Only the person who claimed the task, or a supervisor, can release it.")
        task.assignee = None
        event = "released"
    else:
        if grant is None:
            raise Forbidden(f"Claiming this task needs the role {task.role} within {task.unit_path}.")
        if task.assignee == actor.subject:
            return _task_view(step.definition, task, step.now)
        if task.assignee is not None:
            raise Conflict("Another person has already claimed this task.")
        task.assignee = actor.subject
        event = "claimed"
    step.save_task(task)
    used = grant if event == "claimed" else (supervisor or grant)
    await step.history(
        event,
        task_id=task.id,
        from_state=task.state,
        actor_role=used.role if used else None,
        actor_unit=used.path if used else None,
    )
    await step.announce(task)
    await step.save()
    return _task_view(step.definition, task, step.now)


async def reassign(
    conn: Connection,
    task_id: UUID,
    *,
    actor: Actor,
    reason: str,
    role: str | None = None,
    unit_code: str | None = None,
    assignee: str | None = None,
    expected_version: int | None = None,
) -> TaskView:
    """A supervisor moves a task: to another role or unit (its queue), or to a named person."""
    step = await _locked_for_task(conn, task_id, actor)
    task = step.open.get(task_id)
    if task is None:
        raise Conflict("This task is no longer open.")
    if expected_version is not None and task.version != expected_version:
        raise PreconditionFailed(f"The task changed since you read it (version {task.version}); reload it.")
    if task.kind == "wait" or task.unit_path is None:
        raise RuleViolation("This step waits for the applicant; it cannot be reassigned.")
    supervisor = actor.grant("supervisor", task.unit_path)
    if actor.kind != "system" and supervisor is None:
        raise Forbidden(f"Reassigning needs the role supervisor within {task.unit_path}.")
    new_path = task.unit_path
    if unit_code is not None:
        found = await identity_api.unit_path(conn, unit_code)
        if found is None:
            raise RuleViolation(
                "No such unit.", errors=[FieldError(pointer="/unit", detail="unknown unit code")]
            )
        if actor.kind != "system" and actor.grant("supervisor", found) is None:
            raise Forbidden(f"Moving a task to {found} needs the role supervisor there too.")
        new_path = found
    new_role = role or task.role
    if new_role not in identity_api.ROLES or new_role == "citizen":
        raise RuleViolation(
            "No such staff role.", errors=[FieldError(pointer="/role", detail="unknown role")]
        )
    if not (new_role is not None):
        raise RuntimeError("workflow invariant broken: new_role is not None")
    if assignee is not None and not await identity_api.holds_role(conn, assignee, new_role, within=new_path):
        raise RuleViolation(
            f"That person does not hold the role {new_role} within {new_path}.",
            errors=[FieldError(pointer="/assignee", detail="lacks the role in the unit")],
        )
    before = {"role": task.role, "unit": task.unit_path, "assignee": task.assignee}
    task.role, task.unit_path, task.assignee = new_role, new_path, assignee
    step.save_task(task)
    await step.history(
        "reassigned",
        task_id=task.id,
        from_state=task.state,
        actor_role=supervisor.role if supervisor else None,
        actor_unit=supervisor.path if supervisor else None,
        comment=reason,
        data={"before": before, "after": {"role": new_role, "unit": new_path, "assignee": assignee}},
    )
    await step.announce(task)
    await step.save()
    return _task_view(step.definition, task, step.now)


async def cancel(
    conn: Connection, instance_id: UUID, *, actor: Actor, outcome: str, reason: str
) -> InstanceView:
    """End a running instance from outside its definition (the applicant withdrew; the subject's
    owner cancelled it): every open task closes as cancelled, the history records who and why, and
    the subject's `ended` hook hears `outcome`. Only the subject's owning context calls this, on
    authority it has checked itself. 404 unknown, 409 already ended."""
    step = await _Step.locked(conn, instance_id, actor)
    if step is None:
        raise NotFound("No such workflow instance.")
    if step.instance.status != "running":
        raise Conflict(f"This workflow has already ended ({step.instance.outcome}).")
    await step.history("cancelled", comment=reason, data={"outcome": outcome})
    for root in [t for t in step.tokens.values() if t.parent_id is None and t.status in ("active", "forked")]:
        await step.cancel_token(root)  # each open task closes with its own history entry
    await step.end(outcome)
    await step.save()
    return await _instance_view(step)


async def fire_due_timers(conn: Connection, *, limit: int = 200) -> int:
    """Fire deadline timers that are due; each fires once, however late (a worker that was off
    catches up). Busy instances are skipped and picked up by the next scan."""
    rt = runtime()
    fired = 0
    for timer in await store.due_timers(conn, rt.now(), limit):
        async with conn.transaction():
            step = await _Step.locked(conn, timer.instance_id, Actor.system("deadline"), wait=False)
            if step is None:
                continue
            claimed = await store.claim_timer(conn, timer.id)
            if claimed is None:
                continue
            try:
                async with conn.transaction():
                    await step.fire(claimed)
                    await step.save()
            except (RuleViolation, Conflict, Forbidden, NotFound) as exc:
                log.warning("escalation failed", extra={"timer": timer.id, "error": exc.detail})
                await store.mark_timer(conn, claimed.id, step.now, error=exc.detail)
                continue
            await store.mark_timer(conn, claimed.id, step.now)
            fired += 1
    return fired


async def _locked_for_task(conn: Connection, task_id: UUID, actor: Actor) -> _Step:
    found = await store.lock_step_of_task(conn, task_id)
    return await _visible(conn, found, task_id, actor)


async def _visible(conn: Connection, found: store.LockedStep | None, task_id: UUID, actor: Actor) -> _Step:
    """The step on the task's instance, if the actor may see the task; else 404."""
    step = None if found is None else await _Step.of_task(conn, found, actor)
    if step is None or not await _may_see(step, task_id):
        raise NotFound("No such task.")
    return step


async def _may_see(step: _Step, task_id: UUID) -> bool:
    """Staff see tasks of their role in their units and anything their supervised units hold;
    the applicant sees their own steps. Everything else is not found (never confirmed)."""
    task = step.open.get(task_id) or await store.task(step.conn, task_id)
    if not (task is not None):
        raise RuntimeError("workflow invariant broken: task is not None")
    return await may_see_task(step.conn, step.actor, task, now=step.now)


async def may_see_task(conn: Connection, actor: Actor, task: TaskRow, *, now: datetime) -> bool:
    if actor.kind == "system":
        return True
    if task.unit_path is not None and any(
        g.covers(task.unit_path) and g.role in (*OVERSEERS, task.role, "admin") for g in actor.roles
    ):
        return True
    if task.assignee is None:
        return False
    return task.assignee == actor.subject or task.assignee in await store.delegators(conn, actor.subject, now)


async def instance(conn: Connection, instance_id: UUID, *, history: bool = True) -> InstanceView | None:
    row = await store.instance(conn, instance_id)
    if row is None:
        return None
    meta, definition = await load_definition(conn, row.definition_id)
    step = _Step(conn, row, meta, definition, await work_calendar(conn), Actor.system(), runtime().now())
    step.open = {task.id: task for task in await store.open_tasks(conn, instance_id)}
    return await _instance_view(step, history=history)


async def instance_for_subject(conn: Connection, subject_kind: str, subject_id: str) -> InstanceView | None:
    row = await store.instance_by_subject(conn, subject_kind, subject_id)
    return None if row is None else await instance(conn, row.id)


def _task_view(definition: Definition, task: TaskRow, now: datetime) -> TaskView:
    state = definition.states.get(task.state)
    actions: tuple[ActionView, ...] = ()
    if task.status == "open" and isinstance(state, TaskState | WaitState):
        actions = tuple(
            ActionView(
                name=name,
                label=spec.label,
                target=spec.target,
                require=spec.require,
                roles=spec.roles or ((state.role,) if isinstance(state, TaskState) else ("applicant",)),
            )
            for name, spec in state.actions.items()
        )
    due_at = None if task.due_at == NO_DEADLINE else task.due_at
    return TaskView(
        id=task.id,
        instance_id=task.instance_id,
        subject_kind=task.subject_kind,
        subject_id=task.subject_id,
        state=task.state,
        label=state.label if state else None,
        kind=task.kind,
        role=task.role,
        unit_path=task.unit_path,
        assignee=task.assignee,
        status=task.status,
        created_at=task.created_at,
        due_at=due_at,
        overdue=task.status == "open" and due_at is not None and due_at < now,
        warned=task.warned,
        breached=task.breached,
        version=task.version,
        actions=actions,
        completed_at=task.completed_at,
        completed_by=task.completed_by,
        action=task.action,
    )


def task_view(definition: Definition, task: TaskRow, now: datetime) -> TaskView:
    return _task_view(definition, task, now)


async def _instance_view(step: _Step, *, history: bool = False) -> InstanceView:
    entries: tuple[HistoryEntry, ...] = ()
    if history:
        entries = tuple(
            HistoryEntry(
                seq=h.seq,
                at=h.at,
                event=h.event,
                actor=h.actor,
                actor_name=h.actor_name,
                actor_role=h.actor_role,
                actor_unit=h.actor_unit,
                task_id=h.task_id,
                action=h.action,
                from_state=h.from_state,
                to_state=h.to_state,
                comment=h.comment,
                attachments=h.attachments,
                data=h.data,
                due_at=h.due_at,
            )
            for h in await store.history(step.conn, step.instance.id)
        )
    row = step.instance
    return InstanceView(
        id=row.id,
        definition_key=step.meta.key,
        definition_version=step.meta.version,
        subject_kind=row.subject_kind,
        subject_id=row.subject_id,
        status=row.status,
        outcome=row.outcome,
        started_at=row.started_at,
        ended_at=row.ended_at,
        due_at=row.due_at,
        paused=row.pauses > 0,
        open_tasks=tuple(_task_view(step.definition, t, step.now) for t in step.open.values()),
        history=entries,
    )


def fingerprint(body: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(msgspec.json.encode(body, order="sorted")).digest()


# --- reading: the inbox, one task, one instance ---------------------------------------------------

InboxView = Literal["all", "mine", "queue", "overdue", "due_soon"]


async def inbox(
    conn: Connection,
    actor: Actor,
    *,
    view: InboxView = "all",
    subject_kind: str | None = None,
    state: str | None = None,
    unit: str | None = None,
    after: tuple[datetime, UUID] | None = None,
    limit: int = 50,
) -> list[TaskView]:
    """The caller's open tasks by due date (`limit` + 1 rows, so the caller can tell a next page)."""
    now = runtime().now()
    people = [actor.subject, *await store.delegators(conn, actor.subject, now)]
    grants = [g for g in actor.roles if g.role != "citizen"]
    due_from = due_before = None
    if view == "overdue":
        due_before = now
    elif view == "due_soon":
        due_from = now
        due_before = (await work_calendar(conn)).add(now, timedelta(days=1), "working_days")
    rows = await store.inbox(
        conn,
        people=people if view != "queue" else [],
        roles=[g.role for g in grants] if view != "mine" else [],
        paths=[g.path for g in grants] if view != "mine" else [],
        subject_kind=subject_kind,
        state=state,
        unit=unit,
        due_from=due_from,
        due_before=due_before,
        after=after,
        limit=limit + 1,
        unclaimed_only=view == "queue",
    )
    views = []
    for row in rows:
        _, definition = await load_definition(conn, row.definition_id)
        views.append(_task_view(definition, row, now))
    return views


async def task(conn: Connection, task_id: UUID, actor: Actor) -> TaskView:
    row = await store.task(conn, task_id)
    now = runtime().now()
    if row is None or not await may_see_task(conn, actor, row, now=now):
        raise NotFound("No such task.")
    _, definition = await load_definition(conn, row.definition_id)
    return _task_view(definition, row, now)


async def instance_for(conn: Connection, instance_id: UUID, actor: Actor) -> InstanceView:
    """An instance with its history, for someone who may see one of its tasks (or an admin)."""
    found = await instance(conn, instance_id)
    if found is None:
        raise NotFound("No such workflow instance.")
    if actor.kind != "system" and not any(g.role == "admin" for g in actor.roles):
        now = runtime().now()
        tasks = await store.instance_tasks(conn, instance_id)
        if not any([await may_see_task(conn, actor, t, now=now) for t in tasks]):
            raise NotFound("No such workflow instance.")
    return found


# --- out of office -------------------------------------------------------------------------------


async def delegate(
    conn: Connection, actor: Actor, *, to: str, starts_at: datetime | None, ends_at: datetime, reason: str
) -> store.DelegationRow:
    """While away, `to` sees and acts on the tasks the actor has claimed (within their own roles)."""
    now = runtime().now()
    begins = starts_at or now
    if to == actor.subject:
        raise RuleViolation(
            "Delegate to someone else.", errors=[FieldError(pointer="/delegate", detail="yourself")]
        )
    if not await identity_api.is_staff(conn, to):
        raise RuleViolation(
            "Delegate to a member of staff: the delegate is no enabled person with a staff role.",
            errors=[FieldError(pointer="/delegate", detail="not a member of staff")],
        )
    if ends_at <= begins or ends_at <= now:
        raise RuleViolation(
            "The delegation must end after it starts, in the future.",
            errors=[FieldError(pointer="/ends_at", detail="not after the start")],
        )
    if ends_at - begins > timedelta(days=366):
        raise RuleViolation(
            "A delegation lasts at most a year.", errors=[FieldError(pointer="/ends_at", detail="too far")]
        )
    return await store.insert_delegation(
        conn,
        person=actor.subject,
        delegate=to,
        starts_at=begins,
        ends_at=ends_at,
        reason=reason,
        created_by=actor.subject,
    )


# --- definitions -----------------------------------------------------------------------------------


async def save_definition(
    conn: Connection, definition: Definition, *, source: str, media_type: str, by: str
) -> tuple[store.DefinitionRow, bool]:
    """Store a checked definition as its key's next version; an upload identical to the latest
    version stores nothing and returns that version (False: not created)."""
    body = msgspec.to_builtins(definition)
    checksum = fingerprint(body)
    await store.lock_definition_key(conn, definition.key)
    latest = await store.definition(conn, definition.key)
    if latest is not None and latest.checksum == checksum:
        return latest, False
    row = await store.insert_definition(
        conn,
        key=definition.key,
        name=definition.name,
        body=body,
        source=source,
        media_type=media_type,
        checksum=checksum,
        created_by=by,
    )
    return row, True


async def install_definition(
    conn: Connection, text: str, *, media_type: Literal["yaml", "json"], by: str
) -> tuple[int, bool]:
    """Store a definition a context ships with (grid's case loop) when its key has none yet; an
    administrator's later versions are never overwritten. Returns (version in force, created)."""
    definition = parse(
        text, media_type=media_type, roles=identity_api.ROLES, units=await identity_api.unit_codes(conn)
    )
    await store.lock_definition_key(conn, definition.key)
    existing = await store.definition(conn, definition.key)
    if existing is not None:
        return existing.version, False
    row, created = await save_definition(conn, definition, source=text, media_type=media_type, by=by)
    return row.version, created


async def deadline(
    conn: Connection, start: datetime, duration: str, *, clock: Clock | None = None
) -> datetime:
    """When `duration` (ISO 8601) from `start` runs out on the city's calendar; the clock is the
    one its author meant (days: working days, hours: office hours) unless given."""
    days, seconds = parse_duration(duration)
    use = clock or infer_clock(days, seconds)
    calendar = await work_calendar(conn)
    return calendar.add(start, calendar.budget(days, seconds, use), use)
