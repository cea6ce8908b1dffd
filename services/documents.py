"""Documents: what an application supplies for its checklist, and the documents people keep on file.

A file is uploaded once (content-addressed in the blob store, a row in `services.documents`
owned by the applicant) and offered again to each later application of theirs: a document on
file, or a certificate the city already issued to them, satisfies a checklist entry without a
new upload (reuse). The checklist itself is the catalog's (`catalog.checklist`: the entries of
the application's items that apply to its form); this module says, per entry, what was supplied,
what is still missing and what was accepted at the counter as pending (容缺受理, with a due date).

What decides a file's type is its content (`sniff_media_type`), never the header the browser
sent: a PDF renamed `.png` is a PDF, and a file we cannot recognise is refused.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Final, Literal
from uuid import UUID, uuid4

import msgspec

from identity.api import Principal
from onewindow.db import Connection
from onewindow.errors import (
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    RuleViolation,
    TooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from onewindow.storage import BlobStore, digest, sniff_media_type
from services import application_store, catalog, certificates_store, documents_store, reviewers
from services.application_store import ApplicationRow
from services.documents_store import AttachmentRow, DocumentRow

__all__ = [
    "ChecklistStatus",
    "DocumentRef",
    "Grant",
    "attach",
    "checklist_status",
    "mark_pending",
    "missing",
    "upload",
]

DEFAULT_MAX_BYTES: Final = 20 * 1_048_576
# What the blob store recognises by content: the widest set a checklist entry may accept.
RECOGNISED_TYPES: Final = frozenset(catalog.MEDIA_TYPES)
# An entry counts as supplied in these states ('pending' is supplied later, 'rejected' again).
SUPPLIED: Final = frozenset({"provided", "reused", "accepted"})
# Where the applicant may change any entry; in the other open states only a pending one.
OPEN_FOR_DOCUMENTS: Final = frozenset({"draft", "submitted", "returned", "needs_correction"})
CLOSED: Final = frozenset({"decided", "withdrawn"})
_EXTENSIONS: Final = {
    "application/pdf": ".pdf",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/heic": ".heic",
}
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|;]+')
_MAX_FILENAME: Final = 120
# Unicode categories dropped from file names: controls, format, surrogates, private use,
# unassigned (C*), and line and paragraph separators.
_DROPPED: Final = ("C", "Zl", "Zp")

Status = Literal["missing", "provided", "reused", "pending", "accepted", "rejected"]
Access = Literal["write", "read"]


class DocumentRef(msgspec.Struct, frozen=True, kw_only=True):
    """A document on file as lists show it (never its content)."""

    id: UUID
    kind: str
    filename: str
    media_type: str
    size_bytes: int
    uploaded_at: datetime


class ChecklistStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One checklist entry of an application and where it stands."""

    code: str
    name: catalog.Text
    status: Status
    optional: bool
    later_allowed: bool
    media_types: tuple[str, ...]
    max_bytes: int | None
    reusable_certificate: str | None
    items: tuple[str, ...]
    document: DocumentRef | None = None
    certificate_number: str | None = None
    due_at: datetime | None = None
    note: str | None = None


def document_ref(row: DocumentRow) -> DocumentRef:
    return DocumentRef(
        id=row.id,
        kind=row.kind,
        filename=row.filename,
        media_type=row.media_type,
        size_bytes=row.size_bytes,
        uploaded_at=row.uploaded_at,
    )


# --- files ---------------------------------------------------------------------------------------


def safe_filename(filename: str, media_type: str) -> str:
    """The name to keep and to offer on download: no path, no control or quoting characters
    (it goes into a Content-Disposition header), at most 120 characters, and never empty. ASCII
    controls and quoting characters become `_`; every other character Unicode calls a control,
    a format character (U+202E, the right-to-left override that makes `exe.pdf` read `fdp.exe`),
    a surrogate, private or unassigned (category C*), or a line or paragraph separator (U+2028,
    U+2029), is dropped."""
    name = unicodedata.normalize("NFC", filename).replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name)
    name = "".join(c for c in name if not unicodedata.category(c).startswith(_DROPPED)).strip(" ._")
    extension = _EXTENSIONS.get(media_type, "")
    if not name:
        name = f"document{extension}"
    if len(name) > _MAX_FILENAME:
        _, dot, suffix = name.rpartition(".")
        keep = f".{suffix}" if dot and len(suffix) <= 10 else ""
        name = name[: _MAX_FILENAME - len(keep)] + keep
    return name


