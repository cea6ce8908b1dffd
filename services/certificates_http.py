"""E-certificates over HTTP: the public keys and the public verification (no sign-in: a QR code
on paper leads there), the holder's certificates, one certificate with its JWS, a QR code of its
verification URL, revocation by the issuing department, and hand-over at the counter."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
import segno
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter
from litestar.types import ControllerRouterHandler

from identity.api import current_principal, require_role, require_signed_in
from onewindow.db import Connection
from onewindow.settings import Settings
from onewindow.web import decode_cursor, page
from services import certificates
from services import certificates_store as store
from services.certificates import CertifiedItem, Status, Verification
from services.openapi import Problems, example, reply
from workflows import api as workflows

__all__ = ["CERTIFICATE_CONTROLLERS"]

PREFIX: Final = "/api/v1/certificates"

Number = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Limit = Annotated[
    int, QueryParameter(ge=1, le=200, description="Most certificates on one page (at most 200).")
]
Cursor = Annotated[
    str | None, QueryParameter(max_length=512, description="`next_cursor` of the previous page.")
]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=r"\S")]
Note = Annotated[str, msgspec.Meta(max_length=2000)]

problems: Final = Problems(
    {
        404: "No such certificate (or not one this caller may see)",
        409: "The certificate is already revoked or handed over",
    }
)


# --- bodies and replies --------------------------------------------------------------------------


class RevokeRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Reason


class HandOverRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`note`: e.g. "collected by the holder" or "collected by an authorised agent with a letter";
    never an ID number (the clerk checked it; it is not stored)."""

    note: Note | None = None


class CertificateSummary(msgspec.Struct, frozen=True, kw_only=True):
    number: str
    status: Status
    item: CertifiedItem
    application_number: str
    issued_at: datetime
    valid_until: datetime | None
    delivery: Literal["online", "counter"]
    handed_over_at: datetime | None
    verification_url: str


class CertificatePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[CertificateSummary]
    next_cursor: str | None


class CertificateReply(msgspec.Struct, frozen=True, kw_only=True):
    """One certificate: what it certifies (the signed claims), its JWS for download or offline
    checks, where it is verified (for a QR code) and what happened to it since."""

    number: str
    status: Status
    holder: str
    holder_name: str | None
    item: CertifiedItem
    application_number: str
    issued_at: datetime
    valid_from: datetime
    valid_until: datetime | None
    revoked_at: datetime | None
    revoked_reason: str | None
    delivery: Literal["online", "counter"]
    handed_over_at: datetime | None
    handed_over_by: str | None
    handed_over_note: str | None
    verification_url: str
    qr_url: str
    kid: str
    jws: str
    claims: certificates.CertificateClaims


_ITEM: Final = {"code": "business-licence", "name": {"zh": "营业执照", "en": "Business licence"}}
_NUMBER: Final = "YC-CERT-2026-000045"
_VERIFY_URL: Final = f"https://onewindow.example.gov.cn/api/v1/certificates/{_NUMBER}/verify"
_CERTIFICATE_EXAMPLE: Final = {
    "number": _NUMBER,
    "status": "valid",
    "holder": "5f0c2a7e-8d1b-4b8e-9a43-2c7d1e6f0b94",
    "holder_name": "张三",
    "item": _ITEM,
    "application_number": "YC-2026-000123",
    "issued_at": "2026-10-09T02:15:00Z",
    "valid_from": "2026-10-09T02:15:00Z",
    "valid_until": "2031-10-08T02:15:00Z",
    "revoked_at": None,
    "revoked_reason": None,
    "delivery": "online",
    "handed_over_at": None,
    "handed_over_by": None,
    "handed_over_note": None,
    "verification_url": _VERIFY_URL,
    "qr_url": f"/api/v1/certificates/{_NUMBER}/qr.svg",
    "kid": "cert-20261009-3fa2c1d0",
    "jws": "eyJhbGciOiJFUzI1NiIsImtpZCI6ImNlcnQtMjAyNjEwMDktM2ZhMmMxZDAiLCJ0eXAiOiJvbmV3aW5kb3ctY2VydGlmaWNhdGUrandzIn0.eyJpc3MiOiJodHRwczovL29uZXdpbmRvdy5leGFtcGxlLmdvdi5jbiJ9.c2lnbmF0dXJl",
    "claims": {
        "iss": "https://onewindow.example.gov.cn",
        "sub": "5f0c2a7e-8d1b-4b8e-9a43-2c7d1e6f0b94",
        "iat": 1791512100,
        "nbf": 1791512100,
        "exp": 1949278500,
        "number": _NUMBER,
        "holder": "5f0c2a7e-8d1b-4b8e-9a43-2c7d1e6f0b94",
        "holder_name": "张三",
        "item": _ITEM,
        "application_number": "YC-2026-000123",
        "issued_at": "2026-10-09T02:15:00Z",
        "valid_from": "2026-10-09T02:15:00Z",
        "valid_until": "2031-10-08T02:15:00Z",
        "verification_url": _VERIFY_URL,
    },
}


