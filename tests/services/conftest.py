"""Shared fixtures for one-window approvals (services).

- `city`: the engine configured with the tests' clock (Asia/Shanghai, every context's subject
  kinds), the organisation (a city `demo` with the departments bureau, market, fire, urban,
  health), services' workflow definitions installed, and a small test catalog (`ITEMS`,
  `BUNDLES`) saved through the catalog's store. Yields the `People` of the city.
- `people`: real persons in identity (so contacts, names and role checks work), as engine
  Actors: two citizens, a clerk of the bureau, an officer and a supervisor per department.
- `bearer(actor, acr=...)`: an access token header for an Actor (citizens default to
  substantial assurance, what a password and SMS sign-in gives).
- `http`: the app over the test's rolled-back connection, with the engine on the tests' clock.
- `key()`: a fresh Idempotency-Key header.

Other parts add their own fixtures in tests/services/<part>_fixtures.py and build on these.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from identity import store as identity_store
from identity.keys import KeyRing
from identity.store import UnitRow
from identity.tokens import RoleGrant, issue_access_token
from onewindow import worker
from onewindow.db import Connection
from onewindow.settings import Settings
from services import api as services_api
from services import applications, catalog, catalog_store
from tests.conftest import RollbackDatabase, app_client, build_app
from tests.workflows.conftest import Clock
from workflows import engine
from workflows.api import Actor

Headers = dict[str, str]
Bearer = Callable[..., Awaitable[Headers]]

LOW = "urn:onewindow:loa:low"
SUBSTANTIAL = "urn:onewindow:loa:substantial"
HIGH = "urn:onewindow:loa:high"

# (code, name_zh, name_en): the departments of the test city, all under `demo`.
DEPARTMENTS: tuple[tuple[str, str, str], ...] = (
    ("bureau", "行政审批服务局", "Administrative Approval Service Bureau"),
    ("market", "市场监督管理局", "Market Regulation Department"),
    ("fire", "消防救援支队", "Fire and Rescue Department"),
    ("urban", "城市管理局", "Urban Management Department"),
    ("health", "卫生健康委员会", "Health Commission"),
)
REVIEWING = ("market", "fire", "urban", "health")


def _text(zh: str, en: str) -> catalog.Text:
    return catalog.Text(zh=zh, en=en)


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


COMPANY = {"type": "string", "minLength": 2, "maxLength": 100, "title": "Company name"}
ADDRESS = {"type": "string", "minLength": 5, "maxLength": 200, "title": "Business address"}
AREA = {"type": "number", "exclusiveMinimum": 0, "maximum": 100000, "title": "Floor area (m²)"}

ID_CARD = catalog.ChecklistEntry(code="id_card", name=_text("身份证", "Identity card"))
LEASE = catalog.ChecklistEntry(
    code="lease",
    name=_text("租赁合同", "Lease contract"),
    media_types=("application/pdf",),
    later_allowed=True,
)
FLOOR_PLAN = catalog.ChecklistEntry(
    code="floor_plan",
    name=_text("平面图", "Floor plan"),
    when={">": [{"var": "form.area"}, 50]},
    media_types=("application/pdf", "image/png"),
)
LICENCE_COPY = catalog.ChecklistEntry(
    code="business_licence",
    name=_text("营业执照", "Business licence"),
    reusable_certificate="t-business",
)

# The test catalog: four departments, both workflows, fees and none, certificate and decision.
ITEMS: dict[str, catalog.Item] = {
    item.code: item
    for item in (
        catalog.Item(
            code="t-business",
            department="market",
            name=_text("营业执照", "Business licence"),
            legal_days=20,
            promised_days=5,
            form_schema=_schema({"company_name": COMPANY, "address": ADDRESS}, ["company_name", "address"]),
            checklist=(ID_CARD, LEASE),
            min_assurance="substantial",
            workflow="approval-review",
            result="certificate",
            valid_days=365 * 5,
            life_events=("open-business",),
            keywords=("licence",),
        ),
        catalog.Item(
            code="t-food",
            department="health",
            name=_text("食品经营许可证", "Food operation licence"),
            legal_days=20,
            promised_days=10,
            form_schema=_schema(
                {"company_name": COMPANY, "address": ADDRESS, "area": AREA},
                ["company_name", "address", "area"],
            ),
            checklist=(ID_CARD, FLOOR_PLAN, LICENCE_COPY),
            fee_minor=30000,
            workflow="approval-two-step",
            result="certificate",
            valid_days=365,
            life_events=("open-business",),
        ),
        catalog.Item(
            code="t-fire",
            department="fire",
            name=_text("消防安全检查", "Fire safety inspection"),
            legal_days=15,
            promised_days=7,
            form_schema=_schema({"address": ADDRESS, "area": AREA}, ["address", "area"]),
            checklist=(FLOOR_PLAN,),
            workflow="approval-review",
            result="decision",
        ),
        catalog.Item(
            code="t-signage",
            department="urban",
            name=_text("户外招牌设置许可", "Outdoor signage permit"),
            legal_days=10,
            promised_days=3,
            form_schema=_schema(
                {"address": ADDRESS, "sign_text": {"type": "string", "minLength": 1, "maxLength": 50}},
                ["address", "sign_text"],
            ),
            fee_minor=5000,
            channels=("online", "counter"),
            workflow="approval-review",
            result="decision",
        ),
        catalog.Item(
            code="t-clinic",
            department="health",
            name=_text("诊所执业登记", "Clinic registration"),
            legal_days=30,
            promised_days=15,
            form_schema=_schema({"company_name": COMPANY}, ["company_name"]),
            min_assurance="high",
            channels=("counter",),
            workflow="approval-two-step",
            result="certificate",
            valid_days=None,
        ),
    )
}
BUNDLES: dict[str, catalog.Bundle] = {
    "t-restaurant": catalog.Bundle(
        code="t-restaurant",
        name=_text("开餐馆", "Open a restaurant"),
        items=("t-business", "t-food", "t-fire", "t-signage"),
        life_events=("open-business",),
    ),
}


@dataclass(frozen=True)
class People:
    """The persons of the test city, as the engine sees them (real people in identity)."""

    citizen: Actor
    other: Actor  # a second citizen, for "someone else's application"
    clerk: Actor  # a clerk of the bureau (the counter)
    officers: dict[str, Actor] = field(default_factory=dict)  # department code -> officer
    supervisors: dict[str, Actor] = field(default_factory=dict)  # department code -> supervisor


@pytest.fixture
def clock() -> Clock:
    return Clock()


def configure(settings: Settings, clock: Clock) -> engine.Runtime:
    """The engine for the city's time zone on the tests' clock, with every context's subject kinds;
    services' own per-process settings (what its engine hooks need)."""
    city = settings.model_copy(update={"timezone": "Asia/Shanghai"})
    applications.configure(city)
    return engine.configure(city, worker.subject_kinds(), now=clock)


