"""Grid management's SQL. Functions take `conn` first and never commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from onewindow.db import Connection, row_as, rows_as

# --- grids -------------------------------------------------------------------------------------


class GridRow(msgspec.Struct, frozen=True):
    code: str
    name: str
    community: str
    street: str
    district: str
    households: int
    geometry: dict[str, Any]
    unit_path: str
    version: int
    updated_at: datetime
    retired_at: datetime | None


_GRID = "code, name, community, street, district, households, geometry, unit_path, version, updated_at, retired_at"


async def layer_token(conn: Connection) -> UUID:
    token: UUID = await conn.fetchval("SELECT token FROM grid.layer")
    return token


async def bump_layer(conn: Connection, *, by: str, at: datetime) -> int:
    version: int = await conn.fetchval(
        "UPDATE grid.layer SET version = version + 1, token = gen_random_uuid(), imported_at = $1,"
        " imported_by = $2 RETURNING version",
        at,
        by,
    )
    return version


async def lock_layer(conn: Connection) -> None:
    """Imports one at a time: the second waits and then sees the first's grids."""
    await conn.execute("SELECT 1 FROM grid.layer FOR UPDATE")


async def grids(conn: Connection, *, retired: bool = False) -> list[GridRow]:
    rows = await conn.fetch(
        f"SELECT {_GRID} FROM grid.grids WHERE $1 OR retired_at IS NULL ORDER BY code", retired
    )
    return rows_as(rows, GridRow)


async def grid(conn: Connection, code: str) -> GridRow | None:
    row = await conn.fetchrow(f"SELECT {_GRID} FROM grid.grids WHERE code = $1", code)
    return row_as(row, GridRow) if row else None


async def located_grids(conn: Connection) -> list[tuple[str, dict[str, Any]]]:
    rows = await conn.fetch("SELECT code, geometry FROM grid.grids WHERE retired_at IS NULL")
    return [(row["code"], row["geometry"]) for row in rows]


async def save_grid(
    conn: Connection,
    *,
    code: str,
    name: str,
    community: str,
    street: str,
    district: str,
    households: int,
    geometry: dict[str, Any],
    unit_path: str,
    layer: int,
    by: str,
    at: datetime,
) -> str | None:
    """Insert or update a grid, with a history row when anything changed; returns the change
    ('created', 'updated', 'restored') or None when the grid is as it was."""
    row = await conn.fetchrow(
        """
        WITH old AS (
            SELECT version, retired_at FROM grid.grids WHERE code = $1
        ), saved AS (
            INSERT INTO grid.grids AS g
                (code, name, community, street, district, households, geometry, unit_path, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $11, $11)
            ON CONFLICT (code) DO UPDATE SET
                name = EXCLUDED.name, community = EXCLUDED.community, street = EXCLUDED.street,
                district = EXCLUDED.district, households = EXCLUDED.households,
                geometry = EXCLUDED.geometry, unit_path = EXCLUDED.unit_path,
                version = g.version + 1, updated_at = EXCLUDED.updated_at, retired_at = NULL
            WHERE (g.name, g.community, g.street, g.district, g.households, g.geometry, g.unit_path)
                  IS DISTINCT FROM
                  (EXCLUDED.name, EXCLUDED.community, EXCLUDED.street, EXCLUDED.district,
                   EXCLUDED.households, EXCLUDED.geometry, EXCLUDED.unit_path)
               OR g.retired_at IS NOT NULL
            RETURNING g.version
        ), change AS (
            SELECT s.version,
                   CASE WHEN NOT EXISTS (SELECT 1 FROM old) THEN 'created'
                        WHEN (SELECT retired_at FROM old) IS NOT NULL THEN 'restored'
                        ELSE 'updated' END AS change
            FROM saved s
        ), history AS (
            INSERT INTO grid.grid_history
                (code, version, change, name, community, street, district, households, geometry,
                 layer_version, changed_by, changed_at)
            SELECT $1, c.version, c.change, $2, $3, $4, $5, $6, $7, $9, $10, $11 FROM change c
        )
        SELECT change FROM change
        """,
        code,
        name,
        community,
        street,
        district,
        households,
        geometry,
        unit_path,
        layer,
        by,
        at,
    )
    return row["change"] if row else None


