"""Races on real, separate connections whose transactions commit: a withdrawal racing a
submission (whichever comes second is refused, and the application never ends withdrawn with its
review still running); a payment racing a withdrawal (locks in the engine's order: no deadlock)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import UUID

import pytest

from identity.tokens import RoleGrant
from onewindow.db import PoolDatabase
from onewindow.errors import Conflict
from onewindow.settings import Settings
from services import api as services_api
from services import application_store, applications, payments
from tests.services.conftest import SUBSTANTIAL, configure, seed_catalog, seed_units
from tests.workflows.conftest import Clock
from workflows import engine
from workflows.api import Actor

CITIZEN = Actor(subject="race-citizen", kind="person", name="Racer")
FORM = {"address": "1 Race Road, Demo City", "area": 10}  # no floor plan asked below 50 m²


@pytest.fixture
async def committed(
    committing_db: PoolDatabase, settings: Settings, clock: Clock
) -> AsyncIterator[PoolDatabase]:
    """The test city's units, workflow definitions and catalog, committed (no persons: the
    applicant is a subject the engine does not look up); all removed afterwards."""
    configure(settings, clock)
    async with committing_db.transaction() as conn:
        known = {r["code"] for r in await conn.fetch("SELECT code FROM identity.org_units")}
        await seed_units(conn)
        await services_api.install(conn)
        await seed_catalog(conn, clock)
    try:
        yield committing_db
    finally:
        async with committing_db.connection() as conn:
            await conn.execute(
                "TRUNCATE services.certificates, services.follow_ups, services.ratings, services.payments,"
                " services.application_documents, services.application_items, services.applications,"
                " services.number_counters, services.bundle_versions, services.bundles,"
                " services.item_versions, services.items, workflows.history, workflows.timers,"
                " workflows.tasks, workflows.tokens, workflows.instances, workflows.delegations,"
                " workflows.definitions, onewindow.idempotency_keys CASCADE"
            )
            await conn.execute(
                "DELETE FROM identity.org_units WHERE NOT (code = ANY($1::text[])) AND parent_id IS NOT NULL",
                sorted(known),
            )
            await conn.execute(
                "DELETE FROM identity.org_units WHERE NOT (code = ANY($1::text[]))", sorted(known)
            )
        engine.configure(settings)


async def draft(db: PoolDatabase, clock: Clock) -> UUID:
    async with db.transaction() as conn:
        app = await applications.create_draft(
            conn,
            applicant=CITIZEN.subject,
            created_by=CITIZEN.subject,
            channel="online",
            item_code="t-fire",
            form=FORM,
            now=clock(),
        )
    return app.id


async def test_a_withdrawal_waiting_for_a_submission_is_refused(
    committed: PoolDatabase, clock: Clock
) -> None:
    """The submission holds the application while it starts the review; the withdrawal, which
    read a draft, waits for it and then finds the application sent on: 409, nothing written.
    (Without the application's lock it overwrote the item `in_review` with `withdrawn` and
    withdrew the application under a running review.)"""
    app_id = await draft(committed, clock)
    submitting = asyncio.Event()

    async def submit() -> str:
        async with committed.transaction() as conn:
            await applications.submit(conn, app_id, actor=CITIZEN, acr=SUBSTANTIAL, now=clock())
            submitting.set()
            await asyncio.sleep(0.3)  # hold the locks: the withdrawal must wait
        return "submitted"

    async def withdraw() -> str:
        await submitting.wait()
        try:
            async with committed.transaction() as conn:
                await applications.withdraw(
                    conn, app_id, actor=CITIZEN, reason="Changed my mind.", now=clock()
                )
        except Conflict:
            return "409"
        return "withdrawn"

    assert list(await asyncio.gather(submit(), withdraw())) == ["submitted", "409"]
    async with committed.connection() as conn:
        app = await application_store.application(conn, app_id)
        items = await application_store.items_of(conn, app_id)
        instance = await engine.instance_for_subject(conn, applications.KIND, str(items[0].id))
    assert app is not None
    assert app.status == "in_review"
    assert [i.status for i in items] == ["in_review"]
    assert instance is not None
    assert instance.status == "running"


async def test_a_submission_waiting_for_a_withdrawal_is_refused(
    committed: PoolDatabase, clock: Clock
) -> None:
    app_id = await draft(committed, clock)
    withdrawing = asyncio.Event()

    async def withdraw() -> str:
        async with committed.transaction() as conn:
            await applications.withdraw(conn, app_id, actor=CITIZEN, reason="Changed my mind.", now=clock())
            withdrawing.set()
            await asyncio.sleep(0.3)
        return "withdrawn"

    async def submit() -> str:
        await withdrawing.wait()
        try:
            async with committed.transaction() as conn:
                await applications.submit(conn, app_id, actor=CITIZEN, acr=SUBSTANTIAL, now=clock())
        except Conflict:
            return "409"
        return "submitted"

    assert list(await asyncio.gather(withdraw(), submit())) == ["withdrawn", "409"]
    async with committed.connection() as conn:
        app = await application_store.application(conn, app_id)
        items = await application_store.items_of(conn, app_id)
        started = await conn.fetchval("SELECT count(*) FROM workflows.instances")
    assert app is not None
    assert app.status == "withdrawn"
    assert [i.status for i in items] == ["withdrawn"]
    assert started == 0


URBAN_OFFICER = Actor(
    subject="race-officer",
    kind="person",
    name="Officer",
    roles=(RoleGrant(role="officer", unit="urban", path="demo/urban"),),
)


class GatedProvider:
    """A typed fake of a payment platform that confirms only when the test opens the gate."""

    name = "gated"

    def __init__(self) -> None:
        self.collecting = asyncio.Event()
        self.gate = asyncio.Event()

    async def collect(self, request: payments.PaymentRequest) -> payments.ProviderReply:
        self.collecting.set()
        await self.gate.wait()
        return payments.ProviderReply(reference=f"G-{request.payment_id}", status="confirmed")


async def test_a_payment_and_a_withdrawal_at_once_do_not_deadlock(
    committed: PoolDatabase, clock: Clock
) -> None:
    """The payment used to lock the application, then (acting `paid`) the instance; a withdrawal
    locks the instance, then the application: each waited for the other. Now the withdrawal goes
    first and the payment finds nothing to pay (409), nothing of it written."""
    async with committed.transaction() as conn:
        app = await applications.create_draft(
            conn,
            applicant=CITIZEN.subject,
            created_by=CITIZEN.subject,
            channel="online",
            item_code="t-signage",
            form={"address": "18 Riverside Road", "sign_text": "Noodles"},
            now=clock(),
        )
        await applications.submit(conn, app.id, actor=CITIZEN, acr=SUBSTANTIAL, now=clock())
        (item,) = await application_store.items_of(conn, app.id)
        instance = await engine.instance_for_subject(conn, applications.KIND, str(item.id))
        assert instance is not None
        await engine.act(conn, instance.open_tasks[0].id, action="approve", actor=URBAN_OFFICER)
    provider = GatedProvider()

    async def pay() -> str:
        try:
            async with committed.transaction() as conn:
                await payments.pay(
                    conn, app.id, item.id, payer=CITIZEN.subject, provider=provider, now=clock()
                )
        except Conflict:
            return "409"
        return "paid"

    async def withdraw() -> str:
        await provider.collecting.wait()
        async with committed.transaction() as conn:
            await applications.withdraw(conn, app.id, actor=CITIZEN, reason="Too dear.", now=clock())
        return "withdrawn"

    async def open_gate() -> None:
        await provider.collecting.wait()
        await asyncio.sleep(0.3)  # the withdrawal runs meanwhile (it used to wait for the payment)
        provider.gate.set()

    results = await asyncio.wait_for(asyncio.gather(pay(), withdraw(), open_gate()), timeout=20)
    assert list(results) == ["409", "withdrawn", None]
    async with committed.connection() as conn:
        found = await application_store.application(conn, app.id)
        (row,) = await application_store.items_of(conn, app.id)
        paid = await application_store.payments_of(conn, item.id)
    assert found is not None
    assert (found.status, row.status, paid) == ("withdrawn", "withdrawn", [])
