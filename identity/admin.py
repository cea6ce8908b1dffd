"""The admin API: organisation units, persons, role assignments, OpenID Connect clients, signing
keys and the audit log, under /api/v1/identity/admin.

Every route needs the `admin` role (held in the city unit) and an account that is still enabled;
every change writes an audit row (who, what, on which subject) whose detail holds ids and kinds,
never personal data. Phone and national ID numbers are shown masked, and are searched for in a
POST body (never a URL, which ends up in proxy and access logs) through their keyed hashes.

Lists are cursor-paginated: `next_cursor` is opaque (the sort key of the last row, encoded), and
passing it back as `cursor` gives the next page; `limit` is at most 100.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import secrets
from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal, TypeVar
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import msgspec
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from litestar import Controller, Response, delete, get, patch, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from identity import sessions, store
from identity.api import IdentityRuntime, require_role
from identity.credentials import check_password, hash_password, normalise_national_id, normalise_phone
from identity.keys import create_key
from identity.oidc import SCOPES
from identity.registration import (
    Actor,
    PersonalData,
    normalise_email,
    provide_actor,
    require_enabled_account,
    unique_or_conflict,
)
from identity.seed import password_hashing, secret_digest
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
from onewindow.web import check_if_match, decode_cursor, etag, page

__all__ = [
    "ADMIN_CONTROLLERS",
    "AuditLogController",
    "ClientAdminController",
    "PersonAdminController",
    "SigningKeyAdminController",
    "UnitAdminController",
]

PREFIX: Final = "/api/v1/identity/admin"

# The organisation tree: the kind of unit each kind hangs under (the city is the root).
PARENT_KIND: Final[dict[str, str | None]] = {
    "city": None,
    "department": "city",
    "district": "city",
    "street": "district",
    "community": "street",
    "grid": "community",
}
# Where each role may be held: an officer works for a department, a grid worker in one grid.
ROLE_UNIT_KINDS: Final[dict[str, frozenset[str]]] = {
    "citizen": frozenset({"city"}),
    "admin": frozenset({"city"}),
    "clerk": frozenset({"department"}),
    "officer": frozenset({"department"}),
    "supervisor": frozenset({"department", "district", "street", "community"}),
    "grid_worker": frozenset({"grid"}),
    "command_centre": frozenset({"city", "district", "street"}),
}

_USERNAME: Final = re.compile(r"[a-z0-9][a-z0-9._-]{2,63}")
_MAX_URI_LENGTH: Final = 2000
_MAX_URIS: Final = 20
_MAX_JWKS_KEYS: Final = 10
_MIN_RSA_BITS: Final = 2048
_LOOPBACK_HOSTS: Final = ("127.0.0.1", "::1")
# RFC 8252 section 7.1: a private-use scheme is a reverse domain name the app's owner controls.
_PRIVATE_USE_SCHEME: Final = re.compile(r"[a-z][a-z0-9+-]*(\.[a-z0-9+-]+)+")
# Members that only a private or symmetric key has (RFC 7518 section 6).
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_SECRET_METHODS: Final = frozenset({"client_secret_basic", "client_secret_post"})

UnitKind = Literal["city", "department", "district", "street", "community", "grid"]
Role = Literal["citizen", "clerk", "officer", "supervisor", "grid_worker", "command_centre", "admin"]
UnitCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
UnitName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
DisplayName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
ClientId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")]
Uri = Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_URI_LENGTH)]
Limit = Annotated[int, QueryParameter(ge=1, le=100, description="Most items on one page (at most 100).")]
Cursor = Annotated[
    str | None, QueryParameter(max_length=512, description="`next_cursor` of the previous page.")
]

T = TypeVar("T")


# --- pagination and versions ---------------------------------------------------------------------


def _invalid(errors: list[FieldError]) -> ValidationFailed:
    return ValidationFailed("The request is not valid; see `errors` for each offending field.", errors=errors)


# --- organisation units --------------------------------------------------------------------------


class UnitReply(msgspec.Struct, frozen=True):
    code: str
    kind: str
    parent: str | None
    path: str
    name_zh: str
    name_en: str
    created_at: datetime
    updated_at: datetime


class UnitPage(msgspec.Struct, frozen=True):
    items: list[UnitReply]
    next_cursor: str | None


class UnitCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`parent` is the code of the unit this one hangs under (none for the city)."""

    code: UnitCode
    kind: UnitKind
    name_zh: UnitName
    name_en: UnitName
    parent: UnitCode | None = None