async def make_person(
    conn: Connection, units: dict[str, UnitRow], name: str, *grants: tuple[str, str], locale: str = "zh"
) -> Actor:
    """A person in identity holding `grants` ((role, unit code), ...) as an Actor."""
    person_id = uuid.uuid4()
    made = await identity_store.insert_person(
        conn,
        person_id=person_id,
        username=f"t-{person_id.hex[:12]}",
        display_name=name,
        email=f"{person_id.hex[:12]}@test.onewindow.invalid",
        email_verified=True,
        phone_hash=None,
        phone_enc=None,
        phone_verified=False,
        locale=locale,
    )
    assert made is not None
    roles: list[RoleGrant] = []
    for role, code in grants:
        await identity_store.insert_role_assignment(
            conn, person_id=person_id, role=role, unit_id=units[code].id, granted_by=None
        )
        roles.append(RoleGrant(role=role, unit=code, path=units[code].path))
    return Actor(subject=str(person_id), kind="person", roles=tuple(roles), name=name)


async def seed_units(conn: Connection) -> dict[str, UnitRow]:
    city = await identity_store.upsert_unit(
        conn, code="demo", kind="city", parent=None, name_zh="示范市", name_en="Demo City"
    )
    units = {"demo": city}
    for code, name_zh, name_en in DEPARTMENTS:
        units[code] = await identity_store.upsert_unit(
            conn, code=code, kind="department", parent=city, name_zh=name_zh, name_en=name_en
        )
    return units


async def seed_catalog(conn: Connection, clock: Clock) -> None:
    """The test items and bundles, saved as an administrator would (version 1 each)."""
    for item in ITEMS.values():
        await catalog_store.save_item(conn, item, by="test-admin", now=clock())
    for bundle in BUNDLES.values():
        await catalog_store.save_bundle(conn, bundle, by="test-admin", now=clock())


@pytest.fixture
async def city(conn: Connection, settings: Settings, clock: Clock) -> AsyncIterator[People]:
    """The test city (units, people, workflow definitions, catalog) with the engine on `clock`."""
    configure(settings, clock)
    units = await seed_units(conn)
    await services_api.install(conn)
    await seed_catalog(conn, clock)
    people = People(
        citizen=await make_person(conn, units, "张三", ("citizen", "demo")),
        other=await make_person(conn, units, "李四", ("citizen", "demo")),
        clerk=await make_person(conn, units, "Clerk", ("clerk", "bureau")),
        officers={
            code: await make_person(conn, units, f"Officer {code}", ("officer", code)) for code in REVIEWING
        },
        supervisors={
            code: await make_person(conn, units, f"Supervisor {code}", ("supervisor", code))
            for code in REVIEWING
        },
    )
    yield people
    engine.configure(settings)


@pytest.fixture
def people(city: People) -> People:
    return city


@pytest.fixture
async def http(
    settings: Settings, db: RollbackDatabase, clock: Clock, city: People
) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(settings, db)
    configure(settings, clock)  # create_app configured the engine for the process; the tests want their clock
    async with app_client(app) as client:
        yield client


@pytest.fixture
def bearer(ring: KeyRing, settings: Settings) -> Bearer:
    """`await bearer(actor, acr=SUBSTANTIAL)`: the Authorization header of a fresh access token."""

    async def make(actor: Actor, *, acr: str | None = SUBSTANTIAL) -> Headers:
        staff = any(grant.role != "citizen" for grant in actor.roles)
        token, _ = await issue_access_token(
            ring,
            issuer=settings.public_url,
            subject=actor.subject,
            client_id="console" if staff else "citizen-app",
            scope="openid profile staff" if staff else "openid profile",
            lifetime=300,
            roles=actor.roles,
            acr=acr,
            name=actor.name,
        )
        return {"Authorization": f"Bearer {token}"}

    return make


def key() -> Headers:
    """A fresh Idempotency-Key header."""
    return {"Idempotency-Key": str(uuid.uuid4())}
