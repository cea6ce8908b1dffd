"""E-certificates: the signed result of an approved application item.

A certificate is a JWS (compact serialisation, ES256) signed with a key of its own, not the
identity provider's: who may sign a licence is a different question from who may sign a login,
and the two keys rotate on their own schedules. The public keys are published as a JWKS
(`GET /api/v1/certificates/jwks.json`), so anyone (a bank, a landlord, an inspector with a phone)
can check a certificate offline; the verification URL inside it, printed as a QR code, also
answers whether it has since been revoked, which a signature alone cannot say.

The signed claims are the truth of what was certified (holder, item, validity); the row keeps
what changes afterwards (revocation, hand-over at the counter). `issue` runs in the transaction
of the approval that causes it (B's `review.ItemKind.ended`): no approval without its
certificate, no certificate for an approval that rolled back.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol
from uuid import UUID

import msgspec
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from identity.api import Principal, contact_details, unit_path
from onewindow.crypto import DecryptionError, decrypt, derive_key, encrypt
from onewindow.db import Connection
from onewindow.errors import Conflict, Forbidden, NotFound
from onewindow.settings import Settings
from services import application_store, reviewers
from services import certificates_store as store
from services.certificates_store import CertificateRow

__all__ = [
    "ALGORITHM",
    "TYPE",
    "CertificateClaims",
    "CertificateRow",
    "ItemName",
    "Status",
    "Verification",
    "claims_of",
    "held_by",
    "issue",
    "jwks",
    "mask_name",
    "status_of",
    "verification_url",
    "verify",
]

ALGORITHM = "ES256"
CURVE = "P-256"
TYPE = "onewindow-certificate+jws"
NUMBER_PREFIX = "YC-CERT"
_KEY_PURPOSE = "services.certificate-keys"

Status = Literal["valid", "expired", "revoked", "invalid"]


class ItemName(Protocol):
    """Anything with the item's name in both languages (`catalog.Text`)."""

    @property
    def zh(self) -> str: ...

    @property
    def en(self) -> str: ...


class Name(msgspec.Struct, frozen=True):
    zh: str
    en: str


class CertifiedItem(msgspec.Struct, frozen=True):
    code: str
    name: Name


