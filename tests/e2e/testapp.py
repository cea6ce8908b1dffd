"""OneWindow's own app plus routes that only the end-to-end tests need, served by uvicorn.

- `POST /e2e/echo` reads a request body: no route of OneWindow takes a body yet, and litestar
  enforces the body limit only where a body is read.
- `GET /e2e/open` and `GET /e2e/guarded` are the same trivial handler without and with a bearer
  token guard: bench/run measures what the guard costs.
- `POST /e2e/workflows/{key}/{subject_id}` starts a workflow for a subject of the kind `e2e`
  (owned by demo/market): no context runs its work on the engine yet, so the end-to-end test of
  task actions over real HTTP starts its instances here (admins only).
- `GET /e2e/db` and `GET /e2e/redis` use PostgreSQL (through the transaction-per-request
  dependency) and Redis, so the outage tests can show that a request needing a server that is
  down answers 503 problem+json and works again when the server is back.

The factory builds the very app `onewindow serve` runs, from the same environment.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, get, post
from litestar.datastructures import State

from identity.api import require_role, require_signed_in
from onewindow.app import create_app
from onewindow.db import Connection
from onewindow.logs import configure_logging
from onewindow.serve import ensure_secret_key
from onewindow.settings import load_settings
from onewindow.web import resources
from workflows import engine
from workflows.api import Actor, Ending, InstanceView, SubjectContext, Transition


class E2ESubjects:
    """Subjects of the end-to-end tests: queued in demo/market, applicant citizen-e2e."""

    name = "e2e"

    async def context(self, conn: Connection, subject_id: str) -> SubjectContext:
        return SubjectContext(owner_unit="demo/market", applicant="citizen-e2e")

    async def transitioned(self, conn: Connection, transition: Transition) -> None:
        return None

    async def ended(self, conn: Connection, ending: Ending) -> None:
        return None


@post(
    "/e2e/workflows/{key:str}/{subject_id:str}",
    operation_id="e2eStartWorkflow",
    middleware=[require_role("admin")],
)
async def start_workflow(conn: Connection, key: str, subject_id: str) -> InstanceView:
    return await engine.start(
        conn, subject_kind="e2e", subject_id=subject_id, definition_key=key, actor=Actor.system()
    )


@post("/e2e/echo", operation_id="e2eEcho", status_code=200)
async def echo(request: Request[Any, Any, Any]) -> dict[str, int]:
    """Reads the raw body, through the same stream a handler's `data` parameter is parsed from."""
    return {"bytes": len(await request.body())}


@get("/e2e/db", operation_id="e2eDatabase")
async def database(conn: Connection) -> dict[str, int]:
    return {"answer": int(await conn.fetchval("SELECT 42"))}


@get("/e2e/redis", operation_id="e2eRedis")
async def redis_ping(state: State) -> dict[str, bool]:
    return {"pong": bool(await resources(state).redis.ping())}


@get("/e2e/open", operation_id="e2eOpen")
async def open_twin() -> dict[str, bool]:
    """The unguarded twin of /e2e/guarded: bench/run measures what the guard costs."""
    return {"ok": True}


@get("/e2e/guarded", operation_id="e2eGuarded", middleware=[require_signed_in()])
async def guarded_twin() -> dict[str, bool]:
    return {"ok": True}


def app() -> Litestar:
    settings = ensure_secret_key(load_settings())
    configure_logging(settings)
    built = create_app(
        settings, extra_handlers=[echo, database, redis_ping, open_twin, guarded_twin, start_workflow]
    )
    engine.runtime().register(E2ESubjects())  # after create_app, which configures the engine
    return built
