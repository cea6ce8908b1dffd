"""The workflow engine over HTTP: the inbox, task actions, instances, definitions, the calendar."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from functools import partial
from typing import Annotated, Any, Final, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, PathParameter, QueryParameter

from identity.api import ROLES, current_principal, require_role, require_signed_in, unit_codes, unit_path
from onewindow import idempotency
from onewindow.db import Connection
from onewindow.errors import FieldError, NotFound, RuleViolation, ValidationFailed
from onewindow.idempotency import HEADER as IDEMPOTENCY_HEADER
from onewindow.web import decode_cursor, encode_cursor, etag, replay, resources
from workflows import engine, store
from workflows.batch import ActionBatcher
from workflows.definitions import Change, diff, parse
from workflows.model import Definition
from workflows.views import Actor, InstanceView, TaskView

_MAX_VERSION: Final = 2_147_483_647  # the column is an int4: a larger number is a 400, not a 500
Version = Annotated[int, PathParameter(ge=1, le=_MAX_VERSION, description="A version number.")]

__all__ = ["WORKFLOW_CONTROLLERS"]

PREFIX: Final = "/api/v1"
_BATCHER: Final = "workflows.batcher"
_MAX_DEFINITION_BYTES: Final = 256 * 1024

Limit = Annotated[int, QueryParameter(ge=1, le=200, description="Most tasks on one page (at most 200).")]
Cursor = Annotated[
    str | None, QueryParameter(max_length=512, description="`next_cursor` of the previous page.")
]
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name=IDEMPOTENCY_HEADER,
        required=False,
        description="Required: one value per intended action; a retry with it never acts twice.",
    ),
]
IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-Match", required=False, description="The task's ETag as read: 412 if it changed."
    ),
]
Comment = Annotated[str, msgspec.Meta(max_length=4000)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


def _batcher(state: State) -> ActionBatcher:
    """The process's task-action batcher (workflows/batch.py), made on first use."""
    found: ActionBatcher | None = state.get(_BATCHER)
    if found is None:
        settings = resources(state).settings
        # Each batch holds a pooled connection: leave one at least for other requests.
        concurrent = max(1, min(settings.task_action_batches, settings.db_pool_max - 1))
        found = ActionBatcher(resources(state).db, most=settings.task_action_batch, concurrent=concurrent)
        state[_BATCHER] = found
    return found


def _actor(request: Request[Any, Any, Any]) -> Actor:
    return Actor.of(current_principal(request))


def _version(if_match: str | None) -> int | None:
    """The task version an If-Match names (strong tags only); None when absent or `*`."""
    if if_match is None or if_match.strip() == "*":
        return None
    tag = if_match.strip()
    if not (tag.startswith('"') and tag.endswith('"') and tag[1:-1].isdigit()):
        raise ValidationFailed(
            'If-Match must be the ETag you read, e.g. "3".',
            errors=[FieldError(pointer="", parameter="If-Match", detail="not an ETag of this API")],
        )
    return int(tag[1:-1])


# --- tasks ---------------------------------------------------------------------------------------


class TaskPage(msgspec.Struct, frozen=True):
    items: list[TaskView]
    next_cursor: str | None


class ActionRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`data` is kept on the instance (conditions see it as `vars`) and in the history."""

    action: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    comment: Comment | None = None
    attachments: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=500)]], msgspec.Meta(max_length=50)
    ] = []
    data: dict[str, Any] = {}


class ReassignRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A supervisor moves a task: to another role, another unit (by code), or a named person."""

    reason: Reason
    role: Literal["clerk", "officer", "supervisor", "grid_worker", "command_centre", "admin"] | None = None
    unit: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    assignee: Annotated[str, msgspec.Meta(max_length=64)] | None = None


def _with_etag(view: TaskView) -> Response[TaskView]:
    return Response(view, headers={"ETag": etag(view.version)})


