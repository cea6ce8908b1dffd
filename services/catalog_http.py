"""The service catalog over HTTP: public search and reading (no sign-in: people look up what
they can apply for before they have an account), and the administrators' edits, each a new
version with who, when and why."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.params import Body, FromPath, HeaderParameter, PathParameter, QueryParameter
from litestar.types import ControllerRouterHandler

from identity.api import authenticate, current_principal, require_role, unit_name
from onewindow.db import Connection
from onewindow.errors import FieldError, Forbidden, NotFound, Unauthorized, ValidationFailed
from onewindow.web import check_if_match, decode_cursor, etag, page
from services import catalog, catalog_store
from services.openapi import example, reply
from workflows import api as workflows

__all__ = ["CATALOG_CONTROLLERS"]

PREFIX: Final = "/api/v1/catalog"
CHANGE_NOTE_HEADER: Final = "X-Change-Note"

# A version number in a path: what PostgreSQL's integer holds (a larger one is a 400, never a 500).
VersionNumber = Annotated[int, PathParameter(ge=1, le=2_147_483_647, description="A version number.")]
Limit = Annotated[int, QueryParameter(ge=1, le=100, description="Most entries on one page (at most 100).")]
Cursor = Annotated[
    str | None, QueryParameter(max_length=512, description="`next_cursor` of the previous page.")
]
IncludeInactive = Annotated[
    bool,
    QueryParameter(description="Also list withdrawn (inactive) entries: administrators only."),
]
IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-Match",
        required=False,
        description="The ETag of the version you edited: required to change an existing entry; 412 if it changed.",
    ),
]
ChangeNote = Annotated[
    str | None,
    HeaderParameter(
        name=CHANGE_NOTE_HEADER,
        required=False,
        max_length=500,
        description="Why this change (kept with the version); the body's `note` does the same.",
    ),
]
Search = Annotated[
    str | None,
    QueryParameter(
        min_length=1, max_length=100, description="Words in the name, description or keywords (zh or en)."
    ),
]

# --- replies -------------------------------------------------------------------------------------


class Department(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    name: catalog.Text | None


class ItemSummary(msgspec.Struct, frozen=True, kw_only=True):
    """An item as a search lists it."""

    code: str
    version: int
    name: catalog.Text
    description: catalog.Text | None
    department: Department
    promised_days: int
    legal_days: int
    fee_minor: int
    currency: str
    min_assurance: str
    channels: tuple[str, ...]
    result: str
    life_events: tuple[str, ...]
    active: bool


class ItemPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[ItemSummary]
    next_cursor: str | None


class FormDocument(msgspec.Struct, frozen=True, kw_only=True):
    """One document the form may ask for: `when` is the JSON Logic condition over
    `{"form": ...}` under which it is asked (null: always); merged over the items that ask it."""

    code: str
    name: catalog.Text
    when: Any | None
    media_types: tuple[str, ...]
    max_bytes: int | None
    later_allowed: bool
    optional: bool
    reusable_certificate: str | None
    items: tuple[str, ...]


class ItemDetail(msgspec.Struct, frozen=True, kw_only=True):
    """What the portal needs to show an item and render its application form."""

    item: catalog.Item
    department: Department
    form_schema: dict[str, Any]
    checklist: list[FormDocument]


class BundleSummary(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    version: int
    name: catalog.Text
    description: catalog.Text | None
    items: tuple[str, ...]
    life_events: tuple[str, ...]
    active: bool


class BundlePage(msgspec.Struct, frozen=True, kw_only=True):
    bundles: list[BundleSummary]
    next_cursor: str | None


class BundleDetail(msgspec.Struct, frozen=True, kw_only=True):
    """A bundle with its items (current versions), the one form and the one document list."""

    bundle: catalog.Bundle
    items: list[ItemSummary]
    form_schema: dict[str, Any]
    checklist: list[FormDocument]
    promised_days: int
    fee_minor: int
    channels: tuple[str, ...]
    min_assurance: str


class VersionSummary(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One published version; who published it is shown to administrators only."""

    version: int
    active: bool
    changed_at: datetime
    note: str | None
    changed_by: str | None = None