async def retire_grids_except(
    conn: Connection, keep: list[str], *, layer: int, by: str, at: datetime
) -> list[str]:
    """Retire every active grid not in `keep` (a re-import that no longer has it), with history."""
    rows = await conn.fetch(
        """
        WITH retired AS (
            UPDATE grid.grids SET retired_at = $2, version = version + 1, updated_at = $2
            WHERE retired_at IS NULL AND NOT (code = ANY($1::text[]))
            RETURNING code, version, name, community, street, district, households, geometry
        ), history AS (
            INSERT INTO grid.grid_history
                (code, version, change, name, community, street, district, households, geometry,
                 layer_version, changed_by, changed_at)
            SELECT code, version, 'retired', name, community, street, district, households, geometry, $3, $4, $2
            FROM retired
        )
        SELECT code FROM retired ORDER BY code
        """,
        keep,
        at,
        layer,
        by,
    )
    return [row["code"] for row in rows]


class GridHistoryRow(msgspec.Struct, frozen=True):
    version: int
    change: str
    households: int
    layer_version: int
    changed_by: str
    changed_at: datetime


async def grid_history(conn: Connection, code: str) -> list[GridHistoryRow]:
    rows = await conn.fetch(
        "SELECT version, change, households, layer_version, changed_by, changed_at"
        " FROM grid.grid_history WHERE code = $1 ORDER BY version",
        code,
    )
    return rows_as(rows, GridHistoryRow)


# --- categories --------------------------------------------------------------------------------


class CategoryRow(msgspec.Struct, frozen=True):
    code: str
    kind: str
    name_zh: str
    name_en: str
    department: str
    register_limit: str
    handle_limit: str
    severity: str
    citizen_reportable: bool
    active: bool
    version: int
    updated_at: datetime


_CATEGORY = (
    "code, kind, name_zh, name_en, department, register_limit, handle_limit, severity,"
    " citizen_reportable, active, version, updated_at"
)


async def categories(conn: Connection, *, active_only: bool = False) -> list[CategoryRow]:
    rows = await conn.fetch(
        f"SELECT {_CATEGORY} FROM grid.categories WHERE NOT $1 OR active ORDER BY code", active_only
    )
    return rows_as(rows, CategoryRow)


async def category(conn: Connection, code: str) -> CategoryRow | None:
    row = await conn.fetchrow(f"SELECT {_CATEGORY} FROM grid.categories WHERE code = $1", code)
    return row_as(row, CategoryRow) if row else None


# The editable fields, in the order both statements below take them ($2 .. $10).
_CATEGORY_FIELDS = (
    "kind",
    "name_zh",
    "name_en",
    "department",
    "register_limit",
    "handle_limit",
    "severity",
    "citizen_reportable",
    "active",
)


def _category_values(fields: dict[str, Any]) -> list[Any]:
    return [fields[name] for name in _CATEGORY_FIELDS]


async def insert_category(
    conn: Connection, *, code: str, fields: dict[str, Any], by: str
) -> CategoryRow | None:
    row = await conn.fetchrow(
        f"""
        INSERT INTO grid.categories
            (code, kind, name_zh, name_en, department, register_limit, handle_limit, severity,
             citizen_reportable, active, updated_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (code) DO NOTHING
        RETURNING {_CATEGORY}
        """,
        code,
        *_category_values(fields),
        by,
    )
    return row_as(row, CategoryRow) if row else None


