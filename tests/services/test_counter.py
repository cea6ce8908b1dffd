"""Counter intake: a clerk makes a draft for a citizen seen in person, supplies what they brought,
and accepts, accepts with documents pending, or returns the application; every decision prints a
receipt. Only clerks use these routes."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx

from onewindow.db import Connection
from tests.services.conftest import Bearer, People, key
from tests.services.documents_fixtures import BUSINESS_FORM, PDF, PNG, make_draft
from tests.workflows.conftest import Clock

COUNTER = "/api/v1/counter/applications"
DOCUMENTS = "/api/v1/applications/{}/documents"


async def _draft(http: httpx.AsyncClient, people: People, bearer: Bearer, **body: Any) -> dict[str, Any]:
    reply = await http.post(
        COUNTER,
        headers={**await bearer(people.clerk), **key()},
        json={"applicant": people.citizen.subject, "item": "t-business", "form": BUSINESS_FORM, **body},
    )
    assert reply.status_code == 201, reply.text
    result: dict[str, Any] = reply.json()
    return result


async def _supply(
    http: httpx.AsyncClient, headers: dict[str, str], app_id: str, code: str, content: bytes = PDF
) -> None:
    media_type = "image/png" if content == PNG else "application/pdf"
    reply = await http.post(
        DOCUMENTS.format(app_id),
        headers=headers,
        data={"checklist_code": code},
        files={"file": (f"{code}.bin", content, media_type)},
    )
    assert reply.status_code == 201, reply.text


async def _intake(
    http: httpx.AsyncClient, people: People, bearer: Bearer, app_id: str, **body: Any
) -> httpx.Response:
    return await http.post(
        f"{COUNTER}/{app_id}/intake", headers={**await bearer(people.clerk), **key()}, json=body
    )


def _clock_iso(clock: Clock, **delta: float) -> str:
    return (clock() + timedelta(**delta)).isoformat()


# --- drafts at the counter -----------------------------------------------------------------------


async def test_a_clerk_makes_a_draft_for_a_citizen_and_sees_what_is_missing(
    http: httpx.AsyncClient, people: People, bearer: Bearer
) -> None:
    draft = await _draft(http, people, bearer)
    assert draft["status"] == "draft"
    assert draft["channel"] == "counter"
    assert draft["applicant"] == people.citizen.subject
    assert draft["applicant_name"] == "张三"
    assert draft["form_errors"] == []
    assert [(e["code"], e["status"]) for e in draft["checklist"]] == [
        ("id_card", "missing"),
        ("lease", "missing"),
    ]
    assert [e["pointer"] for e in draft["documents_missing"]] == ["/documents/id_card", "/documents/lease"]
    assert draft["items"][0]["department_name"] == "市场监督管理局"
    one = await http.get(f"{COUNTER}/{draft['id']}", headers=await bearer(people.clerk))
    assert one.status_code == 200
    assert one.json()["id"] == draft["id"]
    queue = (await http.get(COUNTER, params={"status": "draft"}, headers=await bearer(people.clerk))).json()
    assert [a["id"] for a in queue["applications"]] == [draft["id"]]


async def test_the_form_s_problems_are_shown_all_at_once(
    http: httpx.AsyncClient, people: People, bearer: Bearer
) -> None:
    draft = await _draft(http, people, bearer, form={"company_name": "X"})
    assert {e["pointer"] for e in draft["form_errors"]} == {"/form/company_name", "/form/address"}


async def test_a_draft_for_someone_who_is_not_a_person_is_422(
    http: httpx.AsyncClient, people: People, bearer: Bearer
) -> None:
    reply = await http.post(
        COUNTER,
        headers={**await bearer(people.clerk), **key()},
        json={"applicant": "00000000-0000-0000-0000-000000000001", "item": "t-business"},
    )
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["pointer"] == "/applicant"


async def test_making_a_draft_needs_an_idempotency_key_and_a_retry_makes_none_more(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer
) -> None:
    clerk = await bearer(people.clerk)
    body = {"applicant": people.citizen.subject, "item": "t-business"}
    assert (await http.post(COUNTER, headers=clerk, json=body)).status_code == 400
    once = {**clerk, **key()}
    first = await http.post(COUNTER, headers=once, json=body)
    again = await http.post(COUNTER, headers=once, json=body)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert await conn.fetchval("SELECT count(*) FROM services.applications") == 1


async def test_only_clerks_use_the_counter(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    app_id = await make_draft(
        conn,
        applicant=people.citizen.subject,
        items=["t-business"],
        form=BUSINESS_FORM,
        at=clock(),
        channel="counter",
    )
    for actor in (people.citizen, people.officers["market"], people.supervisors["market"]):
        headers = {**await bearer(actor), **key()}
        created = await http.post(
            COUNTER, headers=headers, json={"applicant": people.citizen.subject, "item": "t-business"}
        )
        assert created.status_code == 403
        assert (await http.get(COUNTER, headers=headers)).status_code == 403
        assert (await http.get(f"{COUNTER}/{app_id}", headers=headers)).status_code == 403
        intake = await http.post(f"{COUNTER}/{app_id}/intake", headers=headers, json={"decision": "accept"})
        assert intake.status_code == 403
    assert (await http.get(COUNTER)).status_code == 401


async def test_the_counter_does_not_see_a_citizen_s_online_draft(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    app_id = await make_draft(
        conn, applicant=people.citizen.subject, items=["t-business"], form=BUSINESS_FORM, at=clock()
    )
    assert (await http.get(f"{COUNTER}/{app_id}", headers=await bearer(people.clerk))).status_code == 404
    intake = await _intake(http, people, bearer, str(app_id), decision="accept")
    assert intake.status_code == 409


# --- accept --------------------------------------------------------------------------------------


async def test_accept_submits_and_prints_a_receipt(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer
) -> None:
    draft = await _draft(http, people, bearer)
    clerk = await bearer(people.clerk)
    await _supply(http, clerk, draft["id"], "id_card", PNG)
    await _supply(http, clerk, draft["id"], "lease")
    headers = {**clerk, **key()}
    reply = await http.post(
        f"{COUNTER}/{draft['id']}/intake",
        headers=headers,
        json={"decision": "accept", "note": "all originals seen"},
    )
    assert reply.status_code == 200, reply.text
    receipt = reply.json()
    assert re.fullmatch(r"YC-R-2026-\d{6}", receipt["receipt_number"])
    assert re.fullmatch(r"YC-2026-\d{6}", receipt["application_number"])
    assert receipt["decision"] == "accept"
    assert receipt["applicant_name"] == "张三"
    assert [(i["code"], i["department"]) for i in receipt["items"]] == [("t-business", "market")]
    assert receipt["pending"] == []
    assert receipt["missing"] == []
    assert receipt["clerk"] == {"subject": people.clerk.subject, "name": people.clerk.name}
    assert receipt["promised_at"] is not None
    assert receipt["note"] == "all originals seen"
    row = await conn.fetchrow(
        "SELECT status, intake_by, receipt_number, number FROM services.applications WHERE id = $1::uuid",
        draft["id"],
    )
    assert row is not None
    assert row["status"] == "in_review"
    assert row["intake_by"] == people.clerk.subject
    assert row["receipt_number"] == receipt["receipt_number"]
    # A retry with the same key gives the same receipt and takes no second number.
    again = await http.post(
        f"{COUNTER}/{draft['id']}/intake",
        headers=headers,
        json={"decision": "accept", "note": "all originals seen"},
    )
    assert again.json() == receipt
    assert again.headers["idempotent-replayed"] == "true"
    # Accepted once, it is no longer waiting for intake.
    assert (await _intake(http, people, bearer, draft["id"], decision="accept")).status_code == 409


async def test_accepting_an_incomplete_application_lists_every_problem(
    http: httpx.AsyncClient, people: People, bearer: Bearer
) -> None:
    draft = await _draft(http, people, bearer, form={"company_name": "X"})
    reply = await _intake(http, people, bearer, draft["id"], decision="accept")
    assert reply.status_code == 400
    assert {e["pointer"] for e in reply.json()["errors"]} >= {
        "/form/address",
        "/documents/id_card",
        "/documents/lease",
    }


async def test_identity_checked_at_the_counter_meets_a_high_assurance_item(
    http: httpx.AsyncClient, people: People, bearer: Bearer
) -> None:
    draft = await _draft(http, people, bearer, item="t-clinic", form={"company_name": "Riverside Clinic"})
    reply = await _intake(http, people, bearer, draft["id"], decision="accept")
    assert reply.status_code == 200, reply.text


async def test_accept_names_no_pending_and_no_missing(
    http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    draft = await _draft(http, people, bearer)
    pending = await _intake(
        http,
        people,
        bearer,
        draft["id"],
        decision="accept",
        pending=[{"code": "lease", "due": _clock_iso(clock, days=2)}],
    )
    assert pending.status_code == 400
    assert pending.json()["errors"][0]["pointer"] == "/pending"
    missing = await _intake(
        http, people, bearer, draft["id"], decision="accept", missing=[{"code": "lease", "detail": "x"}]
    )
    assert missing.status_code == 400


# --- accept with documents pending ---------------------------------------------------------------


async def test_accept_with_a_document_pending_and_the_citizen_supplies_it_later(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    draft = await _draft(http, people, bearer)
    clerk = await bearer(people.clerk)
    await _supply(http, clerk, draft["id"], "id_card", PNG)
    due = _clock_iso(clock, days=3)
    reply = await _intake(
        http, people, bearer, draft["id"], decision="accept_pending", pending=[{"code": "lease", "due": due}]
    )
    assert reply.status_code == 200, reply.text
    receipt = reply.json()
    assert [(p["code"], p["name"]["en"]) for p in receipt["pending"]] == [("lease", "Lease contract")]
    assert receipt["application_number"] is not None
    due_at = await conn.fetchval(
        "SELECT documents_due_at FROM services.applications WHERE id = $1::uuid", draft["id"]
    )
    assert due_at == clock() + timedelta(days=3)

    one = (await http.get(f"{COUNTER}/{draft['id']}", headers=clerk)).json()
    assert {e["code"]: e["status"] for e in one["checklist"]} == {"id_card": "provided", "lease": "pending"}
    queue = (await http.get(COUNTER, params={"status": "pending_documents"}, headers=clerk)).json()
    assert [(a["id"], a["pending_documents"]) for a in queue["applications"]] == [(draft["id"], 1)]

    # The citizen brings the lease online: it becomes provided, and leaves the counter's queue.
    await _supply(http, await bearer(people.citizen), draft["id"], "lease")
    one = (await http.get(f"{COUNTER}/{draft['id']}", headers=clerk)).json()
    assert {e["code"]: e["status"] for e in one["checklist"]} == {"id_card": "provided", "lease": "provided"}
    queue = (await http.get(COUNTER, params={"status": "pending_documents"}, headers=clerk)).json()
    assert queue["applications"] == []


async def test_only_entries_allowed_later_may_be_pending(
    http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    draft = await _draft(http, people, bearer)
    await _supply(http, await bearer(people.clerk), draft["id"], "lease")
    reply = await _intake(
        http,
        people,
        bearer,
        draft["id"],
        decision="accept_pending",
        pending=[{"code": "id_card", "due": _clock_iso(clock, days=2)}],
    )
    assert reply.status_code == 422
    assert reply.json()["errors"] == [
        {"pointer": "/pending/0/code", "detail": "Identity card may not be supplied later"}
    ]


async def test_a_due_date_beyond_the_limit_or_in_the_past_is_422(
    http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    draft = await _draft(http, people, bearer)
    await _supply(http, await bearer(people.clerk), draft["id"], "id_card", PNG)
    for due in (_clock_iso(clock, days=30), _clock_iso(clock, days=-1)):
        reply = await _intake(
            http,
            people,
            bearer,
            draft["id"],
            decision="accept_pending",
            pending=[{"code": "lease", "due": due}],
        )
        assert reply.status_code == 422, due
        assert reply.json()["errors"][0]["pointer"] == "/pending/0/due"


async def test_accept_pending_names_what_is_pending(
    http: httpx.AsyncClient, people: People, bearer: Bearer
) -> None:
    draft = await _draft(http, people, bearer)
    reply = await _intake(http, people, bearer, draft["id"], decision="accept_pending")
    assert reply.status_code == 400


async def test_an_entry_not_on_the_checklist_cannot_be_pending(
    http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    draft = await _draft(http, people, bearer)
    reply = await _intake(
        http,
        people,
        bearer,
        draft["id"],
        decision="accept_pending",
        pending=[{"code": "floor_plan", "due": _clock_iso(clock, days=2)}],
    )
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["pointer"] == "/pending/0/code"


# --- return --------------------------------------------------------------------------------------


async def test_return_with_what_is_missing(
    conn: Connection, http: httpx.AsyncClient, people: People, bearer: Bearer
) -> None:
    draft = await _draft(http, people, bearer)
    reply = await _intake(
        http,
        people,
        bearer,
        draft["id"],
        decision="return",
        missing=[
            {"code": "id_card", "detail": "the copy is unreadable"},
            {"field": "address", "detail": "no house number"},
        ],
        note="come back with the original",
    )
    assert reply.status_code == 200, reply.text
    receipt = reply.json()
    assert receipt["decision"] == "return"
    assert receipt["application_number"] is None
    assert receipt["missing"] == [
        {"pointer": "/documents/id_card", "detail": "the copy is unreadable"},
        {"pointer": "/form/address", "detail": "no house number"},
    ]
    clerk = await bearer(people.clerk)
    one = (await http.get(f"{COUNTER}/{draft['id']}", headers=clerk)).json()
    assert one["status"] == "returned"
    assert one["returned_with"] == receipt["missing"]
    assert one["receipt_number"] == receipt["receipt_number"]
    queue = (await http.get(COUNTER, params={"status": "returned"}, headers=clerk)).json()
    assert [a["id"] for a in queue["applications"]] == [draft["id"]]
    # The citizen comes back with everything: the returned application is taken in again.
    await _supply(http, clerk, draft["id"], "id_card", PNG)
    await _supply(http, clerk, draft["id"], "lease")
    again = await _intake(http, people, bearer, draft["id"], decision="accept")
    assert again.status_code == 200, again.text
    assert again.json()["receipt_number"] != receipt["receipt_number"]


async def test_a_return_without_a_list_says_what_the_rules_find_missing(
    http: httpx.AsyncClient, people: People, bearer: Bearer
) -> None:
    draft = await _draft(http, people, bearer)
    reply = await _intake(http, people, bearer, draft["id"], decision="return")
    assert reply.status_code == 200, reply.text
    assert [e["pointer"] for e in reply.json()["missing"]] == ["/documents/id_card", "/documents/lease"]


async def test_a_return_s_list_is_checked(http: httpx.AsyncClient, people: People, bearer: Bearer) -> None:
    draft = await _draft(http, people, bearer)
    reply = await _intake(
        http,
        people,
        bearer,
        draft["id"],
        decision="return",
        missing=[{"code": "nonsense", "detail": "x"}, {"detail": "neither"}],
    )
    assert reply.status_code == 400
    assert [e["pointer"] for e in reply.json()["errors"]] == ["/missing/0/code", "/missing/1"]


async def test_an_unknown_decision_or_application_is_refused(
    http: httpx.AsyncClient, people: People, bearer: Bearer
) -> None:
    draft = await _draft(http, people, bearer)
    assert (await _intake(http, people, bearer, draft["id"], decision="maybe")).status_code == 400
    unknown = await _intake(http, people, bearer, "00000000-0000-0000-0000-000000000001", decision="accept")
    assert unknown.status_code == 404


async def test_the_counter_routes_are_in_the_openapi_document(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/schema/openapi.json")).json()
    intake = schema["paths"]["/api/v1/counter/applications/{application_id}/intake"]["post"]
    assert intake["operationId"] == "services_counter_intake"
    body = intake["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in body:
        body = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert body["examples"]
    assert intake["responses"]["200"]["content"]["application/json"]["examples"]
