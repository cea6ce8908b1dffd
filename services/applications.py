"""Applications: a citizen's (or a counter clerk's, on a citizen's behalf) request for one item
or for a bundle of items, from draft to decision.

    draft ──submit──> in_review ──(each item's workflow in its department)──> decided
      │                  │  ↑ needs_correction (resubmit) / awaiting_payment (pay)
      │                  └──withdraw──> withdrawn
      ├──submit_to_counter──> submitted (waiting for intake) ─┐
      └── (counter draft) ─────────────────────────────────────┴─> services.counter's intake:
                                                   accept → in_review, or returned

Some applications cannot be submitted online: an item offered only at the counter, or a sign-in
weaker than an item asks for. The citizen prepares those online (`create_draft` with
`finish_at_counter`), and `submit_to_counter` checks the form and sends them to the counter's
queue (status `submitted`, with the number to show there); the clerk's intake finishes them like
a counter draft (identity and documents checked in person).

An application pins the item versions it was made under: the form, the checklist and the time
limits are those of the pinned versions even after the catalog changes. Each item is reviewed by
its own workflow instance (`services.review.ItemKind`); the application's status follows from
its items' (`recompute`). Every change takes the application's row lock first, so a submit, a
department's step and a withdrawal apply one after the other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal
from uuid import UUID, uuid4

import msgspec

from identity.api import Principal, unit_name
from onewindow import outbox
from onewindow.db import Connection
from onewindow.errors import (
    Conflict,
    FieldError,
    NotFound,
    PreconditionFailed,
    RuleViolation,
    ValidationFailed,
)
from onewindow.settings import Settings
from services import application_store as store
from services import catalog, documents, reviewers
from services.application_store import ApplicationItemRow, ApplicationRow
from services.events import ApplicationReceived, ServiceName
from workflows import api as workflows

__all__ = [
    "DEFAULT_PREFIX",
    "KIND",
    "ApplicationView",
    "application",
    "catalog_items",
    "check_complete",
    "configure",
    "create_draft",
    "edit",
    "items_of",
    "may_see",
    "merge_patch",
    "recompute",
    "resubmit",
    "service_name",
    "submit",
    "submit_to_counter",
    "view",
    "withdraw",
    "working_hours",
]

KIND = "application_item"  # the workflow engine's subject kind of an application's item
DEFAULT_PREFIX = "YC"
# State names of services' review definitions that wait for the applicant (see the YAML files):
# their time is the applicant's, not the department's.
CORRECTION_STATE = "correction"
PAYMENT_STATE = "payment"
FEE_DECISION = "fee"
WAIT_STATES = frozenset({CORRECTION_STATE, PAYMENT_STATE})
# Calendar days the applicant has for a correction: the `correction` state's deadline in the YAML.
CORRECTION_DAYS = 30
EDITABLE = ("draft", "returned", "needs_correction")
SUBMITTABLE = ("draft", "submitted", "returned")
WITHDRAWABLE = (*store.UNDECIDED, "draft", "returned")
NOT_WITH_DEPARTMENTS = store.NOT_WITH_DEPARTMENTS
# Outcomes of an item's instance besides approved/rejected: the applicant withdrew (through
# `workflows.api.cancel`), or a correction was not made in time (the definitions' `lapsed`).
WITHDRAWN = "withdrawn"
LAPSED = "lapsed"
_LEVELS = ("low", "substantial", "high")
_MAX_HOURS = 365 * 24


class _Runtime(msgspec.Struct):
    settings: Settings | None = None


_runtime = _Runtime()


def configure(settings: Settings) -> None:
    """Per process, by the composition root (and the tests): the settings the engine's hooks need
    (certificates are signed with a key the server's secret protects; the number prefix and the
    city's time zone)."""
    _runtime.settings = settings


def settings_or(settings: Settings | None) -> Settings:
    if settings is not None:
        return settings
    if _runtime.settings is None:
        raise RuntimeError("services.applications.configure(settings) was not called")
    return _runtime.settings


# --- reads ---------------------------------------------------------------------------------------


async def application(conn: Connection, application_id: UUID) -> ApplicationRow | None:
    return await store.application(conn, application_id)


async def items_of(conn: Connection, application_id: UUID) -> list[ApplicationItemRow]:
    return await store.items_of(conn, application_id)


async def catalog_items(
    conn: Connection, app: ApplicationRow, rows: Sequence[ApplicationItemRow] | None = None
) -> list[catalog.Item]:
    """The catalog items at the versions the application pinned, in the application's order
    (`rows`: its item rows, when the caller has read them already)."""
    if rows is None:
        rows = await store.items_of(conn, app.id)
    return await catalog.items_of(conn, [(row.item_code, row.item_version) for row in rows])


async def service_name(
    conn: Connection, app: ApplicationRow, items: Sequence[catalog.Item] | None = None
) -> ServiceName:
    """What the application is for, as people call it: the bundle's name, else the item's
    (`items`: its catalog items, when the caller has them already)."""
    if app.bundle_code is not None:
        bundle = await catalog.bundle(conn, app.bundle_code, app.bundle_version)
        if bundle is not None:
            return ServiceName(zh=bundle.name.zh, en=bundle.name.en)
    if items is None:
        items = await catalog_items(conn, app)
    return ServiceName(zh="、".join(i.name.zh for i in items), en=", ".join(i.name.en for i in items))


# --- drafts --------------------------------------------------------------------------------------


async def create_draft(
    conn: Connection,
    *,
    applicant: str,
    created_by: str,
    channel: Literal["online", "app", "counter"],
    item_code: str | None = None,
    bundle_code: str | None = None,
    form: dict[str, Any] | None = None,
    finish_at_counter: bool = False,
    now: datetime,
) -> ApplicationRow:
    """A draft for one item or one bundle, its items pinned to their current versions (status
    `pending`). Refused: neither or both given (400), unknown (400), not offered any more or not
    through this channel (422). With `finish_at_counter` the draft is prepared through `channel`
    to be finished at the counter (`submit_to_counter`): the items must be offered at the counter
    instead; an ordinary submission of it through `channel` is still refused (`submit`)."""
    if (item_code is None) == (bundle_code is None):
        raise ValidationFailed(
            "Name either one item or one bundle.",
            errors=[FieldError(pointer="/item", detail="give exactly one of item and bundle")],
        )
    bundle_pin: tuple[str, int] | None = None
    if bundle_code is not None:
        bundle = await catalog.bundle(conn, bundle_code)
        if bundle is None:
            raise ValidationFailed(
                "No such bundle.", errors=[FieldError(pointer="/bundle", detail="no bundle with this code")]
            )
        if not bundle.active:
            raise RuleViolation(f"The bundle {bundle_code} is not offered any more.")
        codes: tuple[str, ...] = bundle.items
        bundle_pin = (bundle.code, bundle.version)
        pointer = "/bundle"
    else:
        if not (item_code is not None):
            raise RuntimeError("unreachable: item_code is not None")
        codes = (item_code,)
        pointer = "/item"
    items: list[catalog.Item] = []
    for code in codes:
        found = await catalog.item(conn, code)
        if found is None:
            raise ValidationFailed(
                "No such item.", errors=[FieldError(pointer=pointer, detail=f"no item with the code {code}")]
            )
        if not found.active:
            raise RuleViolation(f"The item {code} is not offered any more.")
        items.append(found)
    _check_channel(items, channel, finish_at_counter=finish_at_counter)
    app = await store.insert_application(
        conn,
        application_id=uuid4(),
        applicant=applicant,
        created_by=created_by,
        channel=channel,
        bundle=bundle_pin,
        form=form or {},
        now=now,
    )
    for position, found in enumerate(items, start=1):
        await store.insert_item(
            conn,
            application_id=app.id,
            position=position,
            item_code=found.code,
            item_version=found.version,
            department=found.department,
            fee_minor=found.fee_minor,
        )
    return app


def _check_channel(items: Sequence[catalog.Item], channel: str, *, finish_at_counter: bool) -> None:
    """422 unless every item is offered through `channel` (to be finished at the counter: there)."""
    if finish_at_counter:
        not_at_counter = _not_offered(items, "counter")
        if not_at_counter:
            raise RuleViolation(
                f"{', '.join(not_at_counter)} cannot be finished at the counter: it is not offered there.",
                errors=[FieldError(pointer="/finish_at_counter", detail="not offered at the counter")],
            )
        return
    refused = _not_offered(items, channel)
    if refused:
        raise RuleViolation(
            f"{', '.join(refused)} cannot be applied for through the channel {channel}."
            + _counter_hint(items, "prepare it here with finish_at_counter"),
            errors=[FieldError(pointer="/channel", detail=f"not offered through {channel}")],
        )


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch: objects merge key by key, `null` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def may_edit(principal: Principal, app: ApplicationRow) -> bool:
    """The applicant; for a counter draft, the clerk typing it in."""
    if principal.subject == app.applicant:
        return True
    return app.channel == "counter" and principal.has_role("clerk")


async def edit(
    conn: Connection,
    app_id: UUID,
    *,
    principal: Principal,
    patch: dict[str, Any],
    expected_version: int,
    now: datetime,
) -> ApplicationRow:
    """Change the form of a draft, of an application returned at the counter, or of one under
    correction (merge-patch). 404 for someone who may not see it, 412 stale, 409 not editable."""

    app = await store.application(conn, app_id, lock=True)
    if app is None or not may_edit(principal, app):
        raise NotFound("No such application.")
    if app.version != expected_version:
        raise PreconditionFailed(
            "The application has changed since you read it: read it again and reapply your change."
        )
    if app.status not in EDITABLE:
        raise Conflict(f"The application is {app.status}: its form can no longer be changed.")
    form = merge_patch(app.form, patch)
    return await store.update_form(conn, app.id, form, now=now)


# --- submission ----------------------------------------------------------------------------------


def required_assurance(items: Sequence[catalog.Item]) -> str:
    return max((i.min_assurance for i in items), key=_LEVELS.index, default="low")


def _not_offered(items: Sequence[catalog.Item], channel: str) -> list[str]:
    """The codes of the items not offered through `channel`."""
    return [i.code for i in items if channel not in i.channels]


def _counter_hint(items: Sequence[catalog.Item], how: str) -> str:
    """The way out a refusal names when every item is offered at the counter: finish it there."""
    if _not_offered(items, "counter"):
        return ""
    return f" It can be finished at a counter with your identity document: {how}."


async def check_complete(
    conn: Connection,
    app: ApplicationRow,
    items: Sequence[catalog.Item],
    *,
    pending: Mapping[str, datetime] | None,
) -> None:
    """Every problem of the form and the checklist at once (400), or nothing: before a submission,
    and before a correction is answered (`resubmit` here, and services.review's hook when the
    applicant answers the correction step through the tasks route)."""
    errors = catalog.form_errors(items, app.form)
    requirements = catalog.checklist(items, app.form)
    errors += await documents.missing(conn, app.id, requirements, pending=pending)
    _refuse_incomplete("application", errors)


def _refuse_incomplete(what: str, errors: Sequence[FieldError]) -> None:
    """400 with every problem, if there is any."""
    if errors:
        raise ValidationFailed(
            f"The {what} is not complete: {len(errors)} problem{'s' if len(errors) != 1 else ''}; see errors.",
            errors=list(errors),
        )


async def submit(
    conn: Connection,
    app_id: UUID,
    *,
    actor: workflows.Actor,
    acr: str | None,
    pending: Mapping[str, datetime] | None = None,
    intake_by: str | None = None,
    now: datetime,
    settings: Settings | None = None,
) -> ApplicationRow:
    """Send a draft (or an application returned at the counter) to the departments.

    Checks, in order: the draft exists and is the caller's to submit (the caller checked who
    may; 409 when not a draft), the assurance of the sign-in (422; at the counter the clerk
    checked identity in person, so it counts as high), the form and the checklist (400, every
    problem at once; `pending` entries may be supplied later where allowed). Then it takes the
    next number, sets the promised deadline, starts one workflow instance per item and publishes
    `ApplicationReceived`, all in the caller's transaction: a refusal leaves nothing behind.
    """
    config = settings_or(settings)
    app = await store.application(conn, app_id, lock=True)
    if app is None:
        raise NotFound("No such application.")
    if app.status not in SUBMITTABLE:
        raise Conflict(f"The application is {app.status}: only a draft can be submitted.")
    rows = await store.items_of(conn, app.id)
    items = await catalog_items(conn, app, rows)
    hint = _counter_hint(items, 'submit it with {"finish_at_counter": true} and bring it there')
    refused = [] if intake_by else _not_offered(items, app.channel)
    if refused:
        raise RuleViolation(
            f"{', '.join(refused)} cannot be submitted through the channel {app.channel}." + hint,
            errors=[FieldError(pointer="/finish_at_counter", detail="only at the counter")],
        )
    needed = required_assurance(items)
    if not catalog.assurance_met(needed, catalog.ASSURANCE_LEVELS["high"] if intake_by else acr):
        raise RuleViolation(
            f"This application needs a sign-in of assurance level {needed}: sign in again with a stronger"
            " method." + hint,
            errors=[FieldError(pointer="", detail=f"assurance level {needed} required")],
        )
    await check_complete(conn, app, items, pending=pending)
    number = app.number or await store.next_number(
        conn, config.application_prefix, now=now, timezone=config.timezone
    )
    by_code = {i.code: i for i in items}
    promised = {
        row.id: await workflows.deadline(conn, now, f"P{by_code[row.item_code].promised_days}D")
        for row in rows
    }
    app = await store.mark_submitted(
        conn, app.id, number=number, promised_at=max(promised.values()), intake_by=intake_by, now=now
    )
    await store.start_items(conn, app.id, promised=promised, now=now)
    for row in rows:
        await workflows.start(
            conn,
            subject_kind=KIND,
            subject_id=str(row.id),
            definition_key=by_code[row.item_code].workflow,
            actor=actor,
        )
    if not (app.number is not None and app.promised_at is not None):
        raise RuntimeError("invariant broken: a submitted application has a number and a promise")
    await outbox.publish(
        conn,
        ApplicationReceived(
            application_id=app.id,
            number=app.number,
            service=await service_name(conn, app, items),
            applicant=app.applicant,
            channel=app.channel,
            promised_at=app.promised_at,
            at=now,
        ),
    )
    return app


async def submit_to_counter(
    conn: Connection, app_id: UUID, *, applicant: str, now: datetime, settings: Settings | None = None
) -> ApplicationRow:
    """The applicant sends an application prepared online to be finished at the counter: what
    they cannot submit online (an item offered only at the counter, a sign-in weaker than the
    items ask for) or choose to finish there, bringing the documents.

    Only a draft or one returned at the counter (409; 404 for anyone but the applicant); every
    item must be offered at the counter (422); the form is checked, every problem at once (400);
    the checklist is not (documents may be brought to the counter), nor the sign-in's assurance
    (the clerk checks the identity document). The application gets its number now (kept through
    the intake), the citizen's reference at the counter, and waits in the bureau's queue with
    status `submitted` until a clerk's intake accepts or returns it."""
    config = settings_or(settings)
    app = await store.application(conn, app_id, lock=True)
    if app is None or app.applicant != applicant:
        raise NotFound("No such application.")
    if app.status == "submitted":
        raise Conflict("The application is already waiting for intake at the counter.")
    if app.status not in ("draft", "returned"):
        raise Conflict(f"The application is {app.status}: only a draft can be sent to the counter.")
    items = await catalog_items(conn, app)
    _check_channel(items, "counter", finish_at_counter=True)
    _refuse_incomplete("form", catalog.form_errors(items, app.form))
    number = app.number or await store.next_number(
        conn, config.application_prefix, now=now, timezone=config.timezone
    )
    return await store.mark_waiting_for_intake(conn, app.id, number=number, now=now)


async def resubmit(
    conn: Connection, app_id: UUID, *, actor: workflows.Actor, comment: str | None, now: datetime
) -> ApplicationRow:
    """After a department returned items for correction: the form and the checklist are checked
    again, then the applicant answers every correction step (`resubmit`) so each item goes back
    to its reviewer, whose clock continues where it stopped. The application is not locked
    first: each step locks its instance, then (in the hook) the application, the engine's order;
    a second resubmission meanwhile finds the steps answered (409)."""
    app = await store.application(conn, app_id)
    if app is None or app.applicant != actor.subject:
        raise NotFound("No such application.")
    if app.status != "needs_correction":
        raise Conflict(f"The application is {app.status}: nothing was returned for correction.")
    items = await catalog_items(conn, app)
    await check_complete(conn, app, items, pending=None)
    answered = 0
    for row in await store.items_of(conn, app.id):
        if row.status != "needs_correction":
            continue
        instance = await workflows.instance_for_subject(conn, KIND, str(row.id))
        for task in instance.open_tasks if instance else ():
            if task.kind == "wait" and task.state == CORRECTION_STATE:
                await workflows.act(conn, task.id, action="resubmit", actor=actor, comment=comment)
                answered += 1
    if not answered:
        raise Conflict("No correction step is waiting for you.")
    found = await store.application(conn, app.id)
    if found is None:
        raise RuntimeError("invariant broken: the application vanished")
    return found


async def withdraw(
    conn: Connection, app_id: UUID, *, actor: workflows.Actor, reason: str, now: datetime
) -> ApplicationRow:
    """The applicant takes the application back before it is decided: each item still under
    review ends with the outcome `withdrawn` (the engine closes its tasks and records why).

    An application not yet with the departments (draft, waiting for intake, returned) has no
    workflow instance: its row is locked first and its status read again under the lock, so a
    submission or a counter intake running meanwhile either finishes first (then the withdrawal
    is a 409: the application changed, withdraw it again) or waits and finds it withdrawn. Its
    pending items are withdrawn only while still pending (else 409, nothing written).

    An application in review: locks are taken in the engine's order (an item's instance, then
    the application), as a department's step takes them: the instances are cancelled first
    (their `ended` hook marks the item and leaves the application alone), the application is
    locked last. A department that decided an item meanwhile makes the cancellation a 409, and
    nothing is withdrawn."""
    app = await store.application(conn, app_id)
    if app is None or app.applicant != actor.subject:
        raise NotFound("No such application.")
    if app.status not in WITHDRAWABLE:
        raise Conflict(f"The application is {app.status}: it can no longer be withdrawn.")
    if app.status in NOT_WITH_DEPARTMENTS:
        locked = await store.application(conn, app_id, lock=True)
        if locked is None or locked.status not in NOT_WITH_DEPARTMENTS:
            # Submitted or taken in meanwhile: its instances would now have to be locked after the
            # application, against the engine's order. The applicant withdraws it again.
            raise Conflict(
                "The application changed meanwhile (it was sent on): read it and withdraw it again."
            )
        for row in await store.items_of(conn, app.id):
            if row.status in store.ENDED_ITEM:
                continue
            if await store.withdraw_pending_item(conn, row.id, at=now, by=actor.subject) is None:
                raise Conflict("The application changed meanwhile: read it and withdraw it again.")
        return await store.mark_withdrawn(conn, app.id, reason=reason, now=now)
    for row in await store.items_of(conn, app.id):
        if row.status in store.ENDED_ITEM:
            continue
        instance = await workflows.instance_for_subject(conn, KIND, str(row.id))
        if instance is not None:
            await workflows.cancel(conn, instance.id, actor=actor, outcome=WITHDRAWN, reason=reason)
        elif await store.withdraw_pending_item(conn, row.id, at=now, by=actor.subject) is None:
            raise Conflict("The application changed meanwhile: read it and withdraw it again.")
    locked = await store.application(conn, app_id, lock=True)
    if locked is None or locked.status not in WITHDRAWABLE:
        raise Conflict("The application changed meanwhile: it can no longer be withdrawn.")
    return await store.mark_withdrawn(conn, app.id, reason=reason, now=now)


# --- the application's status from its items --------------------------------------------------


async def recompute(conn: Connection, app_id: UUID, *, now: datetime) -> tuple[ApplicationRow, bool]:
    """Set the application's status from its items; (the application, whether it became decided
    now). A withdrawn application stays withdrawn (its items end as withdrawn one by one)."""
    app = await store.application(conn, app_id, lock=True)
    if app is None:
        raise RuntimeError("invariant broken: an item without its application")
    if app.status in ("withdrawn", "decided"):
        return app, False
    statuses = [row.status for row in await store.items_of(conn, app_id)]
    if "needs_correction" in statuses:
        status: store.ApplicationStatus = "needs_correction"
    elif "awaiting_payment" in statuses:
        status = "awaiting_payment"
    elif any(s not in store.ENDED_ITEM for s in statuses):
        status = "in_review"
    elif all(s == "withdrawn" for s in statuses):
        # Every item lapsed (a correction not made in time): nothing was decided.
        return await store.mark_withdrawn(conn, app_id, reason="not corrected in time", now=now), False
    else:
        approved = statuses.count("approved")
        outcome = (
            "approved" if approved == len(statuses) else "rejected" if approved == 0 else "partly_approved"
        )
        return await store.set_status(conn, app_id, status="decided", outcome=outcome, now=now), True
    missing: list[Any] | None = None if status == "needs_correction" else []
    if status == app.status and missing is None:
        return app, False
    return await store.set_status(conn, app_id, status=status, missing=missing, now=now), False


# --- working time --------------------------------------------------------------------------------


async def working_hours(conn: Connection, start: datetime, end: datetime) -> int:
    """Hours of working-day time from `start` to `end` on the city's calendar, rounded up (0 when
    `end` is not later). Found with the engine's own deadline arithmetic (the smallest n whose
    deadline `PTnH` reaches `end`), so holidays and make-up days count exactly as for deadlines."""
    if end <= start:
        return 0

    async def reaches(hours: int) -> bool:
        return await workflows.deadline(conn, start, f"PT{hours}H", clock="working_days") >= end

    low, high = 0, 1
    while not await reaches(high):
        if high >= _MAX_HOURS:
            return _MAX_HOURS
        low, high = high, min(high * 2, _MAX_HOURS)
    while high - low > 1:
        middle = (low + high) // 2
        if await reaches(middle):
            high = middle
        else:
            low = middle
    return high


def days_of(hours: int) -> int:
    """Working days begun: 1 hour is a day started, 24 hours one day."""
    return math.ceil(hours / 24)


# --- views ---------------------------------------------------------------------------------------


class Department(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    name_zh: str | None
    name_en: str | None


class Expectation(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Something the applicant has to do now."""

    kind: Literal["submit", "counter", "correction", "payment", "documents"]
    detail: str
    item_id: UUID | None = None
    what_to_fix: list[Any] = msgspec.field(default_factory=list)
    amount_minor: int | None = None
    currency: str | None = None
    due: datetime | None = None


class Step(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One entry of an item's history. Citizens see the kind of step, when, and only the
    reasons given to them (a return's list, a rejection's reason); staff see everything."""

    at: datetime
    event: str
    item_id: UUID | None = None
    item: str | None = None
    step: str | None = None
    action: str | None = None
    to_step: str | None = None
    note: str | None = None
    what_to_fix: list[Any] | None = None
    actor: str | None = None
    actor_name: str | None = None
    actor_role: str | None = None
    actor_unit: str | None = None
    data: dict[str, Any] | None = None


class ItemView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: UUID
    item: str
    item_version: int
    name: catalog.Text
    department: Department
    status: str
    current_step: str | None = None
    fee_minor: int = 0
    currency: str = "CNY"
    promised_at: datetime | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    corrections: int = 0
    working_days: int | None = None
    on_time: bool | None = None
    open_tasks: list[UUID] | None = None


class ApplicationView(msgspec.Struct, frozen=True, kw_only=True):
    """An application as its reader may see it: `staff` False is the applicant's (citizen-safe)
    view; True is a department's or the counter's (only the items the reader may see)."""

    id: UUID
    number: str | None
    status: str
    outcome: str | None
    channel: str
    item: str | None
    bundle: str | None
    service: catalog.Text
    version: int
    created_at: datetime
    submitted_at: datetime | None
    promised_at: datetime | None
    decided_at: datetime | None
    withdrawn_at: datetime | None
    items: list[ItemView]
    expected: list[Expectation]
    history: list[Step]
    form: dict[str, Any]
    staff: bool = False
    applicant: str | None = None
    missing: list[Any] = msgspec.field(default_factory=list)
    documents_due_at: datetime | None = None
    # The checklist of the items shown, with where each entry stands (content: the documents routes).
    documents: list[documents.ChecklistStatus] = msgspec.field(default_factory=list)


def may_see(
    principal: Principal,
    app: ApplicationRow,
    items: Sequence[ApplicationItemRow],
    paths: Mapping[str, str] | None = None,
) -> bool:
    """The applicant; a clerk (the counter sees whole applications); an admin; once it was sent to
    the departments (not a draft, nor one waiting at or returned by the counter), an officer or a
    supervisor of a department one of its items is with (`paths`: department code -> unit path)."""
    if principal.subject == app.applicant or principal.has_role("clerk") or principal.has_role("admin"):
        return True
    return bool(visible_departments(principal, app, items, paths or {}))


def visible_departments(
    principal: Principal, app: ApplicationRow, items: Sequence[ApplicationItemRow], paths: Mapping[str, str]
) -> set[str]:
    """The departments of `items` whose parts the principal reviews (officer or supervisor there);
    none before the application was sent to the departments."""
    if not store.sent_to_departments(app):
        return set()
    return {row.department for row in items if reviewers.reviews_for(principal, paths.get(row.department))}


_CITIZEN_EVENTS: dict[str, str] = {
    "return": "returned_for_correction",
    "resubmit": "resubmitted",
    "paid": "paid",
    "reject": "rejected",
}


def _citizen_step(entry: workflows.HistoryEntry, row: ApplicationItemRow) -> Step | None:
    """What the applicant learns of one history entry (None: staff's business)."""
    event: str | None = None
    note: str | None = None
    fix: list[Any] | None = None
    step: str | None = None
    if entry.event == "started":
        event = "with_department"
    elif entry.event == "decided" and entry.to_state == PAYMENT_STATE:
        event = "payment_requested"
    elif entry.event == "cancelled":
        event, note = "withdrawn", entry.comment
    elif entry.event == "ended":
        event = str(entry.data.get("outcome", "")) or "ended"
    elif entry.event == "action" and entry.action in _CITIZEN_EVENTS:
        event = _CITIZEN_EVENTS[entry.action]
        if event == "returned_for_correction":
            listed = entry.data.get("missing")
            note, fix = entry.comment, listed if isinstance(listed, list) else [listed]
        elif event == "rejected":
            note = entry.comment
    elif (
        entry.event == "action"
        and entry.to_state not in (*WAIT_STATES, FEE_DECISION)
        and entry.from_state not in WAIT_STATES
    ):
        event, step = "in_review", entry.to_state
    if event is None:
        return None
    return Step(
        at=entry.at, event=event, item_id=row.id, item=row.item_code, step=step, note=note, what_to_fix=fix
    )


def _staff_step(entry: workflows.HistoryEntry, row: ApplicationItemRow) -> Step:
    return Step(
        at=entry.at,
        event=entry.event,
        item_id=row.id,
        item=row.item_code,
        step=entry.from_state,
        action=entry.action,
        to_step=entry.to_state,
        note=entry.comment,
        actor=entry.actor,
        actor_name=entry.actor_name,
        actor_role=entry.actor_role,
        actor_unit=entry.actor_unit,
        data=entry.data or None,
    )


def _form_for(items: Sequence[catalog.Item], form: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of the form that the given items ask for (a department sees its own part)."""
    fields: set[str] = set()
    for found in items:
        fields |= set(found.form_schema.get("properties", {}))
    return {key: value for key, value in form.items() if key in fields}


async def _item_part(
    conn: Connection, row: ApplicationItemRow, found: catalog.Item, *, staff: bool, corrections: list[Any]
) -> tuple[ItemView, list[Step], list[Expectation]]:
    """One item as the reader sees it, its history, and what it expects of the applicant."""
    instance = await workflows.instance_for_subject(conn, KIND, str(row.id))
    open_tasks = instance.open_tasks if instance else ()
    shown = ItemView(
        id=row.id,
        item=row.item_code,
        item_version=row.item_version,
        name=found.name,
        department=Department(
            code=row.department,
            name_zh=await unit_name(conn, row.department, language="zh"),
            name_en=await unit_name(conn, row.department, language="en"),
        ),
        status=row.status,
        current_step=next((t.label or t.state for t in open_tasks), None),
        fee_minor=row.fee_minor,
        currency=found.currency,
        promised_at=row.promised_at,
        decided_at=row.decided_at,
        reason=row.reason,
        corrections=row.corrections,
        working_days=row.working_days if staff else None,
        on_time=row.on_time if staff else None,
        open_tasks=[t.id for t in open_tasks if t.kind != "wait"] if staff else None,
    )
    steps = [
        step
        for entry in (instance.history if instance else ())
        if (step := _staff_step(entry, row) if staff else _citizen_step(entry, row)) is not None
    ]
    expected: list[Expectation] = []
    if row.status == "needs_correction":
        expected.append(
            Expectation(
                kind="correction",
                detail="Correct what the department asked for, then resubmit the application.",
                item_id=row.id,
                what_to_fix=[m for m in corrections if m.get("item_id") == str(row.id)],
            )
        )
    elif row.status == "awaiting_payment":
        expected.append(
            Expectation(
                kind="payment",
                detail="Pay the fee: the approval takes effect when it is paid.",
                item_id=row.id,
                amount_minor=row.fee_minor,
                currency=found.currency,
            )
        )
    return shown, steps, expected


async def _application_expectations(
    conn: Connection, app: ApplicationRow, items: Sequence[catalog.Item]
) -> list[Expectation]:
    """What the application as a whole expects: its submission, documents accepted as pending."""
    expected: list[Expectation] = []
    if app.status == "submitted":
        missing = await documents.missing(conn, app.id, catalog.checklist(items, app.form))
        expected.append(
            Expectation(
                kind="counter",
                detail=f"Come to a counter with your identity document and show the number {app.number}"
                + (": bring the documents still missing." if missing else "."),
                what_to_fix=[error.pointer.removeprefix("/documents/") for error in missing],
            )
        )
    elif app.status in SUBMITTABLE:
        expected.append(
            Expectation(
                kind="submit",
                detail="Complete the form and the documents, then submit."
                if app.status == "draft"
                else "Supply what the counter found missing, then submit again.",
                what_to_fix=list(app.missing) if app.status == "returned" else [],
            )
        )
    if app.status in store.UNDECIDED:
        requirements = catalog.checklist(items, app.form)
        for status in await documents.checklist_status(conn, app.id, requirements):
            if status.status == "pending":
                expected.append(
                    Expectation(
                        kind="documents",
                        detail=f"Supply {status.name.en} ({status.name.zh}), accepted at the counter as pending.",
                        what_to_fix=[status.code],
                        due=status.due_at,
                    )
                )
    return expected


async def view(conn: Connection, principal: Principal, app_id: UUID) -> ApplicationView:
    """The application as `principal` may see it; 404 for anyone who may see nothing of it (its
    existence is not confirmed)."""
    app = await store.application(conn, app_id)
    if app is None:
        raise NotFound("No such application.")
    rows = await store.items_of(conn, app.id)
    paths = await reviewers.department_paths(conn, (row.department for row in rows))
    if not may_see(principal, app, rows, paths):
        raise NotFound("No such application.")
    applicant = principal.subject == app.applicant
    whole = applicant or principal.has_role("clerk") or principal.has_role("admin")
    staff = not applicant
    departments = visible_departments(principal, app, rows, paths)
    shown = list(rows) if whole else [row for row in rows if row.department in departments]
    pinned = {i.code: i for i in await catalog_items(conn, app)}
    corrections: list[Any] = [m for m in app.missing if isinstance(m, dict)]
    item_views: list[ItemView] = []
    opening, closing = _application_steps(app, staff)
    history: list[Step] = list(opening)
    expected = await _application_expectations(conn, app, [pinned[row.item_code] for row in rows])
    for row in shown:
        part, steps, wanted = await _item_part(
            conn, row, pinned[row.item_code], staff=staff, corrections=corrections
        )
        item_views.append(part)
        history += steps
        expected += wanted
    history += closing
    history.sort(key=lambda s: s.at)  # stable: at the same instant, the application's end comes last
    name = await service_name(conn, app)
    shown_codes = {row.item_code for row in shown}
    checklist = await documents.checklist_status(
        conn, app.id, catalog.checklist([pinned[row.item_code] for row in shown], app.form)
    )
    return ApplicationView(
        id=app.id,
        number=app.number,
        status=app.status,
        outcome=app.outcome,
        channel=app.channel,
        item=rows[0].item_code if app.bundle_code is None and rows else None,
        bundle=app.bundle_code,
        service=catalog.Text(zh=name.zh, en=name.en),
        version=app.version,
        created_at=app.created_at,
        submitted_at=app.submitted_at,
        promised_at=app.promised_at,
        decided_at=app.decided_at,
        withdrawn_at=app.withdrawn_at,
        items=item_views,
        expected=expected if applicant or whole else [],
        history=history,
        form=app.form if whole else _form_for([pinned[row.item_code] for row in shown], app.form),
        staff=staff,
        applicant=app.applicant if staff else None,
        missing=list(app.missing) if whole else [m for m in corrections if _mine(m, shown)],
        documents_due_at=app.documents_due_at,
        documents=[entry for entry in checklist if shown_codes & set(entry.items)],
    )


def _mine(entry: Mapping[str, Any], rows: Sequence[ApplicationItemRow]) -> bool:
    return entry.get("item_id") in {str(row.id) for row in rows}


def _application_steps(app: ApplicationRow, staff: bool) -> tuple[list[Step], list[Step]]:
    """The application's own milestones (the items' steps come from their workflows): those that
    open it, and those that close it."""
    opening = [Step(at=app.created_at, event="drafted", actor=app.created_by if staff else None)]
    if app.intake_at is not None:
        opening.append(
            Step(at=app.intake_at, event="counter_intake", note=app.intake_note if staff else None)
        )
    if app.submitted_at is not None:
        opening.append(Step(at=app.submitted_at, event="submitted"))
    closing = []
    if app.withdrawn_at is not None:
        closing.append(Step(at=app.withdrawn_at, event="withdrawn", note=app.withdrawn_reason))
    if app.decided_at is not None:
        closing.append(Step(at=app.decided_at, event="decided", note=app.outcome))
    return opening, closing
