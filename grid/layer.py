"""The grid layer: importing it (atomically, with history) and locating points in it.

Each process holds one `Locator` (an STRtree over the active grids) and the layer token it was
built from. Every import draws a new `grid.layer.token` in its transaction; a process compares the
token before locating (one indexed read of a one-row table) and rebuilds when it moved, so
every process sees a new layer as soon as the import commits, without a message to miss.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from grid import store
from grid.geo import GeoProblem, GridFeature, GridsInvalid, Locator, feature_collection, parse_grids
from identity import api as identity_api
from onewindow.db import Connection


class ImportReport(msgspec.Struct, frozen=True, kw_only=True):
    layer_version: int
    grids: int
    created: list[str]
    updated: list[str]
    unchanged: int
    retired: list[str]


class _Cache:
    """This process's locator and the layer token it was built from."""

    def __init__(self) -> None:
        self.built: tuple[UUID, Locator] | None = None
        self.lock = asyncio.Lock()


_cache = _Cache()


async def locator(conn: Connection) -> Locator:
    """The locator of the layer as this transaction sees it."""
    version = await store.layer_token(conn)
    if _cache.built is not None and _cache.built[0] == version:
        return _cache.built[1]
    async with _cache.lock:
        if _cache.built is not None and _cache.built[0] == version:
            return _cache.built[1]
        grids = await store.located_grids(conn)
        built = await asyncio.to_thread(Locator, grids)
        _cache.built = (version, built)
        return built


def _unit_problem(feature: int, field: str, code: str, kind: str) -> GeoProblem:
    return GeoProblem(
        kind="bad_property",
        pointer=f"/features/{feature}/properties/{field}",
        codes=(code,),
        detail=f"{code!r} is already an organisation unit that is not this {kind} (a department, or a {kind}"
        " elsewhere in the tree); choose another code",
    )


async def _units(conn: Connection, grids: list[GridFeature]) -> dict[str, str]:
    """Create the district → street → community → grid units the file names; the grid code →
    its unit path. Every conflict with the existing tree is reported at once."""
    problems: list[GeoProblem] = []
    seen: dict[str, str | None] = {}
    paths: dict[str, str] = {}
    for index, grid in enumerate(grids):
        chain: tuple[tuple[str, Any, str | None, str], ...] = (
            (grid.district, "district", None, "district"),
            (grid.street, "street", grid.district, "street"),
            (grid.community, "community", grid.street, "community"),
            (grid.code, "grid", grid.community, "code"),
        )
        path: str | None = None
        for code, kind, parent, field in chain:
            key = f"{kind}:{code}:{parent}"
            if key not in seen:
                name = grid.name if kind == "grid" else None
                seen[key] = await identity_api.ensure_unit(
                    conn, code=code, kind=kind, parent=parent, name_zh=name, name_en=name
                )
            path = seen[key]
            if path is None:
                problems.append(_unit_problem(index, field, code, kind))
                break
        if path is not None:
            paths[grid.code] = path
    if problems:
        raise GridsInvalid(problems)
    return paths


async def import_layer(conn: Connection, document: object, *, by: str, at: datetime) -> ImportReport:
    """Check the whole file, then replace the layer with it in the caller's transaction: new
    grids created, changed ones updated in place (a new version in their history), grids no
    longer in the file retired. Any problem: nothing is written."""
    grids = await asyncio.to_thread(parse_grids, document)
    await store.lock_layer(conn)
    paths = await _units(conn, grids)
    layer = await store.bump_layer(conn, by=by, at=at)
    created: list[str] = []
    updated: list[str] = []
    for grid in grids:
        change = await store.save_grid(
            conn,
            code=grid.code,
            name=grid.name,
            community=grid.community,
            street=grid.street,
            district=grid.district,
            households=grid.households,
            geometry=grid.geometry,
            unit_path=paths[grid.code],
            layer=layer,
            by=by,
            at=at,
        )
        if change == "created":
            created.append(grid.code)
        elif change is not None:
            updated.append(grid.code)
    retired = await store.retire_grids_except(conn, [grid.code for grid in grids], layer=layer, by=by, at=at)
    return ImportReport(
        layer_version=layer,
        grids=len(grids),
        created=created,
        updated=updated,
        unchanged=len(grids) - len(created) - len(updated),
        retired=retired,
    )


async def export_layer(conn: Connection) -> dict[str, Any]:
    rows = await store.grids(conn)
    return feature_collection(
        GridFeature(
            code=row.code,
            name=row.name,
            community=row.community,
            street=row.street,
            district=row.district,
            households=row.households,
            geometry=row.geometry,
        )
        for row in rows
    )