class UnitRename(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name_zh: UnitName | None = None
    name_en: UnitName | None = None


def _unit_reply(row: store.UnitDetailRow) -> UnitReply:
    return UnitReply(
        code=row.code,
        kind=row.kind,
        parent=row.parent_code,
        path=row.path,
        name_zh=row.name_zh,
        name_en=row.name_en,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _unit(conn: Connection, code: str) -> store.UnitDetailRow:
    row = await store.unit_detail(conn, code)
    if row is None:
        raise NotFound(f"There is no organisation unit {code}.")
    return row


class UnitAdminController(Controller):
    """The organisation tree: city → department; city → district → street → community → grid."""

    path = f"{PREFIX}/units"
    tags = ["identity admin"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_role("admin"), require_enabled_account]  # noqa: RUF012 - litestar's declared type
    dependencies = {"actor": Provide(provide_actor, sync_to_thread=False)}  # noqa: RUF012 - litestar's declared type

    @get("/", operation_id="identity_admin_list_units", summary="Organisation units in tree order")
    async def list_units(
        self,
        conn: Connection,
        parent: Annotated[str | None, QueryParameter(max_length=63)] = None,
        kind: FromQuery[UnitKind | None] = None,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> UnitPage:
        parent_id = (await _unit(conn, parent)).id if parent is not None else None
        rows = await store.list_units(
            conn,
            parent_id=parent_id,
            kind=kind,
            after_path=decode_cursor(cursor, str),
            limit=limit + 1,
        )
        items, next_cursor = page(rows, limit, lambda row: row.path)
        return UnitPage(items=[_unit_reply(row) for row in items], next_cursor=next_cursor)

    @get("/{code:str}", operation_id="identity_admin_get_unit", summary="One organisation unit")
    async def get_unit(self, conn: Connection, code: FromPath[str]) -> UnitReply:
        return _unit_reply(await _unit(conn, code))

    @post("/", operation_id="identity_admin_create_unit", summary="Add a unit to the tree", status_code=201)
    async def create_unit(
        self, conn: Connection, actor: NamedDependency[Actor], data: JSONBody[UnitCreate]
    ) -> Response[UnitReply]:
        wanted_parent_kind = PARENT_KIND[data.kind]
        parent = await store.unit_by_code(conn, data.parent) if data.parent is not None else None
        if wanted_parent_kind is None:
            if data.parent is not None:
                raise _invalid(
                    [FieldError(pointer="/parent", detail="The city is the root: it has no parent.")]
                )
            if await store.city_unit(conn) is not None:
                raise RuleViolation("The city already exists: there is one root of the organisation tree.")
        elif data.parent is None:
            raise _invalid([FieldError(pointer="/parent", detail=f"A {data.kind} needs a parent unit.")])
        elif parent is None:
            raise _invalid([FieldError(pointer="/parent", detail="There is no unit with this code.")])
        elif parent.kind != wanted_parent_kind:
            raise RuleViolation(
                f"A {data.kind} belongs under a {wanted_parent_kind}, and {parent.code} is a {parent.kind}."
            )
        created = await store.insert_unit(
            conn, code=data.code, kind=data.kind, parent=parent, name_zh=data.name_zh, name_en=data.name_en
        )
        if not created:
            raise Conflict(f"There is already a unit with the code {data.code}.")
        await actor.audit(
            conn,
            action="create_unit",
            subject=f"unit:{data.code}",
            detail={"kind": data.kind, "parent": data.parent},
        )
        row = await _unit(conn, data.code)
        return Response(_unit_reply(row), status_code=201, headers={"Location": f"{PREFIX}/units/{row.code}"})

    @patch("/{code:str}", operation_id="identity_admin_rename_unit", summary="Rename a unit")
    async def rename_unit(
        self, conn: Connection, actor: NamedDependency[Actor], code: FromPath[str], data: JSONBody[UnitRename]
    ) -> UnitReply:
        if data.name_zh is None and data.name_en is None:
            raise _invalid([FieldError(pointer="", detail="Give name_zh, name_en or both.")])
        if not await store.rename_unit(conn, code, name_zh=data.name_zh, name_en=data.name_en):
            raise NotFound(f"There is no organisation unit {code}.")
        changed = [name for name in ("name_zh", "name_en") if getattr(data, name) is not None]
        await actor.audit(
            conn,
            action="rename_unit",
            subject=f"unit:{code}",
            detail={"fields": changed},
        )
        return _unit_reply(await _unit(conn, code))


# --- persons -------------------------------------------------------------------------------------


class PersonSummary(msgspec.Struct, frozen=True):
    id: UUID
    username: str | None
    display_name: str
    email: str | None
    disabled: bool
    created_at: datetime


class PersonPage(msgspec.Struct, frozen=True):
    items: list[PersonSummary]
    next_cursor: str | None


class PersonReply(msgspec.Struct, frozen=True):
    """A person as administrators see them: phone and ID numbers masked to their last 4 characters."""

    id: UUID
    username: str | None
    display_name: str
    email: str | None
    email_verified_at: datetime | None
    phone_masked: str | None
    phone_verified_at: datetime | None
    national_id_masked: str | None
    identity_verified_at: datetime | None
    identity_method: str | None
    locale: str
    disabled_at: datetime | None
    locked_until: datetime | None
    has_password: bool
    second_factor: bool
    assurance: str
    created_at: datetime
    updated_at: datetime
    version: int


class PersonSearch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Find a person by an identifier that must not appear in a URL. At least one field."""

    phone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    national_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    email: Annotated[str, msgspec.Meta(min_length=1, max_length=254)] | None = None


class StaffCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A staff account; roles are granted separately. The initial password must meet the policy."""

    username: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    display_name: DisplayName
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    email: Annotated[str, msgspec.Meta(min_length=1, max_length=254)] | None = None
    locale: Literal["zh", "en"] = "zh"


class PersonUpdate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Fields left out stay as they are."""

    display_name: DisplayName | None = None
    email: Annotated[str, msgspec.Meta(min_length=1, max_length=254)] | None = None
    locale: Literal["zh", "en"] | None = None


class UnlockReply(msgspec.Struct, frozen=True):
    was_locked: bool


def _summary(row: store.PersonSummaryRow) -> PersonSummary:
    return PersonSummary(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        email=row.email,
        disabled=row.disabled_at is not None,
        created_at=row.created_at,
    )


async def _person_response(
    conn: Connection, settings: Settings, person_id: UUID, *, status_code: int = 200, location: bool = False
) -> Response[PersonReply]:
    row = await store.person_detail(conn, person_id)
    if row is None:
        raise NotFound("There is no such person.")
    personal = PersonalData(settings.master_secret)
    reply = PersonReply(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        email=row.email,
        email_verified_at=row.email_verified_at,
        phone_masked=personal.masked_phone(row.id, row.phone_enc),
        phone_verified_at=row.phone_verified_at,
        national_id_masked=personal.masked_national_id(row.id, row.national_id_enc),
        identity_verified_at=row.identity_verified_at,
        identity_method=row.identity_method,
        locale=row.locale,
        disabled_at=row.disabled_at,
        locked_until=row.locked_until,
        has_password=row.has_password,
        second_factor=row.totp_confirmed,
        assurance=await store.assurance_level(conn, row.id),
        created_at=row.created_at,
        updated_at=row.updated_at,
        version=row.version,
    )
    headers = {"ETag": etag(row.version), "Cache-Control": "no-store"}
    if location:
        headers["Location"] = f"{PREFIX}/persons/{row.id}"
    return Response(reply, status_code=status_code, headers=headers)


async def _existing_person(conn: Connection, person_id: UUID) -> store.PersonRow:
    person = await store.person_by_id(conn, person_id)
    if person is None:
        raise NotFound("There is no such person.")
    return person


async def _keep_an_admin(conn: Connection, person_id: UUID, *, losing: str) -> None:
    """Refuse the change that would leave the city without an enabled administrator."""
    holds_admin = any(grant.role == "admin" for grant in await store.active_roles(conn, person_id))
    if holds_admin and await store.active_holders(conn, "admin") <= 1:
        raise RuleViolation(f"This is the last administrator: {losing} would leave nobody to administer.")


class RoleAssignmentReply(msgspec.Struct, frozen=True):
    id: UUID
    person_id: UUID
    role: str
    unit: str
    unit_kind: str
    unit_path: str
    granted_by: UUID | None
    granted_at: datetime
    revoked_at: datetime | None
    revoked_by: UUID | None


class RoleAssignmentPage(msgspec.Struct, frozen=True):
    items: list[RoleAssignmentReply]
    next_cursor: str | None


class RoleGrantRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`unit` is the code of the organisation unit the role is held in."""

    role: Role
    unit: UnitCode


def _assignment_reply(row: store.RoleAssignmentRow) -> RoleAssignmentReply:
    return RoleAssignmentReply(
        id=row.id,
        person_id=row.person_id,
        role=row.role,
        unit=row.unit,
        unit_kind=row.unit_kind,
        unit_path=row.unit_path,
        granted_by=row.granted_by,
        granted_at=row.granted_at,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
    )


def role_allowed_at(role: str, unit_kind: str) -> bool:
    """Whether `role` may be held in a unit of this kind."""
    return unit_kind in ROLE_UNIT_KINDS.get(role, frozenset())


class PersonAdminController(Controller):
    """Persons (citizens and staff), their accounts and their role assignments."""

    path = f"{PREFIX}/persons"
    tags = ["identity admin"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_role("admin"), require_enabled_account]  # noqa: RUF012 - litestar's declared type
    dependencies = {"actor": Provide(provide_actor, sync_to_thread=False)}  # noqa: RUF012 - litestar's declared type

    @get(
        "/",
        operation_id="identity_admin_list_persons",
        summary="Persons in creation order, optionally by the start of a username, e-mail or name",
    )
    async def list_persons(
        self,
        conn: Connection,
        q: Annotated[str | None, QueryParameter(min_length=1, max_length=100)] = None,
        disabled: FromQuery[bool | None] = None,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> PersonPage:
        rows = await store.list_persons(
            conn,
            prefix=q,
            disabled=disabled,
            after=decode_cursor(cursor, tuple[datetime, UUID]),
            limit=limit + 1,
        )
        items, next_cursor = page(rows, limit, lambda row: (row.created_at, row.id))
        return PersonPage(items=[_summary(row) for row in items], next_cursor=next_cursor)

    @post(
        "/search",
        operation_id="identity_admin_search_persons",
        summary="Find persons by phone number, national ID number or e-mail (in the body, never the URL)",
        status_code=200,
    )
    async def search_persons(
        self,
        conn: Connection,
        settings: NamedDependency[Settings],
        actor: NamedDependency[Actor],
        data: JSONBody[PersonSearch],
    ) -> PersonPage:
        errors: list[FieldError] = []
        personal = PersonalData(settings.master_secret)
        phone_hash = national_id_hash = email = None
        try:
            phone_hash = personal.phone_hash(normalise_phone(data.phone)) if data.phone else None
        except ValueError as error:
            errors.append(FieldError(pointer="/phone", detail=str(error)))
        try:
            national_id_hash = (
                personal.national_id_hash(normalise_national_id(data.national_id))
                if data.national_id
                else None
            )
        except ValueError as error:
            errors.append(FieldError(pointer="/national_id", detail=str(error)))
        try:
            email = normalise_email(data.email) if data.email else None
        except ValueError as error:
            errors.append(FieldError(pointer="/email", detail=str(error)))
        if not (data.phone or data.national_id or data.email):
            errors.append(FieldError(pointer="", detail="Give a phone, national_id or email to search by."))
        if errors:
            raise _invalid(errors)
        rows = await store.persons_by_identifier(
            conn, phone_hash=phone_hash, national_id_hash=national_id_hash, email=email
        )
        # A look-up by personal identifiers is itself worth a trace: by what, and how many found.
        await actor.audit(
            conn,
            action="search_persons",
            detail={
                "by": [name for name in ("phone", "national_id", "email") if getattr(data, name)],
                "found": len(rows),
            },
        )
        return PersonPage(items=[_summary(row) for row in rows], next_cursor=None)

    @get(
        "/{person_id:uuid}",
        operation_id="identity_admin_get_person",
        summary="One person; the ETag is their version, for If-Match on updates",
    )
    async def get_person(
        self, conn: Connection, settings: NamedDependency[Settings], person_id: FromPath[UUID]
    ) -> Response[PersonReply]:
        return await _person_response(conn, settings, person_id)

    @post("/", operation_id="identity_admin_create_staff", summary="Create a staff account", status_code=201)
    async def create_staff(
        self,
        conn: Connection,
        settings: NamedDependency[Settings],
        actor: NamedDependency[Actor],
        data: JSONBody[StaffCreate],
    ) -> Response[PersonReply]:
        errors: list[FieldError] = []
        username = data.username.strip().lower()
        if not _USERNAME.fullmatch(username):
            errors.append(
                FieldError(
                    pointer="/username",
                    detail="3 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
                )
            )
        email = None
        if data.email is not None:
            try:
                email = normalise_email(data.email)
            except ValueError as error:
                errors.append(FieldError(pointer="/email", detail=str(error)))
        errors += [
            FieldError(pointer="/password", detail=str(problem))
            for problem in check_password(data.password, username=username, email=email)
        ]
        if errors:
            raise _invalid(errors)
        taken = []
        if await store.person_by_login(conn, login=username, phone_hash=None):
            taken.append(FieldError(pointer="/username", detail="taken"))
        if email is not None and await store.email_taken(conn, email):
            taken.append(FieldError(pointer="/email", detail="taken"))
        if taken:
            raise Conflict("An account with this username or e-mail address already exists.", errors=taken)
        password_hash = await asyncio.to_thread(hash_password, data.password, password_hashing(settings))
        person_id = uuid4()
        person = await store.insert_person(
            conn,
            person_id=person_id,
            username=username,
            display_name=data.display_name,
            email=email,
            # The city hands out staff addresses: the administrator's word is the verification.
            email_verified=email is not None,
            phone_hash=None,
            phone_enc=None,
            phone_verified=False,
            locale=data.locale,
        )
        if person is None:
            raise Conflict("An account with this username or e-mail address already exists.")
        await store.set_password_hash(conn, person_id, password_hash)
        await actor.audit(
            conn,
            action="create_person",
            subject=str(person_id),
            detail={"kind": "staff"},
        )
        return await _person_response(conn, settings, person_id, status_code=201, location=True)

    @patch(
        "/{person_id:uuid}",
        operation_id="identity_admin_update_person",
        summary="Change a person's name, e-mail or language (If-Match required)",
    )
    async def update_person(
        self,
        *,
        conn: Connection,
        settings: NamedDependency[Settings],
        actor: NamedDependency[Actor],
        person_id: FromPath[UUID],
        data: JSONBody[PersonUpdate],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", max_length=200)] = None,
    ) -> Response[PersonReply]:
        email = None
        if data.email is not None:
            try:
                email = normalise_email(data.email)
            except ValueError as error:
                raise _invalid([FieldError(pointer="/email", detail=str(error))]) from None
        person = await _existing_person(conn, person_id)
        check_if_match(if_match, person.version, what="person")
        if email is not None and await store.email_taken(conn, email, except_person=person_id):
            raise Conflict(
                "Another account has this e-mail address.",
                errors=[FieldError(pointer="/email", detail="taken")],
            )
        async with unique_or_conflict(conn, "Another account has this e-mail address."):
            updated = await store.update_person(
                conn,
                person_id,
                expected_version=person.version,
                display_name=data.display_name,
                email=email,
                clear_email=False,
                locale=data.locale,
            )
        if updated is None:  # changed between the read above and this write
            raise PreconditionFailed("The person has changed since you read it: read it again.")
        changed = [name for name in ("display_name", "email", "locale") if getattr(data, name) is not None]
        await actor.audit(
            conn,
            action="update_person",
            subject=str(person_id),
            detail={"fields": changed, "version": updated.version},
        )
        return await _person_response(conn, settings, person_id)

    @post(
        "/{person_id:uuid}/disable",
        operation_id="identity_admin_disable_person",
        summary="Disable an account: it cannot sign in, and its sessions and tokens end",
        status_code=200,
    )
    async def disable_person(
        self,
        conn: Connection,
        settings: NamedDependency[Settings],
        actor: NamedDependency[Actor],
        person_id: FromPath[UUID],
    ) -> Response[PersonReply]:
        if person_id == actor.person_id:
            raise RuleViolation("You cannot disable your own account.")
        person = await _existing_person(conn, person_id)
        if person.disabled_at is None:
            await _keep_an_admin(conn, person_id, losing="disabling this account")
            await store.set_person_disabled(conn, person_id, disabled=True)
            ended = await sessions.end_sessions(conn, person_id)
            await store.revoke_person_tokens(conn, person_id)
            await actor.audit(
                conn,
                action="disable_person",
                subject=str(person_id),
                detail={"sessions_ended": ended},
            )
        return await _person_response(conn, settings, person_id)

    @post(
        "/{person_id:uuid}/enable",
        operation_id="identity_admin_enable_person",
        summary="Enable a disabled account again",
        status_code=200,
    )
    async def enable_person(
        self,
        conn: Connection,
        settings: NamedDependency[Settings],
        actor: NamedDependency[Actor],
        person_id: FromPath[UUID],
    ) -> Response[PersonReply]:
        person = await _existing_person(conn, person_id)
        if person.disabled_at is not None:
            await store.set_person_disabled(conn, person_id, disabled=False)
            await actor.audit(
                conn,
                action="enable_person",
                subject=str(person_id),
            )
        return await _person_response(conn, settings, person_id)

    @post(
        "/{person_id:uuid}/unlock",
        operation_id="identity_admin_unlock_person",
        summary="Lift a lock left by too many failed sign-ins, and forget the failures",
        status_code=200,
    )
    async def unlock_person(
        self, conn: Connection, actor: NamedDependency[Actor], person_id: FromPath[UUID]
    ) -> UnlockReply:
        await _existing_person(conn, person_id)
        # sessions.unlock writes the audit row when there was a lock to lift.
        return UnlockReply(was_locked=await sessions.unlock(conn, person_id, actor_id=actor.person_id))

    @get(
        "/{person_id:uuid}/roles",
        operation_id="identity_admin_list_roles",
        summary="A person's role assignments (active ones, or all with include_revoked)",
    )
    async def list_roles(
        self,
        conn: Connection,
        person_id: FromPath[UUID],
        include_revoked: FromQuery[bool] = False,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> RoleAssignmentPage:
        await _existing_person(conn, person_id)
        rows = await store.list_role_assignments(
            conn,
            person_id,
            include_revoked=include_revoked,
            after=decode_cursor(cursor, tuple[datetime, UUID]),
            limit=limit + 1,
        )
        items, next_cursor = page(rows, limit, lambda row: (row.granted_at, row.id))
        return RoleAssignmentPage(items=[_assignment_reply(row) for row in items], next_cursor=next_cursor)

    @post(
        "/{person_id:uuid}/roles",
        operation_id="identity_admin_grant_role",
        summary="Grant a role within an organisation unit",
        status_code=201,
    )
    async def grant_role(
        self,
        conn: Connection,
        actor: NamedDependency[Actor],
        person_id: FromPath[UUID],
        data: JSONBody[RoleGrantRequest],
    ) -> RoleAssignmentReply:
        await _existing_person(conn, person_id)
        unit = await store.unit_by_code(conn, data.unit)
        if unit is None:
            raise _invalid([FieldError(pointer="/unit", detail="There is no unit with this code.")])
        if not role_allowed_at(data.role, unit.kind):
            kinds = " or ".join(sorted(ROLE_UNIT_KINDS[data.role]))
            raise RuleViolation(
                f"The role {data.role} is held in a {kinds}, and {unit.code} is a {unit.kind}."
            )
        assignment_id = await store.insert_role_assignment(
            conn, person_id=person_id, role=data.role, unit_id=unit.id, granted_by=actor.person_id
        )
        if assignment_id is None:
            raise Conflict(f"The person already holds {data.role} in {unit.code}.")
        await actor.audit(
            conn,
            action="grant_role",
            subject=str(person_id),
            detail={"role": data.role, "unit": unit.code, "assignment": str(assignment_id)},
        )
        row = await store.role_assignment(conn, assignment_id)
        if row is None:  # never: it was inserted just now, in this transaction
            raise NotFound("The assignment vanished.")
        return _assignment_reply(row)

    @delete(
        "/{person_id:uuid}/roles/{assignment_id:uuid}",
        operation_id="identity_admin_revoke_role",
        summary="Revoke a role assignment (it stays in the history, with who revoked it and when)",
        status_code=200,
    )
    async def revoke_role(
        self,
        conn: Connection,
        actor: NamedDependency[Actor],
        person_id: FromPath[UUID],
        assignment_id: FromPath[UUID],
    ) -> RoleAssignmentReply:
        row = await store.role_assignment(conn, assignment_id)
        if row is None or row.person_id != person_id:
            raise NotFound("The person has no such role assignment.")
        if row.revoked_at is not None:
            raise Conflict("This assignment has already been revoked.")
        if row.role == "admin":
            await _keep_an_admin(conn, person_id, losing="revoking this role")
        await store.revoke_role_assignment(conn, assignment_id, revoked_by=actor.person_id)
        await actor.audit(
            conn,
            action="revoke_role",
            subject=str(person_id),
            detail={"role": row.role, "unit": row.unit, "assignment": str(assignment_id)},
        )
        revoked = await store.role_assignment(conn, assignment_id)
        if revoked is None:  # never: it is only marked revoked
            raise NotFound("The assignment vanished.")
        return _assignment_reply(revoked)


# --- OpenID Connect clients ----------------------------------------------------------------------

AuthMethod = Literal["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]
GrantType = Literal["authorization_code", "refresh_token", "client_credentials"]


class ClientReply(msgspec.Struct, frozen=True):
    """A client; the secret's hash is never shown (`has_secret` says whether there is one)."""

    client_id: str
    name: str
    kind: str
    token_endpoint_auth_method: str
    grant_types: list[str]
    redirect_uris: list[str]
    allow_loopback_redirects: bool
    post_logout_redirect_uris: list[str]
    scopes: list[str]
    jwks: dict[str, Any] | None
    has_secret: bool
    disabled_at: datetime | None
    secret_rotated_at: datetime | None
    created_at: datetime


class ClientCreated(ClientReply, frozen=True):
    """The new client, with its secret: shown this once, stored only as a hash."""

    client_secret: str | None = None


class ClientPage(msgspec.Struct, frozen=True):
    items: list[ClientReply]
    next_cursor: str | None


class ClientCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`none` makes a public client (PKCE, at least one redirect URI); `client_secret_*` clients get
    a generated secret in the reply; `private_key_jwt` clients register their public keys (`jwks`)."""

    client_id: ClientId
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    token_endpoint_auth_method: AuthMethod
    grant_types: Annotated[list[GrantType], msgspec.Meta(min_length=1, max_length=3)]
    scopes: Annotated[list[str], msgspec.Meta(min_length=1, max_length=len(SCOPES))]
    redirect_uris: Annotated[list[Uri], msgspec.Meta(max_length=_MAX_URIS)] = msgspec.field(
        default_factory=list
    )
    post_logout_redirect_uris: Annotated[list[Uri], msgspec.Meta(max_length=_MAX_URIS)] = msgspec.field(
        default_factory=list
    )
    allow_loopback_redirects: bool = False
    jwks: dict[str, Any] | None = None


class ClientSecretReply(msgspec.Struct, frozen=True):
    client_id: str
    client_secret: str
    secret_rotated_at: datetime | None


def _client_reply(row: store.ClientAdminRow) -> ClientReply:
    return ClientReply(**msgspec.structs.asdict(row))


def _is_loopback(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS


def redirect_uri_problem(uri: str) -> str | None:
    """Why `uri` cannot be registered as a redirect URI, or None (RFC 6749 3.1.2, RFC 8252 7)."""
    try:
        parts = urlsplit(uri)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return "not a URI"
    if parts.fragment or "#" in uri:
        return "must not contain a fragment"
    if parts.username is not None or parts.password is not None:
        return "must not contain a user name or password"
    if parts.scheme == "https":
        return None if hostname else "an https URI needs a host"
    if parts.scheme == "http":
        if hostname in _LOOPBACK_HOSTS:
            return None
        if hostname == "localhost":
            return "use 127.0.0.1 or [::1] rather than localhost (RFC 8252 section 8.3)"
        return "http is allowed only for loopback addresses (127.0.0.1, [::1]); use https"
    if _PRIVATE_USE_SCHEME.fullmatch(parts.scheme) and not parts.netloc:
        return None  # a native app's private-use scheme, e.g. city.onewindow.app:/callback
    return "must be https, http on a loopback address, or a private-use scheme like com.example.app:/cb"


def _jwks_problems(jwks: dict[str, Any]) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """The public JWKS to store, or what is wrong with it. Private or symmetric keys are refused:
    a private key sent here has already leaked, and the client must make a new one."""
    keys = jwks.get("keys")
    if not isinstance(keys, list) or not 1 <= len(keys) <= _MAX_JWKS_KEYS or set(jwks) != {"keys"}:
        return None, [
            FieldError(pointer="/jwks", detail=f'a JWK Set: {{"keys": [1 to {_MAX_JWKS_KEYS} public keys]}}')
        ]
    errors = []
    for index, key in enumerate(keys):
        pointer = f"/jwks/keys/{index}"
        if not isinstance(key, dict):
            errors.append(FieldError(pointer=pointer, detail="a JWK is a JSON object"))
        elif _PRIVATE_MEMBERS & set(key):
            errors.append(
                FieldError(
                    pointer=pointer,
                    detail="private or symmetric key material is refused: register the public key only "
                    "(and replace a private key that was sent anywhere)",
                )
            )
        elif key.get("kty") not in ("RSA", "EC"):
            errors.append(FieldError(pointer=pointer, detail="an RSA or EC public key (RS256, PS256, ES256)"))
        elif key.get("kty") == "RSA" and _rsa_bits(key) < _MIN_RSA_BITS:
            errors.append(FieldError(pointer=pointer, detail=f"an RSA key of at least {_MIN_RSA_BITS} bits"))
    if errors:
        return None, errors
    try:
        public = KeySet.import_key_set({"keys": keys})
    except (JoseError, ValueError, TypeError, KeyError) as error:
        return None, [FieldError(pointer="/jwks", detail=f"not a valid JWK Set: {type(error).__name__}")]
    if any(key.is_private for key in public.keys):
        return None, [FieldError(pointer="/jwks", detail="private key material is refused")]
    return dict(public.as_dict(private=False)), []


def _rsa_bits(key: dict[str, Any]) -> int:
    modulus = key.get("n")
    if not isinstance(modulus, str):
        return 0
    try:
        return int.from_bytes(
            base64.urlsafe_b64decode(modulus + "=" * (-len(modulus) % 4)), "big"
        ).bit_length()
    except (binascii.Error, ValueError):
        return 0


def _grant_problems(data: ClientCreate, grants: list[str]) -> list[FieldError]:
    errors = []
    public = data.token_endpoint_auth_method == "none"
    if public and "client_credentials" in grants:
        errors.append(
            FieldError(pointer="/grant_types", detail="client_credentials needs a confidential client")
        )
    if "refresh_token" in grants and "authorization_code" not in grants:
        errors.append(
            FieldError(pointer="/grant_types", detail="refresh_token comes with authorization_code")
        )
    if public and "authorization_code" not in grants:
        errors.append(
            FieldError(pointer="/grant_types", detail="a public client signs people in: authorization_code")
        )
    for index, scope in enumerate(data.scopes):
        if scope not in SCOPES:
            errors.append(FieldError(pointer=f"/scopes/{index}", detail=f"one of {', '.join(SCOPES)}"))
    return errors


def _uri_problems(data: ClientCreate, grants: list[str]) -> list[FieldError]:
    errors = []
    if "authorization_code" in grants and not data.redirect_uris:
        errors.append(FieldError(pointer="/redirect_uris", detail="at least one redirect URI"))
    for field in ("redirect_uris", "post_logout_redirect_uris"):
        for index, uri in enumerate(getattr(data, field)):
            problem = redirect_uri_problem(uri)
            if problem:
                errors.append(FieldError(pointer=f"/{field}/{index}", detail=problem))
    if data.allow_loopback_redirects and not any(_is_loopback(uri) for uri in data.redirect_uris):
        errors.append(
            FieldError(
                pointer="/allow_loopback_redirects",
                detail="needs a loopback redirect URI (http://127.0.0.1/...) whose port may vary",
            )
        )
    return errors


def _client_jwks(data: ClientCreate) -> tuple[dict[str, Any] | None, list[FieldError]]:
    if data.token_endpoint_auth_method != "private_key_jwt":
        if data.jwks is not None:
            return None, [FieldError(pointer="/jwks", detail="only private_key_jwt clients register keys")]
        return None, []
    if data.jwks is None:
        return None, [FieldError(pointer="/jwks", detail="private_key_jwt needs the client's public keys")]
    return _jwks_problems(data.jwks)


def _client_row(data: ClientCreate) -> tuple[store.ClientRow, str | None]:
    """The client to store and its new secret (None without one), or every field error at once."""
    method = data.token_endpoint_auth_method
    grants: list[str] = list(dict.fromkeys(data.grant_types))
    jwks, jwks_errors = _client_jwks(data)
    errors = [*_grant_problems(data, grants), *_uri_problems(data, grants), *jwks_errors]
    if errors:
        raise _invalid(errors)
    secret = secrets.token_urlsafe(32) if method in _SECRET_METHODS else None
    row = store.ClientRow(
        client_id=data.client_id,
        name=data.name,
        kind="public" if method == "none" else "confidential",
        secret_hash=secret_digest(secret) if secret else None,
        jwks=jwks,
        token_endpoint_auth_method=method,
        grant_types=grants,
        redirect_uris=list(dict.fromkeys(data.redirect_uris)),
        allow_loopback_redirects=data.allow_loopback_redirects,
        post_logout_redirect_uris=list(dict.fromkeys(data.post_logout_redirect_uris)),
        scopes=list(dict.fromkeys(data.scopes)),
        disabled_at=None,
    )
    return row, secret


async def _client(conn: Connection, client_id: str) -> store.ClientAdminRow:
    row = await store.client_admin(conn, client_id)
    if row is None:
        raise NotFound(f"There is no client {client_id}.")
    return row


class ClientAdminController(Controller):
    """OpenID Connect clients: the apps and systems that sign people in or call as themselves."""

    path = f"{PREFIX}/clients"
    tags = ["identity admin"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_role("admin"), require_enabled_account]  # noqa: RUF012 - litestar's declared type
    dependencies = {"actor": Provide(provide_actor, sync_to_thread=False)}  # noqa: RUF012 - litestar's declared type

    @get("/", operation_id="identity_admin_list_clients", summary="Clients by client_id")
    async def list_clients(self, conn: Connection, cursor: Cursor = None, limit: Limit = 50) -> ClientPage:
        rows = await store.list_clients(conn, after_id=decode_cursor(cursor, str), limit=limit + 1)
        items, next_cursor = page(rows, limit, lambda row: row.client_id)
        return ClientPage(items=[_client_reply(row) for row in items], next_cursor=next_cursor)

    @get(
        "/{client_id:str}", operation_id="identity_admin_get_client", summary="One client (never its secret)"
    )
    async def get_client(self, conn: Connection, client_id: FromPath[str]) -> ClientReply:
        return _client_reply(await _client(conn, client_id))

    @post(
        "/",
        operation_id="identity_admin_create_client",
        summary="Register a client; a generated secret is in the reply, this once",
        status_code=201,
    )
    async def create_client(
        self, conn: Connection, actor: NamedDependency[Actor], data: JSONBody[ClientCreate]
    ) -> Response[ClientCreated]:
        row, secret = _client_row(data)
        if not await store.insert_client(conn, row):
            raise Conflict(f"There is already a client {data.client_id}.")
        await actor.audit(
            conn,
            action="create_client",
            subject=f"client:{row.client_id}",
            detail={
                "kind": row.kind,
                "auth_method": row.token_endpoint_auth_method,
                "grant_types": row.grant_types,
            },
        )
        created = await _client(conn, row.client_id)
        return Response(
            ClientCreated(**msgspec.structs.asdict(created), client_secret=secret),
            status_code=201,
            headers={"Location": f"{PREFIX}/clients/{row.client_id}", "Cache-Control": "no-store"},
        )

    @post(
        "/{client_id:str}/secret",
        operation_id="identity_admin_rotate_client_secret",
        summary="Replace a client's secret; the new one is in the reply, this once, and the old one stops working",
        status_code=200,
    )
    async def rotate_secret(
        self, conn: Connection, actor: NamedDependency[Actor], client_id: FromPath[str]
    ) -> Response[ClientSecretReply]:
        client = await _client(conn, client_id)
        if client.token_endpoint_auth_method not in _SECRET_METHODS:
            raise RuleViolation(
                f"The client authenticates with {client.token_endpoint_auth_method}: it has no secret."
            )
        secret = secrets.token_urlsafe(32)
        await store.set_client_secret(conn, client_id, secret_digest(secret))
        await actor.audit(
            conn,
            action="rotate_client_secret",
            subject=f"client:{client_id}",
        )
        rotated = await _client(conn, client_id)
        return Response(
            ClientSecretReply(
                client_id=client_id, client_secret=secret, secret_rotated_at=rotated.secret_rotated_at
            ),
            headers={"Cache-Control": "no-store"},
        )

    @post(
        "/{client_id:str}/disable",
        operation_id="identity_admin_disable_client",
        summary="Disable a client: no new tokens, its refresh tokens revoked",
        status_code=200,
    )
    async def disable_client(
        self, conn: Connection, actor: NamedDependency[Actor], client_id: FromPath[str]
    ) -> ClientReply:
        client = await _client(conn, client_id)
        if client.disabled_at is None:
            await store.set_client_disabled(conn, client_id, disabled=True)
            await store.revoke_client_tokens(conn, client_id)
            await actor.audit(
                conn,
                action="disable_client",
                subject=f"client:{client_id}",
            )
        return _client_reply(await _client(conn, client_id))

    @post(
        "/{client_id:str}/enable",
        operation_id="identity_admin_enable_client",
        summary="Enable a disabled client again",
        status_code=200,
    )
    async def enable_client(
        self, conn: Connection, actor: NamedDependency[Actor], client_id: FromPath[str]
    ) -> ClientReply:
        client = await _client(conn, client_id)
        if client.disabled_at is not None:
            await store.set_client_disabled(conn, client_id, disabled=False)
            await actor.audit(
                conn,
                action="enable_client",
                subject=f"client:{client_id}",
            )
        return _client_reply(await _client(conn, client_id))


# --- signing keys --------------------------------------------------------------------------------


class SigningKeyReply(msgspec.Struct, frozen=True):
    kid: str
    alg: str
    created_at: datetime
    retired_at: datetime | None
    unpublish_after: datetime | None
    active: bool
    published: bool


class SigningKeyPage(msgspec.Struct, frozen=True):
    items: list[SigningKeyReply]
    next_cursor: str | None


def _key_reply(row: store.SigningKeyRow) -> SigningKeyReply:
    return SigningKeyReply(
        kid=row.kid,
        alg=row.alg,
        created_at=row.created_at,
        retired_at=row.retired_at,
        unpublish_after=row.unpublish_after,
        active=row.retired_at is None,
        published=row.published,
    )


def token_grace(settings: Settings) -> timedelta:
    """How long a retired key stays published: until every token it signed has expired (the same
    rule as `onewindow keys rotate`, which identity may not import)."""
    return timedelta(seconds=max(settings.access_token_seconds, settings.id_token_seconds) + 60)


class SigningKeyAdminController(Controller):
    """The keys OneWindow signs tokens with."""

    path = f"{PREFIX}/signing-keys"
    tags = ["identity admin"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_role("admin"), require_enabled_account]  # noqa: RUF012 - litestar's declared type
    dependencies = {"actor": Provide(provide_actor, sync_to_thread=False)}  # noqa: RUF012 - litestar's declared type

    @get("/", operation_id="identity_admin_list_signing_keys", summary="Signing keys, newest first")
    async def list_keys(self, conn: Connection, cursor: Cursor = None, limit: Limit = 50) -> SigningKeyPage:
        rows = await store.list_signing_keys(
            conn, before=decode_cursor(cursor, tuple[datetime, str]), limit=limit + 1
        )
        items, next_cursor = page(rows, limit, lambda row: (row.created_at, row.kid))
        return SigningKeyPage(items=[_key_reply(row) for row in items], next_cursor=next_cursor)

    @post(
        "/rotate",
        operation_id="identity_admin_rotate_signing_key",
        summary="Make a new signing key; the old one stays published until its tokens have expired",
        status_code=201,
    )
    async def rotate(
        self,
        conn: Connection,
        state: State,
        settings: NamedDependency[Settings],
        actor: NamedDependency[Actor],
    ) -> Response[SigningKeyReply]:
        kid = await create_key(conn, settings.master_secret, grace=token_grace(settings))
        await actor.audit(
            conn,
            action="rotate_signing_key",
            subject=f"key:{kid}",
        )
        row = await store.signing_key(conn, kid)
        if row is None:  # never: made just now, in this transaction
            raise NotFound("The new key vanished.")
        runtime: IdentityRuntime = state["identity"]
        # This process signs with the new key from the next request on: reloaded after the reply,
        # which is after the commit. Other processes pick it up when they meet its kid.
        return Response(_key_reply(row), status_code=201, background=BackgroundTask(runtime.keys.load))


# --- audit log -----------------------------------------------------------------------------------


class AuditEntry(msgspec.Struct, frozen=True):
    id: int
    at: datetime
    actor_id: UUID | None
    client_id: str | None
    action: str
    subject: str | None
    outcome: str
    detail: dict[str, Any]


class AuditPage(msgspec.Struct, frozen=True):
    items: list[AuditEntry]
    next_cursor: str | None


class AuditLogController(Controller):
    """Who did what, when: administrative changes and sign-in attempts, newest first."""

    path = f"{PREFIX}/audit"
    tags = ["identity admin"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_role("admin"), require_enabled_account]  # noqa: RUF012 - litestar's declared type

    @get("/", operation_id="identity_admin_list_audit", summary="The audit log, newest first, filtered")
    async def list_audit(
        self,
        *,
        conn: Connection,
        subject: Annotated[str | None, QueryParameter(max_length=200)] = None,
        actor: FromQuery[UUID | None] = None,
        action: Annotated[str | None, QueryParameter(max_length=64)] = None,
        since: FromQuery[datetime | None] = None,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> AuditPage:
        rows = await store.list_audit(
            conn,
            subject=subject,
            actor_id=actor,
            action=action,
            since=since,
            before_id=decode_cursor(cursor, int),
            limit=limit + 1,
        )
        items, next_cursor = page(rows, limit, lambda row: row.id)
        return AuditPage(
            items=[AuditEntry(**msgspec.structs.asdict(row)) for row in items], next_cursor=next_cursor
        )


# The composition root registers these (onewindow.app.route_handlers).
ADMIN_CONTROLLERS: Final = (
    UnitAdminController,
    PersonAdminController,
    ClientAdminController,
    SigningKeyAdminController,
    AuditLogController,
)
