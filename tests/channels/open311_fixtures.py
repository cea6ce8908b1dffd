"""Fixtures of the Open311 tests (prefixed `o311_`, so they sit beside the other channels' tests
without a shared conftest): the demo city's units, grid layer, categories (with their Open311
attributes) and the case loop on a clock the tests move; an app client whose source address is
its own (the rate limits count per address, in a Redis every test shares); api keys; bearer
tokens; the shared JSON schemas."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]  # no stubs in the dev dependencies
import pytest
from defusedxml import ElementTree  # type: ignore[import-untyped]  # no stubs either
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from channels import open311_store
from channels.open311_seed import key_digest, key_prefix, new_key
from identity.keys import KeyRing
from identity.tokens import RoleGrant, issue_access_token
from onewindow.db import Connection
from onewindow.settings import Settings
from tests.conftest import TEST_SECRET, RollbackDatabase, build_app, lifespan
from tests.grid.conftest import configure, seed_city
from tests.workflows.conftest import Clock
from workflows import engine
from workflows.api import Actor

SCHEMAS = Path(__file__).resolve().parent / "open311_schemas"
Headers = dict[str, str]
RIVERSIDE = "demo/central/riverside"
CENTRE = Actor(
    subject="centre-o311",
    kind="person",
    roles=(RoleGrant(role="command_centre", unit="riverside", path=RIVERSIDE),),
    name="centre",
)
CITY_CENTRE = Actor(
    subject="centre-o311-city",
    kind="person",
    roles=(RoleGrant(role="command_centre", unit="demo", path="demo"),),
    name="city centre",
)
URBAN = Actor(
    subject="officer-o311",
    kind="person",
    roles=(RoleGrant(role="officer", unit="urban", path="demo/urban"),),
    name="officer",
)
WORKER = Actor(
    subject="worker-o311",
    kind="person",
    roles=(RoleGrant(role="grid_worker", unit="G-0107", path=f"{RIVERSIDE}/riverside-1/G-0107"),),
    name="worker",
)
ADMIN = Actor(
    subject="admin-o311",
    kind="person",
    roles=(RoleGrant(role="admin", unit="demo", path="demo"),),
    name="admin",
)
CITIZEN = Actor(
    subject=str(uuid.uuid4()),
    kind="person",
    roles=(RoleGrant(role="citizen", unit="demo", path="demo"),),
    name="citizen",
)


def validator(name: str) -> jsonschema.protocols.Validator:
    """A validator of one of the shared schemas (request.json, services.json, ...), with the
    `$ref`s between them resolved from the same folder."""
    resources = [
        (path.name, Resource.from_contents(json.loads(path.read_text()), default_specification=DRAFT202012))
        for path in SCHEMAS.glob("*.json")
    ]
    registry: Registry[Any] = Registry().with_resources(resources)
    schema = json.loads((SCHEMAS / name).read_text())
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema, registry=registry, format_checker=cls.FORMAT_CHECKER)


def valid(name: str, document: Any) -> Any:
    validator(name).validate(document)
    return document


def xml(reply: httpx.Response) -> Any:
    assert reply.headers["content-type"].startswith("text/xml"), reply.headers["content-type"]
    return ElementTree.fromstring(reply.content)


@pytest.fixture
def o311_clock() -> Clock:
    return Clock()


@pytest.fixture
async def o311_city(conn: Connection, settings: Settings, o311_clock: Clock) -> AsyncIterator[engine.Runtime]:
    """grid's test city (tests/grid/conftest.py): units, layer, categories, the case loop."""
    runtime = configure(settings, o311_clock)
    await seed_city(conn, settings, o311_clock)
    yield runtime
    engine.configure(settings)


@pytest.fixture
def o311_settings(settings: Settings) -> Settings:
    """The city's time zone, and rate limits the tests do not reach unless they mean to."""
    return settings.model_copy(
        update={
            "timezone": "Asia/Shanghai",
            "open311_rate_per_minute": 1000,
            "open311_key_rate_per_minute": 1000,
        }
    )


@asynccontextmanager
async def o311_client(
    settings: Settings, db: RollbackDatabase, clock: Clock, *, address: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(settings, db)
    configure(settings, clock)  # create_app configured the engine; the tests want their clock
    source = address or f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"  # noqa: S311
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app, client=(source, 40000))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
async def o311_http(
    o311_settings: Settings, db: RollbackDatabase, o311_clock: Clock, o311_city: engine.Runtime
) -> AsyncIterator[httpx.AsyncClient]:
    async with o311_client(o311_settings, db, o311_clock) as http:
        yield http


async def issue_key(conn: Connection, *, app: str = "test-app", rate_per_minute: int | None = None) -> str:
    key = new_key()
    row = await open311_store.insert_key(
        conn,
        app=app,
        digest=key_digest(key),
        prefix=key_prefix(key),
        rate_per_minute=rate_per_minute,
        by="test",
    )
    assert row is not None
    return key


@pytest.fixture
async def o311_key(conn: Connection, o311_city: engine.Runtime) -> str:
    return await issue_key(conn)


@pytest.fixture
async def o311_ring(db: RollbackDatabase) -> KeyRing:
    keys = KeyRing(db, TEST_SECRET.encode())
    await keys.load()
    return keys


Bearer = Callable[[Actor], Awaitable[Headers]]


@pytest.fixture
def o311_bearer(o311_ring: KeyRing, settings: Settings) -> Bearer:
    async def make(actor: Actor) -> Headers:
        token, _ = await issue_access_token(
            o311_ring,
            issuer=settings.public_url,
            subject=actor.subject,
            client_id="citizen-app",
            scope="openid",
            lifetime=300,
            roles=actor.roles,
        )
        return {"Authorization": f"Bearer {token}"}

    return make


def form(**fields: Any) -> dict[str, Any]:
    """Form fields; attribute values as `attribute[code]` (lists as `attribute[code][]`)."""
    body: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "attributes":
            for code, given in value.items():
                if isinstance(given, list):
                    body[f"attribute[{code}][]"] = given
                else:
                    body[f"attribute[{code}]"] = given
        else:
            body[name] = value
    return body


async def step(http: httpx.AsyncClient, headers: Headers, case_id: str, action: str, **body: Any) -> None:
    """Act on the case's open step through the grid and workflow HTTP API, as staff do."""
    case = (await http.get(f"/api/v1/grid/cases/{case_id}", headers=headers)).json()
    task = next(t for t in case["open_tasks"] if action in t["actions"])
    reply = await http.post(
        f"/api/v1/tasks/{task['id']}/actions",
        json={"action": action, **body},
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert reply.status_code == 200, reply.text
