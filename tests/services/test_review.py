"""The review hooks (services.review.ItemKind) and the rules of applications, below HTTP: the
subject's context, working days without the applicant's time, a correction that lapses, the
counter's submission, a withdrawn draft."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest

from onewindow.db import Connection
from onewindow.errors import Conflict, RuleViolation, ValidationFailed
from services import application_store, applications, review
from tests.services.conftest import LOW, SUBSTANTIAL, People
from tests.services.test_applications import FIRE_FORM, act, supply
from tests.workflows.conftest import Clock
from workflows import api as workflows


async def submitted_fire(conn: Connection, people: People, clock: Clock, **form: object) -> UUID:
    app = await applications.create_draft(
        conn,
        applicant=people.citizen.subject,
        created_by=people.citizen.subject,
        channel="online",
        item_code="t-fire",
        form={**FIRE_FORM, **form},
        now=clock(),
    )
    await applications.submit(conn, app.id, actor=people.citizen, acr=SUBSTANTIAL, now=clock())
    return app.id


async def test_the_subject_context_is_the_form_the_item_and_the_department(
    conn: Connection, people: People, clock: Clock
) -> None:
    app_id = await submitted_fire(conn, people, clock)
    (item,) = await application_store.items_of(conn, app_id)
    context = await review.ItemKind().context(conn, str(item.id))
    assert context.owner_unit == "demo/fire"
    assert context.applicant == people.citizen.subject
    assert context.data == {
        "form": FIRE_FORM,
        "item": "t-fire",
        "fee_minor": 0,
        "channel": "online",
        "bundle": None,
    }


async def test_working_days_leave_out_the_time_the_applicant_had_it(
    conn: Connection, people: People, clock: Clock
) -> None:
    # Monday 28 September 2026, 09:00 in Shanghai is 01:00 UTC (the tests' clock).
    app_id = await submitted_fire(conn, people, clock)
    clock.advance(days=2)  # Wednesday: two working days used
    await act(
        conn, people.officers["fire"], str(app_id), "return", comment="Area?", data={"missing": ["area"]}
    )
    (item,) = await application_store.items_of(conn, app_id)
    promised_before = item.promised_at
    assert promised_before is not None
    clock.advance(days=14)  # two weeks with the applicant
    await applications.resubmit(conn, app_id, actor=people.citizen, comment=None, now=clock())
    (item,) = await application_store.items_of(conn, app_id)
    assert item.promised_at is not None
    assert item.promised_at >= promised_before + timedelta(days=14)
    clock.advance(days=1)  # Thursday of the third week: one more working day
    await act(conn, people.officers["fire"], str(app_id), "approve")
    (item,) = await application_store.items_of(conn, app_id)
    assert (item.status, item.corrections, item.working_days, item.on_time) == ("approved", 1, 3, True)


async def test_late_is_not_on_time(conn: Connection, people: People, clock: Clock) -> None:
    app_id = await submitted_fire(conn, people, clock)
    clock.advance(days=14)  # ten working days; the promise is seven
    await act(conn, people.officers["fire"], str(app_id), "approve")
    (item,) = await application_store.items_of(conn, app_id)
    assert (item.working_days, item.on_time) == (10, False)


async def test_a_correction_not_made_in_time_lapses(conn: Connection, people: People, clock: Clock) -> None:
    app_id = await submitted_fire(conn, people, clock)
    await act(
        conn, people.officers["fire"], str(app_id), "return", comment="Area?", data={"missing": ["area"]}
    )
    clock.advance(days=31)
    assert await workflows.fire_due_timers(conn) >= 1
    app = await application_store.application(conn, app_id)
    assert app is not None
    assert (app.status, app.withdrawn_reason) == ("withdrawn", "not corrected in time")
    (item,) = await application_store.items_of(conn, app_id)
    assert item.status == "withdrawn"
    decided = await conn.fetchval(
        "SELECT count(*) FROM onewindow.outbox WHERE topic = 'services.application.decided'"
    )
    assert decided == 0


async def test_a_counter_intake_counts_as_high_assurance(
    conn: Connection, people: People, clock: Clock
) -> None:
    app = await applications.create_draft(
        conn,
        applicant=people.citizen.subject,
        created_by=people.clerk.subject,
        channel="counter",
        item_code="t-clinic",
        form={"company_name": "滨河诊所"},
        now=clock(),
    )
    with pytest.raises(RuleViolation):
        async with conn.transaction():
            await applications.submit(conn, app.id, actor=people.clerk, acr=SUBSTANTIAL, now=clock())
    done = await applications.submit(
        conn, app.id, actor=people.clerk, acr=LOW, intake_by=people.clerk.subject, now=clock()
    )
    assert (done.status, done.intake_by) == ("in_review", people.clerk.subject)
    assert done.number is not None


async def test_numbers_count_up_per_year(conn: Connection, people: People, clock: Clock) -> None:
    first = await application_store.application(conn, await submitted_fire(conn, people, clock))
    second = await application_store.application(conn, await submitted_fire(conn, people, clock))
    assert first is not None
    assert second is not None
    assert (first.number, second.number) == ("YC-2026-000001", "YC-2026-000002")


async def test_a_draft_is_withdrawn_without_a_workflow(
    conn: Connection, people: People, clock: Clock
) -> None:
    app = await applications.create_draft(
        conn,
        applicant=people.citizen.subject,
        created_by=people.citizen.subject,
        channel="online",
        bundle_code="t-restaurant",
        now=clock(),
    )
    done = await applications.withdraw(conn, app.id, actor=people.citizen, reason="Not now.", now=clock())
    assert done.status == "withdrawn"
    assert {i.status for i in await application_store.items_of(conn, app.id)} == {"withdrawn"}
    with pytest.raises(Conflict):
        await applications.submit(conn, app.id, actor=people.citizen, acr=SUBSTANTIAL, now=clock())


async def test_only_a_pending_item_is_withdrawn_without_a_workflow(
    conn: Connection, people: People, clock: Clock
) -> None:
    """The no-instance withdrawal never overwrites an item a submission put in review."""
    app_id = await submitted_fire(conn, people, clock)
    (item,) = await application_store.items_of(conn, app_id)
    assert await application_store.withdraw_pending_item(conn, item.id, at=clock(), by="x") is None
    (still,) = await application_store.items_of(conn, app_id)
    assert still.status == "in_review"


async def test_pending_documents_are_allowed_only_where_the_item_allows(
    conn: Connection, people: People, clock: Clock, tmp_path: Path
) -> None:
    app = await applications.create_draft(
        conn,
        applicant=people.citizen.subject,
        created_by=people.clerk.subject,
        channel="counter",
        item_code="t-business",
        form={"company_name": "河畔小馆", "address": "滨河路 18 号"},
        now=clock(),
    )
    due = clock() + timedelta(days=7)
    with pytest.raises(ValidationFailed) as refused:
        async with conn.transaction():
            await applications.submit(
                conn,
                app.id,
                actor=people.clerk,
                acr=None,
                pending={"id_card": due},
                intake_by=people.clerk.subject,
                now=clock(),
            )
    # The identity card may not be left for later; the lease is simply missing.
    assert [e.pointer for e in refused.value.errors] == ["/documents/id_card", "/documents/lease"]
    await supply(conn, tmp_path, str(app.id), people.citizen.subject, "id_card", at=clock())
    done = await applications.submit(
        conn,
        app.id,
        actor=people.clerk,
        acr=None,
        pending={"lease": due},
        intake_by=people.clerk.subject,
        now=clock(),
    )
    assert done.status == "in_review"


async def test_withdrawing_a_bundle_keeps_what_was_decided(
    conn: Connection, people: People, clock: Clock, tmp_path: Path
) -> None:
    app = await applications.create_draft(
        conn,
        applicant=people.citizen.subject,
        created_by=people.citizen.subject,
        channel="online",
        bundle_code="t-restaurant",
        form={"company_name": "河畔小馆", "address": "滨河路 18 号", "area": 30, "sign_text": "河畔小馆"},
        now=clock(),
    )
    await supply(
        conn,
        tmp_path,
        str(app.id),
        people.citizen.subject,
        "id_card",
        "lease",
        "business_licence",
        at=clock(),
    )
    await applications.submit(conn, app.id, actor=people.citizen, acr=SUBSTANTIAL, now=clock())
    await act(conn, people.officers["fire"], str(app.id), "reject", comment="No fire exit.")
    done = await applications.withdraw(
        conn, app.id, actor=people.citizen, reason="Not without fire.", now=clock()
    )
    assert (done.status, done.outcome, done.withdrawn_reason) == ("withdrawn", None, "Not without fire.")
    statuses = {i.item_code: i.status for i in await application_store.items_of(conn, app.id)}
    assert statuses == {
        "t-business": "withdrawn",
        "t-food": "withdrawn",
        "t-fire": "rejected",
        "t-signage": "withdrawn",
    }
    for department in ("market", "health", "urban"):
        assert not await workflows.inbox(conn, people.officers[department], subject_kind="application_item")
    decided = await conn.fetchval(
        "SELECT count(*) FROM onewindow.outbox WHERE topic = 'services.application.decided'"
    )
    assert decided == 0
