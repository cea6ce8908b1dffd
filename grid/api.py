"""What other contexts and the composition root may use of grid management.

- the composition root: `subject_kind()` (the case as the workflow engine's subject) and
  `install(conn)` (the case loop's definition, installed at start);
- channels: `report` a citizen's case and read it back with `case`.
"""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from typing import Any
from uuid import UUID

import msgspec

from grid import cases, store
from grid.cases import KIND, NewCase, Source
from onewindow.db import Connection
from workflows import api as workflows

__all__ = [
    "KIND",
    "CaseRef",
    "NewCase",
    "ServiceCategory",
    "Source",
    "StatusEntry",
    "add_note",
    "case",
    "citizen_categories",
    "citizen_reporter",
    "external_update",
    "find_case",
    "find_cases",
    "install",
    "photos_of_cases",
    "report",
    "status_changes_between",
    "status_history",
    "subject_kind",
]


class CaseRef(msgspec.Struct, frozen=True, kw_only=True):
    """A case as another context sees it."""

    id: UUID
    number: str
    status: str
    category: str
    department: str
    grid: str | None
    lat: float | None
    lon: float | None
    address: str | None
    description: str
    reported_at: datetime
    handle_due_at: datetime | None
    closed_at: datetime | None
    duplicate_of: UUID | None
    updated_at: datetime
    source: str | None = None


def _ref(row: store.CaseRow) -> CaseRef:
    return CaseRef(
        id=row.id,
        number=row.number,
        status=row.status,
        category=row.category,
        department=row.department,
        grid=row.grid_code,
        lat=row.lat,
        lon=row.lon,
        address=row.address,
        description=row.description,
        reported_at=row.reported_at,
        handle_due_at=row.handle_due_at,
        closed_at=row.closed_at,
        duplicate_of=row.duplicate_of,
        updated_at=row.updated_at,
        source=row.source,
    )


def subject_kind() -> workflows.SubjectKind:
    return cases.CaseKind()


def loop_definition() -> str:
    return resources.files("grid").joinpath("case_loop.yaml").read_text(encoding="utf-8")


async def install(conn: Connection) -> int:
    """Install the case loop's definition unless the city already has one (an administrator's
    edits stay); returns the version in force."""
    version, _ = await workflows.install_definition(conn, loop_definition(), media_type="yaml", by="grid")
    return version


async def report(
    conn: Connection, new: NewCase, *, source: Source, reporter: str, actor: workflows.Actor
) -> CaseRef:
    """Report a case in the caller's transaction (channels: a citizen's Open311 report)."""
    return _ref(
        await cases.report(conn, new, source=source, reporter=reporter, actor=actor, now=workflows.now())
    )


async def case(conn: Connection, case_id: UUID) -> CaseRef | None:
    row = await store.case(conn, case_id)
    return _ref(row) if row else None


async def citizen_reporter(conn: Connection, case_id: UUID) -> str | None:
    """The subject of the citizen who reported the case (channels tells them how it goes); None
    when staff reported it, or for no such case."""
    row = await store.case(conn, case_id)
    return row.reporter if row is not None and row.source == "citizen" else None


# --- for channels' Open311: services, finding cases, their history, citizens' notes ---------------


class ServiceCategory(msgspec.Struct, frozen=True, kw_only=True):
    """A category citizens may report (an Open311 service), with the attributes a report of it
    asks for (GeoReport v2 shape) and whether people who are not signed in may report it."""

    code: str
    kind: str
    name_zh: str
    name_en: str
    department: str
    handle_limit: str
    severity: str
    attributes: list[dict[str, Any]]
    anonymous_reports: bool


class StatusEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A row of a case's history as its reporter and the public may see it: a change of status
    (`own_note` None: no one's words), or a note the reporter wrote themselves. `id` is stable and
    grows with time."""

    id: int
    case_id: UUID
    number: str
    at: datetime
    to_status: str
    own_note: str | None


async def citizen_categories(conn: Connection) -> list[ServiceCategory]:
    return [
        msgspec.convert(row, ServiceCategory, from_attributes=True)
        for row in await store.citizen_categories(conn)
    ]


async def find_cases(
    conn: Connection,
    *,
    categories: list[str],
    numbers: list[str] | None = None,
    statuses: list[str] | None = None,
    reporter: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    offset: int = 0,
    limit: int = 1000,
    ids: list[UUID] | None = None,
    source: Source | None = None,
) -> list[CaseRef]:
    """Cases of `categories` (and, given, of one `source`), newest first; the caller decides who
    may see them."""
    rows = await store.find_cases(
        conn,
        ids=ids,
        source=source,
        categories=categories,
        numbers=numbers,
        statuses=statuses,
        reporter=reporter,
        start=start,
        end=end,
        offset=offset,
        limit=limit,
    )
    return [_ref(row) for row in rows]


async def status_history(
    conn: Connection, case_ids: list[UUID], *, notes_by: str | None = None
) -> list[StatusEntry]:
    """The status changes of each case, by case and then in the order written, and with
    `notes_by` (a reporter's subject) the notes that subject wrote on them. No staff comment is
    read: what a status change means is for the caller to say in its own fixed words."""
    rows = await store.status_history(conn, case_ids, notes_by=notes_by)
    return [msgspec.convert(row, StatusEntry, from_attributes=True) for row in rows]


async def status_changes_between(
    conn: Connection,
    *,
    categories: list[str],
    source: Source,
    start: datetime,
    end: datetime,
    offset: int,
    limit: int,
) -> list[StatusEntry]:
    """Every status change of cases of `categories` reported by `source`, written in [start, end],
    oldest first, paged by offset and limit."""
    rows = await store.status_changes_between(
        conn, categories=categories, source=source, start=start, end=end, offset=offset, limit=limit
    )
    return [msgspec.convert(row, StatusEntry, from_attributes=True) for row in rows]


async def photos_of_cases(conn: Connection, case_ids: list[UUID]) -> dict[UUID, list[str]]:
    """The SHA-256 digests of each case's photos (served at /api/v1/grid/photos/{sha256}), in one
    query; a case without photos is absent."""
    found: dict[UUID, list[str]] = {}
    for case_id, sha256 in await store.photos_of_cases(conn, case_ids):
        found.setdefault(case_id, []).append(sha256)
    return found


async def add_note(
    conn: Connection, case_id: UUID, *, note: str, actor: str, data: dict[str, Any] | None = None
) -> int:
    """Add a note (a citizen's update) to a case without moving its loop; returns the history id."""
    return await cases.add_note(conn, case_id, note=note, actor=actor, at=workflows.now(), data=data or {})


# --- for channels' IOC feed: an outside system's updates -------------------------------------------


async def find_case(conn: Connection, reference: str) -> CaseRef | None:
    """A case by its id or its number (what an outside system knows it by)."""
    try:
        row = await store.case(conn, UUID(reference))
    except ValueError:
        row = await store.case_by_number(conn, reference)
    return _ref(row) if row else None


async def external_update(
    conn: Connection,
    case_id: UUID,
    *,
    origin: str,
    effect: cases.ExternalEffect,
    note: str | None,
    data: dict[str, Any] | None = None,
) -> tuple[CaseRef, str | None]:
    """An outside system (`origin`, e.g. "ioc") says how a case goes, in the caller's transaction:
    `effect` "handled" completes the handle step if it is open, else (and for "note") the update
    is a note in the case's history. The history row's actor is `external:<origin>`; the grid
    event carries `origin`. Returns the case after it and the loop action taken (None: a note).
    NotFound for no such case; RuleViolation for a closed or rejected one."""
    row, action = await cases.external_update(
        conn, case_id, origin=origin, effect=effect, note=note, at=workflows.now(), data=data or {}
    )
    return _ref(row), action
