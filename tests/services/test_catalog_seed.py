"""The demo catalog: it passes every publication check, covers what the demo needs, and seeding
it twice adds no versions."""

from __future__ import annotations

from typing import Any

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


def _example(item: catalog.Item) -> dict[str, Any]:
    examples = item.form_schema.get("examples")
    assert isinstance(examples, list), f"{item.code} has no example form"
    assert examples, f"{item.code} has no example form"
    first = examples[0]
    assert isinstance(first, dict)
    return first


def test_every_item_has_an_example_form_that_validates() -> None:
    for item in demo_catalog().items:
        assert catalog.form_errors([item], _example(item)) == [], item.code


def test_an_example_form_with_a_field_broken_is_refused() -> None:
    """The check above can fail: the same example with a required field taken out is refused."""
    item = {item.code: item for item in demo_catalog().items}["temporary-street-stall"]
    broken = {key: value for key, value in _example(item).items() if key != "goods"}
    assert [error.pointer for error in catalog.form_errors([item], broken)] == ["/form/goods"]


def test_the_union_of_a_bundles_examples_is_a_valid_form_of_the_bundle() -> None:
    demo = demo_catalog()
    items = {item.code: item for item in demo.items}
    for bundle in demo.bundles:
        members = [items[code] for code in bundle.items]
        union: dict[str, Any] = {}
        for member in members:
            example = _example(member)
            # The shared fields agree, so the union does not depend on the items' order.
            assert all(union[key] == value for key, value in example.items() if key in union), bundle.code
            union |= example
        assert catalog.form_errors(members, union) == [], bundle.code
        # The bundle's one form offers exactly that union as its one example, not one per item.
        schema = catalog.form_schema(members)
        assert schema["examples"] == [union], bundle.code
        assert "examples" not in str(schema.get("allOf", [])), bundle.code


def test_the_bench_items_example_implies_a_checklist_of_documents_only() -> None:
    """bench/services_data.py drafts with the online low-assurance item's example and attaches
    one document per checklist entry: every entry must be satisfiable by an upload."""
    low = [item for item in demo_catalog().items if item.min_assurance == "low" and "online" in item.channels]
    assert low
    for item in low:
        requirements = catalog.checklist([item], _example(item))
        assert requirements
        assert all(requirement.media_types for requirement in requirements)