async def update_category(
    conn: Connection, *, code: str, fields: dict[str, Any], by: str, expected_version: int
) -> CategoryRow | None:
    """The updated row, or None when the version moved (or the category does not exist)."""
    row = await conn.fetchrow(
        f"""
        UPDATE grid.categories SET
            kind = $2, name_zh = $3, name_en = $4, department = $5, register_limit = $6,
            handle_limit = $7, severity = $8, citizen_reportable = $9, active = $10,
            updated_by = $11, updated_at = now(), version = version + 1
        WHERE code = $1 AND version = $12
        RETURNING {_CATEGORY}
        """,
        code,
        *_category_values(fields),
        by,
        expected_version,
    )
    return row_as(row, CategoryRow) if row else None


# --- cases -------------------------------------------------------------------------------------


class CaseRow(msgspec.Struct):
    id: UUID
    number: str
    client_id: UUID | None
    source: str
    reporter: str
    category: str
    department: str
    severity: str
    grid_code: str | None
    community: str | None
    street: str | None
    district: str | None
    lat: float | None
    lon: float | None
    address: str | None
    description: str
    status: str
    duplicate_of: UUID | None
    dispatched_to: str | None
    rework_count: int
    reported_at: datetime
    register_due_at: datetime
    registered_at: datetime | None
    dispatched_at: datetime | None
    handle_due_at: datetime | None
    handled_at: datetime | None
    closed_at: datetime | None
    rating: int | None
    created_at: datetime
    updated_at: datetime
    version: int


_CASE = (
    "id, number, client_id, source, reporter, category, department, severity, grid_code, community,"
    " street, district, lat, lon, address, description, status, duplicate_of, dispatched_to,"
    " rework_count, reported_at, register_due_at, registered_at, dispatched_at, handle_due_at,"
    " handled_at, closed_at, rating, created_at, updated_at, version"
)


async def insert_case(conn: Connection, case: CaseRow) -> None:
    """Insert a new case; its report is its event number 1 (`CaseReported.sequence`)."""
    await conn.execute(
        """
        INSERT INTO grid.cases
            (id, number, client_id, source, reporter, category, department, severity, grid_code,
             community, street, district, lat, lon, address, description, status, reported_at,
             register_due_at, created_at, updated_at, event_sequence)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $20, 1)
        """,
        case.id,
        case.number,
        case.client_id,
        case.source,
        case.reporter,
        case.category,
        case.department,
        case.severity,
        case.grid_code,
        case.community,
        case.street,
        case.district,
        case.lat,
        case.lon,
        case.address,
        case.description,
        case.status,
        case.reported_at,
        case.register_due_at,
        case.created_at,
    )


async def next_case_sequence(conn: Connection) -> int:
    value: int = await conn.fetchval("SELECT nextval('grid.case_numbers')")
    return value


async def case(conn: Connection, case_id: UUID, *, lock: bool = False) -> CaseRow | None:
    row = await conn.fetchrow(
        f"SELECT {_CASE} FROM grid.cases WHERE id = $1" + (" FOR UPDATE" if lock else ""), case_id
    )
    return row_as(row, CaseRow) if row else None


async def case_by_number(conn: Connection, number: str) -> CaseRow | None:
    row = await conn.fetchrow(f"SELECT {_CASE} FROM grid.cases WHERE number = $1", number)
    return row_as(row, CaseRow) if row else None


async def case_by_client_id(conn: Connection, client_id: UUID) -> CaseRow | None:
    row = await conn.fetchrow(f"SELECT {_CASE} FROM grid.cases WHERE client_id = $1", client_id)
    return row_as(row, CaseRow) if row else None


