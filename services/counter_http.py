"""The counter over HTTP (role clerk): drafts made for a citizen seen in person, the bureau's
queue, one application with its checklist, and the intake decision with its receipt."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, HeaderParameter, QueryParameter
from litestar.types import ControllerRouterHandler

from identity.api import Principal, contact_details, current_principal, require_role
from onewindow.db import Connection
from onewindow.errors import FieldError, NotFound, RuleViolation
from onewindow.idempotency import HEADER as IDEMPOTENCY_HEADER
from onewindow.settings import Settings
from onewindow.web import decode_cursor, idempotent, page
from services import application_store, applications, catalog, counter, documents, documents_store
from services.application_store import ApplicationRow
from services.counter import MissingEntry, PendingEntry, Receipt, ReceiptItem
from services.documents import ChecklistStatus
from services.documents_http import problems
from services.openapi import example, reply
from workflows import api as workflows

__all__ = ["COUNTER_CONTROLLERS"]

PREFIX: Final = "/api/v1/counter/applications"

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name=IDEMPOTENCY_HEADER, required=False, description="One value per intended action (e.g. a UUID)."
    ),
]
Limit = Annotated[
    int, QueryParameter(ge=1, le=200, description="Most applications on one page (at most 200).")
]
Cursor = Annotated[
    str | None, QueryParameter(max_length=512, description="`next_cursor` of the previous page.")
]
ItemCode = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
Note = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


# --- bodies and replies --------------------------------------------------------------------------


class NewCounterApplication(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A draft for the citizen in front of the clerk: `applicant` is their subject (from identity's
    counter routes, which made or verified the account with the ID document seen), and one of
    `item` or `bundle`."""

    applicant: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    item: ItemCode | None = None
    bundle: ItemCode | None = None
    form: dict[str, Any] | None = None


class IntakeRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    decision: counter.Decision
    pending: Annotated[list[PendingEntry], msgspec.Meta(max_length=50)] = []
    missing: Annotated[list[MissingEntry], msgspec.Meta(max_length=50)] = []
    note: Note | None = None


class CounterApplication(msgspec.Struct, frozen=True, kw_only=True):
    """One application as the counter sees it: who, what, the form and its problems, the checklist."""

    id: UUID
    number: str | None
    status: str
    channel: str
    applicant: str
    applicant_name: str | None
    bundle: str | None
    items: list[ReceiptItem]
    form: dict[str, Any]
    form_errors: list[FieldError]
    checklist: list[ChecklistStatus]
    documents_missing: list[FieldError]
    returned_with: list[Any]
    receipt_number: str | None
    intake_by: str | None
    intake_at: datetime | None
    intake_note: str | None
    documents_due_at: datetime | None
    promised_at: datetime | None
    version: int
    created_at: datetime


