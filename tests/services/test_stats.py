"""Statistics per item and department against a small hand-made data set, and who may read them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import pytest

from identity.tokens import RoleGrant
from onewindow.db import Connection
from tests.services.certificate_fixtures import Decided, insert_application
from tests.services.conftest import Bearer, People
from workflows.api import Actor

ADMIN = Actor(subject="admin-test", kind="person", roles=(RoleGrant(role="admin", unit="demo", path="demo"),))
CENTRE = Actor(
    subject="centre-test", kind="person", roles=(RoleGrant(role="command_centre", unit="demo", path="demo"),)
)
SEPTEMBER = {"from": "2026-09-01", "to": "2026-09-30"}


def day(d: int, month: int = 9) -> datetime:
    return datetime(2026, month, d, 6, 0, tzinfo=UTC)


async def rate(conn: Connection, app_id: UUID, level: int, at: datetime) -> None:
    await conn.execute(
        "INSERT INTO services.ratings (application_id, level, rated_by, rated_at) VALUES ($1, $2, 'x', $3)",
        app_id,
        level,
        at,
    )


@pytest.fixture
async def figures(conn: Connection, people: People) -> None:
    """September: t-business (market) received 3, decided 3 (one submitted in August); t-fire (fire)
    received 1, decided 1; an October application outside the period."""
    citizen = people.citizen.subject
    a1, _ = await insert_application(
        conn,
        applicant=citizen,
        at=day(7),
        items=[Decided(item="t-business", decided_at=day(10), working_days=3)],
    )
    await rate(conn, a1, 5, day(11))
    a2, _ = await insert_application(
        conn,
        applicant=citizen,
        at=day(8),
        items=[
            Decided(
                item="t-business",
                status="rejected",
                decided_at=day(12),
                working_days=5,
                on_time=False,
                corrections=1,
            ),
            Decided(item="t-fire", decided_at=day(12), working_days=2),
        ],
    )
    await rate(conn, a2, 1, day(13))
    await insert_application(
        conn,
        applicant=citizen,
        at=day(20),
        status="in_review",
        items=[Decided(item="t-business", status="in_review")],
    )
    a4, _ = await insert_application(
        conn,
        applicant=citizen,
        at=day(25, 8),
        items=[Decided(item="t-business", decided_at=day(2), working_days=6, on_time=False, corrections=1)],
    )
    await rate(conn, a4, 4, day(2, 10))  # rated in October: not September's
    await insert_application(
        conn,
        applicant=citizen,
        at=day(2, 10),
        status="in_review",
        items=[Decided(item="t-fire", status="in_review")],
    )


BUSINESS: dict[str, Any] = {
    "received": 3,
    "decided": 3,
    "approved": 2,
    "rejected": 1,
    "on_time": 1,
    "on_time_rate": 0.3333,
    "average_working_days": 4.67,
    "correction_rate": 0.6667,
    "ratings": 2,
    "average_rating": 3.0,
}
FIRE: dict[str, Any] = {
    "received": 1,
    "decided": 1,
    "approved": 1,
    "rejected": 0,
    "on_time": 1,
    "on_time_rate": 1.0,
    "average_working_days": 2.0,
    "correction_rate": 0.0,
    "ratings": 1,
    "average_rating": 1.0,
}


async def test_the_figures_of_a_month(http: httpx.AsyncClient, figures: None, bearer: Bearer) -> None:
    reply = await http.get("/api/v1/services/statistics", params=SEPTEMBER, headers=await bearer(ADMIN))

    assert reply.status_code == 200
    assert reply.json() == {
        "from": "2026-09-01",
        "to": "2026-09-30",
        "items": [
            {
                **BUSINESS,
                "item": "t-business",
                "department": "market",
                "name_zh": "营业执照",
                "name_en": "Business licence",
            },
            {
                **FIRE,
                "item": "t-fire",
                "department": "fire",
                "name_zh": "消防安全检查",
                "name_en": "Fire safety inspection",
            },
        ],
        "departments": [{**FIRE, "department": "fire"}, {**BUSINESS, "department": "market"}],
    }


async def test_filters_by_department_and_item(http: httpx.AsyncClient, figures: None, bearer: Bearer) -> None:
    headers = await bearer(CENTRE)
    fire = await http.get(
        "/api/v1/services/statistics", params={**SEPTEMBER, "department": "fire"}, headers=headers
    )
    business = await http.get(
        "/api/v1/services/statistics", params={**SEPTEMBER, "item": "t-business"}, headers=headers
    )
    assert fire.status_code == 200
    assert [r["item"] for r in fire.json()["items"]] == ["t-fire"]
    assert [r["department"] for r in business.json()["departments"]] == ["market"]


async def test_a_period_with_nothing_in_it_is_empty(
    http: httpx.AsyncClient, figures: None, bearer: Bearer
) -> None:
    reply = await http.get(
        "/api/v1/services/statistics",
        params={"from": "2026-07-01", "to": "2026-07-31"},
        headers=await bearer(ADMIN),
    )
    assert (reply.json()["items"], reply.json()["departments"]) == ([], [])


async def test_a_supervisor_sees_their_department_only(
    http: httpx.AsyncClient, figures: None, people: People, bearer: Bearer
) -> None:
    headers = await bearer(people.supervisors["market"])
    own = await http.get("/api/v1/services/statistics", params=SEPTEMBER, headers=headers)
    other = await http.get(
        "/api/v1/services/statistics", params={**SEPTEMBER, "department": "fire"}, headers=headers
    )
    assert own.status_code == 200
    assert [r["department"] for r in own.json()["departments"]] == ["market"]
    assert [r["item"] for r in own.json()["items"]] == ["t-business"]
    assert other.status_code == 403


async def test_who_may_not_read_statistics(http: httpx.AsyncClient, people: People, bearer: Bearer) -> None:
    statuses = [
        (await http.get("/api/v1/services/statistics", headers=await bearer(actor))).status_code
        for actor in (people.citizen, people.officers["market"], people.clerk)
    ]
    anonymous = await http.get("/api/v1/services/statistics")
    assert statuses == [403, 403, 403]
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-09-30", "to": "2026-09-01"},
        {"from": "2025-01-01", "to": "2026-09-01"},
        {"from": "yesterday"},
        {"department": "no such; drop"},
        {"to": "0001-01-01"},
        {"to": "0001-01-15"},
        {"from": "0001-01-01", "to": "0001-01-05"},
        {"from": "9999-12-31", "to": "9999-12-31"},
        {"from": "9999-12-01"},
    ],
)
async def test_bad_periods_are_400(
    http: httpx.AsyncClient, bearer: Bearer, people: People, params: dict[str, str]
) -> None:
    reply = await http.get("/api/v1/services/statistics", params=params, headers=await bearer(ADMIN))
    assert reply.status_code == 400
    assert reply.headers["content-type"].startswith("application/problem+json")


async def test_a_citizen_is_refused_before_the_period_is_read(
    http: httpx.AsyncClient, people: People, bearer: Bearer
) -> None:
    headers = await bearer(people.citizen)
    for params in ({"to": "0001-01-01"}, {"from": "9999-12-31", "to": "9999-12-31"}, {"from": "yesterday"}):
        reply = await http.get("/api/v1/services/statistics", params=params, headers=headers)
        assert reply.status_code == 403, params


async def test_the_earliest_and_latest_days_are_a_period(http: httpx.AsyncClient, bearer: Bearer) -> None:
    for params in ({"from": "0001-01-02", "to": "0001-01-02"}, {"from": "9999-12-30", "to": "9999-12-30"}):
        reply = await http.get("/api/v1/services/statistics", params=params, headers=await bearer(ADMIN))
        assert reply.status_code == 200, reply.text