def _summary(row: certificates.CertificateRow, now: datetime) -> CertificateSummary:
    claims = certificates.claims_of(row)
    return CertificateSummary(
        number=row.number,
        status=certificates.status_of(row, now),
        item=claims.item,
        application_number=claims.application_number,
        issued_at=row.issued_at,
        valid_until=row.valid_until,
        delivery=row.delivery,
        handed_over_at=row.handed_over_at,
        verification_url=claims.verification_url,
    )


def _reply(row: certificates.CertificateRow, now: datetime) -> CertificateReply:
    claims = certificates.claims_of(row)
    return CertificateReply(
        number=row.number,
        status=certificates.status_of(row, now),
        holder=row.holder,
        holder_name=claims.holder_name,
        item=claims.item,
        application_number=claims.application_number,
        issued_at=row.issued_at,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        revoked_at=row.revoked_at,
        revoked_reason=row.revoked_reason,
        delivery=row.delivery,
        handed_over_at=row.handed_over_at,
        handed_over_by=row.handed_over_by,
        handed_over_note=row.handed_over_note,
        verification_url=claims.verification_url,
        qr_url=f"{PREFIX}/{row.number}/qr.svg",
        kid=row.kid,
        jws=row.jws,
        claims=claims,
    )


# --- public: keys and verification ---------------------------------------------------------------


