"""Ratings (好差评) and the follow-up of a bad one.

Once an application is decided, its applicant may rate the service once, on five levels, with an
optional comment. A rating of 1 or 2 opens a follow-up in each department that decided an item
of the application: a row in services.follow_ups and an instance of the workflow definition
`rating-follow-up` (subject kind `rating_follow_up`), whose task waits in the department's
supervisor inbox for 5 working days. `FollowUpKind` is that subject for the engine: it queues the
task in the department, keeps the supervisor's latest comment, and closes the row when the
instance ends.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final, Literal
from uuid import UUID

import msgspec

from identity.api import Principal, unit_path
from onewindow.db import Connection
from onewindow.errors import Conflict, NotFound
from services import application_store, reviewers
from services import ratings_store as store
from services.application_store import ApplicationItemRow, ApplicationRow
from services.ratings_store import FollowUpRow, RatingRow
from workflows import api as workflows

__all__ = [
    "DEFINITION",
    "FOLLOW_UP_LEVELS",
    "KIND",
    "FollowUpKind",
    "FollowUpView",
    "RatingView",
    "rate",
    "rating_of",
]

KIND: Final = "rating_follow_up"
DEFINITION: Final = "rating-follow-up"
# The levels that open a follow-up: 1 (very dissatisfied) and 2 (dissatisfied).
FOLLOW_UP_LEVELS: Final = frozenset({1, 2})
_DECIDED_ITEM: Final = ("approved", "rejected")


class FollowUpView(msgspec.Struct, frozen=True, kw_only=True):
    """A follow-up as its reader may see it: `note` (the supervisor's latest comment) is for
    staff only."""

    department: str
    status: Literal["open", "done"]
    outcome: str | None
    opened_at: datetime
    closed_at: datetime | None
    note: str | None = None
    instance_id: UUID | None = None


class RatingView(msgspec.Struct, frozen=True, kw_only=True):
    application_id: UUID
    application_number: str | None
    level: int
    comment: str | None
    rated_at: datetime
    follow_ups: list[FollowUpView]


# --- the engine's subject --------------------------------------------------------------------------


class FollowUpKind:
    """A bad rating's follow-up as the workflow engine's subject."""

    name = KIND

    async def context(self, conn: Connection, subject_id: str) -> workflows.SubjectContext:
        row = await _follow_up(conn, subject_id)
        rating = await store.rating(conn, row.application_id)
        app = await application_store.application(conn, row.application_id)
        return workflows.SubjectContext(
            data={
                "department": row.department,
                "level": rating.level if rating else None,
                "application_number": app.number if app else None,
            },
            owner_unit=await unit_path(conn, row.department),
            applicant=app.applicant if app else None,
        )

    async def transitioned(self, conn: Connection, transition: workflows.Transition) -> None:
        if transition.comment:
            await store.note_follow_up(conn, UUID(transition.subject_id), transition.comment)

    async def ended(self, conn: Connection, ending: workflows.Ending) -> None:
        await store.close_follow_up(conn, UUID(ending.subject_id), outcome=ending.outcome, at=ending.at)


async def _follow_up(conn: Connection, subject_id: str) -> FollowUpRow:
    try:
        follow_up_id = UUID(subject_id)
    except ValueError:
        raise NotFound(f"There is no rating follow-up {subject_id}.") from None
    row = await store.follow_up(conn, follow_up_id)
    if row is None:
        raise NotFound(f"There is no rating follow-up {subject_id}.")
    return row


# --- rating ----------------------------------------------------------------------------------------


def deciding_departments(items: list[ApplicationItemRow]) -> list[str]:
    """The departments that decided (approved or rejected) an item, each once, in item order.
    A department whose item was withdrawn did not serve the applicant and is not followed up."""
    departments: list[str] = []
    for entry in sorted(items, key=lambda i: i.position):
        if entry.status in _DECIDED_ITEM and entry.department not in departments:
            departments.append(entry.department)
    return departments


async def _own_application(conn: Connection, principal: Principal, application_id: UUID) -> ApplicationRow:
    app = await application_store.application(conn, application_id)
    if app is None or app.applicant != principal.subject:
        raise NotFound(f"There is no application {application_id}.")
    return app


async def rate(
    conn: Connection,
    principal: Principal,
    application_id: UUID,
    *,
    level: int,
    comment: str | None,
    now: datetime,
) -> RatingView:
    """The applicant rates their decided application, once. 404 for anyone else (the application's
    existence is not confirmed), 409 before the decision and the second time. A level of 1 or 2
    opens the follow-ups, in the same transaction."""
    app = await _own_application(conn, principal, application_id)
    if app.status != "decided":
        raise Conflict("An application can be rated once it is decided.")
    rating = await store.insert_rating(
        conn, application_id=app.id, level=level, comment=comment, by=principal.subject, at=now
    )
    if rating is None:
        raise Conflict("This application has already been rated.")
    if level in FOLLOW_UP_LEVELS:
        items = await application_store.items_of(conn, app.id)
        for department in deciding_departments(items):
            follow_up_id = uuid.uuid4()
            await store.insert_follow_up(
                conn, follow_up_id=follow_up_id, application_id=app.id, department=department, at=now
            )
            await workflows.start(
                conn,
                subject_kind=KIND,
                subject_id=str(follow_up_id),
                definition_key=DEFINITION,
                actor=workflows.Actor.system("ratings"),
            )
    return await _view(conn, app, rating, staff=False)


async def _may_read_as_staff(conn: Connection, principal: Principal, app: ApplicationRow) -> bool:
    if principal.has_role("admin"):
        return True
    items = await application_store.items_of(conn, app.id)
    return await reviewers.reviews_for_any(conn, principal, (entry.department for entry in items))


async def rating_of(conn: Connection, principal: Principal, application_id: UUID) -> RatingView:
    """The rating, for the applicant and for officers and supervisors of the application's
    departments and admins; 404 for anyone else, and when there is no rating yet."""
    app = await application_store.application(conn, application_id)
    if app is None:
        raise NotFound(f"There is no application {application_id}.")
    own = app.applicant == principal.subject
    if not own and not await _may_read_as_staff(conn, principal, app):
        raise NotFound(f"There is no application {application_id}.")
    rating = await store.rating(conn, app.id)
    if rating is None:
        raise NotFound("This application has not been rated.")
    return await _view(conn, app, rating, staff=not own)


async def _view(conn: Connection, app: ApplicationRow, rating: RatingRow, *, staff: bool) -> RatingView:
    follow_ups = []
    for row in await store.follow_ups_of(conn, app.id):
        instance = await workflows.instance_for_subject(conn, KIND, str(row.id)) if staff else None
        follow_ups.append(
            FollowUpView(
                department=row.department,
                status="done" if row.status == "done" else "open",
                outcome=row.outcome,
                opened_at=row.opened_at,
                closed_at=row.closed_at,
                note=row.note if staff else None,
                instance_id=instance.id if instance else None,
            )
        )
    return RatingView(
        application_id=app.id,
        application_number=app.number,
        level=rating.level,
        comment=rating.comment,
        rated_at=rating.rated_at,
        follow_ups=follow_ups,
    )
