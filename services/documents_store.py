"""The SQL of documents and counter intake: people's documents on file (`services.documents`),
what each application supplies for its checklist (`services.application_documents`), and the
counter's writes on an application (a return, a receipt). Functions take the connection first
and never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from onewindow.db import Connection

AttachmentStatus = Literal["provided", "reused", "pending", "accepted", "rejected"]


class DocumentRow(msgspec.Struct, frozen=True, kw_only=True):
    """A document on file: its content is in the blob store under `sha256`."""

    id: UUID
    owner: str
    kind: str
    filename: str
    media_type: str
    size_bytes: int
    sha256: str
    uploaded_by: str
    uploaded_at: datetime
    valid_until: date | None


class AttachmentRow(msgspec.Struct, frozen=True, kw_only=True):
    """What an application supplies for one entry of its checklist."""

    application_id: UUID
    checklist_code: str
    document_id: UUID | None
    certificate_number: str | None
    status: AttachmentStatus
    due_at: datetime | None
    note: str | None
    attached_by: str
    attached_at: datetime


class QueueRow(msgspec.Struct, frozen=True, kw_only=True):
    """One application in the counter's queue."""

    id: UUID
    number: str | None
    applicant: str
    channel: str
    status: str
    bundle_code: str | None
    created_at: datetime
    updated_at: datetime
    documents_due_at: datetime | None
    receipt_number: str | None
    pending_documents: int


_DOCUMENT_COLUMNS = (
    "id, owner, kind, filename, media_type, size_bytes, sha256, uploaded_by, uploaded_at, valid_until"
)
_ATTACHMENT_COLUMNS = (
    "application_id, checklist_code, document_id, certificate_number, status, due_at, note,"
    " attached_by, attached_at"
)


def _row(record: Any, shape: type[Any]) -> Any:
    return msgspec.convert(dict(record), shape)


# --- documents on file ---------------------------------------------------------------------------


async def insert_document(
    conn: Connection,
    *,
    document_id: UUID,
    owner: str,
    kind: str,
    filename: str,
    media_type: str,
    size_bytes: int,
    sha256: str,
    uploaded_by: str,
    uploaded_at: datetime,
) -> DocumentRow:
    record = await conn.fetchrow(
        "INSERT INTO services.documents"
        " (id, owner, kind, filename, media_type, size_bytes, sha256, uploaded_by, uploaded_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        f" RETURNING {_DOCUMENT_COLUMNS}",
        document_id,
        owner,
        kind,
        filename,
        media_type,
        size_bytes,
        sha256,
        uploaded_by,
        uploaded_at,
    )
    row: DocumentRow = _row(record, DocumentRow)
    return row


async def document(conn: Connection, document_id: UUID) -> DocumentRow | None:
    record = await conn.fetchrow(
        f"SELECT {_DOCUMENT_COLUMNS} FROM services.documents WHERE id = $1", document_id
    )
    return None if record is None else _row(record, DocumentRow)


