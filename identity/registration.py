"""Citizens' accounts: self-registration with a one-time code, and verification at a counter.

Self-registration (public): a person gives a phone number or e-mail address, a display name and
a password; a six-digit code goes to that phone or address; the account exists once the code
comes back. The reply to the first step is the same 202 whether or not the phone or address
already has an account, so the endpoint cannot be used to find out who is registered: for an
existing account no code is sent (the owner gets an "you already have an account" notice), and
the registration can never be completed.

Counter verification (clerks): a citizen shows an ID document at a front desk; the clerk records
that it was checked and the ID number, which raises the account's level of assurance to high
once it also has a second factor.

Personal data (DESIGN.md): phone and national ID numbers are stored encrypted (AES-GCM with the
person's id as associated data, so a value copied to another row does not decrypt there) and as
keyed hashes for lookups; none of them is ever logged, put in a URL or in an audit row. Each use
has its own key derived from ONEWINDOW_SECRET_KEY (`credentials.derive_key`).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal
from uuid import UUID, uuid4

import asyncpg
import msgspec
from litestar import Controller, Request, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from identity import store
from identity.api import as_guard, current_principal, require_role
from identity.credentials import (
    DecryptionError,
    check_password,
    code_digest,
    decrypt,
    derive_key,
    encrypt,
    hash_password,
    keyed_hash,
    new_code,
    normalise_national_id,
    normalise_phone,
    verify_code,
)
from identity.oidc import LOA_LOW
from identity.seed import password_hashing
from identity.senders import PURPOSE_ACCOUNT_EXISTS, PURPOSE_REGISTER, Channel, sender_from_state
from onewindow.db import Connection
from onewindow.errors import (
    Conflict,
    DomainError,
    FieldError,
    Forbidden,
    NotFound,
    RateLimited,
    RuleViolation,
    Unavailable,
    ValidationFailed,
)
from onewindow.settings import Settings
from onewindow.web import resources

__all__ = [
    "CODE_LIFETIME",
    "MAX_CODE_ATTEMPTS",
    "Actor",
    "CounterController",
    "PersonalData",
    "RegistrationController",
    "mask",
    "normalise_email",
    "provide_actor",
    "require_enabled_account",
    "unique_or_conflict",
]

CODE_LIFETIME: Final = timedelta(minutes=10)
MAX_CODE_ATTEMPTS: Final = 5
# Per source address: enough for a family registering on one phone, too few to spray codes.
RATE_WINDOW: Final = timedelta(minutes=10)
REGISTRATIONS_PER_SOURCE: Final = 5
# Per phone or e-mail address, whoever asks: someone else's phone must not be flooded with codes.
CODES_PER_TARGET: Final = 3
# Registrations whose code expired longer ago than this are deleted by the next registration.
_KEEP_EXPIRED: Final = timedelta(hours=1)

_EMAIL: Final = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s.]+")
_MAX_EMAIL_LENGTH: Final = 254


# --- personal data -------------------------------------------------------------------------------


def normalise_email(value: str) -> str:
    """Lower case without surrounding space; ValueError for anything that cannot be an address.

    Lower case for the whole address: the schema requires it, and no mail system the city deals
    with treats the local part as case-sensitive.
    """
    email = unicodedata.normalize("NFKC", value).strip().lower()
    if len(email) > _MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(email):
        raise ValueError("not an e-mail address")
    return email


def mask(value: str, *, keep: int = 4) -> str:
    """All but the last `keep` characters hidden: enough to confirm a number with its owner."""
    return "*" * max(len(value) - keep, 0) + value[-keep:]


@dataclass(frozen=True)
class PersonalData:
    """The keys for citizens' personal data, derived once per request from the master secret."""

    master: bytes

    def _key(self, purpose: str) -> bytes:
        return derive_key(self.master, purpose)

    # Keyed hashes for lookups. "identity.phone" is the key the login page looks phones up with.
    def phone_hash(self, phone: str) -> bytes:
        return keyed_hash(self._key("identity.phone"), phone)

    def email_hash(self, email: str) -> bytes:
        return keyed_hash(self._key("identity.email"), email)

    def national_id_hash(self, national_id: str) -> bytes:
        return keyed_hash(self._key("identity.national_id"), national_id)

    def source_hash(self, source: str) -> bytes:
        return keyed_hash(self._key("identity.source"), source)

    # Encryption, bound to the row the value belongs to.
    def seal_phone(self, person_id: UUID, phone: str) -> bytes:
        return encrypt(self._key("identity.phone.enc"), phone, associated_data=person_id.bytes)

    def open_phone(self, person_id: UUID, blob: bytes) -> str:
        return decrypt(self._key("identity.phone.enc"), blob, associated_data=person_id.bytes)

    def seal_national_id(self, person_id: UUID, national_id: str) -> bytes:
        return encrypt(self._key("identity.national_id.enc"), national_id, associated_data=person_id.bytes)

    def open_national_id(self, person_id: UUID, blob: bytes) -> str:
        return decrypt(self._key("identity.national_id.enc"), blob, associated_data=person_id.bytes)

    def seal_registration_target(self, code_id: UUID, target: str) -> bytes:
        return encrypt(self._key("identity.registration.enc"), target, associated_data=code_id.bytes)

    def open_registration_target(self, code_id: UUID, blob: bytes) -> str:
        return decrypt(self._key("identity.registration.enc"), blob, associated_data=code_id.bytes)

    # One-time codes: the digest binds the code to its purpose and target.
    def code_digest(self, purpose: str, target: str, code: str) -> bytes:
        return code_digest(self._key("identity.codes"), purpose, target, code)

    def code_matches(self, purpose: str, target: str, code: str, stored: bytes) -> bool:
        return verify_code(self._key("identity.codes"), purpose, target, code, stored)

    def masked_phone(self, person_id: UUID, blob: bytes | None) -> str | None:
        return self._masked(self.open_phone, person_id, blob)

    def masked_national_id(self, person_id: UUID, blob: bytes | None) -> str | None:
        return self._masked(self.open_national_id, person_id, blob)

    @staticmethod
    def _masked(opener: Any, person_id: UUID, blob: bytes | None) -> str | None:
        if blob is None:
            return None
        try:
            return mask(opener(person_id, bytes(blob)))
        except DecryptionError:
            # Another secret key made it: show that there is a value without failing the page.
            return "****"


