"""Applications end to end through HTTP: drafts, submission and its refusals, the departments'
review through the engine (approve, reject, return for correction and resubmission), bundles
reviewed in parallel, withdrawal, fees, and who may see what."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from asyncpg import Record

from onewindow.db import Connection
from onewindow.storage import DiskStore
from services import documents
from tests.services.conftest import LOW, Bearer, People, key
from tests.services.documents_fixtures import PDF
from tests.workflows.conftest import Clock
from workflows import api as workflows
from workflows.api import Actor

BUSINESS_FORM = {"company_name": "河畔小馆", "address": "滨河路 18 号"}
FIRE_FORM = {"address": "滨河路 18 号", "area": 30}
RESTAURANT_FORM = {"company_name": "河畔小馆", "address": "滨河路 18 号", "area": 30, "sign_text": "河畔小馆"}


async def draft(http: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    reply = await http.post("/api/v1/applications", json=body, headers=headers)
    assert reply.status_code == 201, reply.text
    found: dict[str, Any] = reply.json()
    return found


async def supply(conn: Connection, tmp_path: Path, app_id: str, owner: str, *codes: str, at: Any) -> None:
    """Put a document on file for each checklist code and attach it (what the upload route does)."""
    store = DiskStore(tmp_path / "blobs")
    for code in codes:
        row = await documents.upload(
            conn,
            store,
            owner=owner,
            kind=code,
            filename=f"{code}.pdf",
            content=PDF,
            declared_type="application/pdf",
            by=owner,
            now=at,
        )
        await documents.attach(conn, UUID(app_id), code, document_id=row.id, by=owner, now=at)


async def row_of(conn: Connection, sql: str, *args: Any) -> Record:
    """The one row `sql` finds; the test fails here (not later, on a None) when there is none."""
    found = await conn.fetchrow(sql, *args)
    assert found is not None, f"no row for {sql!r}"
    return found


async def submit(http: httpx.AsyncClient, headers: dict[str, str], app_id: str) -> httpx.Response:
    return await http.post(f"/api/v1/applications/{app_id}/submit", headers={**headers, **key()})


async def task_of(
    conn: Connection, actor: Actor, app_id: str, state: str | None = None
) -> workflows.TaskView:
    """The one open task of application `app_id` in `actor`'s inbox."""
    item_ids = {
        str(r["id"])
        for r in await conn.fetch(
            "SELECT id FROM services.application_items WHERE application_id = $1", UUID(app_id)
        )
    }
    tasks = [
        t
        for t in await workflows.inbox(conn, actor, subject_kind="application_item")
        if t.subject_id in item_ids and (state is None or t.state == state)
    ]
    assert len(tasks) == 1, [(t.subject_id, t.state) for t in tasks]
    return tasks[0]


async def act(
    conn: Connection, actor: Actor, app_id: str, action: str, *, state: str | None = None, **fields: Any
) -> None:
    found = await task_of(conn, actor, app_id, state)
    await workflows.claim(conn, found.id, actor=actor)
    await workflows.act(conn, found.id, action=action, actor=actor, **fields)


async def events(conn: Connection, topic: str) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT payload FROM onewindow.outbox WHERE topic = $1 ORDER BY id", topic)
    return [r["payload"] for r in rows]


async def status(http: httpx.AsyncClient, headers: dict[str, str], app_id: str) -> dict[str, Any]:
    reply = await http.get(f"/api/v1/applications/{app_id}", headers=headers)
    assert reply.status_code == 200, reply.text
    found: dict[str, Any] = reply.json()
    return found


# --- drafts ----------------------------------------------------------------------------------------


