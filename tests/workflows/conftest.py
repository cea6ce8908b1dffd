"""Fixtures for the workflow engine: a subject kind of the tests' own, a clock they move, actors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from identity import store as identity_store
from identity.api import RoleGrant
from identity.keys import KeyRing
from identity.tokens import issue_access_token
from onewindow.db import Connection, PoolDatabase
from onewindow.settings import Settings
from tests.conftest import RollbackDatabase, app_client, build_app
from workflows import engine, store
from workflows.api import Actor, Ending, SubjectContext, Transition
from workflows.definitions import parse

Headers = dict[str, str]


@dataclass
class Clock:
    """The engine's notion of now, moved by the test."""

    now: datetime = field(default_factory=lambda: datetime(2026, 9, 28, 9, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Subjects:
    """A subject kind of the tests: contexts set per subject; every hook call recorded in the
    database (so a rolled-back step leaves no trace there, as the engine promises)."""

    name: str = "test"
    contexts: dict[str, SubjectContext] = field(default_factory=dict)
    fail_on: str | None = None  # a to_state whose transition the owner refuses

    async def context(self, conn: Connection, subject_id: str) -> SubjectContext:
        return self.contexts.get(subject_id, SubjectContext(owner_unit="demo/market", applicant="citizen-1"))

    async def transitioned(self, conn: Connection, transition: Transition) -> None:
        if transition.to_state == self.fail_on:
            raise RuntimeError("the subject's owner refused")
        await conn.execute(
            "INSERT INTO test_hooks (subject_id, hook, detail) VALUES ($1, 'transitioned', $2)",
            transition.subject_id,
            f"{transition.from_state}->{transition.to_state}",
        )

    async def ended(self, conn: Connection, ending: Ending) -> None:
        await conn.execute(
            "INSERT INTO test_hooks (subject_id, hook, detail) VALUES ($1, 'ended', $2)",
            ending.subject_id,
            ending.outcome,
        )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def subjects() -> Subjects:
    return Subjects()


@pytest.fixture
async def wf(
    conn: Connection, settings: Settings, clock: Clock, subjects: Subjects
) -> AsyncIterator[engine.Runtime]:
    """The engine configured for Asia/Shanghai with the tests' clock and subject kind."""
    await conn.execute(
        "CREATE TEMPORARY TABLE test_hooks (seq serial, subject_id text, hook text, detail text) ON COMMIT DROP"
    )
    city = settings.model_copy(update={"timezone": "Asia/Shanghai"})
    yield engine.configure(city, [subjects], now=clock)
    engine.configure(settings)


async def hooks(conn: Connection, subject_id: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT hook, detail FROM test_hooks WHERE subject_id = $1 ORDER BY seq", subject_id
    )
    return [f"{r['hook']}:{r['detail']}" for r in rows]


async def upload(conn: Connection, text: str, *, by: str = "admin") -> store.DefinitionRow:
    row, _ = await engine.save_definition(conn, parse(text), source=text, media_type="yaml", by=by)
    return row


def officer(unit: str = "demo/market", subject: str = "officer-1", role: str = "officer") -> Actor:
    code = unit.rsplit("/", 1)[-1]
    return Actor(
        subject=subject, kind="person", roles=(RoleGrant(role=role, unit=code, path=unit),), name=subject
    )


def applicant(subject: str = "citizen-1") -> Actor:
    return Actor(subject=subject, kind="person", roles=(), name=subject)


async def open_task(conn: Connection, instance_id: UUID, state: str | None = None) -> Any:
    tasks = await store.open_tasks(conn, instance_id)
    matching = [t for t in tasks if state is None or t.state == state]
    assert len(matching) == 1, [t.state for t in tasks]
    return matching[0]


async def staff_member(conn: Connection, *, role: str = "officer", unit: str = "market") -> str:
    """A real, enabled person holding `role` in the department `unit` (made under a city `demo`
    when missing): someone a delegation can name. Returns the subject."""
    found = await identity_store.unit_by_code(conn, unit)
    if found is None:
        city = await identity_store.unit_by_code(conn, "demo") or await identity_store.upsert_unit(
            conn, code="demo", kind="city", parent=None, name_zh="市", name_en="City"
        )
        found = await identity_store.upsert_unit(
            conn, code=unit, kind="department", parent=city, name_zh=unit, name_en=unit
        )
    person_id = uuid4()
    made = await identity_store.insert_person(
        conn,
        person_id=person_id,
        username=f"staff-{person_id.hex[:12]}",
        display_name="Stand-in",
        email=None,
        email_verified=False,
        phone_hash=None,
        phone_enc=None,
        phone_verified=False,
        locale="zh",
    )
    assert made is not None
    await identity_store.insert_role_assignment(
        conn, person_id=person_id, role=role, unit_id=found.id, granted_by=None
    )
    return str(person_id)


@pytest.fixture
async def departments(conn: Connection) -> None:
    city = await identity_store.upsert_unit(
        conn, code="demo", kind="city", parent=None, name_zh="市", name_en="City"
    )
    for code in ("market", "fire", "urban"):
        await identity_store.upsert_unit(
            conn, code=code, kind="department", parent=city, name_zh=code, name_en=code
        )


@pytest.fixture
async def http(
    settings: Settings, db: RollbackDatabase, clock: Clock, subjects: Subjects, wf: engine.Runtime
) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(settings, db)
    # create_app configured the engine for the process; the tests want their clock and kind back.
    engine.configure(settings.model_copy(update={"timezone": "Asia/Shanghai"}), [subjects], now=clock)
    async with app_client(app) as client:
        yield client


@pytest.fixture
def bearer(ring: KeyRing, settings: Settings) -> Any:
    async def make(subject: str, *grants: tuple[str, str]) -> Headers:
        roles = tuple(RoleGrant(role=role, unit=path.rsplit("/", 1)[-1], path=path) for role, path in grants)
        token, _ = await issue_access_token(
            ring,
            issuer=settings.public_url,
            subject=subject,
            client_id="console",
            scope="openid staff",
            lifetime=300,
            roles=roles,
        )
        return {"Authorization": f"Bearer {token}"}

    return make


class Recorder(Subjects):
    """Hooks that write nothing (the committed tests have no temporary table)."""

    async def transitioned(self, conn: Any, transition: Any) -> None:
        return None

    async def ended(self, conn: Any, ending: Any) -> None:
        return None


@pytest.fixture
async def committed(
    committing_db: PoolDatabase, settings: Settings, clock: Clock
) -> AsyncIterator[PoolDatabase]:
    engine.configure(settings.model_copy(update={"timezone": "Asia/Shanghai"}), [Recorder()], now=clock)
    try:
        yield committing_db
    finally:
        async with committing_db.connection() as conn:
            await conn.execute(
                "TRUNCATE workflows.history, workflows.timers, workflows.tasks, workflows.tokens,"
                " workflows.instances, workflows.delegations, workflows.definitions, onewindow.idempotency_keys"
            )
        engine.configure(settings)
