"""The engine's value types: what the public API takes and returns (re-exported by `api`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Protocol
from uuid import UUID

import msgspec

from identity.api import Principal, RoleGrant
from onewindow.db import Connection


class SubjectContext(msgspec.Struct, frozen=True, kw_only=True):
    """What the engine needs to know about a subject. `data` is what conditions see as
    `subject`; the unit paths answer the `owner` and `grid` unit rules; `applicant` is the
    person (subject identifier) who acts on wait states."""

    data: dict[str, Any] = msgspec.field(default_factory=dict)
    owner_unit: str | None = None
    grid_unit: str | None = None
    applicant: str | None = None


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """One step of an instance, as its subject's owner hears of it (inside the transaction)."""

    instance_id: UUID
    subject_id: str
    definition_key: str
    from_state: str
    to_state: str
    action: str
    actor: str
    at: datetime
    outcome: str | None = None
    comment: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class Ending(msgspec.Struct, frozen=True, kw_only=True):
    instance_id: UUID
    subject_id: str
    definition_key: str
    outcome: str
    at: datetime


class SubjectKind(Protocol):
    """Implemented by the context that owns the subjects (services: application items; grid:
    cases). Its hooks run in the engine's transaction: raising aborts the whole step. The step's
    own history entries and workflow events are written when the step ends, after the hooks: a
    hook learns what happened from its argument, not by reading the instance's history."""

    name: str

    async def context(self, conn: Connection, subject_id: str) -> SubjectContext: ...

    async def transitioned(self, conn: Connection, transition: Transition) -> None: ...

    async def ended(self, conn: Connection, ending: Ending) -> None: ...


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """Who acts: a person (with the roles their token carries) or the system itself (timers,
    a payment provider's confirmation, a context acting on a citizen's behalf)."""

    subject: str
    kind: Literal["person", "system"]
    roles: tuple[RoleGrant, ...] = ()
    name: str | None = None

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        return cls(subject=principal.subject, kind="person", roles=principal.roles, name=principal.name)

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        return cls(subject=name, kind="system")

    def grant(self, role: str, unit_path: str) -> RoleGrant | None:
        """The grant through which this actor holds `role` over `unit_path`, if any."""
        return next((g for g in self.roles if g.role == role and g.covers(unit_path)), None)


class ActionView(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    label: str | None
    target: str
    require: tuple[str, ...]
    roles: tuple[str, ...]


class TaskView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    instance_id: UUID
    subject_kind: str
    subject_id: str
    state: str
    label: str | None
    kind: str
    role: str | None
    unit_path: str | None
    assignee: str | None
    status: str
    created_at: datetime
    due_at: datetime | None
    overdue: bool
    warned: bool
    breached: bool
    version: int
    actions: tuple[ActionView, ...] = ()
    completed_at: datetime | None = None
    completed_by: str | None = None
    action: str | None = None


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    at: datetime
    event: str
    actor: str
    actor_name: str | None
    actor_role: str | None
    actor_unit: str | None
    task_id: UUID | None
    action: str | None
    from_state: str | None
    to_state: str | None
    comment: str | None
    attachments: list[Any]
    data: dict[str, Any]
    due_at: datetime | None


class InstanceView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    definition_key: str
    definition_version: int
    subject_kind: str
    subject_id: str
    status: str
    outcome: str | None
    started_at: datetime
    ended_at: datetime | None
    due_at: datetime | None
    paused: bool
    open_tasks: tuple[TaskView, ...]
    history: tuple[HistoryEntry, ...] = ()


class ActionResult(msgspec.Struct, frozen=True, kw_only=True):
    """The task as the action left it, and where its instance is now."""

    task: TaskView
    instance: InstanceView