class ItemVersion(msgspec.Struct, frozen=True, kw_only=True):
    item: catalog.Item
    published: VersionSummary


class BundleVersion(msgspec.Struct, frozen=True, kw_only=True):
    bundle: catalog.Bundle
    published: VersionSummary


class FieldChange(msgspec.Struct, frozen=True, kw_only=True):
    field: str
    old: Any
    new: Any


class Comparison(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    old_version: int
    new_version: int
    changes: list[FieldChange]


class LifeEvent(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    items: int
    bundles: int


class ItemValidation(msgspec.Struct, frozen=True, kw_only=True):
    valid: bool
    item: catalog.Item
    form_schema: dict[str, Any]


class BundleValidation(msgspec.Struct, frozen=True, kw_only=True):
    valid: bool
    bundle: catalog.Bundle
    form_schema: dict[str, Any]


# --- requests ------------------------------------------------------------------------------------


class ItemBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An item as an administrator writes it (the code is in the path, the version is given)."""

    department: str
    name: catalog.Text
    description: catalog.Text | None = None
    legal_days: int
    promised_days: int
    form_schema: dict[str, Any]
    checklist: tuple[catalog.ChecklistEntry, ...] = ()
    fee_minor: int = 0
    currency: str = "CNY"
    min_assurance: catalog.Assurance = "substantial"
    channels: tuple[catalog.Channel, ...] = catalog.CHANNELS
    workflow: str = "approval-review"
    result: Literal["certificate", "decision"] = "decision"
    valid_days: int | None = None
    life_events: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    active: bool = True
    note: Annotated[str, msgspec.Meta(max_length=500)] | None = None

    def item(self, code: str) -> catalog.Item:
        fields = msgspec.structs.asdict(self)
        fields.pop("note")
        fields.pop("code", None)  # a draft's
        return catalog.Item(code=code, **fields)


class ItemDraft(ItemBody, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An item to check without publishing it."""

    code: str


class BundleBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: catalog.Text
    description: catalog.Text | None = None
    items: tuple[str, ...]
    life_events: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    active: bool = True
    note: Annotated[str, msgspec.Meta(max_length=500)] | None = None

    def bundle(self, code: str) -> catalog.Bundle:
        fields = msgspec.structs.asdict(self)
        fields.pop("note")
        fields.pop("code", None)  # a draft's
        return catalog.Bundle(code=code, **fields)


class BundleDraft(BundleBody, frozen=True, kw_only=True, forbid_unknown_fields=True):
    code: str


# --- examples ------------------------------------------------------------------------------------

_FORM_EXAMPLE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "business_name": {"type": "string", "title": "经营者名称 / Business name", "minLength": 2},
        "premises_owned": {"type": "boolean", "title": "场所是否自有 / Do you own the premises?"},
    },
    "required": ["business_name", "premises_owned"],
}
_ITEM_BODY_EXAMPLE: dict[str, Any] = {
    "department": "market",
    "name": {"zh": "营业执照（设立登记）", "en": "Business licence (registration)"},
    "description": {"zh": "个体工商户、企业设立登记。", "en": "Registering a sole trader or company."},
    "legal_days": 15,
    "promised_days": 3,
    "form_schema": _FORM_EXAMPLE,
    "checklist": [
        {"code": "id_card", "name": {"zh": "经营者身份证", "en": "Identity card"}, "max_bytes": 5242880},
        {
            "code": "lease_contract",
            "name": {"zh": "场所租赁合同", "en": "Lease contract"},
            "when": {"!": {"var": "form.premises_owned"}},
            "later_allowed": True,
        },
    ],
    "fee_minor": 0,
    "currency": "CNY",
    "min_assurance": "substantial",
    "channels": ["online", "app", "counter"],
    "workflow": "approval-review",
    "result": "certificate",
    "valid_days": None,
    "life_events": ["open-business"],
    "keywords": ["营业执照", "company"],
    "active": True,
    "note": "Lease contract may now be supplied later",
}
_ITEM_EXAMPLE: dict[str, Any] = {
    "code": "business-licence",
    "version": 2,
    **{key: value for key, value in _ITEM_BODY_EXAMPLE.items() if key != "note"},
}
_CHECKLIST_EXAMPLE = [
    {
        "code": "id_card",
        "name": {"zh": "经营者身份证", "en": "Identity card"},
        "when": None,
        "media_types": ["application/pdf", "image/jpeg", "image/png"],
        "max_bytes": 5242880,
        "later_allowed": False,
        "optional": False,
        "reusable_certificate": None,
        "items": ["business-licence"],
    }
]
_DEPARTMENT_EXAMPLE = {
    "code": "market",
    "name": {"zh": "市场监督管理局", "en": "Market Regulation Department"},
}
_SUMMARY_EXAMPLE = {
    "code": "business-licence",
    "version": 2,
    "name": _ITEM_BODY_EXAMPLE["name"],
    "description": _ITEM_BODY_EXAMPLE["description"],
    "department": _DEPARTMENT_EXAMPLE,
    "promised_days": 3,
    "legal_days": 15,
    "fee_minor": 0,
    "currency": "CNY",
    "min_assurance": "substantial",
    "channels": ["online", "app", "counter"],
    "result": "certificate",
    "life_events": ["open-business"],
    "active": True,
}
_BUNDLE_BODY_EXAMPLE: dict[str, Any] = {
    "name": {"zh": "我要开餐馆", "en": "Open a restaurant"},
    "description": {"zh": "一次申请、一套材料。", "en": "One application, one set of documents."},
    "items": [
        "business-licence",
        "food-operation-licence",
        "fire-safety-inspection",
        "outdoor-signage-permit",
    ],
    "life_events": ["open-restaurant"],
    "keywords": ["开餐馆", "restaurant"],
    "active": True,
    "note": "first version",
}
_BUNDLE_EXAMPLE = {
    "code": "open-restaurant",
    "version": 1,
    **{key: value for key, value in _BUNDLE_BODY_EXAMPLE.items() if key != "note"},
}
_BUNDLE_DETAIL_EXAMPLE = {
    "bundle": _BUNDLE_EXAMPLE,
    "items": [_SUMMARY_EXAMPLE],
    "form_schema": _FORM_EXAMPLE,
    "checklist": _CHECKLIST_EXAMPLE,
    "promised_days": 10,
    "fee_minor": 0,
    "channels": ["online", "app", "counter"],
    "min_assurance": "substantial",
}


