"""Ratings: once, by the applicant, only when decided; a rating of 1 or 2 opens a follow-up in
each deciding department's supervisor inbox, due 5 working days later, closed through the engine."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import httpx
import pytest

from onewindow.db import Connection
from services import ratings
from tests.services.certificate_fixtures import Decided, insert_application
from tests.services.conftest import Bearer, People
from tests.workflows.conftest import Clock
from workflows import api as workflows

# Thursday 24 September 2026, 10:00 in the city (Asia/Shanghai): 5 working days later, across
# the weekend of the 26th and 27th, is Thursday 1 October 10:00 (Fri, Mon, Tue, Wed, Thu).
THURSDAY = datetime(2026, 9, 24, 2, 0, tzinfo=UTC)
DUE = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)


async def bundle(conn: Connection, people: People, clock: Clock, **kw: str) -> UUID:
    """A decided application of three items in market, health (two items) and fire; urban's item
    was withdrawn."""
    app_id, _ = await insert_application(
        conn,
        applicant=people.citizen.subject,
        items=[
            Decided(item="t-business"),
            Decided(item="t-food", status="rejected"),
            Decided(item="t-clinic"),
            Decided(item="t-fire"),
            Decided(item="t-signage", status="withdrawn"),
        ],
        at=clock(),
        **kw,
    )
    return app_id


async def test_a_good_rating_is_stored_and_opens_nothing(
    http: httpx.AsyncClient, conn: Connection, people: People, clock: Clock, bearer: Bearer
) -> None:
    app_id = await bundle(conn, people, clock)
    reply = await http.post(
        f"/api/v1/applications/{app_id}/rating",
        json={"level": 5, "comment": " Quick "},
        headers=await bearer(people.citizen),
    )
    assert reply.status_code == 201
    assert (reply.json()["level"], reply.json()["comment"], reply.json()["follow_ups"]) == (5, "Quick", [])
    assert await conn.fetchval("SELECT count(*) FROM services.follow_ups") == 0


@pytest.mark.parametrize("level", [1, 2])
async def test_a_bad_rating_opens_a_follow_up_in_each_deciding_department(
    http: httpx.AsyncClient, conn: Connection, people: People, clock: Clock, bearer: Bearer, level: int
) -> None:
    clock.now = THURSDAY
    app_id = await bundle(conn, people, clock)

    reply = await http.post(
        f"/api/v1/applications/{app_id}/rating", json={"level": level}, headers=await bearer(people.citizen)
    )

    assert reply.status_code == 201
    assert sorted(f["department"] for f in reply.json()["follow_ups"]) == ["fire", "health", "market"]
    for department in ("market", "health", "fire"):
        tasks = await workflows.inbox(conn, people.supervisors[department], subject_kind=ratings.KIND)
        assert [(t.state, t.role, t.unit_path, t.due_at) for t in tasks] == [
            ("follow_up", "supervisor", f"demo/{department}", DUE)
        ]
    assert await workflows.inbox(conn, people.supervisors["urban"], subject_kind=ratings.KIND) == []
    assert await workflows.inbox(conn, people.officers["market"], subject_kind=ratings.KIND) == []


async def test_a_level_of_3_opens_nothing(
    conn: Connection, people: People, clock: Clock, http: httpx.AsyncClient, bearer: Bearer
) -> None:
    app_id = await bundle(conn, people, clock)
    await http.post(
        f"/api/v1/applications/{app_id}/rating", json={"level": 3}, headers=await bearer(people.citizen)
    )
    assert await conn.fetchval("SELECT count(*) FROM services.follow_ups") == 0


async def test_closing_the_follow_up_through_the_engine_closes_its_row(
    http: httpx.AsyncClient, conn: Connection, people: People, clock: Clock, bearer: Bearer
) -> None:
    app_id = await bundle(conn, people, clock)
    await http.post(
        f"/api/v1/applications/{app_id}/rating", json={"level": 1}, headers=await bearer(people.citizen)
    )
    supervisor = people.supervisors["market"]
    (task,) = await workflows.inbox(conn, supervisor, subject_kind=ratings.KIND)

    no_comment = await http.post(
        f"/api/v1/tasks/{task.id}/actions",
        json={"action": "contacted"},
        headers={**await bearer(supervisor), "Idempotency-Key": str(uuid4())},
    )
    await workflows.act(
        conn, task.id, action="contacted", actor=supervisor, comment="Called; the counter was slow."
    )
    clock.advance(hours=2)
    (second,) = await workflows.inbox(conn, supervisor, subject_kind=ratings.KIND)
    await workflows.act(
        conn, second.id, action="resolved", actor=supervisor, comment="Apologised; queue fixed."
    )

    assert no_comment.status_code == 422
    row = await conn.fetchrow(
        "SELECT status, outcome, note, closed_at FROM services.follow_ups WHERE application_id = $1 AND department = 'market'",
        app_id,
    )
    assert row is not None
    assert dict(row) == {
        "status": "done",
        "outcome": "resolved",
        "note": "Apologised; queue fixed.",
        "closed_at": clock(),
    }
    others = await conn.fetch(
        "SELECT status FROM services.follow_ups WHERE application_id = $1 AND department <> 'market'", app_id
    )
    assert {r["status"] for r in others} == {"open"}

    staff_view = await http.get(f"/api/v1/applications/{app_id}/rating", headers=await bearer(supervisor))
    citizen_view = await http.get(
        f"/api/v1/applications/{app_id}/rating", headers=await bearer(people.citizen)
    )
    market = next(f for f in staff_view.json()["follow_ups"] if f["department"] == "market")
    assert (market["status"], market["outcome"], market["note"]) == (
        "done",
        "resolved",
        "Apologised; queue fixed.",
    )
    assert market["instance_id"]
    assert all(f["note"] is None and f["instance_id"] is None for f in citizen_view.json()["follow_ups"])


async def test_only_once(
    http: httpx.AsyncClient, conn: Connection, people: People, clock: Clock, bearer: Bearer
) -> None:
    app_id = await bundle(conn, people, clock)
    headers = await bearer(people.citizen)
    first = await http.post(f"/api/v1/applications/{app_id}/rating", json={"level": 1}, headers=headers)
    second = await http.post(f"/api/v1/applications/{app_id}/rating", json={"level": 5}, headers=headers)
    assert (first.status_code, second.status_code) == (201, 409)
    assert await conn.fetchval("SELECT level FROM services.ratings WHERE application_id = $1", app_id) == 1
    assert await conn.fetchval("SELECT count(*) FROM services.follow_ups") == 3


@pytest.mark.parametrize(
    "status", ["draft", "submitted", "in_review", "needs_correction", "withdrawn", "returned"]
)
async def test_only_when_decided(
    http: httpx.AsyncClient, conn: Connection, people: People, clock: Clock, bearer: Bearer, status: str
) -> None:
    app_id, _ = await insert_application(
        conn,
        applicant=people.citizen.subject,
        items=[Decided(item="t-business", status="in_review")],
        at=clock(),
        status=status,
    )
    reply = await http.post(
        f"/api/v1/applications/{app_id}/rating", json={"level": 4}, headers=await bearer(people.citizen)
    )
    assert reply.status_code == 409
    assert reply.headers["content-type"].startswith("application/problem+json")


async def test_only_the_applicant_rates(
    http: httpx.AsyncClient, conn: Connection, people: People, clock: Clock, bearer: Bearer
) -> None:
    app_id = await bundle(conn, people, clock)
    url = f"/api/v1/applications/{app_id}/rating"
    statuses = [
        (await http.post(url, json={"level": 1}, headers=await bearer(actor))).status_code
        for actor in (people.other, people.officers["market"], people.supervisors["market"], people.clerk)
    ]
    unknown = await http.post(
        f"/api/v1/applications/{uuid4()}/rating", json={"level": 1}, headers=await bearer(people.citizen)
    )
    anonymous = await http.post(url, json={"level": 1})
    assert statuses == [404, 404, 404, 404]
    assert unknown.status_code == 404
    assert anonymous.status_code == 401
    assert await conn.fetchval("SELECT count(*) FROM services.ratings") == 0


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"level": 0},
        {"level": 6},
        {"level": 3.5},
        {"level": 3, "comment": "x" * 2001},
        {"level": 3, "stars": 3},
    ],
)
async def test_bad_ratings_are_400(
    http: httpx.AsyncClient,
    conn: Connection,
    people: People,
    clock: Clock,
    bearer: Bearer,
    body: dict[str, object],
) -> None:
    app_id = await bundle(conn, people, clock)
    reply = await http.post(
        f"/api/v1/applications/{app_id}/rating", json=body, headers=await bearer(people.citizen)
    )
    assert reply.status_code == 400
    assert reply.headers["content-type"].startswith("application/problem+json")


async def test_who_reads_a_rating(
    http: httpx.AsyncClient, conn: Connection, people: People, clock: Clock, bearer: Bearer
) -> None:
    app_id = await bundle(conn, people, clock)
    url = f"/api/v1/applications/{app_id}/rating"
    before = await http.get(url, headers=await bearer(people.citizen))
    await http.post(url, json={"level": 4}, headers=await bearer(people.citizen))
    statuses = {
        who: (await http.get(url, headers=await bearer(actor))).status_code
        for who, actor in {
            "applicant": people.citizen,
            "other": people.other,
            "market officer": people.officers["market"],
            "fire supervisor": people.supervisors["fire"],
            "urban officer": people.officers["urban"],
            "clerk": people.clerk,
        }.items()
    }
    assert before.status_code == 404
    assert statuses == {
        "applicant": 200,
        "other": 404,
        "market officer": 200,
        "fire supervisor": 200,
        "urban officer": 200,  # urban's item was withdrawn, but it is one of the application's departments
        "clerk": 404,
    }