async def test_a_draft_pins_the_items_and_is_only_the_applicants(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer
) -> None:
    me = await bearer(people.citizen)
    made = await draft(http, me, bundle="t-restaurant", form={"company_name": "河畔小馆"})
    assert made["status"] == "draft"
    assert made["number"] is None
    assert [i["item"] for i in made["items"]] == ["t-business", "t-food", "t-fire", "t-signage"]
    assert {i["status"] for i in made["items"]} == {"pending"}
    assert [e["kind"] for e in made["expected"]] == ["submit"]
    pins = await conn.fetch(
        "SELECT item_code, item_version, department FROM services.application_items WHERE application_id = $1",
        UUID(made["id"]),
    )
    assert {(r["item_code"], r["item_version"], r["department"]) for r in pins} == {
        ("t-business", 1, "market"),
        ("t-food", 1, "health"),
        ("t-fire", 1, "fire"),
        ("t-signage", 1, "urban"),
    }
    # Someone else (a citizen, an officer of a department of it before it is submitted: still
    # theirs to see only through their inbox) gets a 404, never a 403 that confirms it exists.
    other = await http.get(f"/api/v1/applications/{made['id']}", headers=await bearer(people.other))
    assert other.status_code == 404
    assert other.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("body", "status", "pointer"),
    [
        ({"form": {}}, 400, "/item"),
        ({"item": "t-fire", "bundle": "t-restaurant"}, 400, "/item"),
        ({"item": "no-such-item"}, 400, "/item"),
        ({"bundle": "no-such-bundle"}, 400, "/bundle"),
        ({"item": "t-signage", "channel": "app"}, 422, "/channel"),
        ({"item": "t-clinic"}, 422, "/channel"),
        ({"item": "t-fire", "channel": "counter"}, 400, None),
        ({"item": "t-fire", "extra": 1}, 400, None),
    ],
)
async def test_a_draft_is_refused_clearly(
    http: httpx.AsyncClient,
    people: People,
    bearer: Bearer,
    body: dict[str, Any],
    status: int,
    pointer: str | None,
) -> None:
    reply = await http.post("/api/v1/applications", json=body, headers=await bearer(people.citizen))
    assert reply.status_code == status, reply.text
    problem = reply.json()
    assert problem["status"] == status
    if pointer is not None:
        assert pointer in [e["pointer"] for e in problem["errors"]]


async def test_creating_needs_a_sign_in(http: httpx.AsyncClient, city: People) -> None:
    reply = await http.post("/api/v1/applications", json={"item": "t-fire"})
    assert reply.status_code == 401