# --- shaping -------------------------------------------------------------------------------------


class _Departments:
    """Department names looked up once per request."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.known: dict[str, Department] = {}

    async def get(self, code: str) -> Department:
        if code not in self.known:
            zh = await unit_name(self.conn, code, language="zh")
            en = await unit_name(self.conn, code, language="en")
            name = catalog.Text(zh=zh, en=en) if zh is not None and en is not None else None
            self.known[code] = Department(code=code, name=name)
        return self.known[code]


async def _summary(item: catalog.Item, departments: _Departments) -> ItemSummary:
    return ItemSummary(
        code=item.code,
        version=item.version,
        name=item.name,
        description=item.description,
        department=await departments.get(item.department),
        promised_days=item.promised_days,
        legal_days=item.legal_days,
        fee_minor=item.fee_minor,
        currency=item.currency,
        min_assurance=item.min_assurance,
        channels=item.channels,
        result=item.result,
        life_events=item.life_events,
        active=item.active,
    )


def form_documents(items: list[catalog.Item]) -> list[FormDocument]:
    """Every document the items may ask for, merged by code as `catalog.checklist` merges them
    for a given form; `when` is asked when any asking item's condition holds."""
    requirements = {
        requirement.code: requirement
        for requirement in catalog.checklist(
            [
                msgspec.structs.replace(
                    each, checklist=tuple(msgspec.structs.replace(e, when=None) for e in each.checklist)
                )
                for each in items
            ],
            {},
        )
    }
    conditions: dict[str, list[Any]] = {}
    for each in items:
        for entry in each.checklist:
            conditions.setdefault(entry.code, []).append(entry.when)
    documents = []
    for code, requirement in requirements.items():
        whens = conditions[code]
        distinct = [w for position, w in enumerate(whens) if w not in whens[:position]]
        when = (
            None if any(w is None for w in whens) else distinct[0] if len(distinct) == 1 else {"or": distinct}
        )
        documents.append(FormDocument(when=when, **msgspec.structs.asdict(requirement)))
    return documents