def checked_type(content: bytes, *, media_types: Collection[str] | None, max_bytes: int | None) -> str:
    """The content's media type, if it is one the entry accepts and within the size limit;
    the declared type plays no part (a browser's guess, or a lie)."""
    limit = max_bytes if max_bytes is not None else DEFAULT_MAX_BYTES
    if len(content) > limit:
        raise TooLarge(f"A document for this entry is at most {limit} bytes.")
    if not content:
        raise ValidationFailed(
            "The file is empty.", errors=[FieldError(pointer="/file", detail="no content")]
        )
    allowed = RECOGNISED_TYPES & frozenset(media_types if media_types is not None else RECOGNISED_TYPES)
    sniffed = sniff_media_type(content)
    if sniffed is None or sniffed not in allowed:
        raise UnsupportedMediaType(
            f"This entry accepts {', '.join(sorted(allowed))} (judged by the file's content, not its"
            f" name or header); the file is {'not a type we recognise' if sniffed is None else sniffed}."
        )
    return sniffed


async def upload(
    conn: Connection,
    store: BlobStore,
    *,
    owner: str,
    kind: str,
    filename: str,
    content: bytes,
    declared_type: str | None,
    by: str,
    now: datetime,
    media_types: Collection[str] | None = None,
    max_bytes: int | None = None,
) -> DocumentRow:
    """Keep a document on file for `owner`: checked (type by content, size), written to the blob
    store under its SHA-256 before its row (a crash leaves an unreferenced file, never a row
    without one). `declared_type` is accepted and ignored on purpose: the content decides."""
    del declared_type
    media_type = checked_type(content, media_types=media_types, max_bytes=max_bytes)
    sha256 = digest(content)
    await store.put(sha256, content)
    return await documents_store.insert_document(
        conn,
        document_id=uuid4(),
        owner=owner,
        kind=kind,
        filename=safe_filename(filename, media_type),
        media_type=media_type,
        size_bytes=len(content),
        sha256=sha256,
        uploaded_by=by,
        uploaded_at=now,
    )


# --- who may see and change an application's documents ------------------------------------------


class Grant(msgspec.Struct, frozen=True, kw_only=True):
    """What a principal may do with an application's documents: `write` (and read everything),
    or `read` the entries of `items` (item codes; None: every entry)."""

    access: Access
    items: frozenset[str] | None = None

    def reads(self, entry: catalog.Requirement) -> bool:
        return self.items is None or bool(self.items & set(entry.items))


async def access(conn: Connection, principal: Principal, app: ApplicationRow) -> Grant | None:
    """`write` for the applicant and, on a counter application (made at the counter, waiting
    for its intake, or taken in there), a clerk; once the application was sent to the
    departments, `read` for officers and supervisors of a department that reviews an item of
    it, limited to the checklist entries those items ask for; None for everyone else (who must
    not learn that the application exists)."""
    if principal.subject == app.applicant:
        return Grant(access="write")
    at_counter = app.channel == "counter" or app.status == "submitted" or app.intake_by is not None
    if at_counter and principal.has_role("clerk"):
        return Grant(access="write")
    if not application_store.sent_to_departments(app):
        return None
    rows = await application_store.items_of(conn, app.id)
    paths = await reviewers.department_paths(conn, (row.department for row in rows))
    reviewed = frozenset(
        row.item_code for row in rows if reviewers.reviews_for(principal, paths.get(row.department))
    )
    return Grant(access="read", items=reviewed) if reviewed else None


async def visible_application(
    conn: Connection, principal: Principal, application_id: UUID
) -> tuple[ApplicationRow, Grant]:
    """The application and what the principal may do with its documents; 404 if nothing."""
    app = await application_store.application(conn, application_id)
    granted = None if app is None else await access(conn, principal, app)
    if app is None or granted is None:
        raise NotFound("No such application.")
    return app, granted


async def writable_application(
    conn: Connection, principal: Principal, application_id: UUID
) -> ApplicationRow:
    app, granted = await visible_application(conn, principal, application_id)
    if granted.access != "write":
        raise Forbidden("Only the applicant (or, for a counter application, a clerk) supplies its documents.")
    return app


async def requirements_of(conn: Connection, app: ApplicationRow) -> list[catalog.Requirement]:
    """The application's checklist as its items (the pinned versions) ask for it given its form."""
    pins = [(row.item_code, row.item_version) for row in await application_store.items_of(conn, app.id)]
    return catalog.checklist(await catalog.items_of(conn, pins), app.form)


def requirement(requirements: Sequence[catalog.Requirement], code: str) -> catalog.Requirement:
    for entry in requirements:
        if entry.code == code:
            return entry
    raise RuleViolation(
        "This application's checklist has no such entry.",
        errors=[FieldError(pointer="/checklist_code", detail="not on this application's checklist")],
    )


