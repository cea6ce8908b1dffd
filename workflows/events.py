"""What the workflow engine announces through the outbox, in the transaction of the change.

No personal data: people are named by their subject identifier, never by name or number.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from onewindow.events import Event


class TaskAssigned(Event, frozen=True, kw_only=True):
    """A task was opened, claimed, released or moved: it sits in `unit_path` for `role`, or with
    `assignee` (for a wait state: the applicant)."""

    topic: ClassVar[str] = "workflows.task.assigned"
    task_id: UUID
    instance_id: UUID
    subject_kind: str
    subject_id: str
    state: str
    kind: str
    role: str | None
    unit_path: str | None
    assignee: str | None
    due_at: datetime | None


class TaskCompleted(Event, frozen=True, kw_only=True):
    topic: ClassVar[str] = "workflows.task.completed"
    task_id: UUID
    instance_id: UUID
    subject_kind: str
    subject_id: str
    state: str
    action: str
    actor: str
    to_state: str


class InstanceEnded(Event, frozen=True, kw_only=True):
    topic: ClassVar[str] = "workflows.instance.ended"
    instance_id: UUID
    subject_kind: str
    subject_id: str
    outcome: str


class DeadlineWarned(Event, frozen=True, kw_only=True):
    """A deadline is close (its `warn_at` fraction has passed). `task_id` None: the instance's."""

    topic: ClassVar[str] = "workflows.deadline.warned"
    instance_id: UUID
    task_id: UUID | None
    subject_kind: str
    subject_id: str
    state: str | None
    role: str | None
    unit_path: str | None
    assignee: str | None
    due_at: datetime


class DeadlineBreached(Event, frozen=True, kw_only=True):
    """A deadline passed. `notify`: the roles over `unit_path` to tell (the definition's rule)."""

    topic: ClassVar[str] = "workflows.deadline.breached"
    instance_id: UUID
    task_id: UUID | None
    subject_kind: str
    subject_id: str
    state: str | None
    role: str | None
    unit_path: str | None
    assignee: str | None
    due_at: datetime
    notify: tuple[str, ...] = ()