async def _detail(conn: Connection, item: catalog.Item) -> ItemDetail:
    return ItemDetail(
        item=item,
        department=await _Departments(conn).get(item.department),
        form_schema=catalog.form_schema([item]),
        checklist=form_documents([item]),
    )


async def _bundle_detail(conn: Connection, bundle: catalog.Bundle) -> BundleDetail:
    found = await catalog_store.current_items(conn, bundle.items)
    members = [found[code] for code in bundle.items if code in found]
    departments = _Departments(conn)
    levels = list(catalog.ASSURANCE_LEVELS)
    return BundleDetail(
        bundle=bundle,
        items=[await _summary(member, departments) for member in members],
        form_schema=catalog.form_schema(members),
        checklist=form_documents(members),
        promised_days=max((m.promised_days for m in members), default=0),
        fee_minor=sum(m.fee_minor for m in members),
        channels=tuple(c for c in catalog.CHANNELS if all(c in m.channels for m in members)),
        min_assurance=max((m.min_assurance for m in members), key=levels.index, default="low"),
    )


async def _may_see_inactive(request: Request[Any, Any, Any], include_inactive: bool) -> bool:
    if not include_inactive:
        return False
    principal = await authenticate(request)
    if principal is None:
        raise Unauthorized(
            "Sign in as an administrator to list inactive entries.", headers={"WWW-Authenticate": "Bearer"}
        )
    if not principal.has_role("admin"):
        raise Forbidden("Only administrators see inactive catalog entries.")
    return True


async def _is_admin(request: Request[Any, Any, Any]) -> bool:
    principal = await authenticate(request)
    return principal is not None and principal.has_role("admin")


def _version_summary(row: catalog_store.VersionRow, *, admin: bool) -> VersionSummary:
    return VersionSummary(
        version=row.version,
        active=row.active,
        changed_at=row.changed_at,
        note=row.note,
        changed_by=row.changed_by if admin else None,
    )


def _changes(old: msgspec.Struct, new: msgspec.Struct) -> list[FieldChange]:
    before = msgspec.to_builtins(old)
    after = msgspec.to_builtins(new)
    return [
        FieldChange(field=name, old=before.get(name), new=after.get(name))
        for name in after
        if name != "version" and before.get(name) != after.get(name)
    ]


def _note(header: str | None, body: str | None) -> str | None:
    for candidate in (body, header):
        if candidate is not None and candidate.strip():
            return candidate.strip()
    return None


def _code_problem(code: str) -> None:
    if not catalog.CODE_PATTERN.match(code):
        raise ValidationFailed(
            "A catalog code is lower-case letters, digits, '-' and '_' (at most 63).",
            errors=[FieldError(pointer="", parameter="path.code", detail="not a catalog code")],
        )


# --- routes --------------------------------------------------------------------------------------