async def test_editing_a_draft_is_a_merge_patch_with_if_match(
    http: httpx.AsyncClient, people: People, bearer: Bearer
) -> None:
    me = await bearer(people.citizen)
    made = await draft(http, me, item="t-signage", form={"address": "滨河路 18 号", "sign_text": "旧"})
    url = f"/api/v1/applications/{made['id']}"
    assert (await http.patch(url, json={"form": {"sign_text": "新"}}, headers=me)).status_code == 428
    stale = await http.patch(url, json={"form": {"sign_text": "新"}}, headers={**me, "If-Match": '"99"'})
    assert stale.status_code == 412
    reply = await http.patch(
        url,
        json={"form": {"sign_text": "河畔小馆", "address": None}},
        headers={**me, "If-Match": f'"{made["version"]}"'},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["form"] == {"sign_text": "河畔小馆"}
    assert reply.headers["etag"] == f'"{made["version"] + 1}"'
    someone = await http.patch(
        url, json={"form": {}}, headers={**(await bearer(people.other)), "If-Match": "*"}
    )
    assert someone.status_code == 404


# --- submission ------------------------------------------------------------------------------------


async def test_submit_numbers_the_application_and_sends_it_to_the_department(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer, clock: Clock
) -> None:
    me = await bearer(people.citizen)
    made = await draft(http, me, item="t-fire", form=FIRE_FORM)
    headers = {**me, **key()}
    reply = await http.post(f"/api/v1/applications/{made['id']}/submit", headers=headers)
    assert reply.status_code == 200, reply.text
    submitted = reply.json()
    assert re.fullmatch(r"YC-2026-\d{6}", submitted["number"])
    assert submitted["status"] == "in_review"
    assert submitted["items"][0]["status"] == "in_review"
    assert submitted["items"][0]["department"]["name_en"] == "Fire and Rescue Department"
    assert submitted["items"][0]["current_step"] == "Review the application"
    # 7 working days from Monday 28 September 2026 09:00 (Shanghai), over the weekend: Wednesday 7 October
    # unless the calendar has holidays; at least later than 7 calendar days.
    assert submitted["promised_at"] > "2026-10-05"
    # The same key replays the reply; another key is a second submission: 409.
    again = await http.post(f"/api/v1/applications/{made['id']}/submit", headers=headers)
    assert again.status_code == 200
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["number"] == submitted["number"]
    second = await submit(http, me, made["id"])
    assert second.status_code == 409
    # The fire officer has it in their inbox; the market officer does not.
    task = await task_of(conn, people.officers["fire"], made["id"])
    assert task.state == "review"
    assert not [
        t
        for t in await workflows.inbox(conn, people.officers["market"], subject_kind="application_item")
        if t.subject_id == task.subject_id
    ]
    received = await events(conn, "services.application.received")
    assert [e["number"] for e in received] == [submitted["number"]]
    assert received[0]["applicant"] == people.citizen.subject
    assert received[0]["service"] == {"zh": "消防安全检查", "en": "Fire safety inspection"}


async def test_a_refused_submission_lists_every_problem_and_leaves_nothing_behind(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer
) -> None:
    me = await bearer(people.citizen)
    made = await draft(http, me, item="t-business", form={"company_name": "X"})
    reply = await submit(http, me, made["id"])
    assert reply.status_code == 400, reply.text
    pointers = sorted(e["pointer"] for e in reply.json()["errors"])
    # Every problem at once: the form's (too short, missing) and the checklist's.
    assert pointers == ["/documents/id_card", "/documents/lease", "/form/address", "/form/company_name"]
    row = await row_of(
        conn, "SELECT status, number FROM services.applications WHERE id = $1", UUID(made["id"])
    )
    assert (row["status"], row["number"]) == ("draft", None)
    assert await conn.fetchval("SELECT count(*) FROM services.number_counters") == 0
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM workflows.instances WHERE subject_kind = 'application_item'"
        )
        == 0
    )
    assert await events(conn, "services.application.received") == []


async def test_submission_needs_the_items_assurance_level(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer, tmp_path: Path, clock: Clock
) -> None:
    me = await bearer(people.citizen, acr=LOW)
    made = await draft(http, me, item="t-business", form=BUSINESS_FORM)
    await supply(conn, tmp_path, made["id"], people.citizen.subject, "id_card", "lease", at=clock())
    reply = await submit(http, me, made["id"])
    assert reply.status_code == 422, reply.text
    assert "substantial" in reply.json()["detail"]
    no_acr = await submit(http, await bearer(people.citizen, acr=None), made["id"])
    assert no_acr.status_code == 422
    ok = await submit(http, await bearer(people.citizen), made["id"])
    assert ok.status_code == 200, ok.text


async def test_only_the_applicant_submits_and_not_a_counter_draft(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer, clock: Clock
) -> None:
    made = await draft(http, await bearer(people.citizen), item="t-fire", form=FIRE_FORM)
    assert (await submit(http, await bearer(people.other), made["id"])).status_code == 404
    assert (await submit(http, await bearer(people.officers["fire"]), made["id"])).status_code == 404
    missing_key = await http.post(
        f"/api/v1/applications/{made['id']}/submit", headers=await bearer(people.citizen)
    )
    assert missing_key.status_code in (400, 428)
    from services import applications  # noqa: PLC0415

    counter = await applications.create_draft(
        conn,
        applicant=people.citizen.subject,
        created_by=people.clerk.subject,
        channel="counter",
        item_code="t-fire",
        form=FIRE_FORM,
        now=clock(),
    )
    assert (await submit(http, await bearer(people.citizen), str(counter.id))).status_code == 403


