"""The shared fixtures build a working city: departments, people, definitions, the test catalog."""

from __future__ import annotations

from onewindow.db import Connection
from services import catalog
from tests.services.conftest import ITEMS, People
from workflows import api as workflows


async def test_the_city_has_its_catalog_definitions_and_people(conn: Connection, city: People) -> None:
    for code in ITEMS:
        found = await catalog.item(conn, code)
        assert found is not None
        assert found.version == 1
    for key in ("approval-review", "approval-two-step"):
        assert await conn.fetchval("SELECT count(*) FROM workflows.definitions WHERE key = $1", key) >= 1
    assert set(city.officers) == {"market", "fire", "urban", "health"}
    assert city.officers["fire"].grant("officer", "demo/fire") is not None
    assert workflows.now() is not None
