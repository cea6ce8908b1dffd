"""The workflow engine's public face: what services and grid call, and what they implement.

A context that runs work through the engine registers a *subject kind* (the `SubjectKind`
protocol: the data conditions see, the units tasks are queued in, and a hook called in the
same transaction as every transition and at the end), then starts instances for its subjects:

    await workflows.api.start(conn, subject_kind="application", subject_id=str(app.id),
                              definition_key="food-licence", actor=Actor.system())

Every function takes the caller's connection and runs inside the caller's transaction: an
application and its workflow are written together or not at all. The composition root calls
`configure(settings, kinds)` once per process.
"""

from __future__ import annotations

from workflows.engine import (
    act,
    cancel,
    claim,
    configure,
    deadline,
    evaluate,
    fire_due_timers,
    inbox,
    install_definition,
    instance,
    instance_for_subject,
    now,
    reassign,
    start,
    task,
)
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

__all__ = [
    "ActionResult",
    "ActionView",
    "Actor",
    "Ending",
    "HistoryEntry",
    "InstanceView",
    "SubjectContext",
    "SubjectKind",
    "TaskView",
    "Transition",
    "act",
    "cancel",
    "claim",
    "configure",
    "deadline",
    "evaluate",
    "fire_due_timers",
    "inbox",
    "install_definition",
    "instance",
    "instance_for_subject",
    "now",
    "reassign",
    "start",
    "task",
]
