"""The IOC feed: every report and change of a grid case, once, as a CloudEvents 1.0 event.

An outbox subscriber (`subscription()`, registered at the composition root) turns each
`grid.case.*` event into a CloudEvent, stores it in the feed and adds one pending delivery per
enabled endpoint, all in the drainer's transaction: the feed, the deliveries and the outbox's
record of the delivery commit together, so nothing is lost and nothing is stored twice.
`channels.ioc_push` then POSTs the deliveries; an IOC that was away reads the same events back
with `page()` (GET /ioc/v1/events).

The CloudEvent's `sequence` is grid's own number of the event within its case, taken under the
case's row lock when the change was written: it follows the order the changes happened, not the
order the outbox hands the events on in. Changes the IOC made itself (`origin == "ioc"`, through
POST /ioc/v1/incidents/{id}/updates) are not in the feed at all (not echoed back), so an
incident's sequence has a gap where they were. The IOC learns their effect on the loop from that
request's reply.

The feed is a projection for a system outside the city: staff's words (a transition's comment,
grid's `note`) are not in it; the IOC reads statuses.
"""

from __future__ import annotations

from typing import Any, Final
from uuid import UUID

import msgspec

from channels import ioc_store as store
from identity import api as identity_api
from onewindow.db import Connection
from onewindow.events import Envelope, Subscription

SUBSCRIBER: Final = "ioc-feed"
TOPICS: Final = ("grid.case.reported", "grid.case.changed", "grid.case.closed")
TYPE_PREFIX: Final = "city.onewindow."
ECHO_ORIGIN: Final = "ioc"
# Grid event fields the IOC does not get: staff's free text.
NOT_PROJECTED: Final = frozenset({"note"})
# NOTIFY channel: wakes the pushers when a transaction that added deliveries commits.
WAKE_CHANNEL: Final = "onewindow_ioc"


def subscription() -> Subscription:
    return Subscription(name=SUBSCRIBER, handler=record, topics=TOPICS)


async def source(conn: Connection) -> str:
    """The CloudEvents `source`: the city's grid management (`/onewindow/<city unit>/grid`)."""
    city = await identity_api.city_path(conn)
    return f"/onewindow/{city or 'city'}/grid"


def cloudevent(envelope: Envelope, *, source: str) -> dict[str, Any]:
    """The structured-mode CloudEvent of one grid event (docs/ioc-feed/*.json are its schemas).
    `time` is the grid event's own time: a change's `at` (as in the case's history), a report's
    `reported_at`."""
    payload = envelope.payload
    # 0: an event published before grid numbered its events (migration 0012), still in the outbox.
    data: dict[str, Any] = {"sequence": int(payload.get("sequence", 0))}
    data.update(
        (key, value)
        for key, value in payload.items()
        if key not in NOT_PROJECTED and not (key == "origin" and value is None)
    )
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(envelope.id),
        "source": source,
        "type": TYPE_PREFIX + envelope.topic,
        "subject": str(payload["number"]),
        "time": payload.get("at") or payload["reported_at"],
        "datacontenttype": "application/json",
        "data": data,
    }
    converted: dict[str, Any] = msgspec.to_builtins(event)
    return converted


async def record(conn: Connection, envelope: Envelope) -> None:
    """The subscriber: store the event once, with its deliveries."""
    if envelope.payload.get("origin") == ECHO_ORIGIN:
        return
    case_id = UUID(str(envelope.payload["case_id"]))
    await store.lock_feed(conn)
    if await store.event_recorded(conn, envelope.id):
        return
    event = cloudevent(envelope, source=await source(conn))
    sequence: int = event["data"]["sequence"]
    position = await store.insert_event(
        conn, event_id=envelope.id, case_id=case_id, sequence=sequence, type_=event["type"], cloudevent=event
    )
    if await store.add_deliveries(conn, position=position, case_id=case_id, sequence=sequence):
        await conn.execute("SELECT pg_notify($1, '')", WAKE_CHANNEL)


class FeedPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of the feed: the events in order, and the cursor to pass as `after` next time
    (the same cursor again when there was nothing new)."""

    events: list[dict[str, Any]]
    next_cursor: str
    more: bool


async def page(conn: Connection, *, after: int, limit: int) -> FeedPage:
    rows = await store.events_after(conn, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return FeedPage(
        events=[row.cloudevent for row in rows],
        next_cursor=str(rows[-1].position if rows else after),
        more=more,
    )
