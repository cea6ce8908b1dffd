"""What other contexts and the composition root may use of grid management.

- the composition root: `subject_kind()` (the case as the workflow engine's subject) and
  `install(conn)` (the case loop's definition, installed at start);
- channels: `report` a citizen's case and read it back with `case`.
"""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from uuid import UUID

import msgspec

from grid import cases, store
from grid.cases import KIND, NewCase, Source
from onewindow.db import Connection
from workflows import api as workflows

__all__ = ["KIND", "CaseRef", "NewCase", "Source", "case", "install", "report", "subject_kind"]


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
