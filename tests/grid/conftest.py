"""Fixtures for grid management: the demo city's units, categories and layer, the engine with
grid's subject kind and a clock the tests move, actors and bearer tokens."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from grid import api as grid_api
from grid import seed as grid_seed
from identity import seed as identity_seed
from identity.keys import KeyRing
from identity.tokens import RoleGrant, issue_access_token
from onewindow.db import Connection
from onewindow.settings import Settings
from tests.conftest import RollbackDatabase, app_client, build_app
from tests.workflows.conftest import Clock
from workflows import engine
from workflows.api import Actor

Headers = dict[str, str]

RIVERSIDE = "demo/central/riverside"
G0107 = f"{RIVERSIDE}/riverside-1/G-0107"
G0105 = f"{RIVERSIDE}/riverside-1/G-0105"
G0301 = "demo/central/hillside/hillside-1/G-0301"


@pytest.fixture
def clock() -> Clock:
    return Clock()


def configure(settings: Settings, clock: Clock) -> engine.Runtime:
    return engine.configure(
        settings.model_copy(update={"timezone": "Asia/Shanghai"}), [grid_api.subject_kind()], now=clock
    )


async def seed_city(conn: Connection, settings: Settings, clock: Clock) -> None:
    """The demo city's units, the grid layer, categories and the case loop; no cases."""
    await identity_seed.seed_demo(conn, settings)
    await grid_api.install(conn)
    from grid import layer  # noqa: PLC0415 - private module, used by grid's own tests

    await layer.import_layer(conn, grid_seed.layer_document(), by="test", at=clock())
    await grid_seed.seed_categories(conn)


@pytest.fixture
async def city(conn: Connection, settings: Settings, clock: Clock) -> AsyncIterator[engine.Runtime]:
    """The demo city's units, the grid layer, categories and the case loop; no cases."""
    runtime = configure(settings, clock)
    await seed_city(conn, settings, clock)
    yield runtime
    engine.configure(settings)


def person(subject: str, *grants: tuple[str, str]) -> Actor:
    return Actor(
        subject=subject,
        kind="person",
        roles=tuple(RoleGrant(role=role, unit=path.rsplit("/", 1)[-1], path=path) for role, path in grants),
        name=subject,
    )


WORKER = person("worker-1", ("grid_worker", G0107))
WORKER_ELSEWHERE = person("worker-2", ("grid_worker", G0301))
CENTRE = person("centre-1", ("command_centre", RIVERSIDE))
CITY_CENTRE = person("centre-0", ("command_centre", "demo"))
URBAN = person("officer-urban", ("officer", "demo/urban"))
WATER = person("officer-water", ("officer", "demo/water"))


@pytest.fixture
async def http(
    settings: Settings, db: RollbackDatabase, clock: Clock, city: engine.Runtime
) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(settings, db)
    configure(settings, clock)  # create_app configured the engine for the process; the tests want their clock
    async with app_client(app) as client:
        yield client


@pytest.fixture
def bearer(ring: KeyRing, settings: Settings) -> Any:
    async def make(actor: Actor) -> Headers:
        token, _ = await issue_access_token(
            ring,
            issuer=settings.public_url,
            subject=actor.subject,
            client_id="console",
            scope="openid staff",
            lifetime=300,
            roles=actor.roles,
        )
        return {"Authorization": f"Bearer {token}"}

    return make


def key() -> Headers:
    return {"Idempotency-Key": str(uuid.uuid4())}