async def _check_open(conn: Connection, app: ApplicationRow, code: str) -> None:
    """Documents change while the application is being written or corrected; after that only a
    pending entry may still be supplied (the counter accepted it without)."""
    if app.status in OPEN_FOR_DOCUMENTS:
        return
    if app.status not in CLOSED:
        current = await documents_store.attachment(conn, app.id, code)
        if current is not None and current.status == "pending":
            return
    raise Conflict(
        f"The application is {app.status.replace('_', ' ')}: its documents can no longer change"
        " (only one accepted as pending may still be supplied)."
    )


# --- supplying an entry --------------------------------------------------------------------------


async def supply(
    conn: Connection,
    store: BlobStore,
    app: ApplicationRow,
    code: str,
    *,
    filename: str,
    content: bytes,
    declared_type: str | None,
    limit: int,
    by: str,
    now: datetime,
) -> ChecklistStatus:
    """Upload a file for the entry `code` of `app` (the caller checked who may): limits from the
    entry (its media types, its size limit if lower than the city's `limit`)."""
    requirements = await requirements_of(conn, app)
    entry = requirement(requirements, code)
    await _check_open(conn, app, code)
    max_bytes = min(limit, entry.max_bytes) if entry.max_bytes is not None else limit
    row = await upload(
        conn,
        store,
        owner=app.applicant,
        kind=code,
        filename=filename,
        content=content,
        declared_type=declared_type,
        by=by,
        now=now,
        media_types=entry.media_types,
        max_bytes=max_bytes,
    )
    attached = await documents_store.put_attachment(
        conn,
        application_id=app.id,
        code=code,
        document_id=row.id,
        certificate_number=None,
        status="provided",
        by=by,
        at=now,
    )
    return _status(entry, attached, row)


async def attach(
    conn: Connection,
    app_id: UUID,
    checklist_code: str,
    *,
    document_id: UUID | None = None,
    certificate_number: str | None = None,
    by: str,
    now: datetime,
) -> ChecklistStatus:
    """Reuse for `checklist_code` a document the applicant has on file (any kind: the same paper
    serves entries that different items name differently; the entry's media types and size
    limit still apply), or a certificate issued to them for the item the entry names, valid now
    and not revoked. Someone else's document or certificate is a 404, as if it did not exist."""
    if (document_id is None) == (certificate_number is None):
        raise ValidationFailed(
            "Name either a document on file or a certificate to reuse.",
            errors=[FieldError(pointer="", detail="exactly one of document_id, certificate_number")],
        )
    app = await application_store.application(conn, app_id)
    if app is None:
        raise NotFound("No such application.")
    requirements = await requirements_of(conn, app)
    entry = requirement(requirements, checklist_code)
    await _check_open(conn, app, checklist_code)
    row: DocumentRow | None = None
    if document_id is not None:
        row = await documents_store.document(conn, document_id)
        if row is None or row.owner != app.applicant:
            raise NotFound(
                "No such document on the applicant's file.",
                errors=[FieldError(pointer="/document_id", detail="not a document of the applicant")],
            )
        checked_type_of_file(row, entry)
        if row.valid_until is not None and row.valid_until < now.date():
            raise RuleViolation(
                "That document has expired: upload a current one.",
                errors=[FieldError(pointer="/document_id", detail="expired")],
            )
    elif certificate_number is not None:
        await _check_certificate(conn, certificate_number, holder=app.applicant, entry=entry, now=now)
    attached = await documents_store.put_attachment(
        conn,
        application_id=app.id,
        code=checklist_code,
        document_id=document_id,
        certificate_number=certificate_number,
        status="reused",
        by=by,
        at=now,
    )
    return _status(entry, attached, row)


def checked_type_of_file(row: DocumentRow, entry: catalog.Requirement) -> None:
    """A document on file serves an entry only in a type and size the entry accepts."""
    if row.media_type not in entry.media_types:
        raise UnsupportedMediaType(
            f"This entry accepts {', '.join(sorted(entry.media_types))}; that document is {row.media_type}."
        )
    if entry.max_bytes is not None and row.size_bytes > entry.max_bytes:
        raise TooLarge(f"A document for this entry is at most {entry.max_bytes} bytes.")