# --- who is acting -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Actor:
    """The signed-in member of staff a request acts for, as the audit trail records them."""

    person_id: UUID
    client_id: str

    async def audit(
        self,
        conn: Connection,
        *,
        action: str,
        subject: str | None = None,
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> None:
        """An audit row with this member of staff as the actor."""
        await store.audit(
            conn,
            action=action,
            actor_id=self.person_id,
            client_id=self.client_id,
            subject=subject,
            outcome=outcome,
            detail=detail,
        )


async def _enabled_account(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Guard, after a role guard: the calling person's account still exists and is enabled.

    An access token outlives a disabled account by up to its lifetime; staff actions must stop
    at once, so staff routes look the account up.
    """
    principal = current_principal(connection)
    person_id = _person_id(principal.subject) if principal.kind == "person" else None
    person = None
    if person_id is not None:
        async with resources(connection.app.state).db.connection() as conn:
            person = await store.person_by_id(conn, person_id)
    if person is None or person.disabled_at is not None:
        raise Forbidden("This account cannot act here (it is disabled, or not a person's account).")


require_enabled_account = as_guard(_enabled_account)


def _person_id(subject: str) -> UUID | None:
    try:
        return UUID(subject)
    except ValueError:
        return None


def provide_actor(request: Request[Any, Any, Any]) -> Actor:
    """Who the audit trail records (`require_enabled_account` has checked the account)."""
    principal = current_principal(request)
    person_id = _person_id(principal.subject)
    if person_id is None:
        raise Forbidden("Only a person's account can act here.")
    return Actor(person_id=person_id, client_id=principal.client_id)


@asynccontextmanager
async def unique_or_conflict(conn: Connection, message: str) -> AsyncIterator[None]:
    """A write that a unique index may refuse, as a 409 rather than a 500.

    The checks before such a write give the precise refusal; this catches the request that
    raced another one past them. The savepoint keeps the request's transaction usable.
    """
    try:
        async with conn.transaction():
            yield
    except asyncpg.UniqueViolationError:
        raise Conflict(message) from None


def _source(request: Request[Any, Any, Any]) -> str:
    # The peer as the ASGI server reports it; behind a proxy, uvicorn's --proxy-headers makes it
    # the client's address rather than the proxy's (as for the login page).
    return request.client.host if request.client and request.client.host else "unknown"


# --- problems ------------------------------------------------------------------------------------


class VerificationCodeWrong(RuleViolation):
    type = "verification-code-wrong"
    title = "The code is not right"


class VerificationCodeExpired(DomainError):
    status = 410
    type = "verification-code-expired"
    title = "The code has expired"


class VerificationCodeExhausted(DomainError):
    status = 410
    type = "verification-code-exhausted"
    title = "Too many wrong codes"


class VerificationCodeUsed(DomainError):
    status = 410
    type = "verification-code-used"
    title = "The code has already been used"


# --- messages ------------------------------------------------------------------------------------

DisplayName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
# Long enough for any passphrase the policy accepts (256 characters); the policy reports the rest.
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
Contact = Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_EMAIL_LENGTH)]
Locale = Literal["zh", "en"]
Document = Literal["resident_id", "passport", "hk_macao_permit", "taiwan_permit", "foreigner_permit", "other"]


class RegistrationRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Exactly one of `phone` and `email`: where the code goes, and what the account signs in with."""

    display_name: DisplayName
    password: Password
    phone: Contact | None = None
    email: Contact | None = None
    locale: Locale = "zh"


class RegistrationReply(msgspec.Struct, frozen=True):
    registration_id: UUID
    channel: Channel
    expires_at: datetime


class VerificationRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class RegistrationVerified(msgspec.Struct, frozen=True):
    person_id: UUID
    assurance: str


class CounterCitizenRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A citizen's account made at a counter. `password` is typed by the citizen on the counter's
    keypad; without one the account signs in only after a password reset."""

    display_name: DisplayName
    national_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    document: Document
    document_checked: bool
    phone: Contact | None = None
    email: Contact | None = None
    password: Password | None = None
    locale: Locale = "zh"


class CounterVerificationRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    national_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    document: Document
    document_checked: bool


class CounterCitizenReply(msgspec.Struct, frozen=True):
    person_id: UUID
    display_name: str
    national_id_masked: str | None
    identity_verified_at: datetime | None
    identity_method: str | None
    assurance: str


# --- the rules -----------------------------------------------------------------------------------


def _contact(
    phone: str | None, email: str | None, errors: list[FieldError], *, required: bool
) -> tuple[str | None, str | None]:
    """The normalised phone and e-mail, or field errors for what cannot be one."""
    normal_phone = normal_email = None
    if phone is not None:
        try:
            normal_phone = normalise_phone(phone)
        except ValueError as error:
            errors.append(FieldError(pointer="/phone", detail=str(error)))
    if email is not None:
        try:
            normal_email = normalise_email(email)
        except ValueError as error:
            errors.append(FieldError(pointer="/email", detail=str(error)))
    if required and phone is None and email is None:
        errors.append(FieldError(pointer="", detail="Give a phone number or an e-mail address."))
    return normal_phone, normal_email


def _password_errors(password: str | None, *, email: str | None) -> list[FieldError]:
    if password is None:
        return []
    return [
        FieldError(pointer="/password", detail=str(problem))
        for problem in check_password(password, email=email)
    ]


def _national_id(value: str, document_checked: bool, errors: list[FieldError]) -> str | None:
    if not document_checked:
        errors.append(
            FieldError(pointer="/document_checked", detail="The ID document must have been checked.")
        )
    try:
        return normalise_national_id(value)
    except ValueError as error:
        errors.append(FieldError(pointer="/national_id", detail=str(error)))
        return None


def _invalid(errors: list[FieldError]) -> ValidationFailed:
    return ValidationFailed("The request is not valid; see `errors` for each offending field.", errors=errors)


async def _city(conn: Connection) -> store.UnitRow:
    city = await store.city_unit(conn)
    if city is None:
        raise RuleViolation("The city's organisation has not been set up yet: no accounts can be made.")
    return city


def _retry_after(oldest: datetime | None, now: datetime) -> int:
    if oldest is None:
        return int(RATE_WINDOW.total_seconds())
    return max(1, int((oldest + RATE_WINDOW - now).total_seconds()) + 1)


async def _check_rate(conn: Connection, data: PersonalData, source: str, target_hash: bytes) -> None:
    """429 once this source has started too many registrations, or this target had too many codes."""
    now = datetime.now(UTC)
    started, oldest = await store.recent_registrations(
        conn, source_hash=data.source_hash(source), window=RATE_WINDOW
    )
    if started >= REGISTRATIONS_PER_SOURCE:
        raise RateLimited(
            "Too many registrations from this address; try again later.",
            retry_after=_retry_after(oldest, now),
        )
    sent, oldest = await store.recent_codes(
        conn, purpose=PURPOSE_REGISTER, target_hash=target_hash, window=RATE_WINDOW
    )
    if sent >= CODES_PER_TARGET:
        raise RateLimited(
            "Too many codes have been sent there recently; try again later.",
            retry_after=_retry_after(oldest, now),
        )


async def grant_citizen(conn: Connection, person_id: UUID, *, granted_by: UUID | None) -> None:
    city = await _city(conn)
    await store.insert_role_assignment(
        conn, person_id=person_id, role="citizen", unit_id=city.id, granted_by=granted_by
    )


# --- self-registration ---------------------------------------------------------------------------


class RegistrationController(Controller):
    """Public: anyone may start a registration; the code sent to them finishes it."""

    path = "/api/v1/identity/registrations"
    tags = ["identity"]  # noqa: RUF012 - litestar's declared type

    @post(
        "/",
        operation_id="identity_registration_start",
        summary="Start a citizen's registration: a one-time code goes to the phone or e-mail",
        status_code=202,
    )
    async def start(
        self,
        request: Request[Any, Any, Any],
        state: State,
        settings: NamedDependency[Settings],
        data: JSONBody[RegistrationRequest],
    ) -> RegistrationReply:
        errors: list[FieldError] = []
        phone, email = _contact(data.phone, data.email, errors, required=True)
        if data.phone is not None and data.email is not None:
            errors.append(
                FieldError(pointer="", detail="Give a phone number or an e-mail address, not both.")
            )
        errors += _password_errors(data.password, email=email)
        if errors:
            raise _invalid(errors)
        channel: Channel = "sms" if phone else "email"
        target = phone or email or ""
        personal = PersonalData(settings.master_secret)
        # The phone's hash is the one persons.phone_hash holds, so "is it taken" is one lookup.
        target_hash = personal.phone_hash(target) if phone else personal.email_hash(target)
        source = _source(request)
        db = resources(state).db

        # Refused callers cost no argon2 run: the rate is checked before the password is hashed,
        # and again with the insert (two requests may have passed the first check together).
        async with db.connection() as conn:
            await _check_rate(conn, personal, source, target_hash)
            await _city(conn)
        password_hash = await asyncio.to_thread(hash_password, data.password, password_hashing(settings))

        code_id = uuid4()
        async with db.transaction() as conn:
            await _check_rate(conn, personal, source, target_hash)
            await store.sweep_registrations(conn, older_than=_KEEP_EXPIRED)
            exists = await store.contact_taken(
                conn, phone_hash=personal.phone_hash(phone) if phone else None, email=email
            )
            # For a taken phone or address, the stored digest is of a code nobody is sent: the
            # registration looks the same from outside and can never complete.
            code = secrets.token_urlsafe(32) if exists else new_code()
            expires_at = await store.insert_verification_code(
                conn,
                code_id=code_id,
                purpose=PURPOSE_REGISTER,
                target_hash=target_hash,
                code_digest=personal.code_digest(PURPOSE_REGISTER, target, code),
                lifetime=CODE_LIFETIME,
            )
            await store.insert_pending_registration(
                conn,
                code_id=code_id,
                channel=channel,
                target_enc=personal.seal_registration_target(code_id, target),
                display_name=data.display_name,
                password_hash=password_hash,
                locale=data.locale,
                source_hash=personal.source_hash(source),
            )
        # Sent after the commit: a code must never arrive for a registration that does not exist.
        sender = sender_from_state(state, settings)
        try:
            await sender.send(
                channel=channel,
                to=target,
                purpose=PURPOSE_ACCOUNT_EXISTS if exists else PURPOSE_REGISTER,
                code="" if exists else code,
                locale=data.locale,
            )
        except Exception as error:
            raise Unavailable("The code could not be sent just now; try again shortly.") from error
        return RegistrationReply(registration_id=code_id, channel=channel, expires_at=expires_at)

    @post(
        "/{registration_id:uuid}/verify",
        operation_id="identity_registration_verify",
        summary="Finish a registration with the code that was sent: the account is made",
        status_code=201,
    )
    async def verify(
        self,
        state: State,
        settings: NamedDependency[Settings],
        registration_id: FromPath[UUID],
        data: JSONBody[VerificationRequest],
    ) -> RegistrationVerified:
        personal = PersonalData(settings.master_secret)
        failure: DomainError | None = None
        person_id = uuid4()
        # One transaction, committed even when the code is wrong: the attempt must be counted,
        # so the refusal is raised after the block rather than inside it.
        async with resources(state).db.transaction() as conn:
            pending = await store.pending_registration_for_update(conn, registration_id)
            if pending is None:
                raise NotFound("There is no such registration (it may have been completed or expired).")
            if pending.consumed:
                raise VerificationCodeUsed("This registration has already been completed; sign in instead.")
            if pending.attempts >= MAX_CODE_ATTEMPTS:
                raise VerificationCodeExhausted(
                    "Too many wrong codes were tried: start the registration again."
                )
            if pending.expired or pending.target_enc is None:
                raise VerificationCodeExpired("The code has expired: start the registration again.")
            target = personal.open_registration_target(pending.code_id, pending.target_enc)
            if not personal.code_matches(PURPOSE_REGISTER, target, data.code, pending.code_digest):
                attempts = await store.record_code_attempt(conn, pending.code_id)
                left = MAX_CODE_ATTEMPTS - attempts
                failure = (
                    VerificationCodeExhausted(
                        "Too many wrong codes were tried: start the registration again."
                    )
                    if left <= 0
                    else VerificationCodeWrong(
                        f"That is not the code that was sent; {left} attempt{'s' if left > 1 else ''} left."
                    )
                )
            else:
                failure = await _create_registered_citizen(conn, personal, pending, target, person_id)
                await store.complete_registration(conn, pending.code_id)
        if failure is not None:
            raise failure
        return RegistrationVerified(person_id=person_id, assurance=LOA_LOW)


async def _create_registered_citizen(
    conn: Connection,
    personal: PersonalData,
    pending: store.PendingRegistrationRow,
    target: str,
    person_id: UUID,
) -> DomainError | None:
    by_phone = pending.channel == "sms"
    if pending.display_name is None or pending.password_hash is None:
        return VerificationCodeUsed("This registration has already been completed; sign in instead.")
    person = await store.insert_person(
        conn,
        person_id=person_id,
        username=None,
        display_name=pending.display_name,
        email=None if by_phone else target,
        email_verified=not by_phone,
        phone_hash=personal.phone_hash(target) if by_phone else None,
        phone_enc=personal.seal_phone(person_id, target) if by_phone else None,
        phone_verified=by_phone,
        locale=pending.locale,
    )
    if person is None:
        # Only someone who received the code gets here, so saying this reveals nothing new.
        return Conflict(
            "An account with this phone number or e-mail address already exists; sign in instead."
        )
    await store.set_password_hash(conn, person_id, pending.password_hash)
    await grant_citizen(conn, person_id, granted_by=None)
    await store.audit(
        conn,
        action="register_citizen",
        actor_id=person_id,
        subject=str(person_id),
        detail={"channel": pending.channel, "registration": str(pending.code_id)},
    )
    return None


# --- at the counter ------------------------------------------------------------------------------


async def _counter_reply(conn: Connection, personal: PersonalData, person_id: UUID) -> CounterCitizenReply:
    person = await store.person_detail(conn, person_id)
    if person is None:
        raise NotFound("There is no such person.")
    return CounterCitizenReply(
        person_id=person.id,
        display_name=person.display_name,
        national_id_masked=personal.masked_national_id(person.id, person.national_id_enc),
        identity_verified_at=person.identity_verified_at,
        identity_method=person.identity_method,
        assurance=await store.assurance_level(conn, person.id),
    )


async def _record_identity(
    conn: Connection,
    personal: PersonalData,
    actor: NamedDependency[Actor],
    person_id: UUID,
    *,
    national_id: str,
    document: str,
) -> None:
    national_id_hash = personal.national_id_hash(national_id)
    held = await store.national_id_hash_of(conn, person_id)
    if held is not None and held != national_id_hash:
        raise RuleViolation("This account was verified with a different ID document before.")
    conflict = "Another account is already verified with this ID document."
    async with unique_or_conflict(conn, conflict):
        updated = await store.set_identity_verified(
            conn,
            person_id,
            national_id_hash=national_id_hash,
            national_id_enc=personal.seal_national_id(person_id, national_id),
            verified_by=actor.person_id,
            method="counter",
        )
    if updated is None:
        # Nothing personal in the reply: not whose account it is, not the number.
        raise Conflict(conflict)
    await actor.audit(
        conn,
        action="verify_identity",
        subject=str(person_id),
        detail={"method": "counter", "document": document},
    )


class CounterController(Controller):
    """Front-desk clerks: accounts made or verified in person, with an ID document checked."""

    path = "/api/v1/identity/counter"
    tags = ["identity"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_role("clerk"), require_enabled_account]  # noqa: RUF012 - litestar's declared type
    dependencies = {"actor": Provide(provide_actor, sync_to_thread=False)}  # noqa: RUF012 - litestar's declared type

    @post(
        "/citizens",
        operation_id="identity_counter_create_citizen",
        summary="Make a citizen's account at the counter, identity checked",
        status_code=201,
    )
    async def create_citizen(
        self,
        conn: Connection,
        settings: NamedDependency[Settings],
        actor: NamedDependency[Actor],
        data: JSONBody[CounterCitizenRequest],
    ) -> CounterCitizenReply:
        errors: list[FieldError] = []
        phone, email = _contact(data.phone, data.email, errors, required=True)
        national_id = _national_id(data.national_id, data.document_checked, errors)
        errors += _password_errors(data.password, email=email)
        if errors or national_id is None:
            raise _invalid(errors)
        personal = PersonalData(settings.master_secret)
        if await store.person_by_national_id_hash(conn, personal.national_id_hash(national_id)):
            raise Conflict(
                "Another account is already verified with this ID document: verify or help with that one."
            )
        person_id = uuid4()
        phone_hash = personal.phone_hash(phone) if phone else None
        if await store.contact_taken(conn, phone_hash=phone_hash, email=email):
            raise Conflict("An account with this phone number or e-mail address already exists.")
        person = await store.insert_person(
            conn,
            person_id=person_id,
            username=None,
            display_name=data.display_name,
            email=email,
            # The clerk saw the citizen, not a message reaching this phone or address.
            email_verified=False,
            phone_hash=phone_hash,
            phone_enc=personal.seal_phone(person_id, phone) if phone else None,
            phone_verified=False,
            locale=data.locale,
        )
        if person is None:
            raise Conflict("An account with this phone number or e-mail address already exists.")
        if data.password is not None:
            hashed = await asyncio.to_thread(hash_password, data.password, password_hashing(settings))
            await store.set_password_hash(conn, person_id, hashed)
        await grant_citizen(conn, person_id, granted_by=actor.person_id)
        await actor.audit(
            conn,
            action="create_citizen",
            subject=str(person_id),
            detail={"via": "counter"},
        )
        await _record_identity(
            conn, personal, actor, person_id, national_id=national_id, document=data.document
        )
        return await _counter_reply(conn, personal, person_id)

    @post(
        "/citizens/{person_id:uuid}/verify",
        operation_id="identity_counter_verify_citizen",
        summary="Record that a citizen's ID document was checked at the counter",
        status_code=200,
    )
    async def verify_citizen(
        self,
        conn: Connection,
        settings: NamedDependency[Settings],
        actor: NamedDependency[Actor],
        person_id: FromPath[UUID],
        data: JSONBody[CounterVerificationRequest],
    ) -> CounterCitizenReply:
        errors: list[FieldError] = []
        national_id = _national_id(data.national_id, data.document_checked, errors)
        if errors or national_id is None:
            raise _invalid(errors)
        person = await store.person_by_id(conn, person_id)
        if person is None:
            raise NotFound("There is no such person.")
        if person.disabled_at is not None:
            raise RuleViolation("This account is disabled: enable it before verifying it.")
        if not any(grant.role == "citizen" for grant in await store.active_roles(conn, person_id)):
            raise RuleViolation("Only citizens' accounts are verified at the counter.")
        personal = PersonalData(settings.master_secret)
        await _record_identity(
            conn, personal, actor, person_id, national_id=national_id, document=data.document
        )
        return await _counter_reply(conn, personal, person_id)