class PublicCertificateController(Controller):
    """No sign-in: anyone holding a certificate (or a photo of its QR code) may check it."""

    path = PREFIX
    tags = ["services: certificates"]  # noqa: RUF012 - litestar's declared type

    @get(
        "/jwks.json",
        operation_id="services_certificate_jwks",
        summary="The public keys that sign e-certificates (JWKS)",
        description="Every certificate key ever used (ES256, P-256), retired ones included so old certificates"
        " still verify offline. A certificate's JWS header names its key (`kid`). These are not the identity"
        " provider's keys.",
        responses={
            200: reply(
                dict,
                "The JSON Web Key Set",
                example(
                    "One key",
                    {
                        "keys": [
                            {
                                "kty": "EC",
                                "crv": "P-256",
                                "x": "SCjqt1M1F6NRwT4gdJUXmHc2sxq2K08wbbmO1Uhzyy0",
                                "y": "SfbyllYXGOXluYG8NE_ZffvXYqpM2bjneltIELtILZk",
                                "kid": "cert-20261009-3fa2c1d0",
                                "alg": "ES256",
                                "use": "sig",
                            }
                        ]
                    },
                ),
            )
        },
    )
    async def jwks(self, conn: Connection) -> Response[dict[str, Any]]:
        return Response(await certificates.jwks(conn), headers={"Cache-Control": "public, max-age=300"})

    @get(
        "/{number:str}/verify",
        operation_id="services_certificate_verify",
        summary="Check a certificate: valid, expired, revoked or invalid",
        description="Public: what a QR code on a certificate leads to. The stored JWS is checked against the"
        " published keys and its claims against the record; `invalid` means it does not verify (nothing else"
        " is said then). Otherwise the status (revocation first, then expiry), the item, the validity and the"
        ' holder\'s name masked ("张*"): no other personal data. 404 for an unknown number.',
        responses={
            200: reply(
                Verification,
                "The verification",
                example(
                    "Valid",
                    {
                        "number": _NUMBER,
                        "status": "valid",
                        "item": _ITEM,
                        "holder": "张*",
                        "issued_at": "2026-10-09T02:15:00Z",
                        "valid_until": "2031-10-08T02:15:00Z",
                    },
                ),
                example(
                    "Revoked",
                    {
                        "number": _NUMBER,
                        "status": "revoked",
                        "item": _ITEM,
                        "holder": "张*",
                        "issued_at": "2026-10-09T02:15:00Z",
                        "valid_until": "2031-10-08T02:15:00Z",
                        "revoked_at": "2027-03-01T06:00:00Z",
                        "revoked_reason": "The business closed.",
                    },
                ),
                example("Does not verify", {"number": _NUMBER, "status": "invalid"}),
            ),
            **problems(404),
        },
    )
    async def verify(
        self, conn: Connection, settings: NamedDependency[Settings], number: FromPath[Number]
    ) -> Verification:
        return await certificates.verify(conn, number, now=workflows.now(), settings=settings)


# --- signed in: the holder, the department, the counter ------------------------------------------


class CertificateController(Controller):
    path = PREFIX
    tags = ["services: certificates"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_signed_in()]  # noqa: RUF012 - litestar's declared type

    @get(
        "",
        operation_id="services_my_certificates",
        summary="My certificates, newest first",
        description="The caller's own certificates (whoever applied for them, online or at a counter), each"
        " with its status now. Cursor-paginated.",
        responses={
            200: reply(
                CertificatePage,
                "A page of certificates",
                example(
                    "One certificate",
                    {
                        "items": [
                            {
                                "number": _NUMBER,
                                "status": "valid",
                                "item": _ITEM,
                                "application_number": "YC-2026-000123",
                                "issued_at": "2026-10-09T02:15:00Z",
                                "valid_until": "2031-10-08T02:15:00Z",
                                "delivery": "online",
                                "handed_over_at": None,
                                "verification_url": _VERIFY_URL,
                            }
                        ],
                        "next_cursor": None,
                    },
                ),
            ),
            **problems(400, 401),
        },
    )
    async def mine(
        self, request: Request[Any, Any, Any], conn: Connection, limit: Limit = 50, cursor: Cursor = None
    ) -> CertificatePage:
        after = decode_cursor(cursor, tuple[datetime, str])
        rows, next_cursor = page(
            await store.certificates_page(conn, current_principal(request).subject, after=after, limit=limit),
            limit,
            lambda row: (row.issued_at, row.number),
        )
        now = workflows.now()
        return CertificatePage(items=[_summary(row, now) for row in rows], next_cursor=next_cursor)

    @get(
        "/{number:str}",
        operation_id="services_certificate",
        summary="One certificate: its claims, its JWS and its verification URL",
        description="For the holder, officers and supervisors of the issuing department, counter clerks (who"
        " hand results out) and admins; 404 for anyone else. `jws` is the signed certificate (compact JWS,"
        " ES256; verify with the JWKS); `verification_url` is what its QR code encodes.",
        responses={
            200: reply(
                CertificateReply, "The certificate", example("A valid business licence", _CERTIFICATE_EXAMPLE)
            ),
            **problems(401, 404),
        },
    )
    async def certificate(
        self, request: Request[Any, Any, Any], conn: Connection, number: FromPath[Number]
    ) -> CertificateReply:
        row = await certificates.readable(conn, current_principal(request), number)
        return _reply(row, workflows.now())

    @get(
        "/{number:str}/qr.svg",
        operation_id="services_certificate_qr",
        summary="A QR code (SVG) of the certificate's verification URL",
        description="For printing on the certificate. The same readers as the certificate itself.",
        media_type="image/svg+xml",
        responses={
            200: reply(
                str,
                "An SVG image",
                example("The QR code", '<svg xmlns="http://www.w3.org/2000/svg" ...'),
                media_type="image/svg+xml",
            ),
            **problems(401, 404),
        },
    )
    async def qr(
        self, request: Request[Any, Any, Any], conn: Connection, number: FromPath[Number]
    ) -> Response[str]:
        row = await certificates.readable(conn, current_principal(request), number)
        url = certificates.claims_of(row).verification_url
        svg = segno.make(url, error="m").svg_inline(scale=4)
        return Response(svg, media_type="image/svg+xml")

    @post(
        "/{number:str}/revoke",
        operation_id="services_certificate_revoke",
        summary="Revoke a certificate, with the reason",
        description="By an officer or supervisor of the department that issued it, or an admin (403 for anyone"
        " else). For good: a second revocation is a 409. The reason is shown by the public verification.",
        status_code=200,
        responses={
            200: reply(
                CertificateReply,
                "The certificate, revoked",
                example(
                    "Revoked",
                    {
                        **_CERTIFICATE_EXAMPLE,
                        "status": "revoked",
                        "revoked_at": "2027-03-01T06:00:00Z",
                        "revoked_reason": "The business closed.",
                    },
                ),
            ),
            **problems(400, 401, 403, 404, 409, text={409: "The certificate is already revoked"}),
        },
    )
    async def revoke(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        number: FromPath[Number],
        data: Annotated[
            RevokeRequest,
            Body(examples=[example("The business closed", {"reason": "The business closed."})]),
        ],
    ) -> CertificateReply:
        now = workflows.now()
        row = await certificates.revoke(
            conn, current_principal(request), number, reason=data.reason.strip(), now=now
        )
        return _reply(row, now)


