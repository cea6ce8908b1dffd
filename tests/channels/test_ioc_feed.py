"""The IOC feed pushed to a real local HTTP receiver: CloudEvents parsed with the `cloudevents` SDK,
signatures checked with the `standardwebhooks` library, per-incident sequence and order, back-off,
dead letters and replay, secret rotation, and JSON Schema validation of every event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any, cast

import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest
from cloudevents.core.formats.json import JSONFormat
from pydantic import SecretStr
from standardwebhooks import Webhook, WebhookVerificationError

from channels import ioc_endpoints, ioc_feed, ioc_push, ioc_store, webhooks
from channels.ioc_push import Pusher
from onewindow.db import Connection, PoolDatabase
from onewindow.errors import StartupError
from onewindow.events import Envelope
from onewindow.retry import backoff
from onewindow.settings import Settings
from tests.channels.ioc_fixtures import (
    Receiver,
    act,
    drain,
    ioc_settings,
    push_until,
    receiver,
    report_case,
    serve_receiver,
    to_handling,
)
from tests.conftest import RollbackDatabase
from tests.grid.conftest import city, clock
from workflows import engine

__all__ = ["city", "clock", "ioc_settings", "receiver"]  # fixtures

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "ioc-feed"
SCHEMA_OF = {
    "city.onewindow.grid.case.reported": "case-reported.json",
    "city.onewindow.grid.case.changed": "case-changed.json",
    "city.onewindow.grid.case.closed": "case-closed.json",
}


def validate(event: dict[str, Any]) -> None:
    schema = json.loads((SCHEMAS / SCHEMA_OF[event["type"]]).read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(event)


async def endpoint(
    conn: Connection, settings: Settings, url: str, secret: str = "generate"
) -> ioc_endpoints.EndpointView:
    return await ioc_endpoints.create(
        conn, settings, ioc_endpoints.NewEndpoint(name="IOC", url=url, secret=secret), by="test"
    )


async def states(conn: Connection) -> list[tuple[int, str]]:
    rows = await conn.fetch("SELECT sequence, state FROM channels.ioc_deliveries ORDER BY event_position")
    return [(row["sequence"], row["state"]) for row in rows]


async def test_every_report_and_change_is_pushed_signed_in_sequence(
    conn: Connection, db: RollbackDatabase, city: engine.Runtime, ioc_settings: Settings, receiver: Receiver
) -> None:
    view = await endpoint(conn, ioc_settings, receiver.url)
    assert view.new_secret is not None
    assert view.new_secret.startswith("whsec_")
    case = await report_case(conn)
    await to_handling(conn, case.id)
    await drain(db)
    assert await conn.fetchval("SELECT count(*) FROM channels.ioc_events") == 3
    async with httpx.AsyncClient(timeout=5) as client:
        pusher = Pusher(db, ioc_settings, client=client)

        async def all_delivered() -> bool:
            return await states(conn) == [(1, "delivered"), (2, "delivered"), (3, "delivered")]

        assert await push_until(pusher, all_delivered)

    assert len(receiver.received) == 3
    webhook = Webhook(view.new_secret)
    parsed = []
    for request in receiver.received:
        assert request.headers["content-type"].startswith("application/cloudevents+json")
        assert webhook.verify(request.body, request.headers)  # raises if the signature is wrong
        event = JSONFormat().read(None, request.body)
        assert event.get_id() == request.headers["webhook-id"]
        validate(json.loads(request.body))
        parsed.append(event)
    assert [e.get_type() for e in parsed] == [
        "city.onewindow.grid.case.reported",
        "city.onewindow.grid.case.changed",
        "city.onewindow.grid.case.changed",
    ]
    assert {e.get_subject() for e in parsed} == {case.number}
    assert {e.get_source() for e in parsed} == {"/onewindow/demo/grid"}
    data = [cast("dict[str, Any]", e.get_data()) for e in parsed]
    assert [d["sequence"] for d in data] == [1, 2, 3]
    assert [d.get("action") for d in data] == [None, "register", "to_department"]
    # The log: one delivered attempt each, with a status code and a duration, and no body.
    log = await conn.fetch(
        "SELECT status_code, outcome, error, duration_ms FROM channels.ioc_delivery_attempts"
    )
    assert [(r["status_code"], r["outcome"], r["error"]) for r in log] == [(200, "delivered", None)] * 3
    assert all(r["duration_ms"] >= 0 for r in log)


async def test_a_redelivered_outbox_event_is_stored_once(
    conn: Connection, db: RollbackDatabase, city: engine.Runtime, ioc_settings: Settings, receiver: Receiver
) -> None:
    await endpoint(conn, ioc_settings, receiver.url)
    case = await report_case(conn)
    await drain(db)
    # The outbox redelivers after a crash: the subscriber sees the same envelope id again.
    row = await conn.fetchrow(
        "SELECT id, topic, occurred_at, payload FROM onewindow.outbox WHERE payload->>'case_id' = $1",
        str(case.id),
    )
    assert row is not None
    from onewindow.events import Envelope  # noqa: PLC0415

    envelope = Envelope(
        id=row["id"], topic=row["topic"], occurred_at=row["occurred_at"], payload=row["payload"], attempt=2
    )
    await ioc_feed.record(conn, envelope)
    assert await conn.fetchval("SELECT count(*) FROM channels.ioc_events") == 1
    assert await conn.fetchval("SELECT count(*) FROM channels.ioc_deliveries") == 1


async def test_a_receiver_that_fails_for_a_while_gets_the_incident_in_order_after_back_off(
    conn: Connection, db: RollbackDatabase, city: engine.Runtime, ioc_settings: Settings, receiver: Receiver
) -> None:
    await endpoint(conn, ioc_settings, receiver.url)
    case = await report_case(conn)
    await to_handling(conn, case.id)
    await act(conn, case.id, "handled", comment="Cleared.")
    await drain(db)
    assert await conn.fetchval("SELECT count(*) FROM channels.ioc_events") == 4
    receiver.plan = [503, 500]  # the first two POSTs fail (both of the first event: later ones wait)
    async with httpx.AsyncClient(timeout=5) as client:
        pusher = Pusher(db, ioc_settings, client=client)

        async def all_delivered() -> bool:
            return {state for _, state in await states(conn)} == {"delivered"}

        assert await push_until(pusher, all_delivered)

    sequences = [json.loads(r.body)["data"]["sequence"] for r in receiver.received]
    # The first event was tried three times before anything later of the incident was sent.
    assert sequences == [1, 1, 1, 2, 3, 4]
    assert [r.status for r in receiver.received] == [503, 500, 200, 200, 200, 200]
    # Back-off: each retry waited at least half its step (0.05 s, then 0.1 s).
    gaps = [b.at - a.at for a, b in zip(receiver.received[:2], receiver.received[1:3], strict=True)]
    assert gaps[0] >= 0.025, gaps
    assert gaps[1] >= 0.05, gaps
    log = await conn.fetch(
        "SELECT attempt, status_code, error, outcome FROM channels.ioc_delivery_attempts ORDER BY id"
    )
    assert [(r["attempt"], r["status_code"], r["error"], r["outcome"]) for r in log[:3]] == [
        (1, 503, "HTTP 503", "retry"),
        (2, 500, "HTTP 500", "retry"),
        (3, 200, None, "delivered"),
    ]


def test_back_off_is_exponential_capped_and_jittered(ioc_settings: Settings) -> None:
    import random  # noqa: PLC0415

    rng = random.Random(7)  # noqa: S311 - jitter, not secrets
    for attempts, step in [(1, 0.05), (2, 0.1), (3, 0.2), (4, 0.2), (40, 0.2)]:
        delays = [ioc_push.retry_delay(ioc_settings, attempts, rng=rng) for _ in range(50)]
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 1  # jittered


async def test_dead_letter_does_not_hold_back_the_incident_and_an_admin_replays_it(
    conn: Connection, db: RollbackDatabase, city: engine.Runtime, ioc_settings: Settings, receiver: Receiver
) -> None:
    view = await endpoint(conn, ioc_settings, receiver.url)
    case = await report_case(conn)
    await drain(db)
    receiver.always = 500
    async with httpx.AsyncClient(timeout=5) as client:
        pusher = Pusher(db, ioc_settings, client=client)

        async def dead() -> bool:
            return await states(conn) == [(1, "dead")]

        assert await push_until(pusher, dead)
        assert len(receiver.received) == ioc_settings.ioc_max_attempts
        # A later event of the incident goes ahead of the dead one.
        receiver.always = 200
        await act(conn, case.id, "register")
        await drain(db)

        async def second() -> bool:
            return await states(conn) == [(1, "dead"), (2, "delivered")]

        assert await push_until(pusher, second)
        # The admin replays everything dead-lettered for the endpoint.
        from channels import ioc_store  # noqa: PLC0415

        assert await ioc_store.replay(conn, view.id, None) == 1
        assert await ioc_store.replay(conn, view.id, None) == 0

        async def replayed() -> bool:
            return await states(conn) == [(1, "delivered"), (2, "delivered")]

        assert await push_until(pusher, replayed)
    assert [json.loads(r.body)["data"]["sequence"] for r in receiver.delivered] == [2, 1]
    assert (
        len(
            {
                r.headers["webhook-id"]
                for r in receiver.received
                if json.loads(r.body)["data"]["sequence"] == 1
            }
        )
        == 1
    )
    outcomes = [
        r["outcome"]
        for r in await conn.fetch("SELECT outcome FROM channels.ioc_delivery_attempts ORDER BY id")
    ]
    assert outcomes == ["retry", "retry", "dead", "delivered", "replayed", "delivered"]


async def test_secret_rotation_signs_with_every_active_secret(
    conn: Connection, db: RollbackDatabase, city: engine.Runtime, ioc_settings: Settings, receiver: Receiver
) -> None:
    view = await endpoint(conn, ioc_settings, receiver.url)
    old = view.new_secret
    assert old is not None
    row = await ioc_endpoints.found(conn, view.id, lock=True)
    rotated = await ioc_endpoints.change(
        conn, ioc_settings, row, ioc_endpoints.EndpointChange(add_secret="generate")
    )
    new = rotated.new_secret
    assert new is not None
    assert new != old
    await report_case(conn)
    await drain(db)
    async with httpx.AsyncClient(timeout=5) as client:
        pusher = Pusher(db, ioc_settings, client=client)
        await pusher.push_once()
        request = receiver.received[-1]
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        Webhook(old).verify(request.body, request.headers)
        Webhook(new).verify(request.body, request.headers)
        # The old secret retired: only the new one signs.
        row = await ioc_endpoints.found(conn, view.id, lock=True)
        old_id = next(s.id for s in rotated.secrets if s.hint == webhooks.hint(old))
        await ioc_endpoints.change(
            conn, ioc_settings, row, ioc_endpoints.EndpointChange(retire_secrets=[old_id])
        )
        await report_case(conn)
        await drain(db)
        await pusher.push_once()
    request = receiver.received[-1]
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(request.body, request.headers)


async def test_a_disabled_endpoint_is_not_pushed_to(
    conn: Connection, db: RollbackDatabase, city: engine.Runtime, ioc_settings: Settings, receiver: Receiver
) -> None:
    view = await endpoint(conn, ioc_settings, receiver.url)
    await ioc_endpoints.set_enabled(conn, await ioc_endpoints.found(conn, view.id), False)
    await report_case(conn)
    await drain(db)
    async with httpx.AsyncClient(timeout=5) as client:
        assert await Pusher(db, ioc_settings, client=client).push_once() == 0
    assert receiver.received == []
    assert await conn.fetchval("SELECT count(*) FROM channels.ioc_events") == 1  # still in the pull feed


async def test_the_settings_endpoint_is_upserted_and_a_new_secret_joins_the_old(
    conn: Connection, ioc_settings: Settings
) -> None:
    first = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    second = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3"
    configured = ioc_settings.model_copy(
        update={"ioc_webhook_url": "http://127.0.0.1:9/ioc", "ioc_webhook_secret": SecretStr(first)}
    )
    assert await ioc_endpoints.configure(conn, configured) == "created"
    assert await ioc_endpoints.configure(conn, configured) == "unchanged"
    rotated = configured.model_copy(update={"ioc_webhook_secret": SecretStr(second)})
    assert await ioc_endpoints.configure(conn, rotated) == "updated"
    rows = await conn.fetch("SELECT id, configured FROM channels.ioc_endpoints")
    assert len(rows) == 1
    assert rows[0]["configured"]
    secrets = await conn.fetch(
        "SELECT retired_at FROM channels.ioc_endpoint_secrets WHERE endpoint_id = $1", rows[0]["id"]
    )
    assert [r["retired_at"] for r in secrets] == [None, None]
    assert await ioc_endpoints.configure(conn, ioc_settings) == "none"


# --- the sequence is grid's, in the order the changes happened ----------------------------------


async def outbox_envelopes(conn: Connection, case_id: Any) -> list[Envelope]:
    rows = await conn.fetch(
        "SELECT id, topic, occurred_at, payload, attempts FROM onewindow.outbox"
        " WHERE payload->>'case_id' = $1 ORDER BY seq",
        str(case_id),
    )
    return [
        Envelope(id=r["id"], topic=r["topic"], occurred_at=r["occurred_at"], payload=r["payload"], attempt=1)
        for r in rows
    ]


async def test_the_sequence_is_the_order_of_the_changes_not_of_the_drain(
    conn: Connection, db: RollbackDatabase, city: engine.Runtime, ioc_settings: Settings, receiver: Receiver
) -> None:
    await endpoint(conn, ioc_settings, receiver.url)
    case = await report_case(conn)
    await to_handling(conn, case.id)
    # The outbox hands the events on backwards (a retried event falls behind later ones).
    for envelope in reversed(await outbox_envelopes(conn, case.id)):
        await ioc_feed.record(conn, envelope)
    feed = await conn.fetch("SELECT sequence, cloudevent FROM channels.ioc_events ORDER BY position")
    assert [(r["sequence"], r["cloudevent"]["data"].get("action")) for r in feed] == [
        (3, "to_department"),
        (2, "register"),
        (1, None),
    ]
    async with httpx.AsyncClient(timeout=5) as client:
        pusher = Pusher(db, ioc_settings, client=client)

        async def all_delivered() -> bool:
            return {state for _, state in await states(conn)} == {"delivered"}

        assert await push_until(pusher, all_delivered)
    # Pushed in the incident's order all the same: the late arrivals went ahead of the head that
    # was not being sent yet.
    assert [json.loads(r.body)["data"]["sequence"] for r in receiver.received] == [1, 2, 3]


async def test_every_publishing_change_of_a_case_takes_the_next_number(
    conn: Connection, db: RollbackDatabase, city: engine.Runtime
) -> None:
    from grid import api as grid_api  # noqa: PLC0415

    primary = await report_case(conn)
    duplicate = await report_case(conn)
    await to_handling(conn, primary.id)
    await act(conn, duplicate.id, "duplicate", data={"duplicate_of": str(primary.id)})
    await grid_api.add_note(conn, primary.id, note="A citizen's word.", actor="citizen-1")
    await grid_api.external_update(
        conn, primary.id, origin="ioc", effect="note", note="Seen.", data={"update_id": "u-1"}
    )
    await act(conn, primary.id, "handled", comment="Cleared.")
    await act(conn, primary.id, "passed")
    await act(conn, primary.id, "close")
    await act(conn, primary.id, "evaluate", data={"rating": 5})
    for case, expected in (
        (
            primary,
            [
                "reported",
                "register",
                "to_department",
                "note",
                "external_update",
                "handled",
                "passed",
                "close",
                "evaluate",
                "closed",
            ],
        ),
        (duplicate, ["reported", "duplicate", "closed_with_primary", "closed"]),
    ):
        events = await outbox_envelopes(conn, case.id)
        steps = [e.payload.get("action") or e.topic.rsplit(".", 1)[-1] for e in events]
        assert steps == expected
        assert [e.payload["sequence"] for e in events] == list(range(1, len(expected) + 1))
    assert await conn.fetchval("SELECT event_sequence FROM grid.cases WHERE id = $1", primary.id) == 10


async def test_staff_words_are_not_in_the_feed_and_time_is_the_changes_own(
    conn: Connection, db: RollbackDatabase, city: engine.Runtime, ioc_settings: Settings
) -> None:
    case = await report_case(conn)
    await to_handling(conn, case.id)
    await act(conn, case.id, "handled", comment="Mr Wang at No. 5 called it in again.")
    await drain(db)
    events = [
        r["cloudevent"]
        for r in await conn.fetch("SELECT cloudevent FROM channels.ioc_events ORDER BY position")
    ]
    assert len(events) == 4
    assert "Wang" not in json.dumps(events)
    assert all("note" not in e["data"] for e in events)
    for event in events:
        validate(event)
        when = event["data"].get("at") or event["data"]["reported_at"]
        assert event["time"] == when


# --- one endpoint's trouble stays its own -------------------------------------------------------


async def bad_endpoint(conn: Connection, settings: Settings, url: str) -> Any:
    """An endpoint whose stored URL the HTTP client refuses (stored before URLs were checked)."""
    view = await endpoint(conn, settings, "http://127.0.0.1:9/placeholder")
    await conn.execute("UPDATE channels.ioc_endpoints SET url = $2 WHERE id = $1", view.id, url)
    return view


async def test_an_endpoint_the_client_refuses_is_dead_lettered_and_the_others_go_on(
    conn: Connection, db: RollbackDatabase, city: engine.Runtime, ioc_settings: Settings, receiver: Receiver
) -> None:
    bad = await bad_endpoint(conn, ioc_settings, "http://[::1")
    good = await endpoint(conn, ioc_settings, receiver.url)
    case = await report_case(conn)
    await act(conn, case.id, "register")
    await drain(db)
    pusher = Pusher(db, ioc_settings)  # its own client: one bad URL must not close it under the others
    running = asyncio.create_task(pusher.run())
    try:

        async def settled() -> bool:
            async with db.connection() as c:
                rows = await c.fetch("SELECT endpoint_id, state FROM channels.ioc_deliveries")
            return sorted((r["endpoint_id"] == good.id, r["state"]) for r in rows) == [
                (False, "dead"),
                (False, "dead"),
                (True, "delivered"),
                (True, "delivered"),
            ]

        for _ in range(200):
            if await settled():
                break
            assert not running.done(), running
            await asyncio.sleep(0.05)
        assert await settled()
        assert not running.done()  # the loop lives on
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert len(receiver.delivered) == 2
    log = await conn.fetch(
        "SELECT error, outcome FROM channels.ioc_delivery_attempts WHERE endpoint_id = $1 ORDER BY id", bad.id
    )
    assert {r["error"] for r in log} == {"InvalidURL"}
    assert sorted(r["outcome"] for r in log) == ["dead", "dead", "retry", "retry", "retry", "retry"]


async def test_an_endpoint_deleted_while_its_delivery_is_in_flight(
    conn: Connection,
    db: RollbackDatabase,
    city: engine.Runtime,
    ioc_settings: Settings,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    view = await endpoint(conn, ioc_settings, receiver.url)
    await report_case(conn)
    await drain(db)
    receiver.delay = 0.5
    async with httpx.AsyncClient(timeout=5) as client:
        sending = asyncio.create_task(Pusher(db, ioc_settings, client=client).push_once())
        await asyncio.wait_for(receiver.started.wait(), timeout=5)
        async with db.transaction() as c:
            await ioc_endpoints.delete(c, await ioc_endpoints.found(c, view.id, lock=True))
        assert await sending == 1
    assert "ioc delivery outcome not recorded" not in caplog.text
    assert await conn.fetchval("SELECT count(*) FROM channels.ioc_delivery_attempts") == 0


# --- leases, time limits and slow endpoints -----------------------------------------------------


async def test_one_slow_endpoint_does_not_hold_back_another(
    conn: Connection, db: RollbackDatabase, city: engine.Runtime, ioc_settings: Settings, receiver: Receiver
) -> None:
    async with serve_receiver() as slow:
        slow.delay = 1.5
        await endpoint(conn, ioc_settings, slow.url)
        await endpoint(conn, ioc_settings, receiver.url)
        case = await report_case(conn)
        await to_handling(conn, case.id)
        await drain(db)
        pusher = Pusher(db, ioc_settings)
        began = time.monotonic()
        running = asyncio.create_task(pusher.run())
        try:
            while len(receiver.delivered) < 3 and time.monotonic() - began < 10:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            fast_done = time.monotonic() - began
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
    # The fast endpoint had the whole incident, in order, while the slow one still sat on event 1.
    assert [json.loads(r.body)["data"]["sequence"] for r in receiver.delivered] == [1, 2, 3]
    assert fast_done < 1.2, fast_done


async def test_a_post_is_bounded_in_all_and_reads_little_of_the_answer(
    conn: Connection, db: RollbackDatabase, city: engine.Runtime, ioc_settings: Settings, receiver: Receiver
) -> None:
    await endpoint(conn, ioc_settings, receiver.url)
    await report_case(conn)
    await drain(db)
    async with httpx.AsyncClient(timeout=ioc_settings.ioc_timeout_seconds) as client:
        pusher = Pusher(db, ioc_settings, client=client)
        # A receiver that trickles its answer: a byte now and then, never a pause long enough for
        # one of httpx's per-phase timeouts. The attempt still ends at the timeout, in all.
        receiver.stream = (10, 0.3, 100)
        began = time.monotonic()
        assert await asyncio.wait_for(pusher.push_once(), timeout=10) == 1
        assert time.monotonic() - began < ioc_settings.ioc_timeout_seconds + 1
        attempt = await conn.fetchrow("SELECT error, outcome FROM channels.ioc_delivery_attempts")
        assert attempt is not None
        assert (attempt["error"], attempt["outcome"]) == ("TimeoutError", "retry")
        # One that never stops talking: its status is all that counts, the rest is not read.
        receiver.stream = (64 * 1024, 0.0, 100_000)
        await conn.execute("UPDATE channels.ioc_deliveries SET next_attempt_at = clock_timestamp()")
        assert await asyncio.wait_for(pusher.push_once(), timeout=10) == 1
    assert await states(conn) == [(1, "delivered")]


# --- lanes: only the head of each (endpoint, incident) is claimable ----------------------------


async def test_only_the_head_of_an_incident_is_due_and_the_next_is_released_after_it(
    conn: Connection, db: RollbackDatabase, city: engine.Runtime, ioc_settings: Settings, receiver: Receiver
) -> None:
    view = await endpoint(conn, ioc_settings, receiver.url)
    off = await endpoint(conn, ioc_settings, receiver.url)
    case = await report_case(conn)
    await to_handling(conn, case.id)
    await drain(db)
    await ioc_endpoints.set_enabled(conn, await ioc_endpoints.found(conn, off.id), False)

    async def due(endpoint_id: Any) -> list[tuple[int, bool]]:
        rows = await conn.fetch(
            "SELECT sequence, next_attempt_at <> 'infinity' AS due FROM channels.ioc_deliveries"
            " WHERE endpoint_id = $1 AND state = 'pending' ORDER BY sequence",
            endpoint_id,
        )
        return [(r["sequence"], r["due"]) for r in rows]

    assert await due(view.id) == [(1, True), (2, False), (3, False)]
    receiver.always = 500
    async with httpx.AsyncClient(timeout=5) as client:
        pusher = Pusher(db, ioc_settings, client=client)
        assert await pusher.push_once() == 1  # the head only; nothing of the disabled endpoint
        assert await due(view.id) == [(1, True), (2, False), (3, False)]  # retrying: still the head
        listed = await ioc_store.deliveries(conn, view.id, state="pending", after=None, limit=10)
        assert [d.next_attempt_at is None for d in listed] == [False, True, True]  # waiting: no time

        async def head_dead() -> bool:
            return (await due(view.id))[:1] == [(2, True)]

        assert await push_until(pusher, head_dead)
        assert await due(view.id) == [(2, True), (3, False)]
    assert {json.loads(r.body)["data"]["sequence"] for r in receiver.received} <= {1, 2}
    assert await due(off.id) == [(1, True), (2, False), (3, False)]  # untouched while disabled


def test_back_off_is_the_kernels_with_jitter(ioc_settings: Settings) -> None:
    import random  # noqa: PLC0415

    for attempts in (1, 2, 5, 40):
        ours = ioc_push.retry_delay(ioc_settings, attempts, rng=random.Random(attempts))  # noqa: S311
        kernel = backoff(
            attempts,
            base=ioc_settings.ioc_retry_base_seconds,
            cap=ioc_settings.ioc_retry_max_seconds,
            jitter=True,
            rng=random.Random(attempts),  # noqa: S311
        )
        assert ours == kernel


# --- the settings' endpoint, two processes starting at once ------------------------------------


async def test_two_processes_configuring_at_once_make_one_endpoint(
    committing_db: PoolDatabase, settings: Settings
) -> None:
    configured = settings.model_copy(
        update={
            "ioc_webhook_url": "http://127.0.0.1:9/ioc",
            "ioc_webhook_secret": SecretStr("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        }
    )
    try:
        async with committing_db.connection() as first, committing_db.connection() as second:
            one = first.transaction()
            await one.start()
            assert await ioc_endpoints.configure(first, configured) == "created"
            two = second.transaction()
            await two.start()
            # The second start waits for the first to commit, then finds its endpoint.
            other = asyncio.create_task(ioc_endpoints.configure(second, configured))
            await asyncio.sleep(0.3)
            assert not other.done()
            await one.commit()
            assert await asyncio.wait_for(other, timeout=5) == "unchanged"
            await two.commit()
        async with committing_db.connection() as c:
            assert await c.fetchval("SELECT count(*) FROM channels.ioc_endpoints WHERE configured") == 1
    finally:
        async with committing_db.connection() as c:
            await c.execute("DELETE FROM channels.ioc_endpoints WHERE configured")


async def test_configure_checks_the_secret_as_signing_does(conn: Connection, ioc_settings: Settings) -> None:
    for url, secret in (
        ("http://127.0.0.1:9/ioc", "whsec_" + "QUFB" * 22),  # 66 bytes: base64 of the right shape
        ("http://[::1", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    ):
        copied = ioc_settings.model_copy(
            update={"ioc_webhook_url": url, "ioc_webhook_secret": SecretStr(secret)}
        )  # a copy skips the settings' validators
        with pytest.raises(StartupError) as problem:
            await ioc_endpoints.configure(conn, copied)
        assert secret not in str(problem.value)
    assert await conn.fetchval("SELECT count(*) FROM channels.ioc_endpoints") == 0