class TaskController(Controller):
    path = f"{PREFIX}/tasks"
    tags = ["workflows"]  # noqa: RUF012 - litestar\'s declared type
    middleware = [require_signed_in()]  # noqa: RUF012 - litestar\'s declared type

    @get("", operation_id="listTasks", summary="My inbox: my tasks, my units' queues, by due date")
    async def list_tasks(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        view: FromQuery[engine.InboxView] = "all",
        subject_kind: FromQuery[Annotated[str, QueryParameter(max_length=64)] | None] = None,
        step: Annotated[
            str | None, QueryParameter(name="state", max_length=64, description="A state name")
        ] = None,
        unit: FromQuery[
            Annotated[str, QueryParameter(max_length=64, description="A unit code")] | None
        ] = None,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> TaskPage:
        after = decode_cursor(cursor, tuple[datetime, UUID])
        path = None
        if unit is not None:
            path = await unit_path(conn, unit)
            if path is None:
                raise ValidationFailed(
                    "No such unit.",
                    errors=[FieldError(pointer="", parameter="query.unit", detail="unknown unit")],
                )
        rows = await engine.inbox(
            conn,
            _actor(request),
            view=view,
            subject_kind=subject_kind,
            state=step,
            unit=path,
            after=after,
            limit=limit,
        )
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            return TaskPage(
                items=rows, next_cursor=encode_cursor([last.due_at or engine.NO_DEADLINE, last.id])
            )
        return TaskPage(items=rows, next_cursor=None)

    @get("/{task_id:uuid}", operation_id="getTask", summary="One task, with the actions open to it")
    async def get_task(
        self, request: Request[Any, Any, Any], conn: Connection, task_id: FromPath[UUID]
    ) -> Response[TaskView]:
        return _with_etag(await engine.task(conn, task_id, _actor(request)))

    @post(
        "/{task_id:uuid}/claim",
        operation_id="claimTask",
        summary="Take a task from the queue",
        status_code=200,
    )
    async def claim(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        task_id: FromPath[UUID],
        if_match: IfMatch = None,
    ) -> Response[TaskView]:
        view = await engine.claim(conn, task_id, actor=_actor(request), expected_version=_version(if_match))
        return _with_etag(view)

    @post(
        "/{task_id:uuid}/release",
        operation_id="releaseTask",
        summary="Give a claimed task back",
        status_code=200,
    )
    async def release(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        task_id: FromPath[UUID],
        if_match: IfMatch = None,
    ) -> Response[TaskView]:
        view = await engine.claim(
            conn, task_id, actor=_actor(request), release=True, expected_version=_version(if_match)
        )
        return _with_etag(view)

    @post(
        "/{task_id:uuid}/actions",
        operation_id="actOnTask",
        summary="Take an action (approve, reject, return ...) on a task",
        description="Needs an Idempotency-Key; If-Match (the task's ETag) makes a stale action a 412. "
        "Two people acting at once: one wins, the other gets 409.",
        status_code=200,
    )
    async def act(
        self,
        request: Request[Any, Any, Any],
        task_id: FromPath[UUID],
        data: JSONBody[ActionRequest],
        idempotency_key: IdempotencyKey = None,
        if_match: IfMatch = None,
    ) -> Response[Any]:
        # No `conn`: the action runs in a transaction the batcher opens, maybe with others.
        actor = _actor(request)
        claim = idempotency.Claim.of(
            principal=actor.subject,
            scope="workflows.task-action",
            key=idempotency_key,
            request=[str(task_id), msgspec.to_builtins(data)],
        )
        action = engine.TaskAction(
            task_id=task_id,
            claim=claim,
            action=data.action,
            actor=actor,
            comment=data.comment,
            attachments=list(data.attachments),
            data=dict(data.data),
            expected_version=_version(if_match),
        )
        result = await _batcher(request.app.state).act(action)
        if isinstance(result, idempotency.Stored):
            return replay(result)
        return Response(result)

    @post(
        "/{task_id:uuid}/reassign",
        operation_id="reassignTask",
        summary="A supervisor moves a task",
        status_code=200,
    )
    async def reassign(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        task_id: FromPath[UUID],
        data: JSONBody[ReassignRequest],
        if_match: IfMatch = None,
    ) -> Response[TaskView]:
        view = await engine.reassign(
            conn,
            task_id,
            actor=_actor(request),
            reason=data.reason,
            role=data.role,
            unit_code=data.unit,
            assignee=data.assignee,
            expected_version=_version(if_match),
        )
        return _with_etag(view)


class InstanceController(Controller):
    path = f"{PREFIX}/workflow-instances"
    tags = ["workflows"]  # noqa: RUF012 - litestar\'s declared type
    middleware = [require_signed_in()]  # noqa: RUF012 - litestar\'s declared type

    @get(
        "/{instance_id:uuid}",
        operation_id="getWorkflowInstance",
        summary="An instance: history and open tasks",
    )
    async def get_instance(
        self, request: Request[Any, Any, Any], conn: Connection, instance_id: FromPath[UUID]
    ) -> InstanceView:
        return await engine.instance_for(conn, instance_id, _actor(request))


# --- out of office -------------------------------------------------------------------------------


class DelegationRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    delegate: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    ends_at: datetime
    reason: Reason
    starts_at: datetime | None = None


class DelegationReply(msgspec.Struct, frozen=True):
    id: UUID
    delegate: str
    starts_at: datetime
    ends_at: datetime
    reason: str


def _delegation(row: store.DelegationRow) -> DelegationReply:
    return DelegationReply(
        id=row.id, delegate=row.delegate, starts_at=row.starts_at, ends_at=row.ends_at, reason=row.reason
    )


class DelegationController(Controller):
    path = f"{PREFIX}/me/delegations"
    tags = ["workflows"]  # noqa: RUF012 - litestar\'s declared type
    middleware = [require_signed_in()]  # noqa: RUF012 - litestar\'s declared type

    @get("", operation_id="listMyDelegations", summary="My out-of-office delegations, current and planned")
    async def list_delegations(
        self, request: Request[Any, Any, Any], conn: Connection
    ) -> list[DelegationReply]:
        rows = await store.delegations_of(conn, current_principal(request).subject, engine.runtime().now())
        return [_delegation(row) for row in rows]

    @post("", operation_id="delegateMyTasks", summary="While I am away, someone else acts on my tasks")
    async def create(
        self, request: Request[Any, Any, Any], conn: Connection, data: JSONBody[DelegationRequest]
    ) -> DelegationReply:
        row = await engine.delegate(
            conn,
            _actor(request),
            to=data.delegate,
            starts_at=data.starts_at,
            ends_at=data.ends_at,
            reason=data.reason,
        )
        return _delegation(row)

    @delete(
        "/{delegation_id:uuid}",
        operation_id="endMyDelegation",
        summary="End a delegation now",
        status_code=204,
    )
    async def revoke(
        self, request: Request[Any, Any, Any], conn: Connection, delegation_id: FromPath[UUID]
    ) -> None:
        if not await store.revoke_delegation(
            conn, delegation_id, current_principal(request).subject, engine.runtime().now()
        ):
            raise NotFound("No such delegation of yours.")


# --- definitions (admin) -------------------------------------------------------------------------


class DefinitionSummary(msgspec.Struct, frozen=True):
    key: str
    version: int
    name: str
    created_by: str
    created_at: datetime


class DefinitionReply(msgspec.Struct, frozen=True):
    key: str
    version: int
    name: str
    created_by: str
    created_at: datetime
    media_type: str
    source: str
    definition: Definition


class UploadReply(msgspec.Struct, frozen=True):
    """`created` false: the upload was identical to the latest version, which is returned."""

    key: str
    version: int
    created: bool


class ValidationReply(msgspec.Struct, frozen=True):
    valid: bool
    definition: Definition


class Comparison(msgspec.Struct, frozen=True):
    key: str
    from_version: int
    to_version: int
    changes: list[Change]


def _summary(row: store.DefinitionRow) -> DefinitionSummary:
    return DefinitionSummary(
        key=row.key, version=row.version, name=row.name, created_by=row.created_by, created_at=row.created_at
    )


async def _parse_upload(
    request: Request[Any, Any, Any], conn: Connection
) -> tuple[Definition, str, Literal["yaml", "json"]]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    media: Literal["yaml", "json"]
    if content_type in ("application/json",):
        media = "json"
    elif content_type in ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"):
        media = "yaml"
    else:
        raise ValidationFailed(
            "Send the definition as application/yaml or application/json.",
            errors=[FieldError(pointer="", parameter="Content-Type", detail=content_type or "missing")],
        )
    raw = await request.body()
    if len(raw) > _MAX_DEFINITION_BYTES:
        raise ValidationFailed(f"A definition is at most {_MAX_DEFINITION_BYTES // 1024} KiB.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed("The definition must be UTF-8 text.") from None
    units = await unit_codes(conn)
    # A large definition takes a while to check: off the event loop, so other requests go on.
    definition = await asyncio.to_thread(partial(parse, text, media_type=media, roles=ROLES, units=units))
    return definition, text, media


class DefinitionController(Controller):
    path = f"{PREFIX}/workflow-definitions"
    tags = ["workflows"]  # noqa: RUF012 - litestar\'s declared type
    middleware = [require_role("admin")]  # noqa: RUF012 - litestar\'s declared type

    @get("", operation_id="listWorkflowDefinitions", summary="Every definition key at its latest version")
    async def list_definitions(self, conn: Connection) -> list[DefinitionSummary]:
        return [_summary(row) for row in await store.latest_definitions(conn)]

    @post(
        "",
        operation_id="uploadWorkflowDefinition",
        summary="Upload a definition (YAML or JSON): a new key, or the next version of one",
        description="Every problem is listed with its JSON Pointer and line; nothing invalid is stored.",
        status_code=201,
    )
    async def upload(self, request: Request[Any, Any, Any], conn: Connection) -> Response[UploadReply]:
        definition, text, media = await _parse_upload(request, conn)
        row, created = await engine.save_definition(
            conn, definition, source=text, media_type=media, by=current_principal(request).subject
        )
        return Response(
            UploadReply(key=row.key, version=row.version, created=created),
            status_code=201 if created else 200,
        )

    @post(
        "/validate",
        operation_id="validateWorkflowDefinition",
        summary="Check a definition without storing it",
        status_code=200,
    )
    async def validate(self, request: Request[Any, Any, Any], conn: Connection) -> ValidationReply:
        definition, _, _ = await _parse_upload(request, conn)
        return ValidationReply(valid=True, definition=definition)

    @get(
        "/{key:str}", operation_id="listWorkflowDefinitionVersions", summary="The versions of one definition"
    )
    async def versions(self, conn: Connection, key: FromPath[str]) -> list[DefinitionSummary]:
        rows = await store.definition_versions(conn, key)
        if not rows:
            raise NotFound(f"No workflow definition {key!r}.")
        return [_summary(row) for row in rows]

    @get(
        "/{key:str}/versions/{version:int}",
        operation_id="getWorkflowDefinition",
        summary="One version, as uploaded and as run",
    )
    async def get_version(self, conn: Connection, key: FromPath[str], version: Version) -> DefinitionReply:
        row = await store.definition(conn, key, version)
        if row is None or row.version != version:
            raise NotFound(f"No version {version} of the workflow definition {key!r}.")
        _, definition = await engine.load_definition(conn, row.id)
        return DefinitionReply(
            key=row.key,
            version=row.version,
            name=row.name,
            created_by=row.created_by,
            created_at=row.created_at,
            media_type=row.media_type,
            source=row.source,
            definition=definition,
        )

    @get(
        "/{key:str}/compare",
        operation_id="compareWorkflowDefinitions",
        summary="What changed between two versions",
    )
    async def compare(
        self,
        conn: Connection,
        key: FromPath[str],
        from_version: Annotated[int, QueryParameter(name="from", ge=1, le=_MAX_VERSION)],
        to_version: Annotated[int, QueryParameter(name="to", ge=1, le=_MAX_VERSION)],
    ) -> Comparison:
        old = await store.definition(conn, key, from_version)
        new = await store.definition(conn, key, to_version)
        for wanted, row in ((from_version, old), (to_version, new)):
            if row is None or row.version != wanted:
                raise NotFound(f"No version {wanted} of the workflow definition {key!r}.")
        if not (old is not None and new is not None):
            raise RuntimeError("workflow invariant broken: old is not None and new is not None")
        (_, a), (_, b) = (
            await engine.load_definition(conn, old.id),
            await engine.load_definition(conn, new.id),
        )
        return Comparison(key=key, from_version=from_version, to_version=to_version, changes=diff(a, b))


# --- the city's calendar -------------------------------------------------------------------------


class CalendarDay(msgspec.Struct, frozen=True):
    day: date
    working: bool
    name: str
    updated_by: str
    updated_at: datetime


class CalendarDayRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`working` false: a public holiday; true: a make-up working day on a weekend."""

    working: bool
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


def _day(row: store.CalendarDayRow) -> CalendarDay:
    return CalendarDay(
        day=row.day, working=row.working, name=row.name, updated_by=row.updated_by, updated_at=row.updated_at
    )


class CalendarController(Controller):
    """Holidays and make-up working days; weekends come from settings. Deadlines count on this."""

    path = f"{PREFIX}/calendar/days"
    tags = ["workflows"]  # noqa: RUF012 - litestar\'s declared type

    @get(
        "",
        operation_id="listCalendarDays",
        summary="The days that differ from the weekday rule",
        middleware=[require_signed_in()],
    )
    async def list_days(
        self,
        conn: Connection,
        start: Annotated[date | None, QueryParameter(name="from")] = None,
        end: Annotated[date | None, QueryParameter(name="to")] = None,
    ) -> list[CalendarDay]:
        if start is not None and end is not None and end < start:
            raise ValidationFailed(
                "`to` is before `from`.",
                errors=[FieldError(pointer="", parameter="query.to", detail="before from")],
            )
        return [_day(row) for row in await store.calendar_days(conn, start, end)]

    @put(
        "/{day:date}",
        operation_id="putCalendarDay",
        summary="Mark a public holiday or a make-up working day",
        middleware=[require_role("admin")],
    )
    async def put_day(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        day: FromPath[date],
        data: JSONBody[CalendarDayRequest],
    ) -> CalendarDay:
        if not 2000 <= day.year <= 2100:
            raise RuleViolation("Calendar days are between 2000 and 2100.")
        row = await store.put_calendar_day(
            conn, day=day, working=data.working, name=data.name, by=current_principal(request).subject
        )
        return _day(row)

    @delete(
        "/{day:date}",
        operation_id="deleteCalendarDay",
        summary="Back to the weekday rule",
        status_code=204,
        middleware=[require_role("admin")],
    )
    async def delete_day(self, conn: Connection, day: FromPath[date]) -> None:
        if not await store.delete_calendar_day(conn, day):
            raise NotFound("That day has no entry in the calendar.")


WORKFLOW_CONTROLLERS = (
    TaskController,
    InstanceController,
    DelegationController,
    DefinitionController,
    CalendarController,
)