class CounterCertificateController(Controller):
    path = "/api/v1/counter/certificates"
    tags = ["services: certificates"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_role("clerk")]  # noqa: RUF012 - litestar's declared type

    @post(
        "/{number:str}/hand-over",
        operation_id="services_certificate_hand_over",
        summary="Record that a certificate was handed over at the counter",
        description="A counter clerk records the hand-over: the clerk and the time are kept, with an optional"
        " note on who collected it (never an ID number). Once: a second hand-over, or one of a revoked"
        " certificate, is a 409.",
        status_code=200,
        responses={
            200: reply(
                CertificateReply,
                "The certificate, handed over",
                example(
                    "Handed over",
                    {
                        **_CERTIFICATE_EXAMPLE,
                        "delivery": "counter",
                        "handed_over_at": "2026-10-10T03:00:00Z",
                        "handed_over_by": "0d9e8f7a-1b2c-4d3e-8f4a-5b6c7d8e9f00",
                        "handed_over_note": "Collected by the holder in person.",
                    },
                ),
            ),
            **problems(400, 401, 403, 404, 409, text={409: "Already handed over, or revoked"}),
        },
    )
    async def hand_over(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        number: FromPath[Number],
        data: Annotated[
            HandOverRequest,
            Body(examples=[example("The holder in person", {"note": "Collected by the holder in person."})]),
        ],
    ) -> CertificateReply:
        now = workflows.now()
        note = data.note.strip() if data.note and data.note.strip() else None
        row = await certificates.hand_over(conn, current_principal(request), number, note=note, now=now)
        return _reply(row, now)


CERTIFICATE_CONTROLLERS: list[ControllerRouterHandler] = [
    PublicCertificateController,
    CertificateController,
    CounterCertificateController,
]
