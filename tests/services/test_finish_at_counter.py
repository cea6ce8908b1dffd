"""Applications prepared online and finished at the counter: an item offered only at the counter,
or a sign-in too weak for the items. The citizen drafts it online (`finish_at_counter`), submits
it to the counter (`POST .../submit` with `{"finish_at_counter": true}`: the form is checked, the
documents may follow, the application is numbered and waits with status `submitted`), the
bureau's queue lists it, and the clerk's intake accepts or returns it like a counter draft."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

import httpx
import msgspec

from onewindow.db import Connection
from services import catalog
from tests.services.conftest import ITEMS, LOW, Bearer, People, key
from tests.services.documents_fixtures import BUSINESS_FORM, PDF, PNG
from tests.workflows.conftest import Clock
from workflows import api as workflows

APPLICATIONS = "/api/v1/applications"
COUNTER = "/api/v1/counter/applications"
CLINIC_FORM = {"company_name": "河畔诊所"}


async def _draft(http: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> httpx.Response:
    return await http.post(APPLICATIONS, json=body, headers=headers)


async def _submit(
    http: httpx.AsyncClient, headers: dict[str, str], app_id: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    return await http.post(f"{APPLICATIONS}/{app_id}/submit", json=body, headers={**headers, **key()})


async def _to_counter(http: httpx.AsyncClient, headers: dict[str, str], app_id: str) -> httpx.Response:
    return await _submit(http, headers, app_id, {"finish_at_counter": True})


async def _queue(http: httpx.AsyncClient, clerk: dict[str, str], status: str) -> list[str]:
    reply = await http.get(COUNTER, params={"status": status}, headers=clerk)
    assert reply.status_code == 200, reply.text
    return [entry["id"] for entry in reply.json()["applications"]]


async def _intake(http: httpx.AsyncClient, clerk: dict[str, str], app_id: str, **body: Any) -> httpx.Response:
    return await http.post(f"{COUNTER}/{app_id}/intake", headers={**clerk, **key()}, json=body)


async def _upload(
    http: httpx.AsyncClient, headers: dict[str, str], app_id: str, code: str, content: bytes
) -> httpx.Response:
    media_type = "image/png" if content == PNG else "application/pdf"
    return await http.post(
        f"{APPLICATIONS}/{app_id}/documents",
        headers=headers,
        data={"checklist_code": code},
        files={"file": (f"{code}.bin", content, media_type)},
    )


async def _row(conn: Connection, app_id: str) -> dict[str, Any]:
    found = await conn.fetchrow(
        "SELECT status, number, channel, intake_by, submitted_at FROM services.applications WHERE id = $1",
        UUID(app_id),
    )
    assert found is not None
    return dict(found)


async def _counters(conn: Connection) -> int:
    used: int = await conn.fetchval("SELECT coalesce(sum(last), 0) FROM services.number_counters")
    return used


async def _instances(conn: Connection) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM workflows.instances WHERE subject_kind = 'application_item'"
    )
    return count


# --- an item offered only at the counter ---------------------------------------------------------


async def test_a_counter_only_item_is_prepared_online_and_taken_in_at_the_counter(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer
) -> None:
    me = await bearer(people.citizen)
    # An ordinary online draft of it is refused, and the refusal names the way to the counter.
    refused = await _draft(http, me, item="t-clinic", form=CLINIC_FORM)
    assert refused.status_code == 422, refused.text
    assert "finish_at_counter" in refused.json()["detail"]
    made = await _draft(http, me, item="t-clinic", form={}, finish_at_counter=True)
    assert made.status_code == 201, made.text
    app = made.json()
    assert (app["status"], app["channel"], app["number"]) == ("draft", "online", None)

    # Not an ordinary submission: 422, naming the counter option, and nothing written.
    online = await _submit(http, me, app["id"])
    assert online.status_code == 422, online.text
    assert "finish_at_counter" in online.json()["detail"]
    assert [e["pointer"] for e in online.json()["errors"]] == ["/finish_at_counter"]
    # To the counter: the form is checked first (every problem at once), nothing written.
    incomplete = await _to_counter(http, me, app["id"])
    assert incomplete.status_code == 400, incomplete.text
    assert [e["pointer"] for e in incomplete.json()["errors"]] == ["/form/company_name"]
    assert (await _row(conn, app["id"]))["status"] == "draft"
    assert await _counters(conn) == 0

    edited = await http.patch(
        f"{APPLICATIONS}/{app['id']}",
        json={"form": CLINIC_FORM},
        headers={
            **me,
            "If-Match": (await http.get(f"{APPLICATIONS}/{app['id']}", headers=me)).headers["ETag"],
        },
    )
    assert edited.status_code == 200, edited.text
    sent = await _to_counter(http, me, app["id"])
    assert sent.status_code == 200, sent.text
    waiting = sent.json()
    assert waiting["status"] == "submitted"
    assert re.fullmatch(r"YC-2026-\d{6}", waiting["number"])
    [expected] = waiting["expected"]
    assert expected["kind"] == "counter"
    assert waiting["number"] in expected["detail"]
    assert [i["status"] for i in waiting["items"]] == ["pending"]
    assert await _instances(conn) == 0  # no department has it yet
    # Sent once; a second time (another key) is a 409.
    assert (await _to_counter(http, me, app["id"])).status_code == 409

    # The bureau's queue lists it, the clerk sees it and takes it in: it goes to the department.
    clerk = await bearer(people.clerk)
    assert await _queue(http, clerk, "submitted") == [app["id"]]
    assert await _queue(http, clerk, "draft") == []
    seen = await http.get(f"{COUNTER}/{app['id']}", headers=clerk)
    assert seen.status_code == 200, seen.text
    assert (seen.json()["number"], seen.json()["form_errors"]) == (waiting["number"], [])
    accepted = await _intake(http, clerk, app["id"], decision="accept")
    assert accepted.status_code == 200, accepted.text
    receipt = accepted.json()
    assert receipt["application_number"] == waiting["number"]
    assert receipt["promised_at"] is not None
    row = await _row(conn, app["id"])
    assert (row["status"], row["number"], row["intake_by"]) == (
        "in_review",
        waiting["number"],
        people.clerk.subject,
    )
    assert row["submitted_at"] is not None
    assert await _instances(conn) == 1
    received = await conn.fetch(
        "SELECT payload FROM onewindow.outbox WHERE topic = 'services.application.received'"
    )
    assert [r["payload"]["number"] for r in received] == [waiting["number"]]
    assert await _queue(http, clerk, "submitted") == []
    # The citizen follows it online like any other.
    mine = (await http.get(f"{APPLICATIONS}/{app['id']}", headers=me)).json()
    assert (mine["status"], mine["expected"]) == ("in_review", [])


async def test_finishing_at_the_counter_needs_the_items_to_be_offered_there(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer, clock: Clock
) -> None:
    online_only = msgspec.structs.replace(ITEMS["t-fire"], code="t-online-only", channels=("online", "app"))
    await catalog.publish_item(conn, online_only, by="admin", now=clock())
    me = await bearer(people.citizen, acr=LOW)
    refused = await _draft(http, me, item="t-online-only", form={}, finish_at_counter=True)
    assert refused.status_code == 422, refused.text
    assert [e["pointer"] for e in refused.json()["errors"]] == ["/finish_at_counter"]
    # Its draft made online cannot be sent to the counter either; its weak sign-in's refusal does
    # not offer the counter.
    made = await _draft(http, me, item="t-online-only", form={"address": "12 River Road", "area": 30})
    assert made.status_code == 201, made.text
    app_id = made.json()["id"]
    assert (await _to_counter(http, me, app_id)).status_code == 422
    weak = await _submit(http, me, app_id)
    assert weak.status_code == 422, weak.text
    assert "counter" not in weak.json()["detail"]
    assert (await _row(conn, app_id))["status"] == "draft"


# --- a sign-in too weak for the items --------------------------------------------------------------


async def test_a_weak_sign_in_finishes_at_the_counter_with_a_document_brought_later(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer, clock: Clock
) -> None:
    me = await bearer(people.citizen, acr=LOW)
    made = await _draft(http, me, item="t-business", form=BUSINESS_FORM)
    assert made.status_code == 201, made.text
    app_id = made.json()["id"]
    weak = await _submit(http, me, app_id)
    assert weak.status_code == 422, weak.text
    assert "substantial" in weak.json()["detail"]
    assert "finish_at_counter" in weak.json()["detail"]
    # Documents may be brought to the counter: none supplied yet, still it is sent there.
    sent = await _to_counter(http, me, app_id)
    assert sent.status_code == 200, sent.text
    [expected] = sent.json()["expected"]
    assert (expected["kind"], expected["what_to_fix"]) == ("counter", ["id_card", "lease"])
    # Waiting for intake, the form is no longer edited (the clerk takes it as sent).
    etag = (await http.get(f"{APPLICATIONS}/{app_id}", headers=me)).headers["ETag"]
    frozen = await http.patch(
        f"{APPLICATIONS}/{app_id}",
        json={"form": {"address": "elsewhere 1"}},
        headers={**me, "If-Match": etag},
    )
    assert frozen.status_code == 409

    # At the counter: the clerk supplies the identity card the citizen brought; the lease follows.
    clerk = await bearer(people.clerk)
    assert (await _upload(http, clerk, app_id, "id_card", PNG)).status_code == 201
    due = (await workflows.deadline(conn, clock(), "P3D")).isoformat()
    accepted = await _intake(
        http, clerk, app_id, decision="accept_pending", pending=[{"code": "lease", "due": due}]
    )
    assert accepted.status_code == 200, accepted.text
    assert [p["code"] for p in accepted.json()["pending"]] == ["lease"]
    assert (await _row(conn, app_id))["status"] == "in_review"
    assert await _queue(http, clerk, "pending_documents") == [app_id]
    # The citizen supplies the lease online later.
    assert (await _upload(http, me, app_id, "lease", PDF)).status_code == 201
    assert await _queue(http, clerk, "pending_documents") == []


async def test_returned_at_the_counter_then_sent_again_keeps_its_number(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer
) -> None:
    me = await bearer(people.citizen, acr=LOW)
    app_id = (await _draft(http, me, item="t-business", form=BUSINESS_FORM)).json()["id"]
    number = (await _to_counter(http, me, app_id)).json()["number"]
    clerk = await bearer(people.clerk)
    returned = await _intake(
        http,
        clerk,
        app_id,
        decision="return",
        missing=[{"code": "lease", "detail": "bring the signed lease"}],
    )
    assert returned.status_code == 200, returned.text
    assert returned.json()["application_number"] is None  # a return's receipt gives no number
    assert (await _row(conn, app_id))["status"] == "returned"
    assert await _queue(http, clerk, "returned") == [app_id]
    again = await _to_counter(http, me, app_id)
    assert again.status_code == 200, again.text
    assert (again.json()["status"], again.json()["number"]) == ("submitted", number)
    assert await _queue(http, clerk, "submitted") == [app_id]


async def test_only_the_applicant_sends_it_to_the_counter(
    http: httpx.AsyncClient, people: People, bearer: Bearer
) -> None:
    me = await bearer(people.citizen, acr=LOW)
    app_id = (await _draft(http, me, item="t-business", form=BUSINESS_FORM)).json()["id"]
    for stranger in (people.other, people.clerk, people.officers["market"]):
        assert (await _to_counter(http, await bearer(stranger), app_id)).status_code == 404
    assert (
        await http.post(f"{APPLICATIONS}/{app_id}/submit", json={"finish_at_counter": True})
    ).status_code == 401
    # The body is checked: an unknown field is a 400.
    odd = await _submit(http, me, app_id, {"finish_at_counter": True, "at": "counter 3"})
    assert odd.status_code == 400, odd.text


async def test_a_retry_replays_and_the_same_key_for_another_request_is_refused(
    http: httpx.AsyncClient, people: People, bearer: Bearer
) -> None:
    me = await bearer(people.citizen, acr=LOW)
    app_id = (await _draft(http, me, item="t-business", form=BUSINESS_FORM)).json()["id"]
    headers = {**me, **key()}
    first = await http.post(
        f"{APPLICATIONS}/{app_id}/submit", json={"finish_at_counter": True}, headers=headers
    )
    assert first.status_code == 200, first.text
    again = await http.post(
        f"{APPLICATIONS}/{app_id}/submit", json={"finish_at_counter": True}, headers=headers
    )
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = await http.post(f"{APPLICATIONS}/{app_id}/submit", headers=headers)
    assert other.status_code in (409, 422), other.text


async def test_the_submit_route_documents_both_bodies(http: httpx.AsyncClient) -> None:
    document = (await http.get("/schema/openapi.json")).json()
    operation = document["paths"]["/api/v1/applications/{application_id}/submit"]["post"]
    assert "finish_at_counter" in operation["description"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"finish_at_counter": True} in body["examples"]
    replies = operation["responses"]["200"]["content"]["application/json"]["examples"].values()
    assert {reply["value"]["status"] for reply in replies} == {"in_review", "submitted"}
    create = document["paths"]["/api/v1/applications"]["post"]
    examples = create["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in examples:
        examples = document["components"]["schemas"][examples["$ref"].rsplit("/", 1)[-1]]
    assert any(example.get("finish_at_counter") for example in examples["examples"])
