"""Notifications from real events: a citizen's report and its loop (grid's own events), deadline
warnings to staff, then delivery through a real SMTP server and HTTP gateway, with idempotency,
retries and dead letters. Everything against the real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
from pydantic import SecretStr

from channels import notify
from channels import notify_store as store
from channels.notify_delivery import deliver_due, retry_delay
from channels.notify_senders import Senders
from grid import api as grid_api
from grid import seed as grid_seed
from identity.tokens import RoleGrant
from onewindow.db import Connection
from onewindow.events import Envelope
from onewindow.settings import Settings
from tests.channels.notify_fixtures import (
    GatewayReceiver,
    MailReceiver,
    events_of,
    make_due,
    make_person,
    notify_gateway,
    notify_smtp,
    rows_of,
)
from tests.conftest import RollbackDatabase
from tests.grid.conftest import CENTRE, G0107, RIVERSIDE, WORKER, bearer, city, clock, http
from tests.grid.test_cases import act
from workflows.api import Actor
from workflows.events import DeadlineBreached, DeadlineWarned

__all__ = ["bearer", "city", "clock", "http", "notify_gateway", "notify_smtp"]

ADDRESS = "reporter@example.org"
PHONE = "+8613800138000"


def _configure(settings: Settings, **update: Any) -> Settings:
    configured = settings.model_copy(update={"timezone": "Asia/Shanghai", **update})
    notify.configure(configured)
    return configured


def _smtp_settings(settings: Settings, port: int) -> Settings:
    return settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none"})


async def _citizen_report(conn: Connection, reporter: str) -> grid_api.CaseRef:
    lat, lon = grid_seed.grid_centre("G-0107")
    citizen = Actor(
        subject=reporter, kind="person", roles=(RoleGrant(role="citizen", unit="demo", path="demo"),)
    )
    return await grid_api.report(
        conn,
        grid_api.NewCase(
            category="street_light", description="The light at the gate is out.", lat=lat, lon=lon
        ),
        source="citizen",
        reporter=reporter,
        actor=citizen,
    )


async def _deliver_events(conn: Connection, topic: str) -> list[Envelope]:
    events = await events_of(conn, topic)
    for event in events:
        await notify.handle_event(conn, event)
    return events


async def test_a_citizens_report_is_acknowledged_by_email_in_their_language(
    conn: Connection,
    db: RollbackDatabase,
    settings: Settings,
    city: Any,
    notify_smtp: tuple[MailReceiver, int],
) -> None:
    configured = _configure(settings)
    english = await make_person(conn, configured, name="Alice Smith", email=ADDRESS, locale="en")
    chinese = await make_person(conn, configured, name="王小明", email="wang@example.org", locale="zh")
    english_case = await _citizen_report(conn, english)
    chinese_case = await _citizen_report(conn, chinese)

    await _deliver_events(conn, "grid.case.reported")
    queued = await rows_of(conn, template="report_received")
    assert {(r["recipient"], r["channel"], r["language"], r["state"]) for r in queued} == {
        (english, "email", "en", "pending"),
        (chinese, "email", "zh-CN", "pending"),
    }
    # No address is stored with the message, only what the template needs.
    assert all(ADDRESS not in str(r) and "wang@" not in str(r) for r in queued)

    receiver, port = notify_smtp
    sent = await deliver_due(db, configured, Senders.from_settings(_smtp_settings(configured, port)))
    assert sent == 2
    by_recipient = {m["To"]: m for m in receiver.messages}
    assert by_recipient[ADDRESS]["Subject"] == f"We received your report {english_case.number}"
    assert by_recipient[ADDRESS]["Content-Language"] == "en"
    assert by_recipient[ADDRESS].get_content().startswith("Dear Alice Smith,")
    assert by_recipient["wang@example.org"]["Subject"] == f"已收到您的报告 {chinese_case.number}"
    assert by_recipient["wang@example.org"]["Content-Language"] == "zh-CN"
    assert by_recipient["wang@example.org"].get_content().startswith("王小明，您好")
    done = await rows_of(conn, template="report_received")
    assert {(r["state"], r["sent_via"], r["attempts"]) for r in done} == {("sent", "smtp", 1)}
    assert all(r["params"] is None for r in done)  # nothing kept once sent


async def test_the_same_event_delivered_twice_sends_once(
    conn: Connection,
    db: RollbackDatabase,
    settings: Settings,
    city: Any,
    notify_smtp: tuple[MailReceiver, int],
) -> None:
    configured = _configure(settings)
    reporter = await make_person(conn, configured, email=ADDRESS)
    await _citizen_report(conn, reporter)
    [event] = await _deliver_events(conn, "grid.case.reported")
    await notify.handle_event(conn, msgspec.structs.replace(event, attempt=2))  # the drainer's retry

    receiver, port = notify_smtp
    senders = Senders.from_settings(_smtp_settings(configured, port))
    assert await deliver_due(db, configured, senders) == 1
    assert await deliver_due(db, configured, senders) == 0
    assert len(receiver.messages) == 1
    assert len(await rows_of(conn, event_id=event.id)) == 1


async def test_staff_reports_anonymous_reporters_and_none_preferences_get_nothing(
    conn: Connection, settings: Settings, city: Any
) -> None:
    configured = _configure(settings)
    quiet = await make_person(conn, configured, email=ADDRESS)
    await store.save_preference(conn, quiet, channel="none", language="en")
    await _citizen_report(conn, quiet)
    await _citizen_report(conn, "open311:anonymous")
    lat, lon = grid_seed.grid_centre("G-0107")
    await grid_api.report(
        conn,
        grid_api.NewCase(category="street_light", description="Out.", lat=lat, lon=lon),
        source="worker",
        reporter=WORKER.subject,
        actor=WORKER,
    )
    await _deliver_events(conn, "grid.case.reported")
    assert await rows_of(conn) == []


async def test_only_verified_addresses_are_written_to(
    conn: Connection, settings: Settings, city: Any
) -> None:
    configured = _configure(settings)
    unverified_only = await make_person(conn, configured, email="u@example.org", email_verified=False)
    mail_unverified = await make_person(
        conn, configured, email="m@example.org", email_verified=False, phone="+8613800000011"
    )
    await store.save_preference(conn, mail_unverified, channel="email", language="en")
    phone_unverified = await make_person(
        conn, configured, email="p@example.org", phone="+8613800000012", phone_verified=False
    )
    await store.save_preference(conn, phone_unverified, channel="sms", language="en")
    nowhere = await make_person(conn, configured, email="n@example.org", email_verified=False)
    await store.save_preference(conn, nowhere, channel="email", language="en")
    for reporter in (unverified_only, mail_unverified, phone_unverified, nowhere):
        await _citizen_report(conn, reporter)
    await _deliver_events(conn, "grid.case.reported")

    assert await rows_of(conn, recipient=unverified_only) == []  # by default: nothing unverified
    [by_sms] = await rows_of(conn, recipient=mail_unverified)
    assert (by_sms["channel"], by_sms["state"]) == ("sms", "pending")  # the verified one instead
    [by_mail] = await rows_of(conn, recipient=phone_unverified)
    assert (by_mail["channel"], by_mail["state"]) == ("email", "pending")
    [skipped] = await rows_of(conn, recipient=nowhere)
    assert (skipped["state"], skipped["last_error"], skipped["params"]) == (
        "skipped",
        "no verified e-mail address or phone number",
        None,
    )


async def test_the_loop_tells_the_reporter_by_sms_dispatched_fixed_and_closed_with_a_rating_link(
    conn: Connection,
    db: RollbackDatabase,
    settings: Settings,
    http: httpx.AsyncClient,
    bearer: Any,
    notify_gateway: tuple[GatewayReceiver, str],
) -> None:
    configured = _configure(settings, public_url="https://city.example")
    reporter = await make_person(conn, configured, name="王小明", phone=PHONE)  # no e-mail: sms
    case = await _citizen_report(conn, reporter)
    centre, worker = await bearer(CENTRE), await bearer(WORKER)
    case_id = str(case.id)
    await act(http, centre, case_id, "register")
    await act(http, centre, case_id, "to_worker")
    await act(http, worker, case_id, "handled", comment="Bulb replaced.")
    await act(http, centre, case_id, "passed")
    await act(http, centre, case_id, "close")
    await act(http, centre, case_id, "evaluate", data={"rating": 5})

    for topic in ("grid.case.reported", "grid.case.changed", "grid.case.closed"):
        await _deliver_events(conn, topic)
    rows = await rows_of(conn, recipient=reporter)
    # register, handled, close and evaluate are the city's own steps: no message for them.
    assert sorted(r["template"] for r in rows) == sorted(
        ["report_received", "case_dispatched", "case_fixed", "case_closed"]
    )
    assert {(r["channel"], r["language"]) for r in rows} == {("sms", "zh-CN")}

    receiver, url = notify_gateway
    gateway = configured.model_copy(update={"sms_gateway_url": url, "sms_gateway_token": SecretStr("t0ken")})
    assert await deliver_due(db, gateway, Senders.from_settings(gateway)) == 4
    texts = {body["text"] for _, body in receiver.requests}
    assert {body["to"] for _, body in receiver.requests} == {PHONE}
    assert f"【一窗通】您的报告{case.number}已派遣处理。" in texts
    assert f"【一窗通】您报告的问题{case.number}已处理并经现场核查。" in texts
    assert (
        f"【一窗通】您的报告{case.number}已办结，请评价：https://city.example/cases/{case.id}/rating" in texts
    )
    assert {r["sent_via"] for r in await rows_of(conn, recipient=reporter)} == {"sms-gateway"}


async def test_a_rejection_tells_the_reason_and_a_duplicate_names_the_first_report(
    conn: Connection, settings: Settings, http: httpx.AsyncClient, bearer: Any
) -> None:
    configured = _configure(settings)
    reporter = await make_person(conn, configured, name="Alice", email=ADDRESS, locale="en")
    first = await _citizen_report(conn, reporter)
    rejected = await _citizen_report(conn, reporter)
    duplicate = await _citizen_report(conn, reporter)
    centre = await bearer(CENTRE)
    await act(http, centre, str(first.id), "register")
    await act(http, centre, str(rejected.id), "reject", comment="This light belongs to the housing estate.")
    await act(http, centre, str(duplicate.id), "duplicate", data={"duplicate_of": str(first.id)})

    await _deliver_events(conn, "grid.case.changed")
    await _deliver_events(conn, "grid.case.closed")
    rows = {r["template"]: r for r in await rows_of(conn, recipient=reporter)}
    assert set(rows) == {"case_rejected", "case_duplicate"}  # the rejection's closing adds nothing
    assert rows["case_rejected"]["params"] == {
        "number": rejected.number,
        "reason": "This light belongs to the housing estate.",
    }
    assert rows["case_duplicate"]["params"] == {"number": duplicate.number, "primary": first.number}


async def test_an_smtp_failure_is_retried_with_backoff_and_then_sent(
    conn: Connection,
    db: RollbackDatabase,
    settings: Settings,
    city: Any,
    notify_smtp: tuple[MailReceiver, int],
) -> None:
    configured = _configure(settings, notify_retry_base_seconds=60.0)
    reporter = await make_person(conn, configured, email=ADDRESS, locale="en")
    await _citizen_report(conn, reporter)
    await _deliver_events(conn, "grid.case.reported")
    receiver, port = notify_smtp
    senders = Senders.from_settings(_smtp_settings(configured, port))

    receiver.fail_next = 1
    assert await deliver_due(db, configured, senders) == 1
    [failed] = await rows_of(conn, recipient=reporter)
    assert (failed["state"], failed["attempts"], failed["last_error"]) == ("failed", 1, "smtp 451")
    # 60 s from when the failure was recorded (the database's clock, as the record's own time).
    assert abs(failed["next_attempt_at"] - failed["updated_at"] - timedelta(seconds=60)) < timedelta(
        seconds=1
    )
    assert failed["params"] is not None  # still needed for the retry

    assert await deliver_due(db, configured, senders) == 0  # not due yet
    await make_due(conn)
    assert await deliver_due(db, configured, senders) == 1
    [sent] = await rows_of(conn, recipient=reporter)
    assert (sent["state"], sent["attempts"], sent["last_error"]) == ("sent", 2, None)
    assert len(receiver.messages) == 1
    assert receiver.messages[0]["Content-Language"] == "en"


async def test_a_message_is_dead_after_the_last_attempt_or_a_permanent_refusal(
    conn: Connection,
    db: RollbackDatabase,
    settings: Settings,
    city: Any,
    notify_smtp: tuple[MailReceiver, int],
) -> None:
    configured = _configure(settings, notify_max_attempts=3, notify_retry_base_seconds=10.0)
    assert [retry_delay(configured, n) for n in (1, 2, 3)] == [timedelta(seconds=s) for s in (10, 20, 40)]
    assert retry_delay(configured, 40) == timedelta(hours=6)
    assert retry_delay(configured, 5000) == timedelta(hours=6)  # however often: no overflow
    busy = await make_person(conn, configured, email=ADDRESS)
    await _citizen_report(conn, busy)
    await _deliver_events(conn, "grid.case.reported")
    receiver, port = notify_smtp
    senders = Senders.from_settings(_smtp_settings(configured, port))
    receiver.fail_next = 10
    for _ in range(3):
        assert await deliver_due(db, configured, senders) == 1
        await make_due(conn)
    [dead] = await rows_of(conn, recipient=busy)
    assert (dead["state"], dead["attempts"], dead["params"]) == ("dead", 3, None)
    await make_due(conn)
    assert await deliver_due(db, configured, senders) == 0

    refused = await make_person(conn, configured, email="nobody@example.org")
    await _citizen_report(conn, refused)
    await conn.execute("DELETE FROM onewindow.outbox WHERE topic = 'grid.case.reported'")
    receiver.fail_next, receiver.refuse_recipients = 0, True
    await _citizen_report(conn, refused)
    await _deliver_events(conn, "grid.case.reported")
    assert await deliver_due(db, configured, senders) == 1
    [refusal] = await rows_of(conn, recipient=refused)
    assert (refusal["state"], refusal["attempts"]) == ("dead", 1)
    assert refusal["last_error"].startswith("smtp recipient refused")
    assert "nobody@" not in refusal["last_error"]


async def _holders(conn: Connection, role: str, unit_path: str) -> set[str]:
    rows = await conn.fetch(
        "SELECT r.person_id FROM identity.role_assignments r JOIN identity.org_units u ON u.id = r.unit_id"
        " WHERE r.role = $1 AND u.path = $2 AND r.revoked_at IS NULL",
        role,
        unit_path,
    )
    return {str(r["person_id"]) for r in rows}


async def _person_with_role(
    conn: Connection, settings: Settings, role: str, unit: str, **contact: Any
) -> str:
    from identity import store as identity_store  # noqa: PLC0415 - identity's own store, for set-up

    subject = await make_person(conn, settings, **contact)
    found = await identity_store.unit_by_code(conn, unit)
    assert found is not None
    await identity_store.insert_role_assignment(
        conn, person_id=uuid.UUID(subject), role=role, unit_id=found.id, granted_by=None
    )
    return subject


async def test_deadline_warnings_go_to_the_assignee_or_the_nearest_role_holders(
    conn: Connection,
    db: RollbackDatabase,
    settings: Settings,
    city: Any,
    notify_smtp: tuple[MailReceiver, int],
) -> None:
    configured = _configure(settings)
    street = await _person_with_role(
        conn, configured, "command_centre", "riverside", name="Zhao", email="zhao@example.org", locale="en"
    )
    supervisor = await _person_with_role(
        conn, configured, "supervisor", "riverside-1", name="钱", email="qian@example.org"
    )
    assignee = await make_person(conn, configured, name="Sun", phone=PHONE, locale="en")
    case = await _citizen_report(conn, await make_person(conn, configured, email=ADDRESS))
    due = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)
    common: dict[str, Any] = {
        "instance_id": uuid.uuid4(),
        "task_id": uuid.uuid4(),
        "subject_kind": grid_api.KIND,
        "subject_id": str(case.id),
        "state": "register",
        "role": "command_centre",
        "unit_path": G0107,
        "due_at": due,
    }
    queued = DeadlineWarned(**common, assignee=None)
    claimed = DeadlineWarned(**common, assignee=assignee)
    breached = DeadlineBreached(**common, assignee=None, notify=("supervisor",))
    for event in (queued, claimed, breached):
        envelope = Envelope(
            id=uuid.uuid4(),
            topic=event.topic,
            occurred_at=due,
            payload=msgspec.to_builtins(event),
            attempt=1,
        )
        await notify.handle_event(conn, envelope)

    rows = [(r["template"], r["recipient"], r["channel"]) for r in await rows_of(conn, topic=queued.topic)]
    # The street's command centre (demo's command1 and our Zhao), not the city's command0.
    street_holders = await _holders(conn, "command_centre", RIVERSIDE)
    assert street in street_holders
    assert sorted(rows) == sorted(
        [("deadline_warned", subject, "email") for subject in street_holders]
        + [("deadline_warned", assignee, "sms")]
    )
    breach_rows = {r["recipient"] for r in await rows_of(conn, topic=breached.topic)}
    supervisors = await _holders(conn, "supervisor", f"{RIVERSIDE}/riverside-1")
    assert supervisor in supervisors
    assert breach_rows == street_holders | supervisors

    receiver, port = notify_smtp
    await deliver_due(db, configured, Senders.from_settings(_smtp_settings(configured, port)))
    to_zhao = [m for m in receiver.messages if m["To"] == "zhao@example.org"]
    assert sorted(m["Subject"] for m in to_zhao) == [
        f"Due soon: {case.number} (register)",
        f"Overdue: {case.number} (register)",
    ]
    assert "16:30" in to_zhao[0].get_content()  # the city's time (Asia/Shanghai), not UTC
    [to_qian] = [m for m in receiver.messages if m["To"] == "qian@example.org"]
    assert to_qian["Subject"] == f"已超时：{case.number}（register）"
