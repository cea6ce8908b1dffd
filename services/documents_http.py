"""Documents over HTTP: an application's checklist with what was supplied, uploads (multipart),
reuse of a document on file or a certificate (JSON), downloads for the applicant and the
reviewing departments, and a person's documents on file."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final
from urllib.parse import quote
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, RequestBody, Schema
from litestar.openapi.spec.operation import Operation
from litestar.params import FromPath, QueryParameter
from litestar.types import ControllerRouterHandler

from identity.api import current_principal, require_signed_in
from onewindow.db import Connection
from onewindow.errors import FieldError, NotFound, TooLarge, UnsupportedMediaType, ValidationFailed
from onewindow.settings import Settings
from onewindow.storage import DiskStore
from onewindow.web import decode_cursor, page
from services import documents, documents_store
from services.documents import ChecklistStatus, DocumentRef
from services.openapi import Problems, example, reply
from workflows import api as workflows

__all__ = ["DOCUMENT_CONTROLLERS", "document_store", "problems"]

# The route's ceiling (the largest value the setting may take, plus the multipart envelope): litestar
# fixes it when the app is built. The setting `document_max_bytes` (plus the envelope) is enforced
# on the Content-Length and, without one, on the bytes as they arrive (`_within`); each checklist
# entry's own limit on the file.
_MAX_UPLOAD_BODY: Final = 200 * 1_048_576 + 65_536
_ENVELOPE: Final = 65_536
CODE_PATTERN: Final = r"^[a-z][a-z0-9_]*$"

Code = Annotated[str, msgspec.Meta(pattern=CODE_PATTERN, max_length=63)]
Limit = Annotated[int, QueryParameter(ge=1, le=200, description="Most documents on one page (at most 200).")]
Cursor = Annotated[
    str | None, QueryParameter(max_length=512, description="`next_cursor` of the previous page.")
]

# Also the counter's (services.counter_http).
problems: Final = Problems(
    {
        404: "No such application (or not one this caller may see), document or certificate",
        409: "The application's documents can no longer change",
        412: "The resource has changed",
        413: "The file is larger than the entry or the city allows",
        415: "The file's content is not a type the entry accepts",
        422: "Not allowed by the rules (the checklist, the certificate's validity)",
    }
)


def document_store(settings: Settings) -> DiskStore:
    """Where documents' content lives: content-addressed files under the data directory."""
    return DiskStore(settings.data_dir / "files" / "documents")


# --- bodies and replies --------------------------------------------------------------------------


class ReuseRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Reuse for a checklist entry a document on file or a certificate (exactly one)."""

    checklist_code: Code
    document_id: UUID | None = None
    certificate_number: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class ChecklistReply(msgspec.Struct, frozen=True, kw_only=True):
    """An application's checklist: every entry its items ask for given its form, and its state.
    `complete`: nothing required is missing (pending entries count as accounted for)."""

    application_id: UUID
    status: str
    complete: bool
    entries: list[ChecklistStatus]
    missing: list[FieldError]


class DocumentList(msgspec.Struct, frozen=True, kw_only=True):
    documents: list[DocumentRef]
    next_cursor: str | None


_ENTRY_EXAMPLE: Final = {
    "code": "lease",
    "name": {"zh": "租赁合同", "en": "Lease contract"},
    "status": "provided",
    "optional": False,
    "later_allowed": True,
    "media_types": ["application/pdf"],
    "max_bytes": None,
    "reusable_certificate": None,
    "items": ["business-licence"],
    "document": {
        "id": "5f0c7c1e-8a57-4b7e-9d55-2f5f6b9d9a11",
        "kind": "lease",
        "filename": "lease-2026.pdf",
        "media_type": "application/pdf",
        "size_bytes": 184213,
        "uploaded_at": "2026-03-02T09:15:00+08:00",
    },
    "certificate_number": None,
    "due_at": None,
    "note": None,
}
_PENDING_EXAMPLE: Final = {
    **_ENTRY_EXAMPLE,
    "code": "floor_plan",
    "name": {"zh": "平面图", "en": "Floor plan"},
    "status": "pending",
    "media_types": ["application/pdf", "image/png"],
    "document": None,
    "due_at": "2026-03-16T09:15:00+08:00",
}


@dataclass
class _UploadOperation(Operation):
    """The upload route takes either body: multipart for a new file, JSON to reuse one. Litestar
    describes one `data` type per route, so this route writes its request body itself."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="multipart/form-data with `checklist_code` and `file` uploads a new file;"
            " application/json names a document on file or a certificate to reuse.",
            content={
                "multipart/form-data": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        required=["checklist_code", "file"],
                        properties={
                            "checklist_code": Schema(type=OpenAPIType.STRING, pattern=CODE_PATTERN),
                            "file": Schema(type=OpenAPIType.STRING, format="binary"),  # type: ignore[arg-type]
                        },
                    ),
                    examples={
                        "upload": example(
                            "A lease contract as PDF",
                            {"checklist_code": "lease", "file": "(the PDF's bytes)"},
                        )
                    },
                ),
                "application/json": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        required=["checklist_code"],
                        properties={
                            "checklist_code": Schema(type=OpenAPIType.STRING, pattern=CODE_PATTERN),
                            "document_id": Schema(type=OpenAPIType.STRING, format="uuid"),  # type: ignore[arg-type]
                            "certificate_number": Schema(type=OpenAPIType.STRING),
                        },
                    ),
                    examples={
                        "document": example(
                            "Reuse an identity card on file",
                            {
                                "checklist_code": "id_card",
                                "document_id": "0b5d3f8e-1f7a-4d0e-a1b8-6e9c2f41d2b7",
                            },
                        ),
                        "certificate": example(
                            "Reuse a business licence issued by the city",
                            {
                                "checklist_code": "business_licence",
                                "certificate_number": "YC-CERT-2026-000045",
                            },
                        ),
                    },
                ),
            },
        )


