"""The catalog's SQL: items and bundles, their current versions and every version ever published.

Functions take `conn` first and never commit. `save_item` / `save_bundle` store what they are
given: the checks an administrator's edit must pass are in `catalog.publish_item` /
`publish_bundle`, which validate and then call these (the HTTP routes and the demo seed do).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from onewindow.db import Connection
from onewindow.errors import PreconditionFailed
from services import catalog

# --- items ---------------------------------------------------------------------------------------


def _search_text(name: catalog.Text, description: catalog.Text | None, keywords: Sequence[str]) -> str:
    """What a keyword search looks in: names, description and keywords, lower-cased, one a line."""
    parts = [name.zh, name.en]
    if description is not None:
        parts += [description.zh, description.en]
    parts += list(keywords)
    return "\n".join(part.strip().lower() for part in parts if part.strip())


def _body(value: catalog.Item | catalog.Bundle) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(value)
    return body


def item_from_body(body: Any) -> catalog.Item:
    return msgspec.convert(body, catalog.Item)


def bundle_from_body(body: Any) -> catalog.Bundle:
    return msgspec.convert(body, catalog.Bundle)


async def save_item(
    conn: Connection,
    item: catalog.Item,
    *,
    by: str,
    now: datetime,
    note: str | None = None,
    expected_version: int | None = None,
) -> catalog.Item:
    """Publish `item`: version 1 if its code is new, else the next version. An item equal to
    the current version (its `version` aside) is not a change: the current one is returned and
    nothing is written, so seeding twice adds no versions. `expected_version` (from If-Match)
    refuses to overwrite a version the editor has not seen (412). `item.version` is ignored."""
    while True:
        row = await conn.fetchrow(
            "SELECT version, body FROM services.items WHERE code = $1 FOR UPDATE", item.code
        )
        if row is None:
            if expected_version is not None:
                raise PreconditionFailed(f"The item {item.code!r} does not exist yet.")
            stored = msgspec.structs.replace(item, version=1)
            inserted = await conn.fetchval(
                """
                INSERT INTO services.items
                    (code, version, department, name_zh, name_en, keywords, life_events, channels,
                     active, body, updated_at, updated_by)
                VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                ON CONFLICT (code) DO NOTHING
                RETURNING code
                """,
                stored.code,
                stored.department,
                stored.name.zh,
                stored.name.en,
                _search_text(stored.name, stored.description, stored.keywords),
                list(stored.life_events),
                list(stored.channels),
                stored.active,
                _body(stored),
                now,
                by,
            )
            if inserted is None:
                continue  # created by someone else meanwhile: now it is an update
            await _item_version(conn, stored, by=by, now=now, note=note)
            return stored
        current = item_from_body(row["body"])
        if expected_version is not None and expected_version != row["version"]:
            raise PreconditionFailed(
                f"The item {item.code!r} is at version {row['version']}, not {expected_version}: "
                "read it again and redo the change."
            )
        candidate = msgspec.structs.replace(item, version=row["version"])
        if candidate == current:
            return current
        stored = msgspec.structs.replace(item, version=row["version"] + 1)
        await conn.execute(
            """
            UPDATE services.items
            SET version = $2, department = $3, name_zh = $4, name_en = $5, keywords = $6,
                life_events = $7, channels = $8, active = $9, body = $10, updated_at = $11,
                updated_by = $12
            WHERE code = $1
            """,
            stored.code,
            stored.version,
            stored.department,
            stored.name.zh,
            stored.name.en,
            _search_text(stored.name, stored.description, stored.keywords),
            list(stored.life_events),
            list(stored.channels),
            stored.active,
            _body(stored),
            now,
            by,
        )
        await _item_version(conn, stored, by=by, now=now, note=note)
        return stored


async def _item_version(
    conn: Connection, item: catalog.Item, *, by: str, now: datetime, note: str | None
) -> None:
    await conn.execute(
        """
        INSERT INTO services.item_versions (code, version, body, active, changed_by, changed_at, note)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        """,
        item.code,
        item.version,
        _body(item),
        item.active,
        by,
        now,
        note,
    )


async def item(conn: Connection, code: str, version: int | None = None) -> catalog.Item | None:
    """The current version (None) or the given one."""
    if version is None:
        body = await conn.fetchval("SELECT body FROM services.items WHERE code = $1", code)
    else:
        body = await conn.fetchval(
            "SELECT body FROM services.item_versions WHERE code = $1 AND version = $2", code, version
        )
    return item_from_body(body) if body is not None else None


async def items_of(conn: Connection, codes: Sequence[tuple[str, int]]) -> list[catalog.Item]:
    """Items by (code, version), in the order asked."""
    if not codes:
        return []
    rows = await conn.fetch(
        """
        SELECT v.code, v.version, v.body
        FROM services.item_versions v
        JOIN unnest($1::text[], $2::int[]) AS wanted (code, version)
          ON wanted.code = v.code AND wanted.version = v.version
        """,
        [code for code, _ in codes],
        [version for _, version in codes],
    )
    found = {(row["code"], row["version"]): item_from_body(row["body"]) for row in rows}
    return [found[key] for key in ((code, version) for code, version in codes) if key in found]


class VersionRow(msgspec.Struct, frozen=True):
    """One published version: who published it, when and why."""

    code: str
    version: int
    active: bool
    changed_by: str
    changed_at: datetime
    note: str | None


async def item_versions(conn: Connection, code: str) -> list[VersionRow]:
    """Every version of an item, newest first."""
    rows = await conn.fetch(
        """
        SELECT code, version, active, changed_by, changed_at, note
        FROM services.item_versions WHERE code = $1 ORDER BY version DESC
        """,
        code,
    )
    return [msgspec.convert(row, VersionRow, from_attributes=True) for row in rows]


async def item_version_row(conn: Connection, code: str, version: int) -> VersionRow | None:
    row = await conn.fetchrow(
        """
        SELECT code, version, active, changed_by, changed_at, note
        FROM services.item_versions WHERE code = $1 AND version = $2
        """,
        code,
        version,
    )
    return msgspec.convert(row, VersionRow, from_attributes=True) if row else None


async def search_items(
    conn: Connection,
    *,
    text: str | None,
    department: str | None,
    life_event: str | None,
    channel: str | None,
    include_inactive: bool,
    after: str | None,
    limit: int,
) -> list[catalog.Item]:
    """Current items matching every filter given, by code (keyset-paginated after a code).
    `text` is looked for in the names, descriptions and keywords (a substring, case-blind)."""
    rows = await conn.fetch(
        """
        SELECT body FROM services.items
        WHERE ($1::boolean OR active)
          AND ($2::text IS NULL OR strpos(keywords, lower($2)) > 0)
          AND ($3::text IS NULL OR department = $3)
          AND ($4::text IS NULL OR $4 = ANY (life_events))
          AND ($5::text IS NULL OR $5 = ANY (channels))
          AND ($6::text IS NULL OR code > $6)
        ORDER BY code
        LIMIT $7
        """,
        include_inactive,
        text,
        department,
        life_event,
        channel,
        after,
        limit,
    )
    return [item_from_body(row["body"]) for row in rows]


async def current_items(conn: Connection, codes: Sequence[str]) -> dict[str, catalog.Item]:
    """The current versions of the items named (missing codes are absent)."""
    rows = await conn.fetch(
        "SELECT code, body FROM services.items WHERE code = ANY ($1::text[])", list(codes)
    )
    return {row["code"]: item_from_body(row["body"]) for row in rows}


async def life_events(conn: Connection) -> list[tuple[str, int, int]]:
    """Each life event of the active catalog, with how many items and bundles name it."""
    rows = await conn.fetch(
        """
        SELECT event, sum(items)::int AS items, sum(bundles)::int AS bundles FROM (
            SELECT unnest(life_events) AS event, 1 AS items, 0 AS bundles
            FROM services.items WHERE active
            UNION ALL
            SELECT unnest(life_events), 0, 1 FROM services.bundles WHERE active
        ) AS named
        GROUP BY event
        ORDER BY event
        """
    )
    return [(row["event"], row["items"], row["bundles"]) for row in rows]


# --- bundles -------------------------------------------------------------------------------------


async def save_bundle(
    conn: Connection,
    bundle: catalog.Bundle,
    *,
    by: str,
    now: datetime,
    note: str | None = None,
    expected_version: int | None = None,
) -> catalog.Bundle:
    """Publish `bundle` like `save_item` publishes an item (new code: version 1; unchanged: no
    new version; `expected_version` guards against a lost update)."""
    while True:
        row = await conn.fetchrow(
            "SELECT version, body FROM services.bundles WHERE code = $1 FOR UPDATE", bundle.code
        )
        if row is None:
            if expected_version is not None:
                raise PreconditionFailed(f"The bundle {bundle.code!r} does not exist yet.")
            stored = msgspec.structs.replace(bundle, version=1)
            inserted = await conn.fetchval(
                """
                INSERT INTO services.bundles
                    (code, version, name_zh, name_en, keywords, life_events, items, active, body,
                     updated_at, updated_by)
                VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                ON CONFLICT (code) DO NOTHING
                RETURNING code
                """,
                stored.code,
                stored.name.zh,
                stored.name.en,
                _search_text(stored.name, stored.description, stored.keywords),
                list(stored.life_events),
                list(stored.items),
                stored.active,
                _body(stored),
                now,
                by,
            )
            if inserted is None:
                continue
            await _bundle_version(conn, stored, by=by, now=now, note=note)
            return stored
        current = bundle_from_body(row["body"])
        if expected_version is not None and expected_version != row["version"]:
            raise PreconditionFailed(
                f"The bundle {bundle.code!r} is at version {row['version']}, not {expected_version}: "
                "read it again and redo the change."
            )
        if msgspec.structs.replace(bundle, version=row["version"]) == current:
            return current
        stored = msgspec.structs.replace(bundle, version=row["version"] + 1)
        await conn.execute(
            """
            UPDATE services.bundles
            SET version = $2, name_zh = $3, name_en = $4, keywords = $5, life_events = $6,
                items = $7, active = $8, body = $9, updated_at = $10, updated_by = $11
            WHERE code = $1
            """,
            stored.code,
            stored.version,
            stored.name.zh,
            stored.name.en,
            _search_text(stored.name, stored.description, stored.keywords),
            list(stored.life_events),
            list(stored.items),
            stored.active,
            _body(stored),
            now,
            by,
        )
        await _bundle_version(conn, stored, by=by, now=now, note=note)
        return stored


async def _bundle_version(
    conn: Connection, bundle: catalog.Bundle, *, by: str, now: datetime, note: str | None
) -> None:
    await conn.execute(
        """
        INSERT INTO services.bundle_versions (code, version, body, active, changed_by, changed_at, note)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        """,
        bundle.code,
        bundle.version,
        _body(bundle),
        bundle.active,
        by,
        now,
        note,
    )


async def bundle(conn: Connection, code: str, version: int | None = None) -> catalog.Bundle | None:
    if version is None:
        body = await conn.fetchval("SELECT body FROM services.bundles WHERE code = $1", code)
    else:
        body = await conn.fetchval(
            "SELECT body FROM services.bundle_versions WHERE code = $1 AND version = $2", code, version
        )
    return bundle_from_body(body) if body is not None else None


async def bundle_versions(conn: Connection, code: str) -> list[VersionRow]:
    rows = await conn.fetch(
        """
        SELECT code, version, active, changed_by, changed_at, note
        FROM services.bundle_versions WHERE code = $1 ORDER BY version DESC
        """,
        code,
    )
    return [msgspec.convert(row, VersionRow, from_attributes=True) for row in rows]


async def search_bundles(
    conn: Connection,
    *,
    text: str | None,
    life_event: str | None,
    include_inactive: bool,
    after: str | None,
    limit: int,
) -> list[catalog.Bundle]:
    rows = await conn.fetch(
        """
        SELECT body FROM services.bundles
        WHERE ($1::boolean OR active)
          AND ($2::text IS NULL OR strpos(keywords, lower($2)) > 0)
          AND ($3::text IS NULL OR $3 = ANY (life_events))
          AND ($4::text IS NULL OR code > $4)
        ORDER BY code
        LIMIT $5
        """,
        include_inactive,
        text,
        life_event,
        after,
        limit,
    )
    return [bundle_from_body(row["body"]) for row in rows]
