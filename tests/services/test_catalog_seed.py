"""The demo catalog: it passes every publication check, covers what the demo needs, and seeding
it twice adds no versions."""

from __future__ import annotations

from identity import seed as identity_seed
from onewindow.db import Connection
from onewindow.settings import Settings
from services import catalog
from services.seed import demo_catalog, seed_catalog
from tests.services.conftest import configure
from tests.workflows.conftest import Clock
from workflows import engine

_VERSIONS = """
SELECT (SELECT count(*) FROM services.item_versions) AS items,
       (SELECT count(*) FROM services.bundle_versions) AS bundles
"""


async def test_the_demo_catalog_loads_and_seeding_twice_adds_no_versions(
    conn: Connection, settings: Settings, clock: Clock
) -> None:
    configure(settings, clock)  # the demo seeds with the engine configured: its clock stamps the versions
    try:
        await _seed_twice(conn, settings)
    finally:
        engine.configure(settings)


async def _seed_twice(conn: Connection, settings: Settings) -> None:
    await identity_seed.seed_demo(conn, settings)
    published = await seed_catalog(conn, settings)
    first = dict(await conn.fetchrow(_VERSIONS) or {})
    assert first == {"items": len(published.items), "bundles": len(published.bundles)}
    again = await seed_catalog(conn, settings)
    assert dict(await conn.fetchrow(_VERSIONS) or {}) == first
    assert again.items == published.items
    assert {item.version for item in again.items} == {1}


async def test_the_demo_catalog_covers_the_demo(conn: Connection, settings: Settings) -> None:
    demo = demo_catalog()
    items = {item.code: item for item in demo.items}
    departments = {item.department for item in demo.items}
    assert len(departments) >= 6
    assert len(items) >= 15
    assert {"market", "fire", "urban", "water", "health", "housing"} <= departments
    # Every department that owns items has an officer and a supervisor in the demo.
    held = {(role, unit) for _, _, _, role, unit in identity_seed.DEMO_ACCOUNTS}
    assert all(("officer", d) in held and ("supervisor", d) in held for d in departments)
    # Mixed fees, assurance levels, channels and workflows.
    assert any(item.fee_minor > 0 for item in demo.items)
    assert sum(item.fee_minor == 0 for item in demo.items) > len(demo.items) // 2
    levels = [item.min_assurance for item in demo.items]
    assert levels.count("high") == 1
    assert levels.count("low") == 1
    assert levels.count("substantial") == len(levels) - 2
    assert any(item.channels == ("counter",) for item in demo.items)
    assert {item.workflow for item in demo.items} == {"approval-review", "approval-two-step"}
    assert any(e.later_allowed for item in demo.items for e in item.checklist)
    assert any(e.reusable_certificate for item in demo.items for e in item.checklist)
    assert any(e.when is not None for item in demo.items for e in item.checklist)
    # The restaurant: four items in four departments, reviewed in parallel.
    bundles = {bundle.code: bundle for bundle in demo.bundles}
    assert len(bundles) >= 2
    restaurant = [items[code] for code in bundles["open-restaurant"].items]
    assert len(restaurant) == 4
    assert len({item.department for item in restaurant}) == 4
    assert {items["business-licence"].department, items["fire-safety-inspection"].department} == {
        "market",
        "fire",
    }
    assert items["outdoor-signage-permit"].department == "urban"
    # One form for the restaurant: the shared fields asked once; the lease asked once, later allowed.
    schema = catalog.form_schema(restaurant)
    assert "business_name" in schema["properties"]
    form = {"premises_owned": False, "premises_area_m2": 120, "food_categories": ["hot_meals"]}
    checklist = {r.code: r for r in catalog.checklist(restaurant, form)}
    assert checklist["lease_contract"].items == ("business-licence", "food-operation-licence")
    assert checklist["lease_contract"].later_allowed
    assert checklist["floor_plan"].items == ("food-operation-licence", "fire-safety-inspection")
    assert "property_certificate" not in checklist
    assert "fire_facility_test_report" not in checklist  # only above 300 m²