class QueueEntry(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    number: str | None
    status: str
    channel: str
    bundle: str | None
    created_at: datetime
    updated_at: datetime
    documents_due_at: datetime | None
    receipt_number: str | None
    pending_documents: int


class QueuePage(msgspec.Struct, frozen=True, kw_only=True):
    applications: list[QueueEntry]
    next_cursor: str | None


_APP_ID: Final = "9a4e7b0c-3f1d-4c55-8b2e-1d6f0a7c9e21"
_ITEMS_EXAMPLE: Final = [
    {
        "code": "business-licence",
        "name": {"zh": "营业执照", "en": "Business licence"},
        "department": "market",
        "department_name": "市场监督管理局",
    }
]
_APPLICATION_EXAMPLE: Final = {
    "id": _APP_ID,
    "number": None,
    "status": "draft",
    "channel": "counter",
    "applicant": "3e0f4c1a-77b2-4d8e-9c51-0a2b6d9f8e13",
    "applicant_name": "张三",
    "bundle": None,
    "items": _ITEMS_EXAMPLE,
    "form": {"company_name": "Riverside Noodles Ltd", "address": "12 River Road"},
    "form_errors": [],
    "checklist": [
        {
            "code": "id_card",
            "name": {"zh": "身份证", "en": "Identity card"},
            "status": "missing",
            "optional": False,
            "later_allowed": False,
            "media_types": ["application/pdf", "image/jpeg", "image/png"],
            "max_bytes": None,
            "reusable_certificate": None,
            "items": ["business-licence"],
        }
    ],
    "documents_missing": [{"pointer": "/documents/id_card", "detail": "Identity card is required"}],
    "returned_with": [],
    "receipt_number": None,
    "intake_by": None,
    "intake_at": None,
    "intake_note": None,
    "documents_due_at": None,
    "promised_at": None,
    "version": 1,
    "created_at": "2026-03-02T09:05:00+08:00",
}
_RECEIPT_EXAMPLE: Final = {
    "receipt_number": "YC-R-2026-000001",
    "decision": "accept_pending",
    "application_id": _APP_ID,
    "application_number": "YC-2026-000123",
    "applicant_name": "张三",
    "bundle": None,
    "items": _ITEMS_EXAMPLE,
    "pending": [
        {
            "code": "lease",
            "name": {"zh": "租赁合同", "en": "Lease contract"},
            "due": "2026-03-09T17:00:00+08:00",
        }
    ],
    "missing": [],
    "promised_at": "2026-03-09T09:15:00+08:00",
    "note": "Lease to be brought by the landlord next week.",
    "clerk": {"subject": "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f", "name": "Clerk One"},
    "at": "2026-03-02T09:15:00+08:00",
}


async def _view(conn: Connection, settings: Settings, app: ApplicationRow) -> CounterApplication:
    requirements = await documents.requirements_of(conn, app)
    rows = await application_store.items_of(conn, app.id)
    items = await catalog.items_of(conn, [(row.item_code, row.item_version) for row in rows])
    contact = await contact_details(conn, settings, app.applicant)
    return CounterApplication(
        id=app.id,
        number=app.number,
        status=app.status,
        channel=app.channel,
        applicant=app.applicant,
        applicant_name=contact.name if contact else None,
        bundle=app.bundle_code,
        items=await counter.receipt_items(conn, app),
        form=app.form,
        form_errors=catalog.form_errors(items, app.form),
        checklist=await documents.checklist_status(conn, app.id, requirements),
        documents_missing=await documents.missing(conn, app.id, requirements),
        returned_with=list(app.missing),
        receipt_number=app.receipt_number,
        intake_by=app.intake_by,
        intake_at=app.intake_at,
        intake_note=app.intake_note,
        documents_due_at=app.documents_due_at,
        promised_at=app.promised_at,
        version=app.version,
        created_at=app.created_at,
    )


def _counter_may_see(app: ApplicationRow) -> bool:
    """The counter sees its own applications, those waiting for its intake and those it took in."""
    return app.channel == "counter" or app.intake_by is not None or counter.open_for_intake(app)


class CounterApplicationController(Controller):
    path = PREFIX
    tags = ["services: counter"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_role("clerk")]  # noqa: RUF012 - litestar's declared type

    @post(
        "",
        operation_id="services_counter_create_application",
        summary="Make a draft application for the citizen at the counter",
        description="The clerk has checked the citizen in person (identity's counter routes make or verify"
        " the account and give its subject). The draft is made with channel `counter`, for an item or a"
        " bundle that is offered at the counter; the reply shows the form's problems and the checklist, so"
        " the clerk sees at once what the citizen still has to give. Idempotency-Key required.",
        status_code=201,
        responses={
            201: reply(
                CounterApplication,
                "The draft",
                example("A draft for a business licence", _APPLICATION_EXAMPLE),
            ),
            **problems(400, 401, 403, 404, 422),
        },
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        settings: NamedDependency[Settings],
        data: Annotated[
            NewCounterApplication,
            Body(
                examples=[
                    example(
                        "A business licence for a citizen",
                        {
                            "applicant": "3e0f4c1a-77b2-4d8e-9c51-0a2b6d9f8e13",
                            "item": "business-licence",
                            "form": {"company_name": "Riverside Noodles Ltd", "address": "12 River Road"},
                        },
                    ),
                    example(
                        "Open a restaurant (a bundle)",
                        {
                            "applicant": "3e0f4c1a-77b2-4d8e-9c51-0a2b6d9f8e13",
                            "bundle": "open-restaurant",
                        },
                    ),
                ]
            ),
        ],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        clerk = current_principal(request)

        async def run() -> CounterApplication:
            if await contact_details(conn, settings, data.applicant) is None:
                raise RuleViolation(
                    "No such citizen: find or register them through identity's counter routes first.",
                    errors=[FieldError(pointer="/applicant", detail="not an enabled person")],
                )
            app = await applications.create_draft(
                conn,
                applicant=data.applicant,
                created_by=clerk.subject,
                channel="counter",
                item_code=data.item,
                bundle_code=data.bundle,
                form=data.form,
                now=workflows.now(),
            )
            return await _view(conn, settings, app)

        return await idempotent(
            conn,
            principal=clerk.subject,
            scope="services.counter.create",
            key=idempotency_key,
            request=msgspec.to_builtins(data),
            run=run,
            status=201,
        )

    @get(
        "",
        operation_id="services_counter_queue",
        summary="The bureau's queue",
        description="`draft`: drafts made at the counter; `submitted`: applications citizens prepared online"
        " and sent to be finished at the counter (POST /api/v1/applications/{id}/submit with"
        " `finish_at_counter`), waiting for intake (the citizen shows its number);"
        " `returned`: returned at intake; `pending_documents`: accepted with documents still to come. Oldest"
        " first.",
        responses={
            200: reply(
                QueuePage,
                "A page of the queue",
                example(
                    "One application with a document pending",
                    {
                        "applications": [
                            {
                                "id": _APP_ID,
                                "number": "YC-2026-000123",
                                "status": "in_review",
                                "channel": "counter",
                                "bundle": None,
                                "created_at": "2026-03-02T09:05:00+08:00",
                                "updated_at": "2026-03-02T09:15:00+08:00",
                                "documents_due_at": "2026-03-09T17:00:00+08:00",
                                "receipt_number": "YC-R-2026-000001",
                                "pending_documents": 1,
                            }
                        ],
                        "next_cursor": None,
                    },
                ),
            ),
            **problems(400, 401, 403),
        },
    )
    async def queue(
        self,
        conn: Connection,
        status: Annotated[
            Literal["draft", "submitted", "returned", "pending_documents"],
            QueryParameter(description="Which part of the queue."),
        ] = "submitted",
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> QueuePage:
        after = decode_cursor(cursor, tuple[datetime, UUID])
        rows, next_cursor = page(
            await documents_store.counter_queue(conn, status, after=after, limit=limit + 1),
            limit,
            lambda row: (row.created_at, row.id),
        )
        return QueuePage(
            applications=[
                QueueEntry(
                    id=row.id,
                    number=row.number,
                    status=row.status,
                    channel=row.channel,
                    bundle=row.bundle_code,
                    created_at=row.created_at,
                    updated_at=row.updated_at,
                    documents_due_at=row.documents_due_at,
                    receipt_number=row.receipt_number,
                    pending_documents=row.pending_documents,
                )
                for row in rows
            ],
            next_cursor=next_cursor,
        )

    @get(
        "/{application_id:uuid}",
        operation_id="services_counter_application",
        summary="One application at the counter, with its form's problems and its checklist",
        responses={
            200: reply(
                CounterApplication, "The application", example("A counter draft", _APPLICATION_EXAMPLE)
            ),
            **problems(401, 403, 404),
        },
    )
    async def one(
        self, conn: Connection, settings: NamedDependency[Settings], application_id: FromPath[UUID]
    ) -> CounterApplication:
        app = await application_store.application(conn, application_id)
        if app is None or not _counter_may_see(app):
            raise NotFound("No such application at the counter.")
        return await _view(conn, settings, app)

    @post(
        "/{application_id:uuid}/intake",
        operation_id="services_counter_intake",
        summary="Accept, accept with documents pending, or return an application; the citizen's receipt",
        description="`accept` submits the application to its departments (form, assurance and checklist are"
        " checked; identity was checked in person). `accept_pending` does the same with the named entries to"
        " be supplied later: only entries the catalog allows later, each due within the city's limit of"
        " working days (ONEWINDOW_PENDING_DOCUMENTS_MAX_DAYS). `return` hands it back with what is missing:"
        " the clerk's list of checklist codes or form fields, or, when empty, everything the rules find"
        " missing. Every decision gives a receipt to print. Idempotency-Key required: a retry returns the same"
        " receipt.",
        status_code=200,
        responses={
            200: reply(
                Receipt, "The receipt", example("Accepted with the lease to follow", _RECEIPT_EXAMPLE)
            ),
            **problems(400, 401, 403, 404, 409, 422),
        },
    )
    async def intake(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        settings: NamedDependency[Settings],
        application_id: FromPath[UUID],
        data: Annotated[
            IntakeRequest,
            Body(
                examples=[
                    example("Accept", {"decision": "accept"}),
                    example(
                        "Accept with the lease to follow",
                        {
                            "decision": "accept_pending",
                            "pending": [{"code": "lease", "due": "2026-03-09T17:00:00+08:00"}],
                            "note": "Lease to be brought by the landlord next week.",
                        },
                    ),
                    example(
                        "Return: the identity card copy is unreadable",
                        {
                            "decision": "return",
                            "missing": [{"code": "id_card", "detail": "the copy is unreadable"}],
                        },
                    ),
                ]
            ),
        ],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        clerk: Principal = current_principal(request)

        async def run() -> Receipt:
            return await counter.intake(
                conn,
                settings,
                application_id,
                clerk=clerk,
                decision=data.decision,
                pending=data.pending,
                missing=data.missing,
                note=data.note,
                now=workflows.now(),
            )

        return await idempotent(
            conn,
            principal=clerk.subject,
            scope="services.counter.intake",
            key=idempotency_key,
            request=(str(application_id), msgspec.to_builtins(data)),
            run=run,
        )


COUNTER_CONTROLLERS: list[ControllerRouterHandler] = [CounterApplicationController]