async def save_case(conn: Connection, case: CaseRow, *, at: datetime) -> int:
    """Write the loop's fields of a case (what transitions change) and move its version; the
    case's next event number (for the one event this change publishes), taken in the same
    statement, under the row lock."""
    sequence: int = await conn.fetchval(
        """
        UPDATE grid.cases SET
            status = $2, duplicate_of = $3, dispatched_to = $4, rework_count = $5,
            registered_at = $6, dispatched_at = $7, handle_due_at = $8, handled_at = $9,
            closed_at = $10, rating = $11, updated_at = $12, version = version + 1,
            event_sequence = event_sequence + 1
        WHERE id = $1
        RETURNING event_sequence
        """,
        case.id,
        case.status,
        case.duplicate_of,
        case.dispatched_to,
        case.rework_count,
        case.registered_at,
        case.dispatched_at,
        case.handle_due_at,
        case.handled_at,
        case.closed_at,
        case.rating,
        at,
    )
    case.version += 1
    case.updated_at = at
    return sequence


async def close_duplicates(conn: Connection, primary: UUID, *, at: datetime) -> list[tuple[UUID, int]]:
    """Close the cases linked to `primary` as its duplicates (they close together): each one's id
    and the last of the two event numbers taken for it (its CaseChanged is one less, its
    CaseClosed this one)."""
    rows = await conn.fetch(
        """
        UPDATE grid.cases SET status = 'closed', closed_at = $2, updated_at = $2, version = version + 1,
            event_sequence = event_sequence + 2
        WHERE duplicate_of = $1 AND status = 'duplicate'
        RETURNING id, event_sequence
        """,
        primary,
        at,
    )
    return [(row["id"], row["event_sequence"]) for row in rows]


async def open_cases_near(
    conn: Connection,
    *,
    category: str,
    box: tuple[float, float, float, float],
    since: datetime,
    exclude: UUID | None,
) -> list[CaseRow]:
    """Open cases of `category` reported since `since` inside the box (the caller measures the
    real distance). Cases still waiting to be registered are included: two reports of the same
    drain an hour apart are the usual duplicate."""
    lat_min, lat_max, lon_min, lon_max = box
    rows = await conn.fetch(
        f"""
        SELECT {_CASE} FROM grid.cases
        WHERE category = $1 AND status NOT IN ('closed', 'rejected', 'duplicate')
          AND reported_at >= $2 AND lat BETWEEN $3 AND $4 AND lon BETWEEN $5 AND $6
          AND ($7::uuid IS NULL OR id <> $7)
        ORDER BY reported_at DESC
        LIMIT 50
        """,
        category,
        since,
        lat_min,
        lat_max,
        lon_min,
        lon_max,
        exclude,
    )
    return rows_as(rows, CaseRow)


async def duplicates_of(conn: Connection, primary: UUID) -> list[str]:
    rows = await conn.fetch("SELECT number FROM grid.cases WHERE duplicate_of = $1 ORDER BY number", primary)
    return [row["number"] for row in rows]


class CaseFilter(msgspec.Struct, frozen=True, kw_only=True):
    """What a list of cases may be narrowed to; `scopes` are unit codes (grid, community, street,
    district, department) of which a case must match one, None for everything (the caller has
    already decided who may see what)."""

    scopes: list[str] | None = None
    reporter: str | None = None
    status: str | None = None
    category: str | None = None
    grid_code: str | None = None
    open_only: bool = False