# --- review ----------------------------------------------------------------------------------------


async def test_approval_with_a_certificate(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer, tmp_path: Path, clock: Clock
) -> None:
    me = await bearer(people.citizen)
    made = await draft(http, me, item="t-business", form=BUSINESS_FORM)
    await supply(conn, tmp_path, made["id"], people.citizen.subject, "id_card", "lease", at=clock())
    assert (await submit(http, me, made["id"])).status_code == 200
    clock.advance(days=1)
    officer = people.officers["market"]
    # Through the engine's own HTTP routes, as the back office does.
    staff = await bearer(officer)
    task = await task_of(conn, officer, made["id"])
    seen = await http.get(f"/api/v1/applications/{made['id']}", headers=staff)
    assert seen.status_code == 200
    assert seen.json()["staff"] is True
    assert seen.json()["form"] == BUSINESS_FORM
    acted = await http.post(
        f"/api/v1/tasks/{task.id}/actions", json={"action": "approve"}, headers={**staff, **key()}
    )
    assert acted.status_code == 200, acted.text
    decided = await status(http, me, made["id"])
    assert (decided["status"], decided["outcome"]) == ("decided", "approved")
    assert decided["items"][0]["status"] == "approved"
    assert decided["expected"] == []
    events_seen = [s["event"] for s in decided["history"]]
    assert events_seen[:3] == ["drafted", "submitted", "with_department"]
    assert events_seen[-2:] == ["approved", "decided"]
    # Citizen-safe: no staff subject anywhere in the applicant's view.
    assert officer.subject not in str(decided)
    item = await row_of(
        conn,
        "SELECT decided_by, working_days, on_time FROM services.application_items WHERE application_id = $1",
        UUID(made["id"]),
    )
    assert item["decided_by"] == officer.subject
    assert item["working_days"] == 1
    assert item["on_time"] is True
    certificate = await row_of(
        conn,
        "SELECT c.number, c.holder, c.item_code FROM services.certificates c JOIN services.application_items i"
        " ON i.id = c.application_item_id WHERE i.application_id = $1",
        UUID(made["id"]),
    )
    assert certificate["holder"] == people.citizen.subject
    assert certificate["item_code"] == "t-business"
    ready = await events(conn, "services.certificate.ready")
    assert [e["certificate"] for e in ready] == [certificate["number"]]
    decided_events = await events(conn, "services.application.decided")
    assert [(e["number"], e["decision"]) for e in decided_events] == [(decided["number"], "approved")]


async def test_rejection_gives_the_reason_to_the_applicant(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer
) -> None:
    me = await bearer(people.citizen)
    made = await draft(http, me, item="t-fire", form=FIRE_FORM)
    assert (await submit(http, me, made["id"])).status_code == 200
    officer = people.officers["fire"]
    with pytest.raises(Exception, match="comment"):
        async with conn.transaction():
            await act(conn, officer, made["id"], "reject")
    await act(conn, officer, made["id"], "reject", comment="Escape routes are blocked.")
    seen = await status(http, me, made["id"])
    assert (seen["status"], seen["outcome"]) == ("decided", "rejected")
    assert seen["items"][0]["reason"] == "Escape routes are blocked."
    assert {"event": "rejected", "note": "Escape routes are blocked."}.items() <= next(
        s for s in seen["history"] if s["event"] == "rejected"
    ).items()
    assert (await conn.fetchval("SELECT count(*) FROM services.certificates")) == 0


