"""The demo applications (services.seed.seed_applications): one in every state, made through the
real functions, so the rows, their workflow instances, documents, certificates and follow-ups
agree; seeding twice adds nothing. Run on the rolled-back connection after identity's,
workflows' and the catalog's demo seeds, with the engine on the tests' clock."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from identity import seed as identity_seed
from onewindow.db import Connection
from onewindow.settings import Settings
from services import applications, certificates, ratings
from services.seed import DemoPeople, demo_people, seed_applications, seed_catalog
from tests.services.conftest import configure
from tests.workflows.conftest import Clock
from workflows import api as workflows
from workflows import engine
from workflows import seed as workflows_seed


@pytest.fixture
async def demo(conn: Connection, settings: Settings, clock: Clock) -> AsyncIterator[DemoPeople]:
    """The demo city with its applications; yields the demo people."""
    configure(settings, clock)
    try:
        await identity_seed.seed_demo(conn, settings)
        await workflows_seed.seed_demo(conn, settings)
        await seed_catalog(conn, settings)
        await seed_applications(conn, settings)
        yield await demo_people(conn, settings)
    finally:
        engine.configure(settings)


async def _allowed(conn: Connection, table: str) -> set[str]:
    """The values the schema's CHECK constraint on `table.status` allows."""
    definitions = await conn.fetch(
        "SELECT pg_get_constraintdef(c.oid) AS d FROM pg_constraint c"
        " JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
        " WHERE n.nspname = 'services' AND t.relname = $1 AND c.contype = 'c'",
        table,
    )
    found = [d["d"] for d in definitions if "status" in d["d"]]
    assert len(found) == 1
    return set(re.findall(r"'([a-z_]+)'::text", found[0]))


async def _column(conn: Connection, sql: str, *args: Any) -> list[Any]:
    return [row[0] for row in await conn.fetch(sql, *args)]


async def test_every_application_status_appears(conn: Connection, demo: DemoPeople) -> None:
    allowed = await _allowed(conn, "applications")
    assert len(allowed) == 8  # the CHECK list was read, not an empty set
    seen = set(await _column(conn, "SELECT DISTINCT status FROM services.applications"))
    assert seen == allowed


async def test_every_item_status_appears(conn: Connection, demo: DemoPeople) -> None:
    allowed = await _allowed(conn, "application_items")
    assert len(allowed) == 7
    seen = set(await _column(conn, "SELECT DISTINCT status FROM services.application_items"))
    assert seen == allowed


async def test_every_outcome_appears(conn: Connection, demo: DemoPeople) -> None:
    outcomes = await _column(
        conn, "SELECT outcome FROM services.applications WHERE status = 'decided' ORDER BY outcome"
    )
    assert set(outcomes) == {"approved", "rejected", "partly_approved"}


async def test_the_applications_are_citizen1s(conn: Connection, demo: DemoPeople) -> None:
    applicants = await _column(conn, "SELECT DISTINCT applicant FROM services.applications")
    assert applicants == [demo.citizen.subject]


async def test_every_submitted_item_has_a_workflow_instance_that_agrees(
    conn: Connection, demo: DemoPeople
) -> None:
    rows = await conn.fetch(
        "SELECT i.id, i.status FROM services.application_items i"
        " JOIN services.applications a ON a.id = i.application_id WHERE a.number IS NOT NULL"
        " AND a.status NOT IN ('returned', 'submitted')"
    )
    assert rows
    for row in rows:
        instance = await workflows.instance_for_subject(conn, applications.KIND, str(row["id"]))
        assert instance is not None
        ended = row["status"] in ("approved", "rejected", "withdrawn")
        assert (instance.status != "running") == ended, (row["status"], instance.status)
        if ended:
            assert instance.outcome == row["status"]


async def test_the_restaurant_in_review_has_four_departments_one_approved(
    conn: Connection, demo: DemoPeople
) -> None:
    rows = await conn.fetch(
        "SELECT i.department, i.status FROM services.application_items i"
        " JOIN services.applications a ON a.id = i.application_id"
        " WHERE a.bundle_code = 'open-restaurant' AND a.status = 'in_review' ORDER BY i.position"
    )
    assert [r["department"] for r in rows] == ["market", "health", "fire", "urban"]
    assert [r["status"] for r in rows] == ["approved", "in_review", "in_review", "in_review"]