async def documents_of(
    conn: Connection,
    owner: str,
    *,
    kind: str | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[DocumentRow]:
    """A person's documents on file, newest first (keyset pagination on uploaded_at, id)."""
    records = await conn.fetch(
        f"SELECT {_DOCUMENT_COLUMNS} FROM services.documents"
        " WHERE owner = $1 AND ($2::text IS NULL OR kind = $2)"
        "   AND ($3::timestamptz IS NULL OR (uploaded_at, id) < ($3, $4::uuid))"
        " ORDER BY uploaded_at DESC, id DESC LIMIT $5",
        owner,
        kind,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [_row(r, DocumentRow) for r in records]


# --- an application's checklist ------------------------------------------------------------------


async def attachments(conn: Connection, application_id: UUID) -> list[AttachmentRow]:
    records = await conn.fetch(
        f"SELECT {_ATTACHMENT_COLUMNS} FROM services.application_documents"
        " WHERE application_id = $1 ORDER BY checklist_code",
        application_id,
    )
    return [_row(r, AttachmentRow) for r in records]


async def attachment(conn: Connection, application_id: UUID, code: str) -> AttachmentRow | None:
    record = await conn.fetchrow(
        f"SELECT {_ATTACHMENT_COLUMNS} FROM services.application_documents"
        " WHERE application_id = $1 AND checklist_code = $2",
        application_id,
        code,
    )
    return None if record is None else _row(record, AttachmentRow)


async def put_attachment(
    conn: Connection,
    *,
    application_id: UUID,
    code: str,
    document_id: UUID | None,
    certificate_number: str | None,
    status: AttachmentStatus,
    by: str,
    at: datetime,
) -> AttachmentRow:
    """Supply (or replace) what the application gives for `code`. A pending entry keeps its due
    date, so the record still says by when it was due."""
    record = await conn.fetchrow(
        "INSERT INTO services.application_documents"
        " (application_id, checklist_code, document_id, certificate_number, status, attached_by, attached_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (application_id, checklist_code) DO UPDATE SET"
        "   document_id = EXCLUDED.document_id, certificate_number = EXCLUDED.certificate_number,"
        "   status = EXCLUDED.status, note = NULL,"
        "   attached_by = EXCLUDED.attached_by, attached_at = EXCLUDED.attached_at"
        f" RETURNING {_ATTACHMENT_COLUMNS}",
        application_id,
        code,
        document_id,
        certificate_number,
        status,
        by,
        at,
    )
    row: AttachmentRow = _row(record, AttachmentRow)
    return row


async def put_pending(
    conn: Connection, *, application_id: UUID, code: str, due_at: datetime, by: str, at: datetime
) -> bool:
    """Record `code` as to be supplied by `due_at`; an entry already supplied stays as it is
    (False). A pending entry gets the new due date."""
    done: bool | None = await conn.fetchval(
        "INSERT INTO services.application_documents"
        " (application_id, checklist_code, status, due_at, attached_by, attached_at)"
        " VALUES ($1, $2, 'pending', $3, $4, $5)"
        " ON CONFLICT (application_id, checklist_code) DO UPDATE SET"
        "   due_at = EXCLUDED.due_at, attached_by = EXCLUDED.attached_by, attached_at = EXCLUDED.attached_at"
        "   WHERE services.application_documents.status = 'pending'"
        " RETURNING true",
        application_id,
        code,
        due_at,
        by,
        at,
    )
    return bool(done)


# --- counter intake ------------------------------------------------------------------------------


async def record_intake(
    conn: Connection,
    application_id: UUID,
    *,
    by: str,
    at: datetime,
    note: str | None,
    receipt_number: str,
    documents_due_at: datetime | None,
) -> None:
    """Stamp an accepted application with the counter's intake (the clerk, the receipt, by when
    pending documents are due). `applications.submit` has set its status and number."""
    await conn.execute(
        "UPDATE services.applications SET intake_by = $2, intake_at = $3, intake_note = $4,"
        " receipt_number = $5, documents_due_at = $6, updated_at = $3"
        " WHERE id = $1",
        application_id,
        by,
        at,
        note,
        receipt_number,
        documents_due_at,
    )


async def record_return(
    conn: Connection,
    application_id: UUID,
    *,
    by: str,
    at: datetime,
    note: str | None,
    missing: Sequence[dict[str, Any]],
    receipt_number: str,
) -> bool:
    """Return an application at intake with the list of what is missing (status `returned`):
    the citizen completes it online or comes back. False if it is no longer open for intake."""
    done: bool | None = await conn.fetchval(
        "UPDATE services.applications SET status = 'returned', missing = $2::jsonb, intake_by = $3,"
        " intake_at = $4, intake_note = $5, receipt_number = $6, updated_at = $4, version = version + 1"
        " WHERE id = $1 AND status IN ('draft', 'submitted', 'returned')"
        " RETURNING true",
        application_id,
        list(missing),
        by,
        at,
        note,
        receipt_number,
    )
    return bool(done)


_QUEUE = (
    "SELECT a.id, a.number, a.applicant, a.channel, a.status, a.bundle_code, a.created_at, a.updated_at,"
    "       a.documents_due_at, a.receipt_number,"
    "       (SELECT count(*) FROM services.application_documents d"
    "         WHERE d.application_id = a.id AND d.status = 'pending') AS pending_documents"
    " FROM services.applications a"
    " WHERE ("
    "   ($1 = 'draft' AND a.status = 'draft' AND a.channel = 'counter')"
    "   OR ($1 IN ('submitted', 'returned') AND a.status = $1)"
    "   OR ($1 = 'pending_documents' AND a.status NOT IN ('draft', 'returned', 'decided', 'withdrawn')"
    "       AND EXISTS (SELECT 1 FROM services.application_documents d"
    "                    WHERE d.application_id = a.id AND d.status = 'pending'))"
    " )"
    " AND ($2::timestamptz IS NULL OR (a.created_at, a.id) > ($2, $3::uuid))"
    " ORDER BY a.created_at, a.id LIMIT $4"
)


async def counter_queue(
    conn: Connection, status: str, *, after: tuple[datetime, UUID] | None, limit: int
) -> list[QueueRow]:
    """The bureau's queue: counter drafts, applications waiting for intake, returned ones, and
    accepted ones with documents still pending; oldest first (first come, first served)."""
    records = await conn.fetch(
        _QUEUE, status, after[0] if after else None, after[1] if after else None, limit
    )
    return [_row(r, QueueRow) for r in records]