async def test_return_for_correction_then_resubmit_then_approve(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer, clock: Clock
) -> None:
    me = await bearer(people.citizen)
    made = await draft(http, me, item="t-fire", form=FIRE_FORM)
    assert (await submit(http, me, made["id"])).status_code == 200
    officer = people.officers["fire"]
    clock.advance(hours=2)
    fix = [{"field": "area", "detail": "measure the floor area again"}]
    await act(conn, officer, made["id"], "return", comment="The area looks wrong.", data={"missing": fix})
    seen = await status(http, me, made["id"])
    assert seen["status"] == "needs_correction"
    assert seen["items"][0]["status"] == "needs_correction"
    correction = next(e for e in seen["expected"] if e["kind"] == "correction")
    assert correction["what_to_fix"][0]["what_to_fix"] == fix
    assert correction["what_to_fix"][0]["note"] == "The area looks wrong."
    returned = await events(conn, "services.application.returned")
    assert returned[0]["what_to_fix"] == ["area: measure the floor area again"]
    # The officer no longer has it: it waits for the applicant.
    assert not await workflows.inbox(conn, officer, subject_kind="application_item")
    # Resubmitting without a valid form is refused with every problem; nothing moves.
    clock.advance(days=3)
    url = f"/api/v1/applications/{made['id']}"
    bad = await http.patch(
        url, json={"form": {"area": -5}}, headers={**me, "If-Match": f'"{seen["version"]}"'}
    )
    assert bad.status_code == 200
    refused = await http.post(f"{url}/resubmit", json={}, headers=me)
    assert refused.status_code == 400
    assert [e["pointer"] for e in refused.json()["errors"]] == ["/form/area"]
    fixed = await http.patch(
        url, json={"form": {"area": 42}}, headers={**me, "If-Match": bad.headers["etag"]}
    )
    assert fixed.status_code == 200
    again = await http.post(f"{url}/resubmit", json={"comment": "Measured again."}, headers=me)
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "in_review"
    assert again.json()["missing"] == []
    # The promise moved on by the three days the applicant had it.
    before = seen["items"][0]["promised_at"]
    assert again.json()["items"][0]["promised_at"] > before
    await act(conn, officer, made["id"], "approve")
    done = await status(http, me, made["id"])
    assert (done["status"], done["outcome"]) == ("decided", "approved")
    row = await row_of(
        conn,
        "SELECT corrections, working_days, on_time FROM services.application_items WHERE application_id = $1",
        UUID(made["id"]),
    )
    # Two hours before the return and none after: the paused days do not count.
    assert (row["corrections"], row["working_days"], row["on_time"]) == (1, 1, True)
    steps = [s["event"] for s in done["history"]]
    assert "returned_for_correction" in steps
    assert "resubmitted" in steps
    # Nothing left to resubmit.
    assert (await http.post(f"{url}/resubmit", json={}, headers=me)).status_code == 409


async def test_answering_the_correction_step_directly_checks_the_form_too(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer, clock: Clock
) -> None:
    """The applicant may answer the correction through the task's own route: the same check as
    POST .../resubmit applies (400 with every problem), and the step is rolled back."""
    me = await bearer(people.citizen)
    made = await draft(http, me, item="t-fire", form=FIRE_FORM)
    assert (await submit(http, me, made["id"])).status_code == 200
    fix = [{"field": "area", "detail": "measure the floor area again"}]
    await act(conn, people.officers["fire"], made["id"], "return", comment="Area?", data={"missing": fix})
    seen = await status(http, me, made["id"])
    url = f"/api/v1/applications/{made['id']}"
    bad = await http.patch(
        url, json={"form": {"area": -5}}, headers={**me, "If-Match": f'"{seen["version"]}"'}
    )
    assert bad.status_code == 200
    wait = await task_of(conn, people.citizen, made["id"], "correction")
    answer = f"/api/v1/tasks/{wait.id}/actions"
    refused = await http.post(answer, json={"action": "resubmit"}, headers={**me, **key()})
    assert refused.status_code == 400, refused.text
    assert [e["pointer"] for e in refused.json()["errors"]] == ["/form/area"]
    # Nothing moved: the step still waits for the applicant, the item still needs correction.
    assert (await task_of(conn, people.citizen, made["id"], "correction")).id == wait.id
    assert (await status(http, me, made["id"]))["items"][0]["status"] == "needs_correction"
    fixed = await http.patch(
        url, json={"form": {"area": 42}}, headers={**me, "If-Match": bad.headers["etag"]}
    )
    assert fixed.status_code == 200
    answered = await http.post(answer, json={"action": "resubmit"}, headers={**me, **key()})
    assert answered.status_code == 200, answered.text
    assert (await status(http, me, made["id"]))["status"] == "in_review"


