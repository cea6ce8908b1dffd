"""A workflow definition once validated: the normalised form the engine runs and stores as jsonb.

Authors write YAML or JSON (docs/workflows.md); `workflows.definitions.parse` checks it and
produces a `Definition`. Every name a state or action refers to exists, every duration is
parsed, every state knows the parallel state it belongs to (`parent`), so the engine never
re-checks a definition it loaded.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# How a deadline's time passes. working_days: only on working days (each counts 24 hours, so
# P3D from Friday 15:00 is Wednesday 15:00); working_hours: only within office hours of working
# days (a day in the duration is one office day); continuous: the wall clock.
Clock = Literal["working_days", "working_hours", "continuous"]

UnitKind = Literal["fixed", "owner", "grid", "applicant"]
ActorKind = Literal["staff", "applicant", "system"]


class UnitRule(msgspec.Struct, frozen=True, kw_only=True):
    """Which organisation unit a task is queued in: a fixed unit (by code), the unit that owns
    the subject (an approval item's department), the subject's grid, or the applicant in person."""

    kind: UnitKind
    code: str | None = None


class Notify(msgspec.Struct, frozen=True, tag="notify", kw_only=True):
    """Tell the holders of `role` over the task's unit (a `deadline.breached` event names them)."""

    role: str = "supervisor"


class Reassign(msgspec.Struct, frozen=True, tag="reassign", kw_only=True):
    """Move the task to `role`, in `unit` or (None) the unit it is in; its claim is released."""

    role: str
    unit: UnitRule | None = None


class AutoAction(msgspec.Struct, frozen=True, tag="action", kw_only=True):
    """Take one of the state's own actions as the system (e.g. withdraw an uncorrected application)."""

    action: str


Escalation = Notify | Reassign | AutoAction


class Deadline(msgspec.Struct, frozen=True, kw_only=True):
    duration: str  # the ISO 8601 duration as written, e.g. "P3D", "PT4H"
    clock: Clock
    days: int
    seconds: int
    warn_at: float = 0.8  # fraction of the budget after which a warning fires
    on_breach: tuple[Escalation, ...] = ()


# `roles` of a wait state's action that only the system may take (not the applicant).
SYSTEM_ONLY = "system"


class Action(msgspec.Struct, frozen=True, kw_only=True):
    """An action on a task or wait state.

    `target` is another state of the same branch, or the enclosing parallel state: then the
    branch finishes with `outcome` ("approved" or "rejected"). On a task state the task's
    current role may always take it and `roles` lets others too; on a wait state the applicant
    and the system may, or the system alone when `roles` is `(SYSTEM_ONLY,)`.
    `require` lists "comment", "attachments" or "data.<key>"; `when` is a JSON Logic condition
    over {"subject": ..., "vars": ..., "data": ...}.
    """

    target: str
    outcome: str | None = None
    roles: tuple[str, ...] = ()
    require: tuple[str, ...] = ()
    when: Any = None
    label: str | None = None


class TaskState(msgspec.Struct, frozen=True, tag="task", kw_only=True):
    role: str
    unit: UnitRule
    actions: dict[str, Action]
    deadline: Deadline | None = None
    label: str | None = None
    parent: str | None = None  # the parallel state whose branch this state is in


class WaitState(msgspec.Struct, frozen=True, tag="wait", kw_only=True):
    """Waiting for the applicant (a correction, a payment). Pauses the instance's clock, and the
    clock of the task that sent it here continues when the flow comes back to that task."""

    reason: str
    actions: dict[str, Action]
    pauses_clock: bool = True
    deadline: Deadline | None = None
    label: str | None = None
    parent: str | None = None


class Join(msgspec.Struct, frozen=True, kw_only=True):
    mode: Literal["all", "any", "n_of_m"]
    n: int  # approvals needed: m for all, 1 for any


class ParallelState(msgspec.Struct, frozen=True, tag="parallel", kw_only=True):
    """Branches run at once, each from its start state; the join decides approved or rejected.

    decide="early" decides as soon as the result is certain (the rest are cancelled: one
    rejection under `all`, the first approval under `any`); "all_done" waits for every branch.
    `next` maps "approved" and "rejected" to the state that follows.
    """

    branches: dict[str, str]
    join: Join
    next: dict[str, str]
    decide: Literal["early", "all_done"] = "early"
    label: str | None = None
    parent: str | None = None


class Case(msgspec.Struct, frozen=True, kw_only=True):
    when: Any
    target: str


class DecisionState(msgspec.Struct, frozen=True, tag="decision", kw_only=True):
    """Chooses the first case whose condition holds, else `otherwise`; takes no time."""

    cases: tuple[Case, ...]
    otherwise: str
    label: str | None = None
    parent: str | None = None


class EndState(msgspec.Struct, frozen=True, tag="end", kw_only=True):
    outcome: str
    label: str | None = None
    parent: str | None = None


State = TaskState | WaitState | ParallelState | DecisionState | EndState


class Definition(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    name: str
    start: str
    states: dict[str, State]
    deadline: Deadline | None = None
    description: str | None = None
