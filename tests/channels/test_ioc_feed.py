"""The IOC feed pushed to a real local HTTP receiver: CloudEvents parsed with the `cloudevents` SDK,
signatures checked with the `standardwebhooks` library, per-incident sequence and order, back-off,
dead letters and replay, secret rotation, and JSON Schema validation of every event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest
from cloudevents.core.formats.json import JSONFormat
from pydantic import SecretStr
from standardwebhooks import Webhook, WebhookVerificationError

from channels import ioc_endpoints, ioc_feed, ioc_push, webhooks
from channels.ioc_push import Pusher
from onewindow.db import Connection
from onewindow.settings import Settings
from tests.channels.ioc_fixtures import (
    Receiver,
    act,
    drain,
    ioc_settings,
    push_until,
    receiver,
    report_case,
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
