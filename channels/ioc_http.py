"""The IOC feed over HTTP: the IOC's pull and inbound routes (OAuth scopes `ioc.feed`,
`ioc.update`) and the admin API of endpoints, deliveries, the delivery log and replays."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter

from channels import ioc_endpoints, ioc_feed, ioc_inbound
from channels import ioc_store as store
from identity.api import current_principal, require_role, require_scope
from onewindow.db import Connection
from onewindow.errors import NotFound, RuleViolation
from onewindow.idempotency import REPLAYED_HEADER
from onewindow.settings import Settings
from onewindow.web import check_if_match, decode_cursor, encode_cursor, etag

__all__ = ["IOC_CONTROLLERS"]

ADMIN_PREFIX: Final = "/api/v1/channels/ioc"
FEED_CONTENT_TYPE: Final = "application/json"

Limit = Annotated[int, QueryParameter(ge=1, le=200, description="Most items on one page (at most 200).")]
Cursor = Annotated[
    str | None, QueryParameter(max_length=512, description="`next_cursor` of the previous page.")
]
IfMatch = Annotated[
    str | None,
    HeaderParameter(name="If-Match", required=False, description="The ETag as read: 412 if it changed."),
]
DeliveryState = Literal["pending", "delivered", "dead"]


# --- the IOC's side: pull and inbound ------------------------------------------------------------


class FeedController(Controller):
    path = "/ioc/v1"
    tags = ["ioc"]  # noqa: RUF012 - litestar's declared type

    @get(
        "/events",
        operation_id="iocEvents",
        summary="The incident feed, in order, after a cursor (scope ioc.feed)",
        description="A JSON object: `events` (CloudEvents 1.0 in structured JSON, as pushed), `next_cursor` (pass it"
        " as `after` next time; the same value when nothing was new) and `more` (another page is ready)."
        " Without `after`: from the start of the feed.",
        middleware=[require_scope("ioc.feed")],
    )
    async def events(
        self,
        conn: Connection,
        after: Annotated[
            str | None,
            QueryParameter(pattern=r"^\d{1,18}$", description="`next_cursor` of the previous page."),
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000, description="Most events (at most 1000).")] = 100,
    ) -> ioc_feed.FeedPage:
        return await ioc_feed.page(conn, after=int(after or 0), limit=limit)

    @post(
        "/incidents/{incident:str}/updates",
        operation_id="iocIncidentUpdate",
        summary="The IOC's status update for an incident (scope ioc.update)",
        description="`incident` is the case's id or number. 201: applied (or recorded as stale); 200 with"
        " `Idempotent-Replayed: true`: this update_id was received before, here is the same reply.",
        middleware=[require_scope("ioc.update")],
        status_code=201,
    )
    async def update(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        incident: FromPath[str],
        data: JSONBody[ioc_inbound.IncidentUpdate],
    ) -> Response[ioc_inbound.UpdateReply]:
        principal = current_principal(request)
        new, reply = await ioc_inbound.receive(
            conn, client_id=principal.client_id, reference=incident, update=data
        )
        if new:
            return Response(reply, status_code=201)
        return Response(reply, status_code=200, headers={REPLAYED_HEADER: "true"})


# --- the admin API -------------------------------------------------------------------------------


class EndpointList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[ioc_endpoints.EndpointView]
    next_cursor: str | None


class DeliveryList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[store.DeliveryRow]
    next_cursor: str | None


class DeliveryDetail(msgspec.Struct, frozen=True, kw_only=True):
    delivery: store.DeliveryRow
    attempts: list[store.AttemptRow]


class AttemptList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[store.AttemptRow]
    next_cursor: str | None


class Replayed(msgspec.Struct, frozen=True, kw_only=True):
    replayed: int


def _endpoint_reply(
    view: ioc_endpoints.EndpointView, status: int = 200
) -> Response[ioc_endpoints.EndpointView]:
    return Response(view, status_code=status, headers={"ETag": etag(view.version)})


class EndpointController(Controller):
    path = f"{ADMIN_PREFIX}/endpoints"
    tags = ["ioc"]  # noqa: RUF012 - litestar's declared type
    middleware = [require_role("admin")]  # noqa: RUF012 - litestar's declared type

    @post("", operation_id="createIocEndpoint", summary="Add an IOC endpoint")
    async def create(
        self,
        request: Request[Any, Any, Any],
        conn: Connection,
        settings: Settings,
        data: JSONBody[ioc_endpoints.NewEndpoint],
    ) -> Response[ioc_endpoints.EndpointView]:
        view = await ioc_endpoints.create(conn, settings, data, by=current_principal(request).subject)
        return _endpoint_reply(view, 201)

    @get("", operation_id="listIocEndpoints", summary="IOC endpoints")
    async def list_endpoints(
        self, conn: Connection, cursor: Cursor = None, limit: Limit = 50
    ) -> EndpointList:
        after = decode_cursor(cursor, tuple[datetime, UUID])
        rows = await store.endpoints(conn, after=after, limit=limit + 1)
        next_cursor = (
            encode_cursor([rows[limit - 1].created_at, rows[limit - 1].id]) if len(rows) > limit else None
        )
        return EndpointList(
            items=[await ioc_endpoints.view(conn, row) for row in rows[:limit]], next_cursor=next_cursor
        )

    @get("/{endpoint_id:uuid}", operation_id="getIocEndpoint", summary="One IOC endpoint")
    async def read(
        self, conn: Connection, endpoint_id: FromPath[UUID]
    ) -> Response[ioc_endpoints.EndpointView]:
        return _endpoint_reply(await ioc_endpoints.view(conn, await ioc_endpoints.found(conn, endpoint_id)))

    @patch(
        "/{endpoint_id:uuid}",
        operation_id="changeIocEndpoint",
        summary="Change an IOC endpoint: name, url, enabled, add a secret, retire secrets (If-Match required)",
    )
    async def change(
        self,
        conn: Connection,
        settings: Settings,
        endpoint_id: FromPath[UUID],
        data: JSONBody[ioc_endpoints.EndpointChange],
        if_match: IfMatch = None,
    ) -> Response[ioc_endpoints.EndpointView]:
        row = await ioc_endpoints.found(conn, endpoint_id, lock=True)
        check_if_match(if_match, row.version, what="IOC endpoint")
        return _endpoint_reply(await ioc_endpoints.change(conn, settings, row, data))

    @post(
        "/{endpoint_id:uuid}/disable",
        operation_id="disableIocEndpoint",
        summary="Stop pushing to it",
        status_code=200,
    )
    async def disable(
        self, conn: Connection, endpoint_id: FromPath[UUID]
    ) -> Response[ioc_endpoints.EndpointView]:
        row = await ioc_endpoints.found(conn, endpoint_id, lock=True)
        return _endpoint_reply(await ioc_endpoints.set_enabled(conn, row, False))

    @post(
        "/{endpoint_id:uuid}/enable",
        operation_id="enableIocEndpoint",
        summary="Push to it again",
        status_code=200,
    )
    async def enable(
        self, conn: Connection, endpoint_id: FromPath[UUID]
    ) -> Response[ioc_endpoints.EndpointView]:
        row = await ioc_endpoints.found(conn, endpoint_id, lock=True)
        return _endpoint_reply(await ioc_endpoints.set_enabled(conn, row, True))

    @delete(
        "/{endpoint_id:uuid}",
        operation_id="deleteIocEndpoint",
        summary="Remove an endpoint, its deliveries and log",
    )
    async def remove(self, conn: Connection, endpoint_id: FromPath[UUID]) -> None:
        await ioc_endpoints.delete(conn, await ioc_endpoints.found(conn, endpoint_id, lock=True))

    @get(
        "/{endpoint_id:uuid}/deliveries",
        operation_id="listIocDeliveries",
        summary="An endpoint's deliveries in feed order, optionally of one state",
    )
    async def deliveries(
        self,
        conn: Connection,
        endpoint_id: FromPath[UUID],
        in_state: Annotated[
            DeliveryState | None, QueryParameter(query="state", description="pending, delivered or dead")
        ] = None,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> DeliveryList:
        await ioc_endpoints.found(conn, endpoint_id)
        after = decode_cursor(cursor, int)
        rows = await store.deliveries(conn, endpoint_id, state=in_state, after=after, limit=limit + 1)
        next_cursor = encode_cursor(rows[limit - 1].event_position) if len(rows) > limit else None
        return DeliveryList(items=rows[:limit], next_cursor=next_cursor)

    @get(
        "/{endpoint_id:uuid}/deliveries/{delivery_id:uuid}",
        operation_id="getIocDelivery",
        summary="One delivery with every attempt",
    )
    async def delivery(
        self, conn: Connection, endpoint_id: FromPath[UUID], delivery_id: FromPath[UUID]
    ) -> DeliveryDetail:
        row = await store.delivery(conn, endpoint_id, delivery_id)
        if row is None:
            raise NotFound("No such delivery of this endpoint.")
        attempts = await store.attempts(conn, endpoint_id, delivery_id=delivery_id, after=None, limit=1000)
        return DeliveryDetail(delivery=row, attempts=attempts)

    @post(
        "/{endpoint_id:uuid}/deliveries/{delivery_id:uuid}/replay",
        operation_id="replayIocDelivery",
        summary="Send a dead-lettered delivery again",
        status_code=200,
    )
    async def replay_one(
        self, conn: Connection, endpoint_id: FromPath[UUID], delivery_id: FromPath[UUID]
    ) -> Replayed:
        row = await store.delivery(conn, endpoint_id, delivery_id)
        if row is None:
            raise NotFound("No such delivery of this endpoint.")
        if row.state != "dead":
            raise RuleViolation(f"Only a dead-lettered delivery is replayed; this one is {row.state}.")
        return Replayed(replayed=await store.replay(conn, endpoint_id, delivery_id))

    @post(
        "/{endpoint_id:uuid}/replay",
        operation_id="replayIocDeadLetters",
        summary="Send every dead-lettered delivery of the endpoint again",
        status_code=200,
    )
    async def replay_all(self, conn: Connection, endpoint_id: FromPath[UUID]) -> Replayed:
        await ioc_endpoints.found(conn, endpoint_id)
        return Replayed(replayed=await store.replay(conn, endpoint_id, None))

    @get(
        "/{endpoint_id:uuid}/log",
        operation_id="iocDeliveryLog",
        summary="The delivery log: every attempt (time, status code or error, duration), oldest first",
    )
    async def log(
        self, conn: Connection, endpoint_id: FromPath[UUID], cursor: Cursor = None, limit: Limit = 100
    ) -> AttemptList:
        await ioc_endpoints.found(conn, endpoint_id)
        after = decode_cursor(cursor, int)
        rows = await store.attempts(conn, endpoint_id, delivery_id=None, after=after, limit=limit + 1)
        next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
        return AttemptList(items=rows[:limit], next_cursor=next_cursor)


IOC_CONTROLLERS: Final = (FeedController, EndpointController)