class CatalogController(Controller):
    """Public reads of the catalog, and the administrators' edits (guarded one by one: the
    reads and the edits share paths)."""

    path = PREFIX
    tags = ["services: catalog"]  # noqa: RUF012 - litestar's declared type

    @get(
        "/items",
        operation_id="searchCatalogItems",
        summary="Search the approval items",
        description="Active items matching every filter given, by code: `q` looks in the names (zh and en),"
        " descriptions and keywords; `department` is a unit code; `channel` one of online, app, counter."
        " Public. Administrators may add `include_inactive=true`.",
        responses={
            200: reply(
                ItemPage,
                "The reply",
                example("A page of items", {"items": [_SUMMARY_EXAMPLE], "next_cursor": None}),
                generate_examples=True,
            )
        },
    )
    async def search_items(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        q: Search = None,
        department: Annotated[
            str | None, QueryParameter(max_length=63, description="The owning department's unit code.")
        ] = None,
        life_event: Annotated[
            str | None, QueryParameter(max_length=63, description="A life event, e.g. open-restaurant.")
        ] = None,
        channel: Annotated[
            Literal["online", "app", "counter"] | None,
            QueryParameter(description="Offered through this channel."),
        ] = None,
        include_inactive: IncludeInactive = False,
        cursor: Cursor = None,
        limit: Limit = 20,
    ) -> ItemPage:
        inactive = await _may_see_inactive(request, include_inactive)
        after = decode_cursor(cursor, str)
        found = await catalog_store.search_items(
            conn,
            text=q.strip() if q and q.strip() else None,
            department=department,
            life_event=life_event,
            channel=channel,
            include_inactive=inactive,
            after=after,
            limit=limit + 1,
        )
        departments = _Departments(conn)
        shown, next_cursor = page(found, limit, lambda item: item.code)
        return ItemPage(items=[await _summary(item, departments) for item in shown], next_cursor=next_cursor)

    @get(
        "/items/{code:str}",
        operation_id="getCatalogItem",
        summary="One approval item, its form and its document list",
        description="The current version, the form as one JSON Schema (what the portal renders) and every"
        " document the item may ask for with the condition under which it does. Public. `ETag` is the"
        " version (send it as If-Match to edit).",
        responses={
            200: reply(
                ItemDetail,
                "The reply",
                example(
                    "An item",
                    {
                        "item": _ITEM_EXAMPLE,
                        "department": _DEPARTMENT_EXAMPLE,
                        "form_schema": _FORM_EXAMPLE,
                        "checklist": _CHECKLIST_EXAMPLE,
                    },
                ),
                generate_examples=True,
            )
        },
    )
    async def get_item(self, conn: Connection, code: FromPath[str]) -> Response[ItemDetail]:
        item = await catalog_store.item(conn, code)
        if item is None:
            raise NotFound(f"No item {code!r} in the catalog.")
        return Response(await _detail(conn, item), headers={"ETag": etag(item.version)})

    @get(
        "/items/{code:str}/versions",
        operation_id="listCatalogItemVersions",
        summary="Every published version of an item",
        description="Newest first, with when and why; administrators also see who published each. Public.",
        responses={
            200: reply(
                list[VersionSummary],
                "The reply",
                example(
                    "Versions",
                    [
                        {
                            "version": 2,
                            "active": True,
                            "changed_at": "2026-03-02T09:00:00+08:00",
                            "note": "fee",
                        }
                    ],
                ),
                generate_examples=True,
            )
        },
    )
    async def item_versions(
        self, request: Request[Any, Any, Any], conn: Connection, code: FromPath[str]
    ) -> list[VersionSummary]:
        rows = await catalog_store.item_versions(conn, code)
        if not rows:
            raise NotFound(f"No item {code!r} in the catalog.")
        admin = await _is_admin(request)
        return [_version_summary(row, admin=admin) for row in rows]

    @get(
        "/items/{code:str}/versions/{version:int}",
        operation_id="getCatalogItemVersion",
        summary="An item as published in one version",
        description="What an application made under that version is judged by. Public.",
        responses={
            200: reply(
                ItemVersion,
                "The reply",
                example(
                    "Version 2",
                    {
                        "item": _ITEM_EXAMPLE,
                        "published": {
                            "version": 2,
                            "active": True,
                            "changed_at": "2026-03-02T09:00:00+08:00",
                        },
                    },
                ),
                generate_examples=True,
            )
        },
    )
    async def item_version(
        self, request: Request[Any, Any, Any], conn: Connection, code: FromPath[str], version: VersionNumber
    ) -> ItemVersion:
        item = await catalog_store.item(conn, code, version)
        row = await catalog_store.item_version_row(conn, code, version)
        if item is None or row is None:
            raise NotFound(f"No version {version} of the item {code!r}.")
        return ItemVersion(item=item, published=_version_summary(row, admin=await _is_admin(request)))

    @get(
        "/items/{code:str}/versions/{old:int}/compare/{new:int}",
        operation_id="compareCatalogItemVersions",
        summary="What changed between two versions of an item",
        description="Each top-level field that differs, with its old and new value. Public.",
        responses={
            200: reply(
                Comparison,
                "The reply",
                example(
                    "The fee changed",
                    {
                        "code": "road-excavation-permit",
                        "old_version": 1,
                        "new_version": 2,
                        "changes": [{"field": "fee_minor", "old": 100000, "new": 120000}],
                    },
                ),
                generate_examples=True,
            )
        },
    )
    async def compare_items(
        self, conn: Connection, code: FromPath[str], old: VersionNumber, new: VersionNumber
    ) -> Comparison:
        before = await catalog_store.item(conn, code, old)
        after = await catalog_store.item(conn, code, new)
        if before is None or after is None:
            missing = old if before is None else new
            raise NotFound(f"No version {missing} of the item {code!r}.")
        return Comparison(code=code, old_version=old, new_version=new, changes=_changes(before, after))

    @get(
        "/bundles",
        operation_id="searchCatalogBundles",
        summary='Search the bundles ("one thing")',
        description="Active bundles by code, `q` in names, descriptions and keywords. Public; administrators"
        " may add `include_inactive=true`.",
        responses={
            200: reply(
                BundlePage,
                "The reply",
                example(
                    "A page of bundles",
                    {
                        "bundles": [
                            {
                                key: _BUNDLE_EXAMPLE[key]
                                for key in (
                                    "code",
                                    "version",
                                    "name",
                                    "description",
                                    "items",
                                    "life_events",
                                    "active",
                                )
                            }
                        ],
                        "next_cursor": None,
                    },
                ),
                generate_examples=True,
            )
        },
    )
    async def search_bundles(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        q: Search = None,
        life_event: Annotated[
            str | None, QueryParameter(max_length=63, description="A life event, e.g. open-restaurant.")
        ] = None,
        include_inactive: IncludeInactive = False,
        cursor: Cursor = None,
        limit: Limit = 20,
    ) -> BundlePage:
        inactive = await _may_see_inactive(request, include_inactive)
        found = await catalog_store.search_bundles(
            conn,
            text=q.strip() if q and q.strip() else None,
            life_event=life_event,
            include_inactive=inactive,
            after=decode_cursor(cursor, str),
            limit=limit + 1,
        )
        shown, next_cursor = page(found, limit, lambda bundle: bundle.code)
        return BundlePage(
            bundles=[
                BundleSummary(
                    code=b.code,
                    version=b.version,
                    name=b.name,
                    description=b.description,
                    items=b.items,
                    life_events=b.life_events,
                    active=b.active,
                )
                for b in shown
            ],
            next_cursor=next_cursor,
        )

    @get(
        "/bundles/{code:str}",
        operation_id="getCatalogBundle",
        summary="A bundle, its items, its one form and its one document list",
        description="The items (current versions), the union of their forms (each field once), every"
        " document they may ask for merged by code, the longest promised time, the total fee, the"
        " channels all items share and the highest assurance any needs. Public.",
        responses={
            200: reply(
                BundleDetail,
                "The reply",
                example(
                    "A bundle",
                    _BUNDLE_DETAIL_EXAMPLE,
                ),
                generate_examples=True,
            )
        },
    )
    async def get_bundle(self, conn: Connection, code: FromPath[str]) -> Response[BundleDetail]:
        bundle = await catalog_store.bundle(conn, code)
        if bundle is None:
            raise NotFound(f"No bundle {code!r} in the catalog.")
        return Response(await _bundle_detail(conn, bundle), headers={"ETag": etag(bundle.version)})

    @get(
        "/bundles/{code:str}/versions",
        operation_id="listCatalogBundleVersions",
        summary="Every published version of a bundle",
        description="Newest first; administrators also see who published each. Public.",
        responses={
            200: reply(
                list[VersionSummary],
                "The reply",
                example(
                    "Versions",
                    [{"version": 1, "active": True, "changed_at": "2026-03-02T09:00:00+08:00", "note": None}],
                ),
                generate_examples=True,
            )
        },
    )
    async def bundle_versions(
        self, request: Request[Any, Any, Any], conn: Connection, code: FromPath[str]
    ) -> list[VersionSummary]:
        rows = await catalog_store.bundle_versions(conn, code)
        if not rows:
            raise NotFound(f"No bundle {code!r} in the catalog.")
        admin = await _is_admin(request)
        return [_version_summary(row, admin=admin) for row in rows]

    @get(
        "/bundles/{code:str}/versions/{version:int}",
        operation_id="getCatalogBundleVersion",
        summary="A bundle as published in one version",
        description="Public.",
        responses={
            200: reply(
                BundleVersion,
                "The reply",
                example(
                    "Version 1",
                    {
                        "bundle": _BUNDLE_EXAMPLE,
                        "published": {
                            "version": 1,
                            "active": True,
                            "changed_at": "2026-03-02T09:00:00+08:00",
                        },
                    },
                ),
                generate_examples=True,
            )
        },
    )
    async def bundle_version(
        self, request: Request[Any, Any, Any], conn: Connection, code: FromPath[str], version: VersionNumber
    ) -> BundleVersion:
        bundle = await catalog_store.bundle(conn, code, version)
        rows = [row for row in await catalog_store.bundle_versions(conn, code) if row.version == version]
        if bundle is None or not rows:
            raise NotFound(f"No version {version} of the bundle {code!r}.")
        return BundleVersion(
            bundle=bundle, published=_version_summary(rows[0], admin=await _is_admin(request))
        )

    @get(
        "/life-events",
        operation_id="listLifeEvents",
        summary="The life events the catalog is organised by",
        description="Each life event named by an active item or bundle, with how many of each. Public.",
        responses={
            200: reply(
                list[LifeEvent],
                "The reply",
                example("Life events", [{"code": "open-restaurant", "items": 5, "bundles": 1}]),
                generate_examples=True,
            )
        },
    )
    async def life_events(self, conn: Connection) -> list[LifeEvent]:
        return [
            LifeEvent(code=code, items=items, bundles=bundles)
            for code, items, bundles in await catalog_store.life_events(conn)
        ]

    # --- administrators' edits: each a new version, with who, when and why; nothing is deleted
    # (withdrawing an item is a version with `active: false`).

    @put(
        "/items/{code:str}",
        operation_id="putCatalogItem",
        middleware=[require_role("admin")],
        summary="Create an item or publish its next version",
        description="A new code: version 1 (201), no If-Match. An existing item: If-Match with its ETag is"
        " required (428 without, 412 when stale); the next version is published (200), or, when nothing"
        " changed, the current one is returned and no version is added. Every problem is listed at once"
        " (400, pointers into the body). Deactivate with `active: false`. Administrators only.",
        responses={
            200: reply(
                ItemDetail,
                "The version published (201 when the item is new)",
                example(
                    "Published",
                    {
                        "item": _ITEM_EXAMPLE,
                        "department": _DEPARTMENT_EXAMPLE,
                        "form_schema": _FORM_EXAMPLE,
                        "checklist": _CHECKLIST_EXAMPLE,
                    },
                ),
                generate_examples=True,
            )
        },
    )
    async def put_item(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        code: FromPath[str],
        data: Annotated[ItemBody, Body(examples=[example("A business licence", _ITEM_BODY_EXAMPLE)])],
        if_match: IfMatch = None,
        change_note: ChangeNote = None,
    ) -> Response[ItemDetail]:
        _code_problem(code)
        current = await catalog_store.item(conn, code)
        if current is not None:
            check_if_match(if_match, current.version, what="item")
        published = await catalog.publish_item(
            conn,
            data.item(code),
            by=current_principal(request).subject,
            now=workflows.now(),
            note=_note(change_note, data.note),
            expected_version=current.version if current is not None else None,
        )
        return Response(
            await _detail(conn, published),
            status_code=201 if current is None else 200,
            headers={"ETag": etag(published.version)},
        )

    @post(
        "/items/validate",
        operation_id="validateCatalogItem",
        middleware=[require_role("admin")],
        summary="Check an item without publishing it",
        description="The same checks as publishing (400 listing every problem); on success the item and the"
        " form as the portal would render it. Administrators only.",
        status_code=200,
        responses={
            200: reply(
                ItemValidation,
                "The reply",
                example("Valid", {"valid": True, "item": _ITEM_EXAMPLE, "form_schema": _FORM_EXAMPLE}),
                generate_examples=True,
            )
        },
    )
    async def validate_item(
        self,
        conn: Connection,
        data: Annotated[
            ItemDraft,
            Body(examples=[example("An item to check", {"code": "business-licence", **_ITEM_BODY_EXAMPLE})]),
        ],
    ) -> ItemValidation:
        item = data.item(data.code)
        problems = await catalog.item_problems(conn, item)
        if problems:
            raise ValidationFailed(f"The item {item.code!r} cannot be published as it is.", errors=problems)
        return ItemValidation(valid=True, item=item, form_schema=catalog.form_schema([item]))

    @put(
        "/bundles/{code:str}",
        operation_id="putCatalogBundle",
        middleware=[require_role("admin")],
        summary="Create a bundle or publish its next version",
        description="As for items: 201 for a new code; If-Match required for an existing one (428/412);"
        " no change, no new version. The items must exist, be active, be at least two and distinct,"
        " share a channel and define their shared form fields the same way. Administrators only.",
        responses={
            200: reply(
                BundleDetail,
                "The version published (201 when the bundle is new)",
                example(
                    "Published",
                    _BUNDLE_DETAIL_EXAMPLE,
                ),
                generate_examples=True,
            )
        },
    )
    async def put_bundle(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        code: FromPath[str],
        data: Annotated[BundleBody, Body(examples=[example("Open a restaurant", _BUNDLE_BODY_EXAMPLE)])],
        if_match: IfMatch = None,
        change_note: ChangeNote = None,
    ) -> Response[BundleDetail]:
        _code_problem(code)
        current = await catalog_store.bundle(conn, code)
        if current is not None:
            check_if_match(if_match, current.version, what="bundle")
        published = await catalog.publish_bundle(
            conn,
            data.bundle(code),
            by=current_principal(request).subject,
            now=workflows.now(),
            note=_note(change_note, data.note),
            expected_version=current.version if current is not None else None,
        )
        return Response(
            await _bundle_detail(conn, published),
            status_code=201 if current is None else 200,
            headers={"ETag": etag(published.version)},
        )

    @post(
        "/bundles/validate",
        operation_id="validateCatalogBundle",
        middleware=[require_role("admin")],
        summary="Check a bundle without publishing it",
        description="The same checks as publishing (400 listing every problem). Administrators only.",
        status_code=200,
        responses={
            200: reply(
                BundleValidation,
                "The reply",
                example("Valid", {"valid": True, "bundle": _BUNDLE_EXAMPLE, "form_schema": _FORM_EXAMPLE}),
                generate_examples=True,
            )
        },
    )
    async def validate_bundle(
        self,
        conn: Connection,
        data: Annotated[
            BundleDraft,
            Body(
                examples=[example("A bundle to check", {"code": "open-restaurant", **_BUNDLE_BODY_EXAMPLE})]
            ),
        ],
    ) -> BundleValidation:
        bundle = data.bundle(data.code)
        problems = await catalog.bundle_problems(conn, bundle)
        if problems:
            raise ValidationFailed(
                f"The bundle {bundle.code!r} cannot be published as it is.", errors=problems
            )
        members = await catalog_store.current_items(conn, bundle.items)
        return BundleValidation(
            valid=True,
            bundle=bundle,
            form_schema=catalog.form_schema([members[code] for code in bundle.items if code in members]),
        )


CATALOG_CONTROLLERS: list[ControllerRouterHandler] = [CatalogController]