async def test_the_counter_states(conn: Connection, demo: DemoPeople) -> None:
    # Prepared online, sent to be finished at the counter: numbered, in the queue, no workflow yet;
    # the contracts uploaded online, the certificate and the tax receipt to be brought.
    [waiting] = await conn.fetch(
        "SELECT a.id, a.number, a.channel, a.submitted_at, i.id AS item_id, i.item_code, i.status"
        " FROM services.applications a JOIN services.application_items i ON i.application_id = a.id"
        " WHERE a.status = 'submitted'"
    )
    assert (waiting["item_code"], waiting["channel"], waiting["status"]) == (
        "second-hand-housing-transfer",
        "online",
        "pending",
    )
    assert re.fullmatch(r"YC-\d{4}-\d{6}", waiting["number"])
    assert waiting["submitted_at"] is None
    assert await workflows.instance_for_subject(conn, applications.KIND, str(waiting["item_id"])) is None
    supplied = await _column(
        conn,
        "SELECT checklist_code FROM services.application_documents WHERE application_id = $1 ORDER BY 1",
        waiting["id"],
    )
    assert supplied == ["mortgage_contract", "sale_contract"]
    returned = await conn.fetchrow(
        "SELECT missing, receipt_number FROM services.applications WHERE status = 'returned'"
    )
    assert returned is not None
    assert returned["receipt_number"].startswith("YC-R-")
    assert {entry["pointer"] for entry in returned["missing"]} == {
        "/documents/hygiene_inspection_report",
        "/documents/business_licence",
    }
    pending = await conn.fetch(
        "SELECT d.checklist_code, d.due_at, a.status, a.channel FROM services.application_documents d"
        " JOIN services.applications a ON a.id = d.application_id WHERE d.status = 'pending'"
    )
    assert [(r["checklist_code"], r["status"], r["channel"]) for r in pending] == [
        ("lease_contract", "in_review", "counter")
    ]


async def test_the_correction_lists_what_to_fix(conn: Connection, demo: DemoPeople) -> None:
    missing = await _column(
        conn, "SELECT missing FROM services.applications WHERE status = 'needs_correction'"
    )
    assert len(missing) == 1
    assert [entry["item"] for entry in missing[0]] == ["medical-institution-registration"]
    assert [fix["code"] for fix in missing[0][0]["what_to_fix"]] == ["floor_plan", "physician_licences"]


async def test_the_fee_was_paid_through_the_development_provider(conn: Connection, demo: DemoPeople) -> None:
    paid = await conn.fetch("SELECT provider, status, amount_minor FROM services.payments")
    assert [(r["provider"], r["status"], r["amount_minor"]) for r in paid] == [
        ("development", "confirmed", 120000)
    ]


async def test_the_certificates_verify_and_one_was_handed_over(
    conn: Connection, demo: DemoPeople, settings: Settings
) -> None:
    held = await certificates.held_by(conn, demo.citizen.subject)
    # road excavation; planning and drainage of build-house; the first restaurant's business
    # licence; the four of the rated restaurant.
    assert len(held) == 8
    now = workflows.now()
    for row in held:
        verified = await certificates.verify(conn, row.number, now=now, settings=settings)
        assert verified.status == "valid", row.number
    handed = [row for row in held if row.handed_over_at is not None]
    assert [(row.item_code, row.handed_over_by) for row in handed] == [
        ("road-excavation-permit", demo.clerk.subject)
    ]


async def test_a_certificate_was_reused_for_a_checklist_entry(conn: Connection, demo: DemoPeople) -> None:
    reused = await conn.fetch(
        "SELECT checklist_code, certificate_number FROM services.application_documents WHERE status = 'reused'"
    )
    assert [r["checklist_code"] for r in reused] == ["business_licence"]
    assert reused[0]["certificate_number"].startswith("YC-CERT-")


async def test_the_ratings_and_the_open_follow_ups(conn: Connection, demo: DemoPeople) -> None:
    levels = await _column(conn, "SELECT level FROM services.ratings ORDER BY level")
    assert levels == [1, 5]
    follow_ups = await conn.fetch("SELECT department, status FROM services.follow_ups ORDER BY department")
    assert [(r["department"], r["status"]) for r in follow_ups] == [
        ("fire", "open"),
        ("health", "open"),
        ("market", "open"),
        ("urban", "open"),
    ]
    for department in ("fire", "health", "market", "urban"):
        tasks = await workflows.inbox(conn, demo.supervisors[department], subject_kind=ratings.KIND)
        assert len(tasks) == 1, department


async def test_seeding_twice_adds_no_application(
    conn: Connection, demo: DemoPeople, settings: Settings
) -> None:
    counted = "SELECT (SELECT count(*) FROM services.applications) AS a, (SELECT count(*) FROM services.documents) AS d"
    before = dict(await conn.fetchrow(counted) or {})
    assert before["a"] == 14
    await seed_applications(conn, settings)
    assert dict(await conn.fetchrow(counted) or {}) == before
