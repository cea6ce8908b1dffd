"""Operations: request ids, metrics and access logs for every request; /healthz, /readyz, /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable
from typing import cast

import msgspec
import redis.exceptions
from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from onewindow import metrics
from onewindow.db import UNREACHABLE_ON_CONNECT
from onewindow.errors import FieldError, Unavailable
from onewindow.logs import request_id
from onewindow.outbox import backlog
from onewindow.problems import MEDIA_TYPE, Problem, problem_response
from onewindow.web import resources

log = logging.getLogger("onewindow.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})
_CHECK_TIMEOUT = 2.0
_POSTGRES_DOWN: tuple[type[Exception], ...] = (Unavailable, *UNREACHABLE_ON_CONNECT)
_REDIS_DOWN: tuple[type[Exception], ...] = (redis.exceptions.RedisError, OSError, TimeoutError)


class ObserveMiddleware:
    """Wraps the whole app (404s included): request id in, request id out, one metric and log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        rid = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("path_template") or "<unmatched>"
            method = scope["method"]
            metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
            metrics.HTTP_LATENCY.labels(method, route).observe(elapsed)
            # The route template, never the path: paths and query strings can carry personal data.
            log.log(
                logging.DEBUG if scope["path"] in _QUIET else logging.INFO,
                "request",
                extra={"method": method, "route": route, "status": status, "ms": round(elapsed * 1000, 2)},
            )
            request_id.reset(token)


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    status: str
    checks: dict[str, str]


async def _check_postgres(state: State) -> str:
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT), resources(state).db.connection() as conn:
            await conn.fetchval("SELECT 1")
    except _POSTGRES_DOWN:
        return "unreachable"
    return "ok"


async def _check_redis(state: State) -> str:
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT):
            await resources(state).redis.ping()
    except _REDIS_DOWN:
        return "unreachable"
    return "ok"


class OpsController(Controller):
    """Probes for the orchestrator and the scraper. No sign-in: they reveal nothing about people."""

    include_in_schema = True
    tags = ["operations"]  # noqa: RUF012 - litestar's declared type

    @get("/healthz", operation_id="healthz", summary="The process is up")
    async def healthz(self) -> Health:
        return Health(status="ok")

    @get(
        "/readyz",
        operation_id="readyz",
        summary="PostgreSQL and Redis are reachable",
        responses={
            503: ResponseSpec(
                data_container=Problem, description="PostgreSQL or Redis unreachable", media_type=MEDIA_TYPE
            )
        },
    )
    async def readyz(self, state: State) -> Response[Readiness] | Response[Problem]:
        postgres, redis_state = await asyncio.gather(_check_postgres(state), _check_redis(state))
        checks = {"postgres": postgres, "redis": redis_state}
        if all(value == "ok" for value in checks.values()):
            return Response(Readiness(status="ready", checks=checks))
        return problem_response(
            503,
            "unavailable",
            "Not ready: "
            + ", ".join(name for name, value in checks.items() if value != "ok")
            + " unreachable.",
            errors=[FieldError(pointer=f"/checks/{name}", detail=value) for name, value in checks.items()],
            headers={"Retry-After": "5"},
        )

    @get("/metrics", operation_id="metrics", summary="Prometheus metrics", media_type=metrics.CONTENT_TYPE)
    async def metrics(self, state: State) -> Response[bytes]:
        found = resources(state)
        with contextlib.suppress(*_POSTGRES_DOWN):
            async with asyncio.timeout(_CHECK_TIMEOUT), found.db.connection() as conn:
                pending, dead = await backlog(conn)
            metrics.OUTBOX_PENDING.set(pending)
            metrics.OUTBOX_DEAD.set(dead)
        with contextlib.suppress(*_REDIS_DOWN):
            async with asyncio.timeout(_CHECK_TIMEOUT):
                failures = await cast(
                    Awaitable[dict[bytes, bytes]], found.redis.hgetall(metrics.JOB_FAILURES_KEY)
                )
            for job, count in failures.items():
                metrics.JOB_FAILURES.labels(job.decode()).set(int(count))
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)