async def test_a_bundle_runs_in_parallel_each_item_in_its_department(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer, tmp_path: Path, clock: Clock
) -> None:
    me = await bearer(people.citizen)
    made = await draft(http, me, bundle="t-restaurant", form=RESTAURANT_FORM)
    await supply(
        conn, tmp_path, made["id"], people.citizen.subject, "id_card", "lease", "business_licence", at=clock()
    )
    reply = await submit(http, me, made["id"])
    assert reply.status_code == 200, reply.text
    # Each department has exactly its own item in its inbox.
    for department in ("market", "health", "fire", "urban"):
        task = await task_of(conn, people.officers[department], made["id"])
        item = await conn.fetchval(
            "SELECT item_code FROM services.application_items WHERE id = $1", UUID(task.subject_id)
        )
        assert (
            item
            == {"market": "t-business", "health": "t-food", "fire": "t-fire", "urban": "t-signage"}[
                department
            ]
        )
    # An officer sees only their department's part: its item, its fields of the form.
    fire_view = await status(http, await bearer(people.officers["fire"]), made["id"])
    assert [i["item"] for i in fire_view["items"]] == ["t-fire"]
    assert fire_view["form"] == {"address": "滨河路 18 号", "area": 30}
    assert fire_view["documents"] == []  # area 30: no floor plan asked for; the others are not fire's
    market_view = await status(http, await bearer(people.officers["market"]), made["id"])
    assert {d["code"]: d["status"] for d in market_view["documents"]} == {
        "id_card": "reused",
        "lease": "reused",
    }
    assert {s.get("item") for s in fire_view["history"]} <= {None, "t-fire"}
    clerk_view = await status(http, await bearer(people.clerk), made["id"])
    assert len(clerk_view["items"]) == 4
    await act(conn, people.officers["market"], made["id"], "approve")
    await act(conn, people.officers["fire"], made["id"], "reject", comment="No fire exit.")
    await act(conn, people.officers["health"], made["id"], "approve")
    await act(conn, people.supervisors["health"], made["id"], "approve", state="signoff")
    await act(conn, people.officers["urban"], made["id"], "approve")
    seen = await status(http, me, made["id"])
    assert seen["status"] == "awaiting_payment"
    assert {i["item"]: i["status"] for i in seen["items"]} == {
        "t-business": "approved",
        "t-food": "awaiting_payment",
        "t-fire": "rejected",
        "t-signage": "awaiting_payment",
    }
    assert sorted(e["amount_minor"] for e in seen["expected"] if e["kind"] == "payment") == [5000, 30000]
    assert await events(conn, "services.application.decided") == []
    for item in seen["items"]:
        if item["status"] == "awaiting_payment":
            paid = await http.post(
                f"/api/v1/applications/{made['id']}/items/{item['id']}/payments", headers={**me, **key()}
            )
            assert paid.status_code == 201, paid.text
    done = await status(http, me, made["id"])
    assert (done["status"], done["outcome"]) == ("decided", "partly_approved")
    assert [(e["decision"]) for e in await events(conn, "services.application.decided")] == [
        "partly_approved"
    ]
    # Certificates for the two approved certificate items, none for the decisions.
    assert await conn.fetchval("SELECT count(*) FROM services.certificates") == 2


async def test_a_bundle_is_rejected_when_every_item_is(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer, tmp_path: Path, clock: Clock
) -> None:
    me = await bearer(people.citizen)
    made = await draft(http, me, bundle="t-restaurant", form=RESTAURANT_FORM)
    await supply(
        conn, tmp_path, made["id"], people.citizen.subject, "id_card", "lease", "business_licence", at=clock()
    )
    assert (await submit(http, me, made["id"])).status_code == 200
    for department in ("market", "health", "fire", "urban"):
        await act(conn, people.officers[department], made["id"], "reject", comment="No.")
    done = await status(http, me, made["id"])
    assert (done["status"], done["outcome"]) == ("decided", "rejected")