async def list_cases(
    conn: Connection, where: CaseFilter, *, after: tuple[datetime, UUID] | None, limit: int
) -> list[CaseRow]:
    """Newest first, keyset-paginated on (reported_at, id)."""
    rows = await conn.fetch(
        f"""
        SELECT {_CASE} FROM grid.cases
        WHERE ($1::text[] IS NULL OR ARRAY[grid_code, community, street, district, department] && $1::text[])
          AND ($2::text IS NULL OR reporter = $2)
          AND ($3::text IS NULL OR status = $3)
          AND ($4::text IS NULL OR category = $4)
          AND ($5::text IS NULL OR grid_code = $5)
          AND (NOT $6 OR status NOT IN ('closed', 'rejected', 'duplicate'))
          AND ($7::timestamptz IS NULL OR (reported_at, id) < ($7, $8::uuid))
        ORDER BY reported_at DESC, id DESC
        LIMIT $9
        """,
        where.scopes,
        where.reporter,
        where.status,
        where.category,
        where.grid_code,
        where.open_only,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return rows_as(rows, CaseRow)


async def changed_cases(
    conn: Connection, *, grids: list[str], after: tuple[datetime, UUID] | None, until: datetime, limit: int
) -> list[CaseRow]:
    """Cases of `grids` changed after the cursor (updated_at, id) and not later than `until`,
    oldest change first: what a phone downloads to catch up. Closed ones come too (once), so the
    phone can drop them."""
    rows = await conn.fetch(
        f"""
        SELECT {_CASE} FROM grid.cases
        WHERE grid_code = ANY($1::text[])
          AND ($2::timestamptz IS NULL OR (updated_at, id) > ($2, $3::uuid))
          AND updated_at <= $4
          AND ($2::timestamptz IS NOT NULL OR status NOT IN ('closed', 'rejected', 'duplicate'))
        ORDER BY updated_at, id
        LIMIT $5
        """,
        grids,
        after[0] if after else None,
        after[1] if after else None,
        until,
        limit,
    )
    return rows_as(rows, CaseRow)


# --- history and photos ------------------------------------------------------------------------


class CaseHistoryRow(msgspec.Struct, frozen=True):
    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str
    note: str | None
    data: dict[str, Any]


async def add_history(
    conn: Connection,
    case_id: UUID,
    *,
    at: datetime,
    actor: str,
    action: str,
    from_status: str | None,
    to_status: str,
    note: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO grid.case_history (case_id, at, actor, action, from_status, to_status, note, data)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        case_id,
        at,
        actor,
        action,
        from_status,
        to_status,
        note,
        data or {},
    )


async def case_history(conn: Connection, case_id: UUID) -> list[CaseHistoryRow]:
    rows = await conn.fetch(
        "SELECT at, actor, action, from_status, to_status, note, data FROM grid.case_history"
        " WHERE case_id = $1 ORDER BY id",
        case_id,
    )
    return rows_as(rows, CaseHistoryRow)


class StatusEntryRow(msgspec.Struct, frozen=True):
    """A history row as a case's reporter and the public may see it: a change of status, which
    carries no one's words, or a note the reporter wrote themselves (`own_note`). The id is
    stable: what channels key a case's updates by."""

    id: int
    case_id: UUID
    number: str
    at: datetime
    to_status: str
    own_note: str | None


async def status_history(
    conn: Connection, case_ids: list[UUID], *, notes_by: str | None
) -> list[StatusEntryRow]:
    """The status changes of each case (and the notes `notes_by` wrote on it), by case and then in
    the order written. Staff's comments never leave the database here: a status change's note is
    not selected, and only the notes of `notes_by` are."""
    rows = await conn.fetch(
        """
        SELECT h.id, h.case_id, c.number, h.at, h.to_status,
               CASE WHEN h.action = 'note' AND h.actor = $2::text THEN h.note END AS own_note
        FROM grid.case_history h JOIN grid.cases c ON c.id = h.case_id
        WHERE h.case_id = ANY($1::uuid[])
          AND (h.from_status IS DISTINCT FROM h.to_status OR (h.action = 'note' AND h.actor = $2::text))
        ORDER BY h.case_id, h.id
        """,
        case_ids,
        notes_by,
    )
    return rows_as(rows, StatusEntryRow)


async def status_changes_between(
    conn: Connection,
    *,
    categories: list[str],
    source: str,
    start: datetime,
    end: datetime,
    offset: int,
    limit: int,
) -> list[StatusEntryRow]:
    """The status changes of cases of `categories` reported by `source`, written in [start, end],
    oldest first (`own_note` is always None)."""
    rows = await conn.fetch(
        """
        SELECT h.id, h.case_id, c.number, h.at, h.to_status, NULL::text AS own_note
        FROM grid.case_history h JOIN grid.cases c ON c.id = h.case_id
        WHERE h.at >= $1 AND h.at <= $2 AND c.category = ANY($3::text[]) AND c.source = $4
          AND h.from_status IS DISTINCT FROM h.to_status
        ORDER BY h.at, h.id
        OFFSET $5 LIMIT $6
        """,
        start,
        end,
        categories,
        source,
        offset,
        limit,
    )
    return rows_as(rows, StatusEntryRow)


async def add_note(
    conn: Connection, case_id: UUID, *, at: datetime, actor: str, status: str, note: str, data: dict[str, Any]
) -> tuple[int, int]:
    """A note on a case that leaves its status as it is; the case's `updated_at` moves. The id of
    the history row, and the case's next event number (for the event announcing the note)."""
    sequence: int = await conn.fetchval(
        "UPDATE grid.cases SET updated_at = $2, version = version + 1, event_sequence = event_sequence + 1"
        " WHERE id = $1 RETURNING event_sequence",
        case_id,
        at,
    )
    history_id: int = await conn.fetchval(
        "INSERT INTO grid.case_history (case_id, at, actor, action, from_status, to_status, note, data)"
        " VALUES ($1, $2, $3, 'note', $4, $4, $5, $6) RETURNING id",
        case_id,
        at,
        actor,
        status,
        note,
        data,
    )
    return history_id, sequence


async def next_event_sequence(conn: Connection, case_id: UUID) -> int | None:
    """The case's next event number, for a change that writes no column of the case (an outside
    system's note); the row stays locked to the end of the transaction. None: no such case."""
    sequence: int | None = await conn.fetchval(
        "UPDATE grid.cases SET event_sequence = event_sequence + 1 WHERE id = $1 RETURNING event_sequence",
        case_id,
    )
    return sequence


async def find_cases(
    conn: Connection,
    *,
    categories: list[str],
    numbers: list[str] | None,
    statuses: list[str] | None,
    reporter: str | None,
    start: datetime | None,
    end: datetime | None,
    offset: int,
    limit: int,
    ids: list[UUID] | None = None,
    source: str | None = None,
) -> list[CaseRow]:
    """Cases of `categories` by id, number, status, reporter, source and when reported; newest first."""
    rows = await conn.fetch(
        f"""
        SELECT {_CASE} FROM grid.cases
        WHERE category = ANY($1::text[])
          AND ($2::text[] IS NULL OR number = ANY($2::text[]))
          AND ($3::text[] IS NULL OR status = ANY($3::text[]))
          AND ($4::text IS NULL OR reporter = $4)
          AND ($5::timestamptz IS NULL OR reported_at >= $5)
          AND ($6::timestamptz IS NULL OR reported_at <= $6)
          AND ($9::uuid[] IS NULL OR id = ANY($9::uuid[]))
          AND ($10::text IS NULL OR source = $10::text)
        ORDER BY reported_at DESC, id DESC
        OFFSET $7 LIMIT $8
        """,
        categories,
        numbers,
        statuses,
        reporter,
        start,
        end,
        offset,
        limit,
        ids,
        source,
    )
    return rows_as(rows, CaseRow)


class ServiceCategoryRow(msgspec.Struct, frozen=True):
    code: str
    kind: str
    name_zh: str
    name_en: str
    department: str
    handle_limit: str
    severity: str
    attributes: list[dict[str, Any]]
    anonymous_reports: bool


async def citizen_categories(conn: Connection) -> list[ServiceCategoryRow]:
    """Active categories citizens may report, with what a report of each asks for."""
    rows = await conn.fetch(
        "SELECT code, kind, name_zh, name_en, department, handle_limit, severity, attributes,"
        " anonymous_reports FROM grid.categories WHERE active AND citizen_reportable ORDER BY code"
    )
    return rows_as(rows, ServiceCategoryRow)


async def set_category_reporting(
    conn: Connection, code: str, *, attributes: list[dict[str, Any]], anonymous_reports: bool
) -> None:
    await conn.execute(
        "UPDATE grid.categories SET attributes = $2, anonymous_reports = $3 WHERE code = $1",
        code,
        attributes,
        anonymous_reports,
    )


class PhotoRow(msgspec.Struct, frozen=True):
    sha256: str
    media_type: str
    size: int


async def save_photo(conn: Connection, *, sha256: str, media_type: str, size: int, by: str) -> bool:
    """True when the photo is new."""
    result: str = await conn.execute(
        "INSERT INTO grid.photos (sha256, media_type, size, uploaded_by) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (sha256) DO NOTHING",
        sha256,
        media_type,
        size,
        by,
    )
    return result == "INSERT 0 1"


async def photo(conn: Connection, sha256: str) -> PhotoRow | None:
    row = await conn.fetchrow("SELECT sha256, media_type, size FROM grid.photos WHERE sha256 = $1", sha256)
    return row_as(row, PhotoRow) if row else None


async def uploaded_by(conn: Connection, sha256: str, subject: str) -> bool:
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM grid.photos WHERE sha256 = $1 AND uploaded_by = $2)", sha256, subject
    )
    return found


