"""Fixtures of the IOC feed tests: a real HTTP receiver (uvicorn on a loopback port, in the test's
event loop), the feed's settings, tokens of the IOC client and an admin, and helpers that move
a case through its loop and run the drainer and the pusher."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

from channels import ioc_feed
from channels.ioc_push import Pusher
from grid import api as grid_api
from grid import seed as grid_seed
from identity.keys import KeyRing
from identity.tokens import issue_access_token
from onewindow.db import Connection, Database
from onewindow.outbox import DrainPolicy, drain_once
from onewindow.settings import Settings
from tests.conftest import free_port
from tests.grid.conftest import person
from workflows import api as workflows

ADMIN = person("admin-1", ("admin", "demo"))
NOT_ADMIN = person("officer-x", ("officer", "demo/urban"))


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float
    status: int | None = None  # None: the sender went away before the answer


@dataclass
class Receiver:
    """What the IOC would run: records every POST; `plan` answers them (a status per call, then
    200), `delay` makes it slow; `started` is set when a request has arrived. `stream` (chunk
    size, pause, chunks): the answer's body is that many chunks, a pause before each (a receiver
    that trickles, or one that never stops talking)."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    plan: list[int] = field(default_factory=list)
    always: int = 200
    delay: float = 0.0
    stream: tuple[int, float, int] | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def delivered(self) -> list[Received]:
        """The requests this receiver accepted (answered 2xx)."""
        return [r for r in self.received if r.status is not None and 200 <= r.status < 300]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the sender went away before the whole request was read
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        request = Received(headers=headers, body=body, at=time.monotonic())
        self.received.append(request)
        self.started.set()
        status = self.plan.pop(0) if self.plan else self.always
        if self.delay:
            await asyncio.sleep(self.delay)
        request.status = status
        if self.stream is None:
            await send(
                {"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]}
            )
            await send({"type": "http.response.body", "body": b""})
            return
        size, pause, chunks = self.stream
        await send({"type": "http.response.start", "status": status, "headers": []})
        for _ in range(chunks):
            await asyncio.sleep(pause)
            await send({"type": "http.response.body", "body": b"x" * size, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def serve_receiver() -> AsyncIterator[Receiver]:
    """A Receiver on a loopback port, in the test's event loop."""
    app = Receiver()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, lifespan="on", timeout_graceful_shutdown=1
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
        await asyncio.sleep(0.01)
    app.url = f"http://127.0.0.1:{port}/ioc/events"
    try:
        yield app
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=5)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as app:
        yield app


@pytest.fixture
def ioc_settings(settings: Settings) -> Settings:
    """Fast retries, so the back-off and the dead letter happen within a test."""
    return settings.model_copy(
        update={
            "ioc_retry_base_seconds": 0.05,
            "ioc_retry_max_seconds": 0.2,
            "ioc_max_attempts": 3,
            "ioc_timeout_seconds": 2.0,
        }
    )


@pytest.fixture
def ioc_token(ring: KeyRing, settings: Settings) -> Callable[[str], Awaitable[dict[str, str]]]:
    """A bearer header of the demo `ioc` client (client credentials) with the given scopes."""

    async def make(scope: str) -> dict[str, str]:
        token, _ = await issue_access_token(
            ring,
            issuer=settings.public_url,
            subject="ioc",
            client_id="ioc",
            scope=scope,
            lifetime=300,
            roles=(),
        )
        return {"Authorization": f"Bearer {token}"}

    return make


async def report_case(conn: Connection, category: str = "blocked_drain") -> grid_api.CaseRef:
    lat, lon = grid_seed.grid_centre("G-0107")
    return await grid_api.report(
        conn,
        grid_api.NewCase(category=category, description="Drain blocked.", lat=lat, lon=lon),
        source="worker",
        reporter="worker-1",
        actor=workflows.Actor.system(),
    )


async def act(conn: Connection, case_id: Any, action: str, **body: Any) -> None:
    """Take `action` on the case's open task as the system (the loop's roles are grid's tests' concern)."""
    instance = await workflows.instance_for_subject(conn, grid_api.KIND, str(case_id))
    assert instance is not None
    task = next(t for t in instance.open_tasks if any(a.name == action for a in t.actions))
    await workflows.act(conn, task.id, action=action, actor=workflows.Actor.system(), **body)


async def to_handling(conn: Connection, case_id: Any) -> None:
    await act(conn, case_id, "register")
    await act(conn, case_id, "to_department")


async def drain(db: Database) -> None:
    """Hand every pending outbox event to the feed's subscriber (as the worker's drainer does)."""
    while await drain_once(db, [ioc_feed.subscription()], DrainPolicy()):
        pass


async def push_until(pusher: Pusher, done: Callable[[], Awaitable[bool]], *, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        await pusher.push_once()
        if await done():
            return True
        await asyncio.sleep(0.02)
    return False


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=5)
