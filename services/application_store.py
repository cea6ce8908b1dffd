"""The SQL of applications and their items, number counters and payments (services schema).

Functions take the connection first and never commit: the request or the engine's step owns
the transaction. Rows are decoded into the Structs below; `services.applications` turns them
into what the API shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import msgspec

from onewindow.db import Connection
from onewindow.errors import NotFound

ApplicationStatus = Literal[
    "draft",
    "submitted",
    "in_review",
    "needs_correction",
    "awaiting_payment",
    "decided",
    "returned",
    "withdrawn",
]
ItemStatus = Literal[
    "pending", "in_review", "needs_correction", "awaiting_payment", "approved", "rejected", "withdrawn"
]
Channel = Literal["online", "app", "counter"]
# Statuses in which the applicant's application is still open to a decision.
UNDECIDED: tuple[str, ...] = ("submitted", "in_review", "needs_correction", "awaiting_payment")
ENDED_ITEM: tuple[str, ...] = ("approved", "rejected", "withdrawn")


# An application in these statuses has not been sent to the departments: its items have no
# workflow instance, and the departments' staff see nothing of it.
NOT_WITH_DEPARTMENTS: tuple[str, ...] = ("draft", "submitted", "returned")


class ApplicationRow(msgspec.Struct, frozen=True, kw_only=True):
    """One row of services.applications."""

    id: UUID
    number: str | None
    applicant: str
    created_by: str
    channel: Channel
    bundle_code: str | None
    bundle_version: int | None
    status: ApplicationStatus
    outcome: Literal["approved", "rejected", "partly_approved"] | None
    form: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    decided_at: datetime | None
    withdrawn_at: datetime | None
    withdrawn_reason: str | None
    promised_at: datetime | None
    intake_by: str | None
    intake_at: datetime | None
    intake_note: str | None
    documents_due_at: datetime | None
    missing: list[Any]
    receipt_number: str | None


class ApplicationItemRow(msgspec.Struct, frozen=True, kw_only=True):
    """One row of services.application_items: an item of an application, reviewed by its own
    workflow instance (subject id = `id`) in `department`."""

    id: UUID
    application_id: UUID
    position: int
    item_code: str
    item_version: int
    department: str
    status: ItemStatus
    fee_minor: int
    promised_at: datetime | None
    started_at: datetime | None
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None
    corrections: int
    working_days: int | None
    on_time: bool | None


class PaymentRow(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    application_item_id: UUID
    amount_minor: int
    currency: str
    provider: str
    reference: str
    status: Literal["pending", "confirmed", "failed"]
    created_at: datetime
    confirmed_at: datetime | None


_APPLICATION = (
    "id, number, applicant, created_by, channel, bundle_code, bundle_version, status, outcome, form, version,"
    " created_at, updated_at, submitted_at, decided_at, withdrawn_at, withdrawn_reason, promised_at, intake_by,"
    " intake_at, intake_note, documents_due_at, missing, receipt_number"
)
_ITEM = (
    "id, application_id, position, item_code, item_version, department, status, fee_minor, promised_at,"
    " started_at, decided_at, decided_by, reason, corrections, working_days, on_time"
)
_PAYMENT = (
    "id, application_item_id, amount_minor, currency, provider, reference, status, created_at, confirmed_at"
)


def sent_to_departments(app: ApplicationRow) -> bool:
    """Whether the application was ever sent to its departments (submitted for review, or taken in
    at the counter): only then do their officers and supervisors see it."""
    return app.submitted_at is not None and app.status not in NOT_WITH_DEPARTMENTS


def _application(record: Any) -> ApplicationRow:
    return msgspec.convert(dict(record), ApplicationRow)


def _item(record: Any) -> ApplicationItemRow:
    return msgspec.convert(dict(record), ApplicationItemRow)


# --- applications --------------------------------------------------------------------------------


async def insert_application(
    conn: Connection,
    *,
    application_id: UUID,
    applicant: str,
    created_by: str,
    channel: Channel,
    bundle: tuple[str, int] | None,
    form: dict[str, Any],
    now: datetime,
) -> ApplicationRow:
    record = await conn.fetchrow(
        "INSERT INTO services.applications (id, applicant, created_by, channel, bundle_code, bundle_version,"
        " status, form, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'draft', $7, $8, $8)"
        f" RETURNING {_APPLICATION}",
        application_id,
        applicant,
        created_by,
        channel,
        bundle[0] if bundle else None,
        bundle[1] if bundle else None,
        form,
        now,
    )
    return _application(record)


async def insert_item(
    conn: Connection,
    *,
    application_id: UUID,
    position: int,
    item_code: str,
    item_version: int,
    department: str,
    fee_minor: int,
) -> ApplicationItemRow:
    record = await conn.fetchrow(
        "INSERT INTO services.application_items (id, application_id, position, item_code, item_version,"
        " department, status, fee_minor) VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, 'pending', $6)"
        f" RETURNING {_ITEM}",
        application_id,
        position,
        item_code,
        item_version,
        department,
        fee_minor,
    )
    return _item(record)


async def application(conn: Connection, application_id: UUID, *, lock: bool = False) -> ApplicationRow | None:
    """The application; with `lock`, its row locked until the transaction ends (every change of
    an application and its items takes this lock first, so concurrent steps apply in turn)."""
    sql = f"SELECT {_APPLICATION} FROM services.applications WHERE id = $1"
    record = await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), application_id)
    return _application(record) if record else None


async def applications_of(
    conn: Connection,
    applicant: str,
    *,
    statuses: Sequence[str] | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[ApplicationRow]:
    """The applicant's applications, newest first (keyset on created_at, id)."""
    records = await conn.fetch(
        f"SELECT {_APPLICATION} FROM services.applications WHERE applicant = $1"
        " AND ($2::text[] IS NULL OR status = ANY($2))"
        " AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))"
        " ORDER BY created_at DESC, id DESC LIMIT $5",
        applicant,
        list(statuses) if statuses else None,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [_application(r) for r in records]


async def update_form(
    conn: Connection, application_id: UUID, form: dict[str, Any], *, now: datetime
) -> ApplicationRow:
    record = await conn.fetchrow(
        "UPDATE services.applications SET form = $2, version = version + 1, updated_at = $3 WHERE id = $1"
        f" RETURNING {_APPLICATION}",
        application_id,
        form,
        now,
    )
    return _application(record)


async def next_number(conn: Connection, prefix: str, *, now: datetime, timezone: str) -> str:
    """The next `<prefix>-<year>-<6 digits>` of the city's calendar year at `now` (application
    numbers, counter receipts, certificates: one counter per prefix and year). Taken under the
    counter's row lock until the transaction ends, so a number is never given twice, and a
    rolled-back submission or issue gives its number back (no gap is visible)."""
    year = now.astimezone(ZoneInfo(timezone)).year
    serial: int = await conn.fetchval(
        "INSERT INTO services.number_counters (prefix, year, last) VALUES ($1, $2, 1)"
        " ON CONFLICT (prefix, year) DO UPDATE SET last = number_counters.last + 1 RETURNING last",
        prefix,
        year,
    )
    return f"{prefix}-{year}-{serial:06d}"


async def mark_submitted(
    conn: Connection,
    application_id: UUID,
    *,
    number: str | None,
    promised_at: datetime,
    intake_by: str | None,
    now: datetime,
) -> ApplicationRow:
    """In review from now. A resubmission after a return at the counter keeps its number."""
    record = await conn.fetchrow(
        "UPDATE services.applications SET status = 'in_review', number = coalesce(number, $2), submitted_at = $3,"
        " promised_at = $4, intake_by = coalesce($5, intake_by), intake_at = CASE WHEN $5::text IS NULL"
        " THEN intake_at ELSE $3 END, missing = '[]', version = version + 1, updated_at = $3 WHERE id = $1"
        f" RETURNING {_APPLICATION}",
        application_id,
        number,
        now,
        promised_at,
        intake_by,
    )
    return _application(record)


async def mark_waiting_for_intake(
    conn: Connection, application_id: UUID, *, number: str, now: datetime
) -> ApplicationRow:
    """Sent by the applicant to be finished at the counter: status `submitted` (the bureau's
    queue), numbered (a number given before, at an earlier visit, is kept)."""
    record = await conn.fetchrow(
        "UPDATE services.applications SET status = 'submitted', number = coalesce(number, $2),"
        f" version = version + 1, updated_at = $3 WHERE id = $1 RETURNING {_APPLICATION}",
        application_id,
        number,
        now,
    )
    return _application(record)


async def set_status(
    conn: Connection,
    application_id: UUID,
    *,
    status: ApplicationStatus,
    now: datetime,
    outcome: str | None = None,
    missing: list[Any] | None = None,
) -> ApplicationRow:
    """The application's status as its items make it; `decided_at` when it becomes decided;
    `missing` replaced when given (what a correction asks for)."""
    record = await conn.fetchrow(
        "UPDATE services.applications SET status = $2, outcome = coalesce($3, outcome),"
        " missing = coalesce($4::jsonb, missing),"
        " decided_at = CASE WHEN $2 = 'decided' THEN $5 ELSE decided_at END, updated_at = $5,"
        " version = version + 1 WHERE id = $1"
        f" RETURNING {_APPLICATION}",
        application_id,
        status,
        outcome,
        missing,
        now,
    )
    return _application(record)


async def mark_withdrawn(
    conn: Connection, application_id: UUID, *, reason: str, now: datetime
) -> ApplicationRow:
    record = await conn.fetchrow(
        "UPDATE services.applications SET status = 'withdrawn', withdrawn_at = $2, withdrawn_reason = $3,"
        f" updated_at = $2, version = version + 1 WHERE id = $1 RETURNING {_APPLICATION}",
        application_id,
        now,
        reason,
    )
    return _application(record)


# --- items ---------------------------------------------------------------------------------------


async def items_of(conn: Connection, application_id: UUID) -> list[ApplicationItemRow]:
    records = await conn.fetch(
        f"SELECT {_ITEM} FROM services.application_items WHERE application_id = $1 ORDER BY position",
        application_id,
    )
    return [_item(r) for r in records]


async def item(conn: Connection, item_id: UUID) -> ApplicationItemRow | None:
    record = await conn.fetchrow(f"SELECT {_ITEM} FROM services.application_items WHERE id = $1", item_id)
    return _item(record) if record else None


async def start_items(
    conn: Connection, application_id: UUID, *, promised: dict[UUID, datetime], now: datetime
) -> None:
    """Every item of the application in review from `now`, each with its promised deadline."""
    await conn.executemany(
        "UPDATE services.application_items SET status = 'in_review', started_at = $3, promised_at = $2"
        " WHERE id = $1",
        [(item_id, due, now) for item_id, due in promised.items()],
    )


async def set_item_status(
    conn: Connection,
    item_id: UUID,
    *,
    status: ItemStatus,
    corrected: bool = False,
    promised_at: datetime | None = None,
) -> ApplicationItemRow:
    record = await conn.fetchrow(
        "UPDATE services.application_items SET status = $2, corrections = corrections + $3::int,"
        f" promised_at = coalesce($4, promised_at) WHERE id = $1 RETURNING {_ITEM}",
        item_id,
        status,
        1 if corrected else 0,
        promised_at,
    )
    return _item(record)


async def record_decider(conn: Connection, item_id: UUID, *, by: str, reason: str | None) -> None:
    """Who approved or rejected the item (and a rejection's reason), when they act: the item is
    decided (`decide_item`) when its workflow ends, which may be after a payment."""
    await conn.execute(
        "UPDATE services.application_items SET decided_by = $2, reason = $3 WHERE id = $1",
        item_id,
        by,
        reason,
    )


async def decide_item(
    conn: Connection,
    item_id: UUID,
    *,
    status: Literal["approved", "rejected", "withdrawn"],
    at: datetime,
    by: str | None,
    reason: str | None,
    working_days: int | None,
    on_time: bool | None,
) -> ApplicationItemRow:
    record = await conn.fetchrow(
        "UPDATE services.application_items SET status = $2, decided_at = $3, decided_by = $4, reason = $5,"
        f" working_days = $6, on_time = $7 WHERE id = $1 RETURNING {_ITEM}",
        item_id,
        status,
        at,
        by,
        reason,
        working_days,
        on_time,
    )
    return _item(record)


async def withdraw_pending_item(
    conn: Connection, item_id: UUID, *, at: datetime, by: str
) -> ApplicationItemRow | None:
    """An item not yet in review (no workflow instance) ends withdrawn; None when it is no longer
    `pending` (a submission started its review meanwhile): nothing is changed then."""
    record = await conn.fetchrow(
        "UPDATE services.application_items SET status = 'withdrawn', decided_at = $2, decided_by = $3,"
        " reason = NULL, working_days = NULL, on_time = NULL WHERE id = $1 AND status = 'pending'"
        f" RETURNING {_ITEM}",
        item_id,
        at,
        by,
    )
    return _item(record) if record else None


# --- payments ------------------------------------------------------------------------------------


async def lock_payments(conn: Connection, item_id: UUID) -> None:
    """Until the transaction ends, the right to pay for this item (an advisory lock: no row is
    locked, so it comes before every lock of the engine's order and cannot close a cycle)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('services.payments:' || $1::text))", str(item_id)
    )


async def insert_payment(
    conn: Connection,
    *,
    payment_id: UUID,
    item_id: UUID,
    amount_minor: int,
    currency: str,
    provider: str,
    reference: str,
    now: datetime,
) -> PaymentRow:
    record = await conn.fetchrow(
        "INSERT INTO services.payments (id, application_item_id, amount_minor, currency, provider, reference,"
        f" status, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7) RETURNING {_PAYMENT}",
        payment_id,
        item_id,
        amount_minor,
        currency,
        provider,
        reference,
        now,
    )
    if record is None:
        raise RuntimeError("INSERT ... RETURNING gave no row")
    return msgspec.convert(dict(record), PaymentRow)


async def settle_payment(
    conn: Connection, payment_id: UUID, *, status: Literal["confirmed", "failed"], now: datetime
) -> PaymentRow:
    record = await conn.fetchrow(
        "UPDATE services.payments SET status = $2, confirmed_at = CASE WHEN $2 = 'confirmed' THEN $3::timestamptz END"
        f" WHERE id = $1 RETURNING {_PAYMENT}",
        payment_id,
        status,
        now,
    )
    if record is None:
        raise NotFound("No such payment.")
    return msgspec.convert(dict(record), PaymentRow)


async def payments_of(conn: Connection, item_id: UUID) -> list[PaymentRow]:
    records = await conn.fetch(
        f"SELECT {_PAYMENT} FROM services.payments WHERE application_item_id = $1 ORDER BY created_at, id",
        item_id,
    )
    return [msgspec.convert(dict(r), PaymentRow) for r in records]