# --- routes --------------------------------------------------------------------------------------


def _within(request: Request[Any, Any, Any], limit: int, document_max_bytes: int) -> Request[Any, Any, Any]:
    """The request, its body read through a count that stops at `limit` bytes (413): litestar's
    own limit is the route's, fixed when the app is built, not this process's setting."""
    received = 0

    async def receive() -> Any:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise TooLarge(f"A document is at most {document_max_bytes} bytes.")
        return message

    return Request(request.scope, receive=receive, send=request.send)


def _form_field(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationFailed(
            f"The form needs the field {name}.", errors=[FieldError(pointer=f"/{name}", detail="missing")]
        )
    return value


class ApplicationDocumentController(Controller):
    path = "/api/v1/applications/{application_id:uuid}/documents"
    tags = ["services: documents"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_signed_in()]  # noqa: RUF012 - litestar's declared type

    @get(
        "",
        operation_id="services_application_documents",
        summary="An application's checklist, with what has been supplied for each entry",
        description="The entries the application's items ask for given its form (an entry two items ask"
        " for appears once), each with its state: missing, provided, reused, pending (accepted at the counter"
        " to be supplied later, with its due date), accepted or rejected. For the applicant, a clerk on a"
        " counter application, and officers and supervisors of a reviewing department; 404 for anyone else.",
        responses={
            200: reply(
                ChecklistReply,
                "The checklist",
                example(
                    "One entry supplied, one pending",
                    {
                        "application_id": "9a4e7b0c-3f1d-4c55-8b2e-1d6f0a7c9e21",
                        "status": "in_review",
                        "complete": True,
                        "entries": [_ENTRY_EXAMPLE, _PENDING_EXAMPLE],
                        "missing": [],
                    },
                ),
            ),
            **problems(401, 404),
        },
    )
    async def checklist(
        self, request: Request[Any, Any, Any], conn: Connection, application_id: FromPath[UUID]
    ) -> ChecklistReply:
        app, granted = await documents.visible_application(conn, current_principal(request), application_id)
        # A department's staff see the entries their items ask for, and what is missing of those.
        requirements = [entry for entry in await documents.requirements_of(conn, app) if granted.reads(entry)]
        missing = await documents.missing(conn, app.id, requirements)
        return ChecklistReply(
            application_id=app.id,
            status=app.status,
            complete=not missing,
            entries=await documents.checklist_status(conn, app.id, requirements),
            missing=missing,
        )

    @post(
        "",
        operation_id="services_application_supply_document",
        summary="Supply a document for a checklist entry: upload a file, or reuse one on file or a certificate",
        description="multipart/form-data (`checklist_code`, `file`): the file's type is judged by its content"
        " (a declared type that disagrees is ignored); it must be one the entry accepts (else 415) and within"
        " the entry's and the city's size limit (else 413). application/json (`checklist_code` and"
        " `document_id` or `certificate_number`): a document the applicant has on file (of any kind, in a type"
        " the entry accepts) or a certificate issued to them for the item the entry names, valid and not"
        " revoked. The applicant (or a clerk, for a counter application) supplies while the application is a"
        " draft, waiting for intake, returned or under correction; a document accepted as pending may be"
        " supplied at any time before the decision, and the entry becomes provided.",
        operation_class=_UploadOperation,
        request_max_body_size=_MAX_UPLOAD_BODY,
        status_code=201,
        responses={
            201: reply(ChecklistStatus, "The entry, supplied", example("A lease uploaded", _ENTRY_EXAMPLE)),
            **problems(400, 401, 403, 404, 409, 413, 415, 422),
        },
    )
    async def supply(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        settings: NamedDependency[Settings],
        application_id: FromPath[UUID],
    ) -> ChecklistStatus:
        principal = current_principal(request)
        now = workflows.now()
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type == "application/json":
            try:
                reuse = msgspec.json.decode(await request.body(), type=ReuseRequest)
            except msgspec.ValidationError as error:
                raise ValidationFailed(f"The body is not valid: {error}.") from None
            except msgspec.DecodeError:
                raise ValidationFailed("The body is not JSON.") from None
            await documents.writable_application(conn, principal, application_id)
            return await documents.attach(
                conn,
                application_id,
                reuse.checklist_code,
                document_id=reuse.document_id,
                certificate_number=reuse.certificate_number,
                by=principal.subject,
                now=now,
            )
        if content_type != "multipart/form-data":
            raise UnsupportedMediaType(
                "Send multipart/form-data (checklist_code and file) or application/json (reuse)."
            )
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.document_max_bytes + _ENVELOPE:
            raise TooLarge(f"A document is at most {settings.document_max_bytes} bytes.")
        app = await documents.writable_application(conn, principal, application_id)
        # Without a Content-Length the route's ceiling (the largest the setting may be) would let a
        # body far past this process's limit be read in full: count what arrives instead.
        form = await _within(
            request, settings.document_max_bytes + _ENVELOPE, settings.document_max_bytes
        ).form()
        code = _form_field(form.get("checklist_code"), "checklist_code")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ValidationFailed(
                "The form needs the file (a part named file).",
                errors=[FieldError(pointer="/file", detail="missing")],
            )
        try:
            content = await upload.read()
        finally:
            await upload.close()
        return await documents.supply(
            conn,
            document_store(settings),
            app,
            code,
            filename=upload.filename or "",
            content=content,
            declared_type=upload.content_type,
            limit=settings.document_max_bytes,
            by=principal.subject,
            now=now,
        )

    @get(
        "/{code:str}/content",
        operation_id="services_application_document_content",
        summary="Download the document supplied for a checklist entry",
        description="The file as uploaded, with its media type as judged from its content. For the applicant,"
        " a clerk on a counter application, and officers and supervisors of a department reviewing an item of"
        " the application; 404 for anyone else.",
        media_type="application/octet-stream",
        responses={
            200: reply(
                bytes,
                "The file (application/pdf, image/jpeg, image/png, image/webp or image/heic)",
                media_type="application/octet-stream",
            ),
            **problems(401, 404),
        },
    )
    async def content(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        settings: NamedDependency[Settings],
        application_id: FromPath[UUID],
        code: FromPath[str],
    ) -> Response[bytes]:
        app, granted = await documents.visible_application(conn, current_principal(request), application_id)
        if granted.items is not None and not any(
            entry.code == code and granted.reads(entry)
            for entry in await documents.requirements_of(conn, app)
        ):
            raise NotFound("No document has been supplied for this entry.")
        row, content = await documents.content_of(conn, document_store(settings), app, code)
        return Response(
            content,
            media_type=row.media_type,
            headers={
                "Content-Disposition": _disposition(row.filename),
                "ETag": f'"{row.sha256}"',
                "Cache-Control": "private, no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )


def _disposition(filename: str) -> str:
    """RFC 6266 with an ASCII fallback and the UTF-8 name (RFC 8187): names are often Chinese."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


class MyDocumentsController(Controller):
    path = "/api/v1/documents"
    tags = ["services: documents"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_signed_in()]  # noqa: RUF012 - litestar's declared type

    @get(
        "",
        operation_id="services_my_documents",
        summary="My documents on file (offered for reuse in my next applications)",
        description="Newest first; `kind` filters by the checklist code a document was uploaded for. Reuse one"
        " by posting its id to an application's documents. Only the caller's own documents are listed.",
        responses={
            200: reply(
                DocumentList,
                "A page of documents",
                example(
                    "One document on file", {"documents": [_ENTRY_EXAMPLE["document"]], "next_cursor": None}
                ),
            ),
            **problems(400, 401),
        },
    )
    async def mine(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        kind: Annotated[str | None, QueryParameter(pattern=CODE_PATTERN, max_length=63)] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> DocumentList:
        principal = current_principal(request)
        after = decode_cursor(cursor, tuple[datetime, UUID])
        rows, next_cursor = page(
            await documents_store.documents_of(
                conn, principal.subject, kind=kind, after=after, limit=limit + 1
            ),
            limit,
            lambda row: (row.uploaded_at, row.id),
        )
        return DocumentList(documents=[documents.document_ref(row) for row in rows], next_cursor=next_cursor)


DOCUMENT_CONTROLLERS: list[ControllerRouterHandler] = [ApplicationDocumentController, MyDocumentsController]
