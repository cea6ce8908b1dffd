"""What grid management announces through the outbox, in the transaction of the change.

Every report and every change of a case: the IOC feed (channels) carries them. No personal data:
the reporter is not named; a location is the street problem's, not a person's.

`sequence` is the case's own event number: 1 for its report, then strictly increasing in the
order the case's changes were committed (taken under the case's row lock by the statement that
writes the change; grid.cases.event_sequence). Consumers order a case's events by it: the outbox
may hand them on in another order (a retried event falls behind a later one).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from onewindow.events import Event


class CaseReported(Event, frozen=True, kw_only=True):
    topic: ClassVar[str] = "grid.case.reported"
    case_id: UUID
    number: str
    sequence: int
    source: str
    category: str
    department: str
    severity: str
    grid_code: str | None
    lat: float | None
    lon: float | None
    status: str
    reported_at: datetime
    register_due_at: datetime


class CaseChanged(Event, frozen=True, kw_only=True):
    """A step of the case's loop (`action` as in the loop's definition, or grid's own: `linked`,
    `closed_with_primary`, `photos_added`), with the status before and after."""

    topic: ClassVar[str] = "grid.case.changed"
    case_id: UUID
    number: str
    sequence: int
    action: str
    from_status: str
    status: str
    at: datetime
    grid_code: str | None
    department: str
    dispatched_to: str | None = None
    handle_due_at: datetime | None = None
    duplicate_of: UUID | None = None
    rework_count: int = 0
    note: str | None = None
    # Who outside the city made the change (`ioc` through `grid.api.external_update`); None for
    # the city's own staff and rules. The IOC feed does not echo the IOC's own changes back to it.
    origin: str | None = None


class CaseClosed(Event, frozen=True, kw_only=True):
    """The case left the loop for good: closed (after evaluation, or with its primary) or rejected."""

    topic: ClassVar[str] = "grid.case.closed"
    case_id: UUID
    number: str
    sequence: int
    status: str
    at: datetime
    rating: int | None
    rework_count: int
    origin: str | None = None