class CertificateClaims(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The signed payload. `iss`/`sub`/`iat`/`nbf`/`exp` are the registered JWT claims (numeric
    dates), so generic JOSE tooling understands the validity; the rest is the certificate."""

    iss: str
    sub: str
    iat: int
    nbf: int
    exp: int | None = None
    number: str
    holder: str
    holder_name: str | None = None
    item: CertifiedItem
    application_number: str
    issued_at: datetime
    valid_from: datetime
    valid_until: datetime | None = None
    verification_url: str


class Verification(msgspec.Struct, frozen=True, kw_only=True):
    """What the public verification says: no personal data beyond a masked holder name."""

    number: str
    status: Status
    item: CertifiedItem | None = None
    holder: str | None = None
    issued_at: datetime | None = None
    valid_until: datetime | None = None
    revoked_at: datetime | None = None
    revoked_reason: str | None = None


# --- keys --------------------------------------------------------------------------------------


def _encryption_key(settings: Settings) -> bytes:
    return derive_key(settings.master_secret, _KEY_PURPOSE)


def _private_key(settings: Settings, row: store.CertificateKeyRow) -> ECKey:
    try:
        pem = decrypt(_encryption_key(settings), row.private_key, associated_data=row.kid.encode())
    except DecryptionError:
        raise RuntimeError(
            f"the certificate key {row.kid} cannot be decrypted: ONEWINDOW_SECRET_KEY is not the secret"
            " it was made with"
        ) from None
    return ECKey.import_key(pem, parameters={"kid": row.kid, "alg": ALGORITHM, "use": "sig"})


async def signing_key(conn: Connection, settings: Settings, *, now: datetime) -> ECKey:
    """The active certificate key, made on first need.

    Two first issues at once (two departments approving in the same second) must not make two
    keys: the second waits on an advisory lock held until the first commits, then finds its key.
    """
    row = await store.active_key(conn)
    if row is None:
        await store.lock_keys(conn)
        row = await store.active_key(conn)
    if row is None:
        kid = f"cert-{now.astimezone(UTC):%Y%m%d}-{secrets.token_hex(4)}"
        key = ECKey.generate_key(CURVE, parameters={"kid": kid, "alg": ALGORITHM, "use": "sig"})
        row = await store.insert_key(
            conn,
            kid=kid,
            algorithm=ALGORITHM,
            public_jwk=dict(key.as_dict(private=False)),
            private_key=encrypt(
                _encryption_key(settings), key.as_pem(private=True).decode(), associated_data=kid.encode()
            ),
            created_at=now,
        )
    return _private_key(settings, row)


async def jwks(conn: Connection) -> dict[str, Any]:
    """The public keys of every certificate key, retired ones included (their certificates still
    verify)."""
    return {"keys": [row.public_jwk for row in await store.published_keys(conn)]}


# --- issue -------------------------------------------------------------------------------------


def verification_url(settings: Settings, number: str) -> str:
    return f"{settings.public_url.rstrip('/')}/api/v1/certificates/{number}/verify"


async def issue(
    conn: Connection,
    *,
    application_item_id: UUID,
    application_number: str,
    holder: str,
    item_code: str,
    item_name: ItemName,
    valid_days: int | None,
    now: datetime,
    settings: Settings,
) -> CertificateRow:
    """Sign and store the certificate of an approved application item; returns the existing one
    when the item already has its certificate (an approval replayed must not sign twice).

    Valid from `now` for `valid_days` calendar days (None: no expiry). The number is
    `YC-CERT-<year>-<6 digits>`, one counter per year of the city's calendar.
    """
    existing = await store.certificate_of_item(conn, application_item_id)
    if existing is not None:
        return existing
    key = await signing_key(conn, settings, now=now)
    number = await application_store.next_number(conn, NUMBER_PREFIX, now=now, timezone=settings.timezone)
    valid_until = now + timedelta(days=valid_days) if valid_days is not None else None
    contact = await contact_details(conn, settings, holder)
    claims = CertificateClaims(
        iss=settings.public_url,
        sub=holder,
        iat=int(now.timestamp()),
        nbf=int(now.timestamp()),
        exp=int(valid_until.timestamp()) if valid_until is not None else None,
        number=number,
        holder=holder,
        holder_name=contact.name if contact is not None else None,
        item=CertifiedItem(code=item_code, name=Name(zh=item_name.zh, en=item_name.en)),
        application_number=application_number,
        issued_at=now,
        valid_from=now,
        valid_until=valid_until,
        verification_url=verification_url(settings, number),
    )
    token = jws.serialize_compact(
        {"alg": ALGORITHM, "kid": key.kid, "typ": TYPE},
        msgspec.json.encode(claims),
        key,
        algorithms=[ALGORITHM],
    )
    return await store.insert_certificate(
        conn,
        number=number,
        application_item_id=application_item_id,
        holder=holder,
        item_code=item_code,
        kid=str(key.kid),
        jws=token,
        issued_at=now,
        valid_from=now,
        valid_until=valid_until,
    )


async def held_by(conn: Connection, holder: str, *, valid_at: datetime | None = None) -> list[CertificateRow]:
    """The certificates issued to `holder`, newest first; with `valid_at`, only those neither
    revoked nor expired (nor not yet valid) at that moment: what may stand in for a document."""
    return await store.certificates_of(conn, holder, valid_at=valid_at)


# --- reading and verifying ---------------------------------------------------------------------


def claims_of(row: CertificateRow) -> CertificateClaims:
    """The claims of a stored JWS, without checking its signature (for its own holder's views;
    `verify` is what checks)."""
    payload = row.jws.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    return msgspec.json.decode(base64.urlsafe_b64decode(padded), type=CertificateClaims)


def status_of(row: CertificateRow, now: datetime) -> Status:
    """valid, expired or revoked from the row alone (the signature is `verify`'s business)."""
    if row.revoked_at is not None:
        return "revoked"
    if row.valid_until is not None and row.valid_until <= now:
        return "expired"
    return "valid"


def mask_name(name: str | None) -> str | None:
    """Enough of a name to match the person in front of you, not enough to learn it:
    "张三" -> "张*", "Citizen One" -> "C*** One"."""
    if not name or not name.strip():
        return None
    words = name.split()
    if len(words) == 1:
        word = words[0]
        return word[0] + "*" * max(len(word) - 1, 1)
    return " ".join([*(word[0] + "***" for word in words[:-1]), words[-1]])


async def verify(conn: Connection, number: str, *, now: datetime, settings: Settings) -> Verification:
    """Check a certificate as a relying party would: the stored JWS against the published keys,
    its claims against the row, then revocation and expiry. A JWS that does not verify (a row
    edited behind the application's back) says `invalid` and nothing else."""
    row = await store.certificate(conn, number)
    if row is None:
        raise NotFound(f"There is no certificate {number}.")
    invalid = Verification(number=number, status="invalid")
    keys = await store.published_keys(conn)
    key_set = KeySet.import_key_set({"keys": [k.public_jwk for k in keys]})
    try:
        signed = jws.deserialize_compact(row.jws, key_set, algorithms=[ALGORITHM])
        claims = msgspec.json.decode(signed.payload, type=CertificateClaims)
    except (JoseError, ValueError, msgspec.DecodeError):
        return invalid
    header = signed.headers()
    if (
        header.get("typ") != TYPE
        or header.get("kid") != row.kid
        or claims.number != row.number
        or claims.holder != row.holder
        or claims.item.code != row.item_code
        or claims.iss != settings.public_url
    ):
        return invalid
    status: Status
    if row.revoked_at is not None:
        status = "revoked"
    elif claims.exp is not None and claims.exp <= now.timestamp():
        status = "expired"
    else:
        status = "valid"
    return Verification(
        number=number,
        status=status,
        item=claims.item,
        holder=mask_name(claims.holder_name),
        issued_at=claims.issued_at,
        valid_until=claims.valid_until,
        revoked_at=row.revoked_at,
        revoked_reason=row.revoked_reason,
    )


# --- who may do what ---------------------------------------------------------------------------


async def department_path(conn: Connection, row: CertificateRow) -> str | None:
    """The unit path of the department that decided the certificate's item."""
    department = await store.department_of(conn, row.application_item_id)
    return await unit_path(conn, department) if department is not None else None


async def may_read(conn: Connection, principal: Principal, row: CertificateRow) -> bool:
    """The holder, an admin, a counter clerk (who hands results out), and the officers and
    supervisors of the department that issued it."""
    if principal.subject == row.holder or principal.has_role("admin") or principal.has_role("clerk"):
        return True
    return reviewers.reviews_for(principal, await department_path(conn, row))


async def readable(conn: Connection, principal: Principal, number: str) -> CertificateRow:
    """The certificate if the caller may read it; 404 otherwise (its existence is not confirmed)."""
    row = await store.certificate(conn, number)
    if row is None or not await may_read(conn, principal, row):
        raise NotFound(f"There is no certificate {number}.")
    return row


async def revoke(
    conn: Connection, principal: Principal, number: str, *, reason: str, now: datetime
) -> CertificateRow:
    """Revoke for good: an officer or supervisor of the issuing department, or an admin. A
    certificate revoked once stays revoked (a second revocation is a 409, its reason kept)."""
    # Certificate numbers are public (anyone may verify one), so a refusal may say 403.
    row = await store.certificate(conn, number, lock=True)
    if row is None:
        raise NotFound(f"There is no certificate {number}.")
    if not (
        principal.has_role("admin") or reviewers.reviews_for(principal, await department_path(conn, row))
    ):
        raise Forbidden(
            "Only an officer or supervisor of the issuing department, or an admin, may revoke it."
        )
    if row.revoked_at is not None:
        raise Conflict(f"The certificate {number} was already revoked.")
    return await store.revoke(conn, number, by=principal.subject, reason=reason, at=now)


async def hand_over(
    conn: Connection, principal: Principal, number: str, *, note: str | None, now: datetime
) -> CertificateRow:
    """A counter clerk records that the certificate was handed over in person: who (the clerk),
    when and a note. Once; a revoked certificate is not handed out."""
    if not principal.has_role("clerk"):
        raise Forbidden("Only a counter clerk records a hand-over.")
    row = await store.certificate(conn, number, lock=True)
    if row is None:
        raise NotFound(f"There is no certificate {number}.")
    if row.handed_over_at is not None:
        raise Conflict(f"The certificate {number} was already handed over.")
    if row.revoked_at is not None:
        raise Conflict(f"The certificate {number} is revoked and cannot be handed over.")
    return await store.hand_over(conn, number, by=principal.subject, note=note, at=now)
