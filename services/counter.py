"""Counter intake (窗口受理): a clerk of the bureau takes an application in on a citizen's behalf.

The clerk has seen the citizen and their ID document (identity's counter routes make or verify
the account), makes the draft for them, supplies the documents they brought and decides the
intake: accept (the application goes to the departments, as if the citizen had submitted it
with the highest assurance: identity was checked in person), accept with documents pending
(容缺受理: only entries the catalog allows to be supplied later, each with a due date within
`pending_documents_max_days` working days), or return with the list of what is missing (the
citizen completes it online or comes back). Each intake gives the citizen a printed receipt.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal
from uuid import UUID

import msgspec

from identity.api import Principal, contact_details, unit_name
from onewindow.db import Connection
from onewindow.errors import Conflict, FieldError, NotFound, RuleViolation, ValidationFailed
from onewindow.settings import Settings
from services import application_store, applications, catalog, documents, documents_store
from services.application_store import ApplicationRow
from workflows import api as workflows

__all__ = [
    "Decision",
    "MissingEntry",
    "PendingEntry",
    "Receipt",
    "intake",
    "open_for_intake",
]

Decision = Literal["accept", "accept_pending", "return"]


class PendingEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A checklist entry accepted without its document, to be supplied by `due`."""

    code: str
    due: datetime


class MissingEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the citizen must bring or fix: a checklist entry, or a form field (`/form/<field>`)."""

    code: str | None = None
    field: str | None = None
    detail: str


class ReceiptItem(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    name: catalog.Text
    department: str
    department_name: str | None


class ReceiptPending(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    name: catalog.Text
    due: datetime


class ReceiptClerk(msgspec.Struct, frozen=True, kw_only=True):
    subject: str
    name: str | None


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """What the counter prints for the citizen (受理回执 or 退回通知)."""

    receipt_number: str
    decision: Decision
    application_id: UUID
    application_number: str | None
    applicant_name: str | None
    bundle: str | None
    items: list[ReceiptItem]
    pending: list[ReceiptPending]
    missing: list[FieldError]
    promised_at: datetime | None
    note: str | None
    clerk: ReceiptClerk
    at: datetime


def open_for_intake(app: ApplicationRow) -> bool:
    """A counter draft, an application a citizen sent from online to be finished here (waiting
    for intake: `applications.submit_to_counter`), or one returned earlier (the citizen came back
    with what was missing). Each is taken in alike: accepting submits it with `intake_by`."""
    if app.status == "draft":
        return app.channel == "counter"
    return app.status in ("submitted", "returned")


async def _pending_due(
    conn: Connection,
    settings: Settings,
    requirements: Sequence[catalog.Requirement],
    pending: Sequence[PendingEntry],
    app_id: UUID,
    now: datetime,
) -> dict[str, datetime]:
    """The pending entries, checked: on the checklist, allowed later, not supplied already, each
    due in the future and within the city's limit of working days."""
    by_code = {entry.code: entry for entry in requirements}
    supplied = {row.checklist_code: row.status for row in await documents_store.attachments(conn, app_id)}
    latest = await workflows.deadline(conn, now, f"P{settings.pending_documents_max_days}D")
    errors: list[FieldError] = []
    due: dict[str, datetime] = {}
    for index, entry in enumerate(pending):
        requirement = by_code.get(entry.code)
        pointer = f"/pending/{index}"
        if requirement is None:
            errors.append(FieldError(pointer=f"{pointer}/code", detail="not on this application's checklist"))
        elif not requirement.later_allowed:
            errors.append(
                FieldError(
                    pointer=f"{pointer}/code", detail=f"{requirement.name.en} may not be supplied later"
                )
            )
        elif supplied.get(entry.code) in documents.SUPPLIED:
            errors.append(FieldError(pointer=f"{pointer}/code", detail="already supplied"))
        elif entry.code in due:
            errors.append(FieldError(pointer=f"{pointer}/code", detail="named twice"))
        if entry.due.tzinfo is None:
            errors.append(FieldError(pointer=f"{pointer}/due", detail="needs a time zone offset"))
        elif entry.due <= now:
            errors.append(FieldError(pointer=f"{pointer}/due", detail="must be in the future"))
        elif entry.due > latest:
            errors.append(
                FieldError(
                    pointer=f"{pointer}/due",
                    detail=f"at most {settings.pending_documents_max_days} working days from today"
                    f" (by {latest.isoformat()})",
                )
            )
        due[entry.code] = entry.due
    if errors:
        raise RuleViolation("Some documents cannot be accepted as pending.", errors=errors)
    return due


async def _what_is_missing(
    conn: Connection,
    app: ApplicationRow,
    requirements: Sequence[catalog.Requirement],
    told: Sequence[MissingEntry],
) -> list[FieldError]:
    """The clerk's list (checked against the checklist and the form), or, when the clerk named
    nothing, what the rules find missing: form errors and documents."""
    if not told:
        pins = [(row.item_code, row.item_version) for row in await application_store.items_of(conn, app.id)]
        found = catalog.form_errors(await catalog.items_of(conn, pins), app.form)
        found += await documents.missing(conn, app.id, requirements)
        if not found:
            raise RuleViolation(
                "Nothing is missing from this application: accept it, or name what the citizen must bring.",
                errors=[FieldError(pointer="/missing", detail="empty, and nothing is missing")],
            )
        return found
    codes = {entry.code for entry in requirements}
    errors: list[FieldError] = []
    listed: list[FieldError] = []
    for index, entry in enumerate(told):
        if (entry.code is None) == (entry.field is None):
            errors.append(FieldError(pointer=f"/missing/{index}", detail="name either a code or a field"))
        elif entry.code is not None and entry.code not in codes:
            errors.append(
                FieldError(pointer=f"/missing/{index}/code", detail="not on this application's checklist")
            )
        elif entry.code is not None:
            listed.append(FieldError(pointer=f"/documents/{entry.code}", detail=entry.detail))
        else:
            listed.append(FieldError(pointer=f"/form/{entry.field}", detail=entry.detail))
    if errors:
        raise ValidationFailed("The list of what is missing is not valid.", errors=errors)
    return listed


