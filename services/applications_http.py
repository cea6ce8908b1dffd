"""Applications over HTTP: a citizen's drafts, submission, tracking, correction, withdrawal and
fees. Departments act on an application's items through the engine's task routes
(`/api/v1/tasks`); the counter's intake is in `counter_http`, documents in `documents_http`.

Who sees what (`applications.view`): the applicant a citizen-safe view of the whole
application; an officer or a supervisor the items of their own departments only (with the
fields of the form those items ask for, and their full history); a clerk or an admin the whole
application. Anyone else gets 404, so the existence of someone's application is never confirmed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, patch, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, HeaderParameter, QueryParameter
from litestar.types import ControllerRouterHandler

from identity.api import Principal, current_principal, require_signed_in
from onewindow.db import Connection
from onewindow.errors import FieldError, Forbidden, NotFound, ValidationFailed
from onewindow.idempotency import HEADER as IDEMPOTENCY_HEADER
from onewindow.settings import Settings
from onewindow.web import check_if_match, decode_cursor, etag, idempotent, page
from services import application_store as store
from services import applications, payments
from services.applications import ApplicationView
from services.openapi import Problems, example, reply
from workflows import api as workflows

__all__ = ["APPLICATION_CONTROLLERS"]

PREFIX: Final = "/api/v1/applications"

Code = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=r"\S")]
Comment = Annotated[str, msgspec.Meta(max_length=2000)]
Limit = Annotated[
    int, QueryParameter(ge=1, le=100, description="Most applications on one page (at most 100).")
]
Cursor = Annotated[
    str | None, QueryParameter(max_length=512, description="`next_cursor` of the previous page.")
]
StatusFilter = Annotated[
    list[store.ApplicationStatus] | None,
    QueryParameter(description="Only applications in these statuses (repeat the parameter for several)."),
]
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name=IDEMPOTENCY_HEADER,
        required=False,
        description="One value per intended request: a retry replays the reply.",
    ),
]
IfMatch = Annotated[
    str | None,
    HeaderParameter(name="If-Match", required=False, description="The ETag as read: 412 if it changed."),
]

_ID = "0b9d2f5e-4c1a-4f7e-9a39-2b8a7f0c1d22"
_ITEM_ID = "7f4e8a61-2d3b-4c59-8e0f-5a1b9c3d2e71"
_FORM = {"company_name": "河畔小馆餐饮有限公司", "address": "滨河路 18 号"}
_VIEW_EXAMPLE: Final[dict[str, Any]] = {
    "id": _ID,
    "number": "YC-2026-000123",
    "status": "needs_correction",
    "outcome": None,
    "channel": "online",
    "item": "business-licence",
    "bundle": None,
    "service": {"zh": "营业执照", "en": "Business licence"},
    "version": 4,
    "created_at": "2026-09-28T01:00:00Z",
    "submitted_at": "2026-09-28T01:10:00Z",
    "promised_at": "2026-10-12T01:10:00Z",
    "decided_at": None,
    "withdrawn_at": None,
    "items": [
        {
            "id": _ITEM_ID,
            "item": "business-licence",
            "item_version": 1,
            "name": {"zh": "营业执照", "en": "Business licence"},
            "department": {
                "code": "market",
                "name_zh": "市场监督管理局",
                "name_en": "Market Regulation Department",
            },
            "status": "needs_correction",
            "current_step": "Waiting for the applicant's correction",
            "fee_minor": 0,
            "currency": "CNY",
            "promised_at": "2026-10-12T01:10:00Z",
            "corrections": 1,
        }
    ],
    "expected": [
        {
            "kind": "correction",
            "detail": "Correct what the department asked for, then resubmit the application.",
            "item_id": _ITEM_ID,
            "what_to_fix": [
                {
                    "item_id": _ITEM_ID,
                    "item": "business-licence",
                    "note": "The address does not match the lease.",
                    "what_to_fix": [{"field": "address", "detail": "as written in the lease"}],
                    "at": "2026-09-29T02:00:00+00:00",
                }
            ],
        }
    ],
    "history": [
        {"at": "2026-09-28T01:00:00Z", "event": "drafted"},
        {"at": "2026-09-28T01:10:00Z", "event": "submitted"},
        {
            "at": "2026-09-28T01:10:00Z",
            "event": "with_department",
            "item_id": _ITEM_ID,
            "item": "business-licence",
        },
        {
            "at": "2026-09-29T02:00:00Z",
            "event": "returned_for_correction",
            "item_id": _ITEM_ID,
            "item": "business-licence",
            "note": "The address does not match the lease.",
            "what_to_fix": [{"field": "address", "detail": "as written in the lease"}],
        },
    ],
    "form": _FORM,
}

_AT_COUNTER_EXAMPLE: Final[dict[str, Any]] = {
    **_VIEW_EXAMPLE,
    "number": "YC-2026-000124",
    "status": "submitted",
    "item": "second-hand-housing-transfer",
    "service": {"zh": "二手房转移登记", "en": "Transfer registration of a second-hand home"},
    "version": 3,
    "submitted_at": None,
    "promised_at": None,
    "items": [
        {
            "id": _ITEM_ID,
            "item": "second-hand-housing-transfer",
            "item_version": 1,
            "name": {"zh": "二手房转移登记", "en": "Transfer registration of a second-hand home"},
            "department": {
                "code": "planning",
                "name_zh": "自然资源和规划局",
                "name_en": "Natural Resources and Planning Bureau",
            },
            "status": "pending",
            "fee_minor": 8000,
            "currency": "CNY",
            "corrections": 0,
        }
    ],
    "expected": [
        {
            "kind": "counter",
            "detail": "Come to a counter with your identity document and show the number YC-2026-000124:"
            " bring the documents still missing.",
            "what_to_fix": ["property_certificate", "tax_receipt"],
        }
    ],
    "history": [{"at": "2026-09-28T01:00:00Z", "event": "drafted"}],
    "form": {"premises_address": "滨江区河东街56号3单元502室", "mortgage": False},
}

problems: Final = Problems(
    {
        404: "No such application (or not one this caller may see)",
        409: "The application is not in a state that allows this",
        412: "The application has changed since it was read",
        428: "A required header (If-Match, Idempotency-Key) is missing",
    },
    errors=[
        {"pointer": "/form/address", "detail": "is required"},
        {"pointer": "/documents/id_card", "detail": "Identity card is required"},
    ],
)


# --- bodies and replies --------------------------------------------------------------------------


class NewApplication(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A draft for one item or one bundle (exactly one of them)."""

    item: Code | None = None
    bundle: Code | None = None
    form: dict[str, Any] = msgspec.field(default_factory=dict)
    channel: Literal["online", "app"] = "online"
    # Prepared here to be finished at the counter (POST .../submit with finish_at_counter): the
    # items must be offered at the counter, not necessarily through `channel`.
    finish_at_counter: bool = False


class SubmitRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """No body (or false): submit to the departments now. True: send it to the counter's queue
    to be finished there (the clerk checks the identity document and the documents)."""

    finish_at_counter: bool = False


class FormPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """JSON Merge Patch (RFC 7396) of the form: a field set to null is removed."""

    form: dict[str, Any]


class ResubmitRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    comment: Comment | None = None


class WithdrawRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Reason


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    number: str | None
    status: str
    outcome: str | None
    channel: str
    bundle: str | None
    items: list[str]
    created_at: datetime
    submitted_at: datetime | None
    promised_at: datetime | None
    decided_at: datetime | None


class ApplicationPage(msgspec.Struct, frozen=True, kw_only=True):
    applications: list[Summary]
    next_cursor: str | None


class PaymentReply(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    item_id: UUID
    amount_minor: int
    currency: str
    provider: str
    reference: str
    status: str
    created_at: datetime
    confirmed_at: datetime | None
    item_status: str
    application_status: str


def _principal(request: Request[Any, Any, Any]) -> Principal:
    principal = current_principal(request)
    if principal.kind != "person":
        raise Forbidden("Applications are made by people, not by machine clients.")
    return principal


def _with_etag(found: ApplicationView) -> Response[ApplicationView]:
    return Response(found, headers={"ETag": etag(found.version)})


def _version(if_match: str | None, current: int) -> None:
    check_if_match(if_match, current, what="application")


# --- routes --------------------------------------------------------------------------------------


class ApplicationController(Controller):
    path = PREFIX
    tags = ["services: applications"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_signed_in()]  # noqa: RUF012 - litestar's declared type

    @post(
        "",
        operation_id="createApplication",
        summary="Start an application (a draft) for an item or a bundle",
        description="The signed-in person applies for themselves, online or in the app (the counter starts"
        " drafts for walk-in citizens through /api/v1/counter). The item versions in force now are pinned:"
        " the form, checklist and time limits are theirs from now on. The form may be empty or partial;"
        " it is checked at submission. The items must be offered through the channel (422), unless"
        " `finish_at_counter` is true: then the draft is prepared here to be finished at the counter"
        " (POST .../submit with `finish_at_counter`), and the items must be offered at the counter instead"
        " (for an item offered only there). With an Idempotency-Key a retry returns the same draft.",
        status_code=201,
        responses={
            201: reply(
                ApplicationView,
                "The draft",
                example("Example", {**_VIEW_EXAMPLE, "status": "draft", "number": None}),
            ),
            **problems(400, 401, 403, 422),
        },
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        data: Annotated[
            NewApplication,
            Body(
                examples=[
                    example("One item", {"item": "business-licence", "form": _FORM}),
                    example("A bundle (one thing)", {"bundle": "open-restaurant", "channel": "app"}),
                    example(
                        "Prepared online, to be finished at the counter (an item offered only there)",
                        {
                            "item": "second-hand-housing-transfer",
                            "form": {"premises_address": "滨江区河东街56号3单元502室", "mortgage": False},
                            "finish_at_counter": True,
                        },
                    ),
                ]
            ),
        ],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        principal = _principal(request)

        async def run() -> ApplicationView:
            app = await applications.create_draft(
                conn,
                applicant=principal.subject,
                created_by=principal.subject,
                channel=data.channel,
                item_code=data.item,
                bundle_code=data.bundle,
                form=data.form,
                finish_at_counter=data.finish_at_counter,
                now=workflows.now(),
            )
            return await applications.view(conn, principal, app.id)

        if idempotency_key is None:
            return Response(await run(), status_code=201)
        return await idempotent(
            conn,
            principal=principal.subject,
            scope="services.create-application",
            key=idempotency_key,
            request=msgspec.to_builtins(data),
            run=run,
            status=201,
        )

    @get(
        "",
        operation_id="listMyApplications",
        summary="My applications, newest first",
        description="The signed-in person's own applications (as applicant), newest first, optionally only"
        " in some statuses. Staff find applications through their inbox, not here.",
        responses={
            200: reply(
                ApplicationPage,
                "A page of applications",
                example(
                    "Example",
                    {
                        "applications": [
                            {
                                "id": _ID,
                                "number": "YC-2026-000123",
                                "status": "in_review",
                                "outcome": None,
                                "channel": "online",
                                "bundle": None,
                                "items": ["business-licence"],
                                "created_at": "2026-09-28T01:00:00Z",
                                "submitted_at": "2026-09-28T01:10:00Z",
                                "promised_at": "2026-10-12T01:10:00Z",
                                "decided_at": None,
                            }
                        ],
                        "next_cursor": None,
                    },
                ),
            ),
            **problems(400, 401),
        },
    )
    async def list_mine(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        status: StatusFilter = None,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> ApplicationPage:
        principal = _principal(request)
        after = decode_cursor(cursor, tuple[datetime, UUID])
        rows, next_cursor = page(
            await store.applications_of(
                conn, principal.subject, statuses=status, after=after, limit=limit + 1
            ),
            limit,
            lambda row: (row.created_at, row.id),
        )
        summaries = []
        for row in rows:
            codes = [i.item_code for i in await store.items_of(conn, row.id)]
            summaries.append(
                Summary(
                    id=row.id,
                    number=row.number,
                    status=row.status,
                    outcome=row.outcome,
                    channel=row.channel,
                    bundle=row.bundle_code,
                    items=codes,
                    created_at=row.created_at,
                    submitted_at=row.submitted_at,
                    promised_at=row.promised_at,
                    decided_at=row.decided_at,
                )
            )
        return ApplicationPage(applications=summaries, next_cursor=next_cursor)

    @get(
        "/{application_id:uuid}",
        operation_id="getApplication",
        summary="One application: status, current steps, what is expected of the applicant, history",
        description="The applicant sees the whole application citizen-safe: each item's status, current step"
        " and department, the promised date, what is expected of them (a correction with the list of what to"
        " fix, a fee, documents accepted as pending, submission) and a history without staff names or internal"
        " notes (only a return's list and a rejection's reason). An officer or supervisor sees the items of"
        " their own departments with the form fields those items ask for and the full history; a clerk or an"
        " admin sees the whole application. ETag: the version to send as If-Match when editing.",
        responses={
            200: reply(ApplicationView, "The application", example("Example", _VIEW_EXAMPLE)),
            **problems(401, 404),
        },
    )
    async def get_one(
        self, request: Request[Any, Any, Any], conn: Connection, application_id: FromPath[UUID]
    ) -> Response[ApplicationView]:
        return _with_etag(await applications.view(conn, current_principal(request), application_id))

    @patch(
        "/{application_id:uuid}",
        operation_id="editApplication",
        summary="Change the form of a draft or of an application under correction",
        description="JSON Merge Patch of the form (a field set to null is removed). Needs If-Match with the"
        " application's ETag (412 when someone changed it meanwhile, 428 without). Only drafts, applications"
        " returned at the counter and applications returned for correction can be edited (409 otherwise).",
        responses={
            200: reply(ApplicationView, "The application as changed", example("Example", _VIEW_EXAMPLE)),
            **problems(400, 401, 404, 409, 412, 428),
        },
    )
    async def edit(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        application_id: FromPath[UUID],
        data: Annotated[
            FormPatch,
            Body(
                examples=[
                    example(
                        "Correct the address, drop a field",
                        {"form": {"address": "滨河路 18 号 1 层", "sign_text": None}},
                    )
                ]
            ),
        ],
        if_match: IfMatch = None,
    ) -> Response[ApplicationView]:
        principal = _principal(request)
        found = await store.application(conn, application_id)
        if found is None or not applications.may_edit(principal, found):
            raise NotFound("No such application.")
        _version(if_match, found.version)
        await applications.edit(
            conn,
            application_id,
            principal=principal,
            patch=data.form,
            expected_version=found.version,
            now=workflows.now(),
        )
        return _with_etag(await applications.view(conn, principal, application_id))

    @post(
        "/{application_id:uuid}/submit",
        operation_id="submitApplication",
        summary="Submit a draft to the departments, or send it to be finished at the counter",
        description="Without a body: checks that every item is offered through the application's channel"
        " and the sign-in's assurance level against every item's (422: the message names finishing it at"
        " the counter when the items are offered there), then the form and the document checklist, every"
        " problem at once (400, pointers /form/<field> and /documents/<code>). On success the application"
        " gets its number (YC-<year>-<serial>), the promised date, and each item goes to its department's"
        ' inbox; nothing is written when it is refused.\n\nWith `{"finish_at_counter": true}`: for what'
        " must be finished at the counter (an item offered only there, a sign-in too weak for the items) or"
        " what the applicant prefers to finish there. Every item must be offered at the counter (422); the"
        " form is checked, every problem at once (400); the documents may be brought to the counter. The"
        " application gets its number, the reference to show at the counter, and waits with status"
        " `submitted` in the bureau's queue; the clerk's intake accepts it (it then goes to the"
        " departments) or returns it. A draft or an application returned at the counter only (409).\n\n"
        "Needs an Idempotency-Key: a retry with the same key replays the reply; another submission of the"
        " same application is a 409. A counter draft is submitted by the clerk's intake (403 without"
        " `finish_at_counter`).",
        status_code=200,
        responses={
            200: reply(
                ApplicationView,
                "The application: in review, or waiting for intake at the counter",
                example(
                    "In review",
                    {
                        **_VIEW_EXAMPLE,
                        "status": "in_review",
                        "expected": [],
                        "history": _VIEW_EXAMPLE["history"][:3],
                    },
                ),
                example("Waiting for intake at the counter", _AT_COUNTER_EXAMPLE),
            ),
            **problems(400, 401, 403, 404, 409, 422, 428),
        },
    )
    async def submit(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        settings: NamedDependency[Settings],
        application_id: FromPath[UUID],
        data: Annotated[
            SubmitRequest | None,
            Body(
                examples=[
                    example("Submit to the departments (or send no body)", {}),
                    example("Finish it at the counter", {"finish_at_counter": True}),
                ]
            ),
        ] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        principal = _principal(request)
        at_counter = data is not None and data.finish_at_counter

        async def run() -> ApplicationView:
            found = await store.application(conn, application_id)
            if found is None or found.applicant != principal.subject:
                raise NotFound("No such application.")
            if at_counter:
                await applications.submit_to_counter(
                    conn, application_id, applicant=principal.subject, now=workflows.now(), settings=settings
                )
                return await applications.view(conn, principal, application_id)
            if found.channel == "counter":
                raise Forbidden(
                    "A counter application is submitted by the clerk's intake at the counter: send it there"
                    ' with {"finish_at_counter": true}.'
                )
            await applications.submit(
                conn,
                application_id,
                actor=workflows.Actor.of(principal),
                acr=principal.acr,
                now=workflows.now(),
                settings=settings,
            )
            return await applications.view(conn, principal, application_id)

        fingerprint: dict[str, Any] = {"application": str(application_id)}
        return await idempotent(
            conn,
            principal=principal.subject,
            scope="services.submit-application",
            key=idempotency_key,
            request=fingerprint | {"finish_at_counter": True} if at_counter else fingerprint,
            run=run,
        )

    @post(
        "/{application_id:uuid}/resubmit",
        operation_id="resubmitApplication",
        summary="Resubmit after a correction",
        description="After a department returned an item for correction (status needs_correction) and the"
        " applicant fixed the form (PATCH) and the documents: the form and checklist are checked again (400"
        " with every problem), then every item waiting for a correction goes back to its reviewer, whose"
        " clock continues where it stopped. 409 when nothing waits for a correction.",
        status_code=200,
        responses={
            200: reply(
                ApplicationView,
                "The application, back in review",
                example("Example", {**_VIEW_EXAMPLE, "status": "in_review", "expected": []}),
            ),
            **problems(400, 401, 404, 409),
        },
    )
    async def resubmit(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        application_id: FromPath[UUID],
        data: Annotated[
            ResubmitRequest,
            Body(examples=[example("With a note", {"comment": "Address corrected as in the lease."})]),
        ],
    ) -> ApplicationView:
        principal = _principal(request)
        await applications.resubmit(
            conn,
            application_id,
            actor=workflows.Actor.of(principal),
            comment=data.comment,
            now=workflows.now(),
        )
        return await applications.view(conn, principal, application_id)

    @post(
        "/{application_id:uuid}/withdraw",
        operation_id="withdrawApplication",
        summary="Withdraw an application before it is decided",
        description="The applicant withdraws (reason required): each item still under review ends as"
        " withdrawn and leaves its department's inbox. 409 once the application is decided or withdrawn.",
        status_code=200,
        responses={
            200: reply(
                ApplicationView,
                "The withdrawn application",
                example(
                    "Example",
                    {
                        **_VIEW_EXAMPLE,
                        "status": "withdrawn",
                        "expected": [],
                        "withdrawn_at": "2026-09-30T02:00:00Z",
                    },
                ),
            ),
            **problems(400, 401, 404, 409),
        },
    )
    async def withdraw(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        application_id: FromPath[UUID],
        data: Annotated[
            WithdrawRequest,
            Body(examples=[example("Changed plans", {"reason": "We found another location."})]),
        ],
    ) -> ApplicationView:
        principal = _principal(request)
        await applications.withdraw(
            conn,
            application_id,
            actor=workflows.Actor.of(principal),
            reason=data.reason.strip(),
            now=workflows.now(),
        )
        return await applications.view(conn, principal, application_id)

    @post(
        "/{application_id:uuid}/items/{item_id:uuid}/payments",
        operation_id="payApplicationItem",
        summary="Pay the fee of an approved item",
        description="For an item awaiting payment (approved by its department, with a fee). The development"
        " provider confirms at once: the item is then approved and, where the item's result is a certificate,"
        " the certificate is issued. Needs an Idempotency-Key (a retry never pays twice). 409 when the item"
        " is not waiting for a payment.",
        status_code=201,
        responses={
            201: reply(
                PaymentReply,
                "The payment",
                example(
                    "Example",
                    {
                        "id": "5d1c2b3a-9e8f-4a7b-8c6d-1e2f3a4b5c6d",
                        "item_id": _ITEM_ID,
                        "amount_minor": 30000,
                        "currency": "CNY",
                        "provider": "development",
                        "reference": "DEV-9F2A61C04B7D3E15",
                        "status": "confirmed",
                        "created_at": "2026-10-02T03:00:00Z",
                        "confirmed_at": "2026-10-02T03:00:00Z",
                        "item_status": "approved",
                        "application_status": "decided",
                    },
                ),
            ),
            **problems(400, 401, 404, 409, 428),
        },
    )
    async def pay(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        application_id: FromPath[UUID],
        item_id: FromPath[UUID],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        principal = _principal(request)

        async def run() -> PaymentReply:
            payment = await payments.pay(
                conn,
                application_id,
                item_id,
                payer=principal.subject,
                provider=payments.DevelopmentProvider(),
                now=workflows.now(),
            )
            row = await store.item(conn, item_id)
            app = await store.application(conn, application_id)
            if row is None or app is None:
                raise ValidationFailed("The item vanished.", errors=[FieldError(pointer="", detail="gone")])
            return PaymentReply(
                id=payment.id,
                item_id=payment.application_item_id,
                amount_minor=payment.amount_minor,
                currency=payment.currency,
                provider=payment.provider,
                reference=payment.reference,
                status=payment.status,
                created_at=payment.created_at,
                confirmed_at=payment.confirmed_at,
                item_status=row.status,
                application_status=app.status,
            )

        return await idempotent(
            conn,
            principal=principal.subject,
            scope="services.pay-item",
            key=idempotency_key,
            request={"application": str(application_id), "item": str(item_id)},
            run=run,
            status=201,
        )


APPLICATION_CONTROLLERS: list[ControllerRouterHandler] = [ApplicationController]
