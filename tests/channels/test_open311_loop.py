"""An Open311 request follows its grid case through the loop (driven over the grid and workflow
HTTP API, as staff do it): status, extended status, status_notes, agency_responsible,
expected_datetime, the notes history, FixMyStreet's servicerequestupdates (GET since a time,
paged; POST of a citizen's update, idempotent by update_id) and a citizen's own reports; what is
public (citizens' reports, their status changes in the city's fixed words) and what is not (staff's
comments, other sources' cases, other people's notes)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from channels.open311_rules import STATUS_TEXT
from grid import api as grid_api
from grid import seed as grid_seed
from identity.tokens import RoleGrant
from onewindow.db import Connection
from tests.channels.open311_fixtures import (
    CENTRE,
    CITIZEN,
    CITY_CENTRE,
    URBAN,
    WORKER,
    Bearer,
    form,
    step,
    valid,
    xml,
)
from tests.workflows.conftest import Clock
from workflows.api import Actor

pytest_plugins = ["tests.channels.open311_fixtures"]

LAT, LON = grid_seed.grid_centre("G-0107")


async def report(http: httpx.AsyncClient, key: str, **extra: Any) -> str:
    fields: dict[str, Any] = {
        "api_key": key,
        "service_code": "street_light",
        "lat": str(LAT),
        "long": str(LON),
        "description": "Lights out on the whole block.",
        "attributes": {"lights_out": "3", "pattern": "flickering", "pole_number": "RL-0412"},
    }
    fields.update(extra)
    reply = await http.post("/open311/v2/requests.json", data=form(**fields))
    assert reply.status_code == 201, reply.text
    number: str = reply.json()[0]["service_request_id"]
    return number


async def case_id(conn: Connection, number: str) -> str:
    return str(await conn.fetchval("SELECT id FROM grid.cases WHERE number = $1", number))


async def request(http: httpx.AsyncClient, number: str) -> dict[str, Any]:
    reply = await http.get(f"/open311/v2/requests/{number}.json", params={"extensions": "true"})
    found: dict[str, Any] = valid("requests.json", reply.json())[0]
    return found


async def test_the_request_follows_its_case_through_the_loop(
    o311_http: httpx.AsyncClient, o311_key: str, o311_bearer: Bearer, o311_clock: Clock, conn: Connection
) -> None:
    number = await report(o311_http, o311_key)
    cid = await case_id(conn, number)
    centre, urban = await o311_bearer(CENTRE), await o311_bearer(URBAN)

    seen = await request(o311_http, number)
    assert (seen["status"], seen["extended_attributes"]["status"]) == ("open", "OPEN")
    assert seen["agency_responsible"] == "Urban Management Department"
    assert seen["expected_datetime"] is None
    assert seen["extended_attributes"]["channel"] == "open311"
    assert {a["code"]: a["values"] for a in seen["extended_attributes"]["attributes"]} == {
        "lights_out": [3.0],
        "pattern": ["flickering"],
        "pole_number": ["RL-0412"],
    }

    o311_clock.advance(minutes=10)
    await step(o311_http, centre, cid, "register")
    assert (await request(o311_http, number))["extended_attributes"]["status"] == "ACTION_SCHEDULED"
    o311_clock.advance(minutes=10)
    await step(o311_http, centre, cid, "to_department")
    seen = await request(o311_http, number)
    assert seen["extended_attributes"]["status"] == "IN_PROGRESS"
    assert seen["expected_datetime"] is not None  # the handling deadline, in the city's time zone
    assert seen["expected_datetime"].endswith("+08:00")
    o311_clock.advance(hours=2)
    await step(o311_http, urban, cid, "handled", comment="Lamp heads replaced by Zhang Wei.")
    seen = await request(o311_http, number)
    assert (seen["status"], seen["extended_attributes"]["status"]) == ("open", "FIXED")
    # The city's fixed words for the status, never the officer's comment (it may name people).
    assert seen["status_notes"] == STATUS_TEXT["verifying"]
    assert "Zhang Wei" not in str(seen)
    o311_clock.advance(hours=1)
    await step(o311_http, centre, cid, "passed")
    await step(o311_http, centre, cid, "close")
    await step(o311_http, centre, cid, "evaluate", data={"rating": 5})
    seen = await request(o311_http, number)
    assert (seen["status"], seen["extended_attributes"]["status"]) == ("closed", "CLOSED")
    notes = seen["extended_attributes"]["notes"]
    # The status changes only: reported, register, to_department, handled, passed, close, and
    # closed (evaluate leaves the case evaluating, so it is not a change).
    assert [(n["status"], n["description"]) for n in notes] == [
        ("OPEN", STATUS_TEXT["registering"]),
        ("ACTION_SCHEDULED", STATUS_TEXT["dispatching"]),
        ("IN_PROGRESS", STATUS_TEXT["handling"]),
        ("FIXED", STATUS_TEXT["verifying"]),
        ("FIXED", STATUS_TEXT["closing"]),
        ("FIXED", STATUS_TEXT["evaluating"]),
        ("CLOSED", STATUS_TEXT["closed"]),
    ]
    assert [int(n["update_id"]) for n in notes] == sorted(int(n["update_id"]) for n in notes)
    closed = await o311_http.get("/open311/v2/requests.json", params={"status": "closed"})
    assert number in {r["service_request_id"] for r in valid("requests.json", closed.json())}
    still_open = await o311_http.get("/open311/v2/requests.json", params={"status": "open"})
    assert number not in {r["service_request_id"] for r in still_open.json()}

    # The same in XML: the extended attributes and the notes, nested as the spec nests lists.
    root = xml(await o311_http.get(f"/open311/v2/requests/{number}.xml", params={"extensions": "true"}))
    assert root.findtext("request/status") == "closed"
    assert root.findtext("request/extended_attributes/status") == "CLOSED"
    assert len(root.findall("request/extended_attributes/notes/note")) == len(notes)


async def test_a_rejected_report_is_not_the_citys_and_a_duplicate_says_so(
    o311_http: httpx.AsyncClient, o311_key: str, o311_bearer: Bearer, conn: Connection
) -> None:
    centre = await o311_bearer(CENTRE)
    rejected = await report(o311_http, o311_key)
    await step(
        o311_http, centre, await case_id(conn, rejected), "reject", comment="A private courtyard light."
    )
    seen = await request(o311_http, rejected)
    assert (seen["status"], seen["extended_attributes"]["status"]) == (
        "closed",
        "NOT_COUNCILS_RESPONSIBILITY",
    )
    assert seen["status_notes"] == STATUS_TEXT["rejected"]
    assert "courtyard" not in str(seen)

    primary = await report(o311_http, o311_key)
    await step(o311_http, centre, await case_id(conn, primary), "register")
    duplicate = await report(o311_http, o311_key)
    await step(o311_http, centre, await case_id(conn, duplicate), "duplicate", data={"duplicate_of": primary})
    seen = await request(o311_http, duplicate)
    assert (seen["status"], seen["extended_attributes"]["status"]) == ("closed", "DUPLICATE")


async def test_an_address_without_coordinates_is_taken_and_queues_at_the_city(
    o311_http: httpx.AsyncClient, o311_key: str, o311_bearer: Bearer, conn: Connection
) -> None:
    reply = await o311_http.post(
        "/open311/v2/requests.json",
        data=form(
            api_key=o311_key,
            service_code="blocked_drain",
            address_string="12 Riverside Road",
            attributes={"water_on_road": "yes"},
        ),
    )
    assert reply.status_code == 201, reply.text
    created = reply.json()[0]
    assert "locate" in created["service_notice"]
    number = created["service_request_id"]
    assert await conn.fetchval("SELECT grid_code FROM grid.cases WHERE number = $1", number) is None
    seen = await request(o311_http, number)
    assert (seen["address"], seen["lat"]) == ("12 Riverside Road", None)
    # The city's command centre has it in its inbox.
    inbox = (await o311_http.get("/api/v1/tasks", headers=await o311_bearer(CITY_CENTRE))).json()
    assert await case_id(conn, number) in {t["subject_id"] for t in inbox["items"]}


async def test_updates_since_a_time_with_stable_ids_and_a_citizens_update(
    o311_http: httpx.AsyncClient, o311_key: str, o311_bearer: Bearer, o311_clock: Clock, conn: Connection
) -> None:
    since = o311_clock().isoformat()
    number = await report(o311_http, o311_key)
    cid = await case_id(conn, number)
    o311_clock.advance(minutes=5)
    await step(o311_http, await o311_bearer(CENTRE), cid, "register", comment="Crew booked for tonight.")

    params = {"start_date": since}
    first = (await o311_http.get("/open311/v2/servicerequestupdates.json", params=params)).json()
    mine = [u for u in first if u["service_request_id"] == number]
    assert [(u["status"], u["description"]) for u in mine] == [
        ("OPEN", STATUS_TEXT["registering"]),
        ("ACTION_SCHEDULED", STATUS_TEXT["dispatching"]),
    ]
    assert "Crew booked" not in str(first)
    # Re-reading an overlapping window gives the same updates with the same ids.
    again = (await o311_http.get("/open311/v2/servicerequestupdates.json", params=params)).json()
    assert again == first

    # A citizen's update: a note that never moves the loop; a retry with the same update_id is
    # the same update.
    o311_clock.advance(minutes=5)
    update = form(
        api_key=o311_key,
        service_request_id=number,
        description="Now the next pole is out too.",
        update_id="fms-77",
        status="OPEN",
        updated_datetime=o311_clock().isoformat(),
    )
    posted = await o311_http.post("/open311/v2/servicerequestupdates.json", data=update)
    assert posted.status_code == 201, posted.text
    retried = await o311_http.post("/open311/v2/servicerequestupdates.json", data=update)
    assert retried.status_code == 200
    assert retried.json() == posted.json()
    update_id = posted.json()[0]["update_id"]
    notes = await conn.fetch(
        "SELECT action, to_status, note FROM grid.case_history WHERE case_id = $1 AND action = 'note'", cid
    )
    assert [tuple(n) for n in notes] == [("note", "dispatching", "Now the next pole is out too.")]
    assert await conn.fetchval("SELECT status FROM grid.cases WHERE id = $1", cid) == "dispatching"
    event = await conn.fetchval(
        "SELECT payload FROM onewindow.outbox WHERE topic = 'grid.case.changed' AND payload->>'action' = 'note'"
        " AND payload->>'case_id' = $1",
        cid,
    )
    assert event is not None
    assert event["note"] is None  # the citizen's words stay in the history, not in the event

    # The public feed does not echo a citizen's words; XML has the FixMyStreet structure.
    public = (await o311_http.get("/open311/v2/servicerequestupdates.json", params=params)).json()
    assert update_id not in {u["update_id"] for u in public}
    root = xml(await o311_http.get("/open311/v2/servicerequestupdates.xml", params=params))
    assert root.tag == "service_request_updates"
    assert {u.findtext("update_id") for u in root.findall("request_update")} == {
        u["update_id"] for u in public
    }

    bad = await o311_http.post(
        "/open311/v2/servicerequestupdates.json",
        data=form(api_key=o311_key, service_request_id="GC-1999-000009", description="x"),
    )
    assert bad.status_code == 404


async def test_an_outside_systems_note_stays_internal(
    o311_http: httpx.AsyncClient, o311_key: str, o311_clock: Clock, conn: Connection
) -> None:
    """A history row written through grid by another channel (the IOC's notes) that does not move
    the status is not public: neither in the notes, nor status_notes, nor servicerequestupdates."""
    since = o311_clock().isoformat()
    number = await report(o311_http, o311_key)
    cid = await case_id(conn, number)
    o311_clock.advance(minutes=1)
    await conn.execute(
        "INSERT INTO grid.case_history (case_id, at, actor, action, from_status, to_status, note, data)"
        " VALUES ($1, $2, 'ioc', 'ioc_update', 'registering', 'registering', 'Crew on site per IOC.', '{}')",
        cid,
        o311_clock(),
    )
    feed = (
        await o311_http.get("/open311/v2/servicerequestupdates.json", params={"start_date": since})
    ).json()
    assert [u["description"] for u in feed if u["service_request_id"] == number] == [
        STATUS_TEXT["registering"]
    ]
    seen = await request(o311_http, number)
    assert seen["status_notes"] == STATUS_TEXT["registering"]
    assert "Crew on site" not in str(seen)


async def test_a_signed_in_citizen_sees_their_own_reports_with_their_updates(
    o311_http: httpx.AsyncClient, o311_key: str, o311_bearer: Bearer, conn: Connection
) -> None:
    citizen = await o311_bearer(CITIZEN)
    reply = await o311_http.post(
        "/open311/v2/requests.json",
        data=form(
            api_key=o311_key,
            service_code="blocked_drain",
            lat=str(LAT),
            long=str(LON),
            description="Drain blocked by leaves.",
            attributes={"water_on_road": "no"},
        ),
        headers=citizen,
    )
    number = reply.json()[0]["service_request_id"]
    await report(o311_http, o311_key)  # someone else's, anonymous
    await o311_http.post(
        "/open311/v2/servicerequestupdates.json",
        data=form(api_key=o311_key, service_request_id=number, description="It is getting worse."),
        headers=citizen,
    )
    # Someone else's update on the citizen's report (another app, not signed in as them).
    await o311_http.post(
        "/open311/v2/servicerequestupdates.json",
        data=form(api_key=o311_key, service_request_id=number, description="My neighbour Li Na did this."),
    )
    await step(
        o311_http, await o311_bearer(CENTRE), await case_id(conn, number), "register", comment="Staff only."
    )
    own = valid(
        "requests.json",
        (await o311_http.get("/open311/v2/requests.json", params={"mine": "true"}, headers=citizen)).json(),
    )
    assert [r["service_request_id"] for r in own] == [number]
    notes = own[0]["extended_attributes"]["notes"]
    assert [(n["status"], n["description"]) for n in notes] == [
        ("OPEN", STATUS_TEXT["registering"]),
        ("OPEN", "It is getting worse."),
        ("ACTION_SCHEDULED", STATUS_TEXT["dispatching"]),
    ]
    assert "Li Na" not in str(own)
    assert "Staff only" not in str(own)
    assert own[0]["status_notes"] == STATUS_TEXT["dispatching"]
    # The public does not see the citizen's own words either.
    public = await request(o311_http, number)
    assert "getting worse" not in str(public)
    assert (
        await conn.fetchval("SELECT reporter FROM grid.cases WHERE number = $1", number)
    ) == CITIZEN.subject
    anonymous = await o311_http.get("/open311/v2/requests.json", params={"mine": "true"})
    assert anonymous.status_code == 401
    assert anonymous.json()[0]["code"] == 401


async def test_cases_staff_reported_are_not_public(
    o311_http: httpx.AsyncClient, o311_key: str, o311_clock: Clock, conn: Connection
) -> None:
    """A grid worker's or the command centre's case in a citizen category is internal: not found,
    not listed, not in the updates feed, and not open to citizens' updates."""
    since = o311_clock().isoformat()
    citizens = await report(o311_http, o311_key)
    internal = []
    for source, actor in (
        ("worker", WORKER),
        (
            "command_centre",
            Actor(
                subject="centre-o311-x",
                kind="person",
                roles=(RoleGrant(role="command_centre", unit="demo", path="demo"),),
            ),
        ),
    ):
        case = await grid_api.report(
            conn,
            grid_api.NewCase(
                category="street_light",
                description=f"Internal: {source} saw the light out at No. 5, Mr Wang's door.",
                lat=LAT,
                lon=LON,
            ),
            source=source,  # type: ignore[arg-type]
            reporter=actor.subject,
            actor=actor,
        )
        internal.append(case.number)
    listed = (await o311_http.get("/open311/v2/requests.json", params={"extensions": "true"})).json()
    assert [r["service_request_id"] for r in listed] == [citizens]
    assert "Mr Wang" not in str(listed)
    for number in internal:
        assert (await o311_http.get(f"/open311/v2/requests/{number}.json")).status_code == 404
        by_id = await o311_http.get("/open311/v2/requests.json", params={"service_request_id": number})
        assert by_id.json() == []
        update = await o311_http.post(
            "/open311/v2/servicerequestupdates.json",
            data=form(api_key=o311_key, service_request_id=number, description="Me too."),
        )
        assert update.status_code == 404
    feed = (
        await o311_http.get("/open311/v2/servicerequestupdates.json", params={"start_date": since})
    ).json()
    assert {u["service_request_id"] for u in feed} == {citizens}


async def test_updates_page_and_say_when_a_window_was_cut(
    o311_http: httpx.AsyncClient, o311_key: str, o311_clock: Clock
) -> None:
    since = o311_clock().isoformat()
    numbers = []
    for _ in range(3):
        numbers.append(await report(o311_http, o311_key))
        o311_clock.advance(minutes=1)
    params = {"start_date": since, "page_size": "2"}
    first = await o311_http.get("/open311/v2/servicerequestupdates.json", params=params)
    assert [u["service_request_id"] for u in first.json()] == numbers[:2]
    link = first.headers["link"]
    assert link.endswith('; rel="next"')
    following = link[1 : link.index(">")]
    assert "page=2" in following
    assert "page_size=2" in following
    parts = urlsplit(following)
    second = await o311_http.get(f"{parts.path}?{parts.query}")
    assert second.status_code == 200, second.text
    assert [u["service_request_id"] for u in second.json()] == numbers[2:]
    assert "link" not in second.headers
    whole = await o311_http.get("/open311/v2/servicerequestupdates.xml", params={"start_date": since})
    assert "link" not in whole.headers
    assert len(xml(whole).findall("request_update")) == 3
    bad = await o311_http.get(
        "/open311/v2/servicerequestupdates.json", params={"start_date": since, "page_size": "0"}
    )
    assert bad.status_code == 400


async def test_finding_requests_costs_the_same_few_queries_for_many_cases(
    o311_http: httpx.AsyncClient, o311_key: str, o311_clock: Clock, conn: Connection
) -> None:
    """With the extensions, a reply of many cases reads their history and their photos once each,
    not once per case."""
    queries: list[str] = []

    def record(query: Any) -> None:
        queries.append(query.query)

    async def reads(count: int) -> dict[str, int]:
        queries.clear()
        conn.add_query_logger(record)
        try:
            reply = await o311_http.get(
                "/open311/v2/requests.json", params={"extensions": "true", "page_size": str(count)}
            )
        finally:
            conn.remove_query_logger(record)
        assert len(reply.json()) == count
        return {
            table: sum(table in q for q in queries) for table in ("grid.case_history", "grid.case_photos")
        }

    for _ in range(5):
        await report(o311_http, o311_key)
        o311_clock.advance(minutes=1)
    assert await reads(1) == await reads(5) == {"grid.case_history": 1, "grid.case_photos": 1}


async def test_requests_default_to_the_last_90_days_and_page(
    o311_http: httpx.AsyncClient, o311_key: str, o311_clock: Clock, conn: Connection
) -> None:
    numbers = []
    for _ in range(3):
        numbers.append(await report(o311_http, o311_key))
        o311_clock.advance(minutes=1)
    found = valid("requests.json", (await o311_http.get("/open311/v2/requests.json")).json())
    assert [r["service_request_id"] for r in found][:3] == numbers[::-1]  # newest first
    first = (await o311_http.get("/open311/v2/requests.json", params={"page_size": "2", "page": "1"})).json()
    second = (await o311_http.get("/open311/v2/requests.json", params={"page_size": "2", "page": "2"})).json()
    assert [r["service_request_id"] for r in first] == numbers[:0:-1]
    assert second[0]["service_request_id"] == numbers[0]
    by_id = (
        await o311_http.get(
            "/open311/v2/requests.json", params={"service_request_id": f"{numbers[0]},{numbers[2]}"}
        )
    ).json()
    assert {r["service_request_id"] for r in by_id} == {numbers[0], numbers[2]}
    o311_clock.advance(days=91)
    assert (await o311_http.get("/open311/v2/requests.json")).json() == []
    old = await o311_http.get("/open311/v2/requests.json", params={"service_request_id": numbers[0]})
    assert [r["service_request_id"] for r in old.json()] == [numbers[0]]