async def test_the_supervisor_can_send_a_two_step_review_back(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer, tmp_path: Path, clock: Clock
) -> None:
    me = await bearer(people.citizen)
    made = await draft(
        http, me, item="t-food", form={"company_name": "河畔小馆", "address": "滨河路 18 号", "area": 80}
    )
    refused = await submit(http, me, made["id"])
    assert sorted(e["pointer"] for e in refused.json()["errors"]) == [
        "/documents/business_licence",
        "/documents/floor_plan",
        "/documents/id_card",
    ]
    await supply(
        conn,
        tmp_path,
        made["id"],
        people.citizen.subject,
        "id_card",
        "floor_plan",
        "business_licence",
        at=clock(),
    )
    assert (await submit(http, me, made["id"])).status_code == 200
    await act(conn, people.officers["health"], made["id"], "approve")
    await act(
        conn,
        people.supervisors["health"],
        made["id"],
        "send_back",
        state="signoff",
        comment="Check the plan.",
    )
    assert (await task_of(conn, people.officers["health"], made["id"])).state == "review"
    await act(conn, people.officers["health"], made["id"], "approve")
    await act(
        conn,
        people.supervisors["health"],
        made["id"],
        "reject",
        state="signoff",
        comment="Kitchen too small.",
    )
    done = await status(http, me, made["id"])
    assert (done["outcome"], done["items"][0]["reason"]) == ("rejected", "Kitchen too small.")
    decided_by = await conn.fetchval(
        "SELECT decided_by FROM services.application_items WHERE application_id = $1", UUID(made["id"])
    )
    assert decided_by == people.supervisors["health"].subject


# --- withdrawal and payment ------------------------------------------------------------------------


async def test_withdrawal_ends_the_review(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer
) -> None:
    me = await bearer(people.citizen)
    made = await draft(http, me, item="t-fire", form=FIRE_FORM)
    assert (await submit(http, me, made["id"])).status_code == 200
    url = f"/api/v1/applications/{made['id']}/withdraw"
    assert (await http.post(url, json={"reason": " "}, headers=me)).status_code == 400
    assert (
        await http.post(url, json={"reason": "Mine now"}, headers=await bearer(people.other))
    ).status_code == 404
    reply = await http.post(url, json={"reason": "We found another place."}, headers=me)
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "withdrawn"
    assert reply.json()["items"][0]["status"] == "withdrawn"
    assert not await workflows.inbox(conn, people.officers["fire"], subject_kind="application_item")
    assert (await http.post(url, json={"reason": "again"}, headers=me)).status_code == 409
    assert await events(conn, "services.application.decided") == []
    instance = await workflows.instance_for_subject(conn, "application_item", reply.json()["items"][0]["id"])
    assert instance is not None
    assert (instance.status, instance.outcome) == ("ended", "withdrawn")


async def test_a_decided_application_cannot_be_withdrawn(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer
) -> None:
    me = await bearer(people.citizen)
    made = await draft(http, me, item="t-fire", form=FIRE_FORM)
    assert (await submit(http, me, made["id"])).status_code == 200
    await act(conn, people.officers["fire"], made["id"], "approve")
    reply = await http.post(
        f"/api/v1/applications/{made['id']}/withdraw", json={"reason": "late"}, headers=me
    )
    assert reply.status_code == 409