async def known_photos(conn: Connection, digests: list[str]) -> set[str]:
    rows = await conn.fetch("SELECT sha256 FROM grid.photos WHERE sha256 = ANY($1::text[])", digests)
    return {row["sha256"] for row in rows}


async def attach_photos(conn: Connection, case_id: UUID, digests: list[str], *, stage: str, by: str) -> int:
    result: str = await conn.execute(
        "INSERT INTO grid.case_photos (case_id, sha256, stage, added_by)"
        " SELECT $1, d, $3, $4 FROM unnest($2::text[]) AS d ON CONFLICT DO NOTHING",
        case_id,
        digests,
        stage,
        by,
    )
    return int(result.rsplit(" ", 1)[-1])


async def case_photos(conn: Connection, case_id: UUID) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT sha256, stage FROM grid.case_photos WHERE case_id = $1 ORDER BY added_at, sha256", case_id
    )
    return [(row["sha256"], row["stage"]) for row in rows]


async def photos_of_cases(conn: Connection, case_ids: list[UUID]) -> list[tuple[UUID, str]]:
    """(case id, sha256) of every photo of the cases, each case's in the order they were added."""
    rows = await conn.fetch(
        "SELECT case_id, sha256 FROM grid.case_photos WHERE case_id = ANY($1::uuid[])"
        " ORDER BY case_id, added_at, sha256",
        case_ids,
    )
    return [(row["case_id"], row["sha256"]) for row in rows]


async def case_may_show_photo(conn: Connection, sha256: str) -> list[UUID]:
    rows = await conn.fetch("SELECT case_id FROM grid.case_photos WHERE sha256 = $1", sha256)
    return [row["case_id"] for row in rows]


# --- offline sync ------------------------------------------------------------------------------


async def synced(conn: Connection, client_ids: list[UUID]) -> dict[UUID, tuple[str, dict[str, Any]]]:
    """What earlier batches already applied: client id -> (worker, stored result)."""
    rows = await conn.fetch(
        "SELECT client_id, worker, result FROM grid.sync_items WHERE client_id = ANY($1::uuid[])", client_ids
    )
    return {row["client_id"]: (row["worker"], row["result"]) for row in rows}


async def record_sync(
    conn: Connection, *, client_id: UUID, worker: str, kind: str, case_id: UUID | None, result: dict[str, Any]
) -> bool:
    """False when another request recorded this client id first (a concurrent replay)."""
    status: str = await conn.execute(
        "INSERT INTO grid.sync_items (client_id, worker, kind, case_id, result) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (client_id) DO NOTHING",
        client_id,
        worker,
        kind,
        case_id,
        result,
    )
    return status == "INSERT 0 1"
