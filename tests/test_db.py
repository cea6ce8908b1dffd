"""The database kernel: codecs, the pool's behaviour when PostgreSQL is away."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import msgspec
import pytest

from onewindow.db import Connection, PoolDatabase
from onewindow.errors import Unavailable
from onewindow.settings import load_settings


class Location(msgspec.Struct):
    lat: float
    lon: float


class Report(msgspec.Struct):
    id: UUID
    reported_at: datetime
    where: Location
    photos: list[str]


async def test_jsonb_takes_structs_and_gives_back_plain_values(conn: Connection) -> None:
    report = Report(
        id=UUID("7b0d3c0e-95a8-4a55-9a2e-1f1c8d1b2a3c"),
        reported_at=datetime(2026, 11, 22, 8, 30, tzinfo=UTC),
        where=Location(lat=13.08, lon=80.27),
        photos=["sha256:ab"],
    )
    stored = await conn.fetchval("SELECT $1::jsonb", report)
    assert stored == {
        "id": "7b0d3c0e-95a8-4a55-9a2e-1f1c8d1b2a3c",
        "reported_at": "2026-11-22T08:30:00Z",
        "where": {"lat": 13.08, "lon": 80.27},
        "photos": ["sha256:ab"],
    }
    assert msgspec.convert(stored, Report) == report
    # PostgreSQL really sees a jsonb document, not a string.
    assert await conn.fetchval("SELECT ($1::jsonb -> 'where' ->> 'lat')::float", report) == 13.08
    assert await conn.fetchval("SELECT $1::json", {"a": [1, 2]}) == {"a": [1, 2]}


async def test_unicode_survives_jsonb(conn: Connection) -> None:
    value = {"name": "银川市行政审批服务局", "note": "குப்பை"}
    assert await conn.fetchval("SELECT $1::jsonb", value) == value


async def test_an_unreachable_database_is_unavailable_not_a_crash() -> None:
    """A pool whose server is gone answers `Unavailable` (503) on acquire, quickly."""
    dsn = "postgresql://postgres@127.0.0.1:1/nowhere"
    settings = load_settings(database_url=dsn, db_pool_min=0, db_acquire_timeout=1.0)
    database = await PoolDatabase.open(settings, dsn)
    try:
        with pytest.raises(Unavailable):
            async with database.transaction():
                pass
    finally:
        await database.close()