async def _check_certificate(
    conn: Connection, number: str, *, holder: str, entry: catalog.Requirement, now: datetime
) -> None:
    if entry.reusable_certificate is None:
        raise RuleViolation(
            "This entry takes a document, not a certificate.",
            errors=[FieldError(pointer="/certificate_number", detail="entry accepts no certificate")],
        )
    held = await certificates_store.certificate(conn, number)
    if held is None or held.holder != holder:
        raise NotFound(
            "No such certificate held by the applicant.",
            errors=[FieldError(pointer="/certificate_number", detail="not a certificate of the applicant")],
        )
    problem = None
    if held.item_code != entry.reusable_certificate:
        problem = f"this entry takes a certificate of {entry.reusable_certificate}, not of {held.item_code}"
    elif held.revoked_at is not None:
        problem = "the certificate has been revoked"
    elif held.valid_until is not None and held.valid_until <= now:
        problem = "the certificate has expired"
    elif held.valid_from > now:
        problem = "the certificate is not valid yet"
    if problem is not None:
        raise RuleViolation(
            f"That certificate cannot be used here: {problem}.",
            errors=[FieldError(pointer="/certificate_number", detail=problem)],
        )


# --- where the checklist stands ------------------------------------------------------------------


def _status(
    entry: catalog.Requirement, attached: AttachmentRow | None, document: DocumentRow | None
) -> ChecklistStatus:
    return ChecklistStatus(
        code=entry.code,
        name=entry.name,
        status="missing" if attached is None else attached.status,
        optional=entry.optional,
        later_allowed=entry.later_allowed,
        media_types=entry.media_types,
        max_bytes=entry.max_bytes,
        reusable_certificate=entry.reusable_certificate,
        items=entry.items,
        document=document_ref(document) if document is not None else None,
        certificate_number=attached.certificate_number if attached else None,
        due_at=attached.due_at if attached else None,
        note=attached.note if attached else None,
    )


async def checklist_status(
    conn: Connection, app_id: UUID, requirements: Sequence[catalog.Requirement]
) -> list[ChecklistStatus]:
    """Each entry of `requirements`, in their order, with what the application supplied for it.
    A supply for an entry the form no longer asks for is not shown (nor counted)."""
    supplied = {row.checklist_code: row for row in await documents_store.attachments(conn, app_id)}
    statuses: list[ChecklistStatus] = []
    for entry in requirements:
        attached = supplied.get(entry.code)
        document = None
        if attached is not None and attached.document_id is not None:
            document = await documents_store.document(conn, attached.document_id)
        statuses.append(_status(entry, attached, document))
    return statuses


async def missing(
    conn: Connection,
    app_id: UUID,
    requirements: Sequence[catalog.Requirement],
    *,
    pending: Mapping[str, datetime] | None = None,
) -> list[FieldError]:
    """What keeps the application from being submitted, every entry at once (pointer
    `/documents/<code>`): a required entry neither supplied nor pending, a pending one that may
    not be supplied later, and a `pending` code the checklist does not have."""
    pending = pending or {}
    supplied = {row.checklist_code: row for row in await documents_store.attachments(conn, app_id)}
    errors: list[FieldError] = []
    known = {entry.code for entry in requirements}
    for entry in requirements:
        attached = supplied.get(entry.code)
        status = attached.status if attached is not None else None
        if status in SUPPLIED:
            continue
        later = entry.code in pending or status == "pending"
        if later and not entry.later_allowed:
            errors.append(
                FieldError(
                    pointer=f"/documents/{entry.code}",
                    detail=f"{entry.name.en} must be supplied now: it may not be supplied later",
                )
            )
        elif later:
            continue
        elif not entry.optional:
            detail = "was rejected: supply it again" if status == "rejected" else "is required"
            errors.append(FieldError(pointer=f"/documents/{entry.code}", detail=f"{entry.name.en} {detail}"))
    errors.extend(
        FieldError(pointer=f"/documents/{code}", detail="not on this application's checklist")
        for code in sorted(set(pending) - known)
    )
    return errors


async def mark_pending(
    conn: Connection, app_id: UUID, pending: Mapping[str, datetime], by: str, now: datetime
) -> None:
    """Record the entries accepted without their document, each with its due date; an entry
    supplied meanwhile stays supplied. Supplying it later (`supply`, `attach`) makes it provided."""
    for code, due_at in sorted(pending.items()):
        await documents_store.put_pending(
            conn, application_id=app_id, code=code, due_at=due_at, by=by, at=now
        )


async def content_of(
    conn: Connection, store: BlobStore, app: ApplicationRow, code: str
) -> tuple[DocumentRow, bytes]:
    """The file supplied for `code` (the caller checked who may read it)."""
    attached = await documents_store.attachment(conn, app.id, code)
    if attached is None or attached.document_id is None:
        raise NotFound("No document has been supplied for this entry.")
    row = await documents_store.document(conn, attached.document_id)
    if row is None:  # pragma: no cover - a foreign key holds it
        raise NotFound("No document has been supplied for this entry.")
    content = await store.get(row.sha256)
    if content is None:
        raise NotFound("The document's file is missing from storage.")
    return row, content