async def test_paying_a_fee_completes_the_approval_once(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer
) -> None:
    me = await bearer(people.citizen)
    made = await draft(http, me, item="t-signage", form={"address": "滨河路 18 号", "sign_text": "河畔小馆"})
    assert (await submit(http, me, made["id"])).status_code == 200
    item_id = made["items"][0]["id"]
    url = f"/api/v1/applications/{made['id']}/items/{item_id}/payments"
    # Nothing to pay before the approval.
    assert (await http.post(url, headers={**me, **key()})).status_code == 409
    await act(conn, people.officers["urban"], made["id"], "approve")
    waiting = await status(http, me, made["id"])
    assert waiting["status"] == "awaiting_payment"
    assert waiting["items"][0]["current_step"] == "Waiting for the fee"
    assert (await http.post(url, headers={**(await bearer(people.other)), **key()})).status_code == 404
    assert (await http.post(url, headers=me)).status_code in (400, 428)
    headers = {**me, **key()}
    paid = await http.post(url, headers=headers)
    assert paid.status_code == 201, paid.text
    body = paid.json()
    assert (body["status"], body["amount_minor"], body["item_status"], body["application_status"]) == (
        "confirmed",
        5000,
        "approved",
        "decided",
    )
    replay = await http.post(url, headers=headers)
    assert replay.json() == body
    assert (await http.post(url, headers={**me, **key()})).status_code == 409
    assert await conn.fetchval("SELECT count(*) FROM services.payments") == 1
    history = [s["event"] for s in (await status(http, me, made["id"]))["history"]]
    assert "payment_requested" in history
    assert "paid" in history


# --- who sees what ---------------------------------------------------------------------------------


async def test_who_may_see_an_application(
    http: httpx.AsyncClient, conn: Connection, people: People, bearer: Bearer, tmp_path: Path, clock: Clock
) -> None:
    me = await bearer(people.citizen)
    made = await draft(http, me, item="t-business", form=BUSINESS_FORM)
    url = f"/api/v1/applications/{made['id']}"
    # A draft is the applicant's alone: the department sees nothing before it is submitted.
    assert (await http.get(url, headers=await bearer(people.officers["market"]))).status_code == 404
    assert (await http.get(url, headers=await bearer(people.supervisors["market"]))).status_code == 404
    await supply(conn, tmp_path, made["id"], people.citizen.subject, "id_card", "lease", at=clock())
    assert (await submit(http, me, made["id"])).status_code == 200
    assert (await http.get(url, headers=await bearer(people.other))).status_code == 404
    assert (await http.get(url, headers=await bearer(people.officers["fire"]))).status_code == 404
    assert (await http.get(url, headers=await bearer(people.supervisors["fire"]))).status_code == 404
    assert (await http.get(url, headers=await bearer(people.supervisors["market"]))).status_code == 200
    market = await http.get(url, headers=await bearer(people.officers["market"]))
    assert market.status_code == 200
    assert market.json()["applicant"] == people.citizen.subject
    assert (await http.get(url)).status_code == 401


async def test_my_applications_newest_first_with_a_cursor(
    http: httpx.AsyncClient, people: People, bearer: Bearer, clock: Clock
) -> None:
    me = await bearer(people.citizen)
    made = []
    for _ in range(3):
        made.append((await draft(http, me, item="t-fire", form=FIRE_FORM))["id"])
        clock.advance(minutes=1)
    await draft(http, await bearer(people.other), item="t-fire", form=FIRE_FORM)
    assert (await submit(http, me, made[0])).status_code == 200
    first = await http.get("/api/v1/applications", params={"limit": 2}, headers=me)
    assert first.status_code == 200
    page = first.json()
    assert [a["id"] for a in page["applications"]] == [made[2], made[1]]
    rest = await http.get(
        "/api/v1/applications", params={"limit": 2, "cursor": page["next_cursor"]}, headers=me
    )
    assert [a["id"] for a in rest.json()["applications"]] == [made[0]]
    assert rest.json()["next_cursor"] is None
    in_review = await http.get("/api/v1/applications", params={"status": "in_review"}, headers=me)
    assert [a["id"] for a in in_review.json()["applications"]] == [made[0]]
    bad = await http.get("/api/v1/applications", params={"cursor": "nonsense!"}, headers=me)
    assert bad.status_code == 400
