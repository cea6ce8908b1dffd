"""Grid management over HTTP: the grid layer, case categories, cases, photos, the offline sync
and the KPIs. A case's loop is acted on through the workflow engine's task routes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from grid import cases, kpis, layer, rules, store, sync
from grid.store import CaseRow
from identity.api import current_principal, require_role, require_signed_in, unit_path
from onewindow.db import Connection
from onewindow.errors import (
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    PreconditionFailed,
    TooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from onewindow.idempotency import HEADER as IDEMPOTENCY_HEADER
from onewindow.settings import Settings
from onewindow.storage import DiskStore, digest, sniff_media_type
from onewindow.web import check_if_match, decode_cursor, encode_cursor, etag, idempotent
from workflows import api as workflows

__all__ = ["GRID_CONTROLLERS"]

PREFIX: Final = "/api/v1/grid"
_MAX_LAYER_BYTES: Final = 64 * 1_048_576
_MAX_PHOTO_BYTES: Final = 100 * 1_048_576  # the route's ceiling; the setting is the real limit

Limit = Annotated[int, QueryParameter(ge=1, le=200, description="Most items on one page (at most 200).")]
Cursor = Annotated[
    str | None, QueryParameter(max_length=512, description="`next_cursor` of the previous page.")
]
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(name=IDEMPOTENCY_HEADER, required=False, description="One value per intended report."),
]
IfMatch = Annotated[
    str | None,
    HeaderParameter(name="If-Match", required=False, description="The ETag as read: 412 if it changed."),
]
Code = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
DurationLimit = Annotated[str, msgspec.Meta(pattern=r"^P(\d+D|T\d+H|T\d+M|T\d+H\d+M|\d+DT\d+H)$")]


def _actor(request: Request[Any, Any, Any]) -> workflows.Actor:
    return workflows.Actor.of(current_principal(request))


def _staff(actor: workflows.Actor) -> None:
    if not any(g.role in (*cases.STAFF_ROLES, "admin") for g in actor.roles):
        raise Forbidden(
            "This needs a staff role of grid management (grid worker, supervisor, command centre, officer)."
        )


# --- the grid layer ------------------------------------------------------------------------------


class GridReply(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    name: str
    community: str
    street: str
    district: str
    households: int
    unit_path: str
    version: int
    updated_at: datetime
    retired_at: datetime | None
    geometry: dict[str, Any]
    history: list[store.GridHistoryRow] = msgspec.field(default_factory=list)


class LocateReply(msgspec.Struct, frozen=True, kw_only=True):
    """`grid` None: the point is outside every grid (not an error: the case queues at the city)."""

    lat: float
    lon: float
    inside: bool
    grid: str | None = None
    community: str | None = None
    street: str | None = None
    district: str | None = None


class GridController(Controller):
    path = PREFIX
    tags = ["grid"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_signed_in()]  # noqa: RUF012 - litestar's declared type

    @post(
        "/grids/import",
        operation_id="importGrids",
        summary="Replace the grid layer with a GeoJSON FeatureCollection",
        description="Polygon and MultiPolygon features in WGS84 with properties code, name, community, street,"
        " district, households. The whole file is checked first (geometry, overlaps, gaps inside a community,"
        " codes); any problem: nothing is imported and every problem is listed. Grids no longer in the file"
        " are retired; every change is kept in the grid's history.",
        middleware=[require_role("admin")],
        request_max_body_size=_MAX_LAYER_BYTES,
        status_code=200,
    )
    async def import_grids(self, request: Request[Any, Any, Any], conn: Connection) -> layer.ImportReport:
        try:
            document = msgspec.json.decode(await request.body())
        except msgspec.DecodeError as error:
            raise ValidationFailed(f"The grid file is not JSON: {error}.") from None
        return await layer.import_layer(
            conn, document, by=current_principal(request).subject, at=workflows.now()
        )

    @get(
        "/grids",
        operation_id="exportGrids",
        summary="The active grid layer as GeoJSON",
        media_type="application/geo+json",
    )
    async def export_grids(self, request: Request[Any, Any, Any], conn: Connection) -> dict[str, Any]:
        _staff(_actor(request))
        return await layer.export_layer(conn)

    @get("/grids/{code:str}", operation_id="getGrid", summary="One grid with its history")
    async def get_grid(
        self, request: Request[Any, Any, Any], conn: Connection, code: FromPath[str]
    ) -> GridReply:
        _staff(_actor(request))
        row = await store.grid(conn, code)
        if row is None:
            raise NotFound("No such grid.")
        return GridReply(
            code=row.code,
            name=row.name,
            community=row.community,
            street=row.street,
            district=row.district,
            households=row.households,
            unit_path=row.unit_path,
            version=row.version,
            updated_at=row.updated_at,
            retired_at=row.retired_at,
            geometry=row.geometry,
            history=await store.grid_history(conn, code),
        )

    @get("/locate", operation_id="locatePoint", summary="The grid a point (WGS84) lies in")
    async def locate(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        lat: FromQuery[float],
        lon: FromQuery[float],
    ) -> LocateReply:
        _staff(_actor(request))
        errors = rules.coordinate_errors(lat, lon)
        if errors:
            raise ValidationFailed(
                "The point is not a WGS84 coordinate.",
                errors=[
                    FieldError(pointer="", parameter=f"query.{e.pointer.lstrip('/')}", detail=e.detail)
                    for e in errors
                ],
            )
        code = (await layer.locator(conn)).locate(lat, lon)
        grid = await store.grid(conn, code) if code else None
        if grid is None:
            return LocateReply(lat=lat, lon=lon, inside=False)
        return LocateReply(
            lat=lat,
            lon=lon,
            inside=True,
            grid=grid.code,
            community=grid.community,
            street=grid.street,
            district=grid.district,
        )


# --- categories ----------------------------------------------------------------------------------


class CategoryFields(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: Literal["component", "event"]
    name_zh: Name
    name_en: Name
    department: Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
    register_limit: DurationLimit
    handle_limit: DurationLimit
    severity: Literal["low", "normal", "high", "urgent"] = "normal"
    citizen_reportable: bool = True
    active: bool = True


class NewCategory(CategoryFields, frozen=True, kw_only=True, forbid_unknown_fields=True):
    code: Code


class CategoryReply(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    kind: str
    name_zh: str
    name_en: str
    department: str
    register_limit: str
    handle_limit: str
    severity: str
    citizen_reportable: bool
    active: bool
    version: int


def _category(row: store.CategoryRow) -> CategoryReply:
    return msgspec.convert(msgspec.structs.asdict(row), CategoryReply)


async def _check_department(conn: Connection, code: str) -> None:
    path = await unit_path(conn, code)
    if path is None:
        raise ValidationFailed(
            "No such department.",
            errors=[FieldError(pointer="/department", detail="not an organisation unit")],
        )


def _fields(data: CategoryFields) -> dict[str, Any]:
    fields = msgspec.structs.asdict(data)
    fields.pop("code", None)
    return fields


class CategoryController(Controller):
    path = f"{PREFIX}/categories"
    tags = ["grid"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_signed_in()]  # noqa: RUF012 - litestar's declared type

    @get("", operation_id="listCaseCategories", summary="Case categories (components and events)")
    async def list_categories(self, conn: Connection, active: FromQuery[bool] = False) -> list[CategoryReply]:
        return [_category(row) for row in await store.categories(conn, active_only=active)]

    @get("/{code:str}", operation_id="getCaseCategory", summary="One case category")
    async def get_category(self, conn: Connection, code: FromPath[str]) -> Response[CategoryReply]:
        row = await store.category(conn, code)
        if row is None:
            raise NotFound("No such case category.")
        return Response(_category(row), headers={"ETag": etag(row.version)})

    @post(
        "",
        operation_id="createCaseCategory",
        summary="Add a case category",
        middleware=[require_role("admin")],
    )
    async def create(
        self, request: Request[Any, Any, Any], conn: Connection, data: JSONBody[NewCategory]
    ) -> Response[CategoryReply]:
        await _check_department(conn, data.department)
        row = await store.insert_category(
            conn, code=data.code, fields=_fields(data), by=current_principal(request).subject
        )
        if row is None:
            raise Conflict(f"The case category {data.code!r} exists: change it with PUT.")
        return Response(_category(row), status_code=201, headers={"ETag": etag(row.version)})

    @put(
        "/{code:str}",
        operation_id="updateCaseCategory",
        summary="Change a case category (If-Match required)",
        middleware=[require_role("admin")],
    )
    async def update(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        code: FromPath[str],
        data: JSONBody[CategoryFields],
        if_match: IfMatch = None,
    ) -> Response[CategoryReply]:
        current = await store.category(conn, code)
        if current is None:
            raise NotFound("No such case category.")
        check_if_match(if_match, current.version, what="case category")
        await _check_department(conn, data.department)
        row = await store.update_category(
            conn,
            code=code,
            fields=_fields(data),
            by=current_principal(request).subject,
            expected_version=current.version,
        )
        if row is None:
            raise PreconditionFailed("The case category changed meanwhile: read it again.")
        return Response(_category(row), headers={"ETag": etag(row.version)})


# --- cases ---------------------------------------------------------------------------------------


class NewCaseRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    category: Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
    description: Annotated[str, msgspec.Meta(max_length=4000)]
    lat: float | None = None
    lon: float | None = None
    address: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    photos: Annotated[list[str], msgspec.Meta(max_length=100)] = []
    reported_at: datetime | None = None
    client_id: UUID | None = None


class PhotoRef(msgspec.Struct, frozen=True, kw_only=True):
    sha256: str
    stage: str
    url: str


class CaseSummary(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    number: str
    status: str
    source: str
    category: str
    department: str
    severity: str
    grid: str | None
    community: str | None
    street: str | None
    lat: float | None
    lon: float | None
    address: str | None
    description: str
    reported_at: datetime
    register_due_at: datetime
    handle_due_at: datetime | None
    closed_at: datetime | None
    rework_count: int
    version: int


class OpenTask(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    state: str
    label: str | None
    role: str | None
    unit_path: str | None
    assignee: str | None
    due_at: datetime | None
    actions: list[str]


class CaseDetail(CaseSummary, frozen=True, kw_only=True):
    district: str | None
    client_id: UUID | None
    dispatched_to: str | None
    registered_at: datetime | None
    dispatched_at: datetime | None
    handled_at: datetime | None
    handled_on_time: bool | None
    rating: int | None
    duplicate_of: UUID | None
    duplicates: list[str]
    photos: list[PhotoRef]
    open_tasks: list[OpenTask]
    history: list[store.CaseHistoryRow]
    possible_duplicates: list[cases.Duplicate]


class CasePage(msgspec.Struct, frozen=True):
    items: list[CaseSummary]
    next_cursor: str | None


def _summary(case: CaseRow) -> CaseSummary:
    return CaseSummary(
        id=case.id,
        number=case.number,
        status=case.status,
        source=case.source,
        category=case.category,
        department=case.department,
        severity=case.severity,
        grid=case.grid_code,
        community=case.community,
        street=case.street,
        lat=case.lat,
        lon=case.lon,
        address=case.address,
        description=case.description,
        reported_at=case.reported_at,
        register_due_at=case.register_due_at,
        handle_due_at=case.handle_due_at,
        closed_at=case.closed_at,
        rework_count=case.rework_count,
        version=case.version,
    )


async def case_detail(conn: Connection, case: CaseRow) -> CaseDetail:
    loop = await workflows.instance_for_subject(conn, cases.KIND, str(case.id))
    summary = msgspec.structs.asdict(_summary(case))
    return CaseDetail(
        **summary,
        district=case.district,
        client_id=case.client_id,
        dispatched_to=case.dispatched_to,
        registered_at=case.registered_at,
        dispatched_at=case.dispatched_at,
        handled_at=case.handled_at,
        handled_on_time=rules.on_time(case.handled_at, case.handle_due_at),
        rating=case.rating,
        duplicate_of=case.duplicate_of,
        duplicates=await store.duplicates_of(conn, case.id),
        photos=[
            PhotoRef(sha256=sha, stage=stage, url=f"{PREFIX}/photos/{sha}")
            for sha, stage in await store.case_photos(conn, case.id)
        ],
        open_tasks=[
            OpenTask(
                id=task.id,
                state=task.state,
                label=task.label,
                role=task.role,
                unit_path=task.unit_path,
                assignee=task.assignee,
                due_at=task.due_at,
                actions=[a.name for a in task.actions],
            )
            for task in (loop.open_tasks if loop else ())
        ],
        history=await store.case_history(conn, case.id),
        possible_duplicates=await cases.possible_duplicates(conn, case)
        if case.status == "registering"
        else [],
    )


class CaseController(Controller):
    path = f"{PREFIX}/cases"
    tags = ["grid"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_signed_in()]  # noqa: RUF012 - litestar's declared type

    @post(
        "",
        operation_id="reportCase",
        summary="Report a case (a grid worker on patrol, or the command centre)",
        description="Located to its grid automatically; outside every grid (or an address only) it queues at"
        " the city's command centre. Open cases of the same category within 50 m in the last 7 days are"
        " returned as possible duplicates. Needs an Idempotency-Key.",
        status_code=201,
    )
    async def report(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        data: JSONBody[NewCaseRequest],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Any]:
        actor = _actor(request)
        _staff(actor)
        source: cases.Source = (
            "worker" if any(g.role == "grid_worker" for g in actor.roles) else "command_centre"
        )

        async def run() -> CaseDetail:
            new = msgspec.convert(msgspec.structs.asdict(data), cases.NewCase)
            case = await cases.report(
                conn, new, source=source, reporter=actor.subject, actor=actor, now=workflows.now()
            )
            return await case_detail(conn, case)

        return await idempotent(
            conn,
            principal=actor.subject,
            scope="grid.report-case",
            key=idempotency_key,
            request=msgspec.to_builtins(data),
            run=run,
            status=201,
        )

    @get("", operation_id="listCases", summary="Cases I may see, newest first")
    async def list_cases(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        status: FromQuery[Annotated[str, QueryParameter(max_length=32)] | None] = None,
        category: FromQuery[Annotated[str, QueryParameter(max_length=63)] | None] = None,
        grid: FromQuery[Annotated[str, QueryParameter(max_length=63)] | None] = None,
        open_only: FromQuery[bool] = False,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> CasePage:
        actor = _actor(request)
        _staff(actor)
        after = decode_cursor(cursor, tuple[datetime, UUID])
        where = store.CaseFilter(
            scopes=cases.scopes(actor), status=status, category=category, grid_code=grid, open_only=open_only
        )
        rows = await store.list_cases(conn, where, after=after, limit=limit + 1)
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor([rows[-1].reported_at, rows[-1].id])
        return CasePage(items=[_summary(row) for row in rows], next_cursor=next_cursor)

    @get(
        "/{case_id:uuid}", operation_id="getCase", summary="A case: its loop, open steps, photos and history"
    )
    async def get_case(
        self, request: Request[Any, Any, Any], conn: Connection, case_id: FromPath[UUID]
    ) -> Response[CaseDetail]:
        case = await cases.visible_case(conn, case_id, _actor(request))
        return Response(await case_detail(conn, case), headers={"ETag": etag(case.version)})

    @get(
        "/{case_id:uuid}/duplicates",
        operation_id="suggestDuplicates",
        summary="Open cases of the same category within 50 m reported in the 7 days before this one",
    )
    async def duplicates(
        self, request: Request[Any, Any, Any], conn: Connection, case_id: FromPath[UUID]
    ) -> list[cases.Duplicate]:
        case = await cases.visible_case(conn, case_id, _actor(request))
        return await cases.possible_duplicates(conn, case)


# --- photos --------------------------------------------------------------------------------------


class PhotoReply(msgspec.Struct, frozen=True, kw_only=True):
    sha256: str
    media_type: str
    size: int
    created: bool


def _photos(settings: Settings) -> DiskStore:
    return DiskStore(settings.data_dir / "files" / "grid-photos")


class PhotoController(Controller):
    path = f"{PREFIX}/photos"
    tags = ["grid"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_signed_in()]  # noqa: RUF012 - litestar's declared type

    @put(
        "/{sha256:str}",
        operation_id="uploadPhoto",
        summary="Upload a photo under its SHA-256 (idempotent: the same photo again changes nothing)",
        description="The body is the photo itself (image/jpeg, image/png, image/webp or image/heic by default);"
        " its digest must be the one in the path. Name it in a case or an action by the digest.",
        request_max_body_size=_MAX_PHOTO_BYTES,
        status_code=201,
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        settings: NamedDependency[Settings],
        sha256: FromPath[str],
    ) -> Response[PhotoReply]:
        actor = _actor(request)
        _staff(actor)
        sha256 = sha256.lower()
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValidationFailed(
                "The path names the photo by its SHA-256 in hex.",
                errors=[FieldError(pointer="", parameter="path.sha256", detail="64 hex digits")],
            )
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.photo_max_bytes:
            raise _too_large(settings)
        content = await request.body()
        if len(content) > settings.photo_max_bytes:
            raise _too_large(settings)
        if not content:
            raise ValidationFailed("The photo is empty.")
        media_type = sniff_media_type(content)
        if media_type is None or media_type not in settings.photo_media_types:
            raise _unsupported(settings)
        if digest(content) != sha256:
            raise ValidationFailed(
                "The photo's SHA-256 is not the one in the path (damaged in transit?): send it again.",
                errors=[FieldError(pointer="", parameter="path.sha256", detail="does not match the body")],
            )
        await _photos(settings).put(sha256, content)
        created = await store.save_photo(
            conn, sha256=sha256, media_type=media_type, size=len(content), by=actor.subject
        )
        reply = PhotoReply(sha256=sha256, media_type=media_type, size=len(content), created=created)
        return Response(reply, status_code=201 if created else 200)

    @get(
        "/{sha256:str}", operation_id="getPhoto", summary="A photo of a case I may see", media_type="image/*"
    )
    async def download(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        settings: NamedDependency[Settings],
        sha256: FromPath[str],
    ) -> Response[bytes]:
        actor = _actor(request)
        row = await store.photo(conn, sha256.lower())
        if row is None:
            raise NotFound("No such photo.")
        visible = False
        for case_id in await store.case_may_show_photo(conn, row.sha256):
            case = await store.case(conn, case_id)
            if case is not None and cases.may_see(actor, case):
                visible = True
                break
        if not visible and not await store.uploaded_by(conn, row.sha256, actor.subject):
            raise NotFound("No such photo.")
        content = await _photos(settings).get(row.sha256)
        if content is None:
            raise NotFound("The photo's file is missing from storage.")
        return Response(
            content,
            media_type=row.media_type,
            headers={"ETag": f'"{row.sha256}"', "Cache-Control": "private, max-age=31536000, immutable"},
        )


def _too_large(settings: Settings) -> TooLarge:
    return TooLarge(f"A photo is at most {settings.photo_max_bytes} bytes.")


def _unsupported(settings: Settings) -> UnsupportedMediaType:
    return UnsupportedMediaType(
        f"A photo must be one of: {', '.join(sorted(settings.photo_media_types))} (by its content)."
    )


# --- offline sync and delta download --------------------------------------------------------------


class DeltaReply(msgspec.Struct, frozen=True, kw_only=True):
    """`tasks`: every open step the worker may act on now (the whole list: the phone replaces
    its own). `cases`: the worker's grids' cases changed since the cursor (open ones on the first
    call); `complete` false: call again with `next_cursor` at once."""

    tasks: list[workflows.TaskView]
    cases: list[CaseSummary]
    next_cursor: str
    complete: bool


class SyncController(Controller):
    path = PREFIX
    tags = ["grid"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_signed_in()]  # noqa: RUF012 - litestar's declared type

    @post(
        "/sync",
        operation_id="syncOffline",
        summary="Apply what a phone did offline: cases and updates, each with its client id",
        description="Each item is applied on its own: good ones land, each bad one is reported by its"
        " client_id with a problem. Sending the same batch again changes nothing (the items say `replayed`).",
        status_code=200,
    )
    async def sync_batch(
        self, request: Request[Any, Any, Any], conn: Connection, settings: NamedDependency[Settings]
    ) -> sync.SyncReply:
        actor = _actor(request)
        _staff(actor)
        raw = await request.body()
        if len(raw) > settings.sync_max_bytes:
            raise TooLarge(f"A sync batch is at most {settings.sync_max_bytes} bytes: split it.")
        try:
            batch = msgspec.json.decode(raw, type=sync.SyncBatch)
        except msgspec.ValidationError as error:
            raise ValidationFailed(f"The batch is not valid: {error}.", errors=[_pointer(error)]) from None
        except msgspec.DecodeError as error:
            raise ValidationFailed(f"The batch is not JSON: {error}.") from None
        if len(batch.items) > settings.sync_max_items:
            raise TooLarge(f"A sync batch has at most {settings.sync_max_items} items: split it.")
        return await sync.apply(conn, batch, actor, workflows.now())

    @get(
        "/delta",
        operation_id="downloadDelta",
        summary="My open steps, and my grids' cases changed since the cursor",
    )
    async def delta(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        cursor: Cursor = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 500,
    ) -> DeltaReply:
        actor = _actor(request)
        _staff(actor)
        after = decode_cursor(cursor, tuple[datetime, UUID])
        grids = [g.unit for g in actor.roles if g.role == "grid_worker"]
        now = workflows.now()
        # Changes younger than a few seconds wait for the next call: a transaction that started
        # earlier may still commit a change stamped before them, and a cursor past it would skip it.
        until = now - DELTA_SETTLE
        rows = await store.changed_cases(conn, grids=grids, after=after, until=until, limit=limit + 1)
        complete = len(rows) <= limit
        rows = rows[:limit]
        if rows:
            next_cursor = encode_cursor([rows[-1].updated_at, rows[-1].id])
        elif after is not None:
            next_cursor = cursor or ""
        else:
            next_cursor = encode_cursor([until, UUID(int=0)])
        tasks = await workflows.inbox(conn, actor, subject_kind=cases.KIND, limit=200)
        return DeltaReply(
            tasks=tasks[:200],
            cases=[_summary(row) for row in rows],
            next_cursor=next_cursor,
            complete=complete,
        )


def _pointer(error: msgspec.ValidationError) -> FieldError:
    text = str(error)
    at = text.rsplit(" - at `$", 1)
    pointer = ""
    if len(at) == 2:
        pointer = at[1].rstrip("`").replace("[", "/").replace("]", "").replace(".", "/")
    return FieldError(pointer=pointer, detail=at[0])


# --- KPIs ----------------------------------------------------------------------------------------

KPI_ROLES: Final = ("supervisor", "command_centre", "officer")
DELTA_SETTLE: Final = timedelta(seconds=5)


class KpiController(Controller):
    path = f"{PREFIX}/kpis"
    tags = ["grid"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_signed_in()]  # noqa: RUF012 - litestar's declared type

    @get(
        "",
        operation_id="gridKpis",
        summary="Case KPIs per grid, community, street or department over a period",
        description="Over the cases reported in [start, end): reported (by source), registered, closed,"
        " closure rate, on-time handling rate, rework rate, average and p90 hours to close. A supervisor,"
        " command centre or officer sees the units their roles are held in; an administrator all.",
    )
    async def kpi_report(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        start: FromQuery[datetime],
        end: FromQuery[datetime],
        level: FromQuery[kpis.Level] = "grid",
    ) -> kpis.KpiReport:
        actor = _actor(request)
        within: list[str] | None
        if any(g.role == "admin" for g in actor.roles):
            within = None
        else:
            held = [g for g in actor.roles if g.role in KPI_ROLES]
            if not held:
                raise Forbidden(
                    "The KPIs are for supervisors, the command centre, officers and administrators."
                )
            within = None if any("/" not in g.path for g in held) else [g.unit for g in held]
        return await kpis.kpis(conn, level=level, start=start, end=end, within=within)


GRID_CONTROLLERS: Final = [
    GridController,
    CategoryController,
    CaseController,
    PhotoController,
    SyncController,
    KpiController,
]
