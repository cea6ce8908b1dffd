"""The application events reach the applicant as notifications (channels' subscriber), and the
routes are documented in the OpenAPI document with examples."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from channels import notify
from onewindow.db import Connection
from onewindow.settings import Settings
from tests.channels.notify_fixtures import events_of, rows_of
from tests.services.conftest import Bearer, People
from tests.services.test_applications import BUSINESS_FORM, FIRE_FORM, act, draft, submit, supply
from tests.workflows.conftest import Clock


@pytest.fixture
def notifying(settings: Settings) -> Iterator[Settings]:
    configured = settings.model_copy(update={"timezone": "Asia/Shanghai"})
    notify.configure(configured)
    yield configured
    notify.configure(settings)


async def deliver(conn: Connection, topic: str) -> None:
    """What the outbox drainer does for the notifications subscriber."""
    for envelope in await events_of(conn, topic):
        await notify.handle_event(conn, envelope)


async def only(conn: Connection, template: str) -> dict[str, Any]:
    rows = await rows_of(conn, template=template)
    assert len(rows) == 1, rows
    return rows[0]


async def test_submit_return_and_decision_notify_the_applicant(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer, notifying: Settings
) -> None:
    me = await bearer(people.citizen)
    made = await draft(http, me, item="t-fire", form=FIRE_FORM)
    submitted = (await submit(http, me, made["id"])).json()
    await deliver(conn, "services.application.received")
    received = await only(conn, "application_received")
    assert received["recipient"] == people.citizen.subject
    assert (received["channel"], received["language"], received["state"]) == ("email", "zh-CN", "pending")
    assert received["params"] == {"number": submitted["number"], "service": "消防安全检查"}
    # Redelivery writes nothing new.
    await deliver(conn, "services.application.received")
    assert len(await rows_of(conn, template="application_received")) == 1

    await act(
        conn,
        people.officers["fire"],
        made["id"],
        "return",
        comment="Area?",
        data={"missing": ["floor area as measured", {"field": "address", "detail": "full address"}]},
    )
    await deliver(conn, "services.application.returned")
    returned = await only(conn, "application_returned")
    assert returned["params"]["what_to_fix"] == "- floor area as measured\n- address: full address"
    assert returned["params"]["due"].startswith("2026-10-28")  # 30 days from 28 September, Shanghai time

    assert (
        await http.post(f"/api/v1/applications/{made['id']}/resubmit", json={}, headers=me)
    ).status_code == 200
    await act(conn, people.officers["fire"], made["id"], "approve")
    await deliver(conn, "services.application.decided")
    decided = await only(conn, "application_decided")
    assert decided["params"] == {
        "number": submitted["number"],
        "service": "消防安全检查",
        "decision": "准予许可",
    }
    # A decision, not a certificate: nothing else to tell.
    assert await events_of(conn, "services.certificate.ready") == []


async def test_a_certificate_is_announced_with_its_link(
    http: httpx.AsyncClient,
    conn: Connection,
    people: People,
    bearer: Bearer,
    notifying: Settings,
    tmp_path: Path,
    clock: Clock,
) -> None:
    me = await bearer(people.citizen)
    made = await draft(http, me, item="t-business", form=BUSINESS_FORM)
    await supply(conn, tmp_path, made["id"], people.citizen.subject, "id_card", "lease", at=clock())
    assert (await submit(http, me, made["id"])).status_code == 200
    await act(conn, people.officers["market"], made["id"], "approve")
    await deliver(conn, "services.certificate.ready")
    ready = await only(conn, "certificate_ready")
    number = await conn.fetchval(
        "SELECT c.number FROM services.certificates c JOIN services.application_items i"
        " ON i.id = c.application_item_id WHERE i.application_id = $1",
        UUID(made["id"]),
    )
    assert (
        ready["params"]["certificate_url"]
        == f"{notifying.public_url.rstrip('/')}/api/v1/certificates/{number}"
    )
    assert ready["params"]["service"] == "营业执照"


async def test_the_routes_are_documented_with_examples(http: httpx.AsyncClient) -> None:
    document = (await http.get("/schema/openapi.json")).json()
    operations = {
        operation["operationId"]: operation
        for path in document["paths"].values()
        for operation in path.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    for operation_id in (
        "createApplication",
        "listMyApplications",
        "getApplication",
        "editApplication",
        "submitApplication",
        "resubmitApplication",
        "withdrawApplication",
        "payApplicationItem",
    ):
        operation = operations[operation_id]
        assert operation["summary"]
        assert operation["description"]
        success = next(code for code in operation["responses"] if code.startswith("2"))
        content = operation["responses"][success]["content"]
        assert any(media.get("examples") for media in content.values()), operation_id
        if "requestBody" in operation:
            bodies = operation["requestBody"]["content"].values()
            # litestar puts a body's examples in its schema
            assert any(media.get("examples") or media["schema"].get("examples") for media in bodies), (
                operation_id
            )
        problems = [code for code in operation["responses"] if code.startswith("4")]
        assert problems, operation_id