async def intake(
    conn: Connection,
    settings: Settings,
    app_id: UUID,
    *,
    clerk: Principal,
    decision: Decision,
    pending: Sequence[PendingEntry],
    missing: Sequence[MissingEntry],
    note: str | None,
    now: datetime,
) -> Receipt:
    """The clerk's intake decision on one application, and the receipt for the citizen.

    Accepting submits it through `applications.submit` (the form, the assurance and the
    checklist are checked there, every problem at once): with `intake_by` the clerk, and the
    pending entries, which `documents.missing` then lets through."""
    app = await application_store.application(conn, app_id, lock=True)
    if app is None:
        raise NotFound("No such application.")
    if not open_for_intake(app):
        raise Conflict(f"The application is {app.status.replace('_', ' ')}: it is not waiting for intake.")
    if decision != "accept_pending" and pending:
        raise ValidationFailed(
            "Only accept_pending names pending documents.",
            errors=[FieldError(pointer="/pending", detail=f"must be empty for {decision}")],
        )
    if decision != "return" and missing:
        raise ValidationFailed(
            "Only a return names what is missing.",
            errors=[FieldError(pointer="/missing", detail=f"must be empty for {decision}")],
        )
    if decision == "accept_pending" and not pending:
        raise ValidationFailed(
            "accept_pending names the documents to be supplied later.",
            errors=[FieldError(pointer="/pending", detail="empty")],
        )
    requirements = await documents.requirements_of(conn, app)
    number = await application_store.next_number(
        conn, settings.counter_receipt_prefix, now=now, timezone=settings.timezone
    )
    listed: list[FieldError] = []
    due: dict[str, datetime] = {}
    if decision == "return":
        listed = await _what_is_missing(conn, app, requirements, missing)
        if not await documents_store.record_return(
            conn,
            app.id,
            by=clerk.subject,
            at=now,
            note=note,
            missing=[msgspec.to_builtins(error) for error in listed],
            receipt_number=number,
        ):  # pragma: no cover - the row is locked and was checked above
            raise Conflict("The application is no longer waiting for intake.")
        final = app
    else:
        if decision == "accept_pending":
            due = await _pending_due(conn, settings, requirements, pending, app.id, now)
        final = await applications.submit(
            conn,
            app.id,
            actor=workflows.Actor.of(clerk),
            acr=None,
            pending=due or None,
            intake_by=clerk.subject,
            now=now,
            settings=settings,
        )
        if due:
            await documents.mark_pending(conn, app.id, due, clerk.subject, now)
        await documents_store.record_intake(
            conn,
            app.id,
            by=clerk.subject,
            at=now,
            note=note,
            receipt_number=number,
            documents_due_at=max(due.values()) if due else None,
        )
    return await _receipt(
        conn,
        settings,
        final,
        requirements,
        number=number,
        decision=decision,
        due=due,
        missing=listed,
        note=note,
        clerk=clerk,
        now=now,
    )


async def _receipt(
    conn: Connection,
    settings: Settings,
    app: ApplicationRow,
    requirements: Sequence[catalog.Requirement],
    *,
    number: str,
    decision: Decision,
    due: dict[str, datetime],
    missing: list[FieldError],
    note: str | None,
    clerk: Principal,
    now: datetime,
) -> Receipt:
    contact = await contact_details(conn, settings, app.applicant)
    names = {entry.code: entry.name for entry in requirements}
    return Receipt(
        receipt_number=number,
        decision=decision,
        application_id=app.id,
        application_number=app.number if decision != "return" else None,
        applicant_name=contact.name if contact else None,
        bundle=app.bundle_code,
        items=await receipt_items(conn, app),
        pending=[ReceiptPending(code=code, name=names[code], due=at) for code, at in sorted(due.items())],
        missing=missing,
        promised_at=app.promised_at if decision != "return" else None,
        note=note,
        clerk=ReceiptClerk(subject=clerk.subject, name=clerk.name),
        at=now,
    )


async def receipt_items(conn: Connection, app: ApplicationRow) -> list[ReceiptItem]:
    """The application's items with their names and departments, as the counter shows them."""
    rows = await application_store.items_of(conn, app.id)
    items = await catalog.items_of(conn, [(row.item_code, row.item_version) for row in rows])
    by_code = {item.code: item for item in items}
    shown: list[ReceiptItem] = []
    for row in rows:
        item = by_code.get(row.item_code)
        shown.append(
            ReceiptItem(
                code=row.item_code,
                name=item.name if item else catalog.Text(zh=row.item_code, en=row.item_code),
                department=row.department,
                department_name=await unit_name(conn, row.department, language="zh"),
            )
        )
    return shown
