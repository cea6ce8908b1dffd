"""The catalog's rules and store: publication checks (every problem at once), versions, the one
form of several items, form errors, the merged checklist and assurance levels."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from onewindow.db import Connection
from onewindow.errors import FieldError, PreconditionFailed, ValidationFailed
from services import catalog, catalog_store
from tests.services.conftest import ITEMS, People

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
T = catalog.Text


def item(**overrides: Any) -> catalog.Item:
    fields: dict[str, Any] = {
        "code": "shop-sign",
        "department": "urban",
        "name": T(zh="店招", en="Shop sign"),
        "legal_days": 10,
        "promised_days": 5,
        "form_schema": {
            "type": "object",
            "properties": {
                "address": {"type": "string", "title": "地址 / Address", "minLength": 5},
                "owned": {"type": "boolean", "title": "自有 / Owned"},
            },
            "required": ["address", "owned"],
        },
        "checklist": (
            catalog.ChecklistEntry(code="photo", name=T(zh="照片", en="Photo")),
            catalog.ChecklistEntry(
                code="consent",
                name=T(zh="同意书", en="Consent"),
                when={"!": {"var": "form.owned"}},
                later_allowed=True,
            ),
        ),
    }
    return catalog.Item(**(fields | overrides))


def pointers(error: ValidationFailed) -> set[str]:
    return {e.pointer for e in error.errors}


# --- publication checks ----------------------------------------------------------------------------


async def test_a_valid_item_is_published_as_version_1(conn: Connection, city: People) -> None:
    published = await catalog.publish_item(conn, item(), by="admin", now=NOW, note="first")
    assert published.version == 1
    assert await catalog.item(conn, "shop-sign") == published
    [row] = await catalog_store.item_versions(conn, "shop-sign")
    assert (row.version, row.changed_by, row.note, row.active) == (1, "admin", "first", True)


async def test_every_problem_of_an_item_is_listed_at_once(conn: Connection, city: People) -> None:
    bad = item(
        code="Bad Code",
        department="nowhere",
        name=T(zh="", en="Sign"),
        legal_days=5,
        promised_days=6,
        form_schema={"type": "array", "properties": {"a": {"type": "strin"}}},
        checklist=(
            catalog.ChecklistEntry(code="photo", name=T(zh="照片", en="Photo"), media_types=("image/gif",)),
            catalog.ChecklistEntry(code="photo", name=T(zh="照片", en="Photo"), when={"bogus": [1]}),
            catalog.ChecklistEntry(code="Two Words", name=T(zh="x", en="x"), when={"var": "subject.name"}),
            catalog.ChecklistEntry(code="copy", name=T(zh="x", en="x"), reusable_certificate="t-fire"),
        ),
        fee_minor=-1,
        channels=(),
        valid_days=0,
        life_events=("Open Business",),
    )
    with pytest.raises(ValidationFailed) as raised:
        await catalog.publish_item(conn, bad, by="admin", now=NOW)
    assert pointers(raised.value) >= {
        "/code",
        "/name/zh",
        "/department",
        "/promised_days",
        "/form_schema/type",
        "/checklist/0/media_types/0",
        "/checklist/1/code",  # twice
        "/checklist/1/when/bogus",
        "/checklist/2/code",
        "/checklist/2/when/var",  # conditions read the form
        "/checklist/3/reusable_certificate",  # t-fire's result is a decision
        "/fee_minor",
        "/channels",
        "/valid_days",
        "/life_events/0",
    }
    assert any(p.startswith("/form_schema/properties/a") for p in pointers(raised.value))
    assert await catalog.item(conn, "Bad Code") is None


@pytest.mark.parametrize(
    ("schema", "pointer"),
    [
        (
            {"type": "object", "properties": {"a": {"$ref": "https://example.org/s.json"}}},
            "/form_schema/properties/a/$ref",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "minLength": -1}}},
            "/form_schema/properties/a/minLength",
        ),
        ({"type": "object", "properties": {}}, "/form_schema/properties"),
        (
            {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": {"a": {}}},
            "/form_schema/$schema",
        ),
    ],
)
async def test_form_schemas_are_checked(
    conn: Connection, city: People, schema: dict[str, Any], pointer: str
) -> None:
    with pytest.raises(ValidationFailed) as raised:
        await catalog.publish_item(conn, item(form_schema=schema, checklist=()), by="admin", now=NOW)
    assert pointer in pointers(raised.value)


async def test_a_local_reference_is_allowed(conn: Connection, city: People) -> None:
    schema = {
        "type": "object",
        "$defs": {"phone": {"type": "string", "pattern": "^1[3-9][0-9]{9}$"}},
        "properties": {"phone": {"$ref": "#/$defs/phone", "title": "电话 / Phone"}},
    }
    published = await catalog.publish_item(conn, item(form_schema=schema, checklist=()), by="admin", now=NOW)
    assert catalog.form_errors([published], {"phone": "123"}) == [
        FieldError(pointer="/form/phone", detail="“电话 / Phone” is not in the expected format.")
    ]


async def test_a_condition_that_cannot_be_evaluated_is_refused(conn: Connection, city: People) -> None:
    entry = catalog.ChecklistEntry(code="x", name=T(zh="x", en="x"), when={"/": [1, 0]})
    with pytest.raises(ValidationFailed) as raised:
        await catalog.publish_item(conn, item(checklist=(entry,)), by="admin", now=NOW)
    assert pointers(raised.value) == {"/checklist/0/when"}


async def test_a_reusable_certificate_names_a_certificate_item(conn: Connection, city: People) -> None:
    entry = catalog.ChecklistEntry(
        code="licence", name=T(zh="执照", en="Licence"), reusable_certificate="t-business"
    )
    published = await catalog.publish_item(conn, item(checklist=(entry,)), by="admin", now=NOW)
    assert published.checklist[0].reusable_certificate == "t-business"


# --- versions --------------------------------------------------------------------------------------


async def test_a_change_is_the_next_version_and_no_change_is_no_version(
    conn: Connection, city: People
) -> None:
    first = await catalog.publish_item(conn, item(), by="admin", now=NOW)
    same = await catalog.publish_item(conn, item(version=7), by="other", now=NOW, note="no-op")
    assert same == first
    second = await catalog.publish_item(conn, item(fee_minor=500), by="admin2", now=NOW, note="fee")
    assert second.version == 2
    withdrawn = await catalog.publish_item(conn, item(fee_minor=500, active=False), by="admin", now=NOW)
    assert withdrawn.version == 3
    assert [r.version for r in await catalog_store.item_versions(conn, "shop-sign")] == [3, 2, 1]
    assert (await catalog.item(conn, "shop-sign", 1)) == first
    assert (await catalog.item(conn, "shop-sign")) == withdrawn
    assert await catalog.items_of(conn, [("shop-sign", 2), ("shop-sign", 1), ("shop-sign", 9)]) == [
        second,
        first,
    ]
    row = await conn.fetchrow("SELECT version, active FROM services.items WHERE code = 'shop-sign'")
    assert row is not None
    assert (row["version"], row["active"]) == (3, False)


async def test_a_stale_expected_version_is_refused(conn: Connection, city: People) -> None:
    await catalog.publish_item(conn, item(), by="admin", now=NOW)
    await catalog.publish_item(conn, item(fee_minor=1), by="admin", now=NOW, expected_version=1)
    with pytest.raises(PreconditionFailed):
        await catalog.publish_item(conn, item(fee_minor=2), by="admin", now=NOW, expected_version=1)
    with pytest.raises(PreconditionFailed):
        await catalog.publish_item(conn, item(code="new-one"), by="admin", now=NOW, expected_version=1)


# --- bundles ---------------------------------------------------------------------------------------


async def test_bundle_checks(conn: Connection, city: People) -> None:
    await catalog.publish_item(conn, item(active=False), by="admin", now=NOW)
    clash = item(
        code="clash",
        form_schema={"type": "object", "properties": {"company_name": {"type": "integer"}}},
        checklist=(),
        channels=("app",),
    )
    await catalog.publish_item(conn, clash, by="admin", now=NOW)
    bundle = catalog.Bundle(
        code="bad bundle",
        name=T(zh="甲", en=""),
        items=("t-business", "t-business", "shop-sign", "missing", "clash", "t-signage"),
    )
    with pytest.raises(ValidationFailed) as raised:
        await catalog.publish_bundle(conn, bundle, by="admin", now=NOW)
    details = {(e.pointer, e.detail) for e in raised.value.errors}
    assert {p for p, _ in details} == {"/code", "/name/en", "/items", "/items/2", "/items/3"}
    assert any("'company_name'" in d and "'t-business'" in d and "'clash'" in d for _, d in details)
    assert any("not active" in d for p, d in details if p == "/items/2")
    assert any("share no channel" in d for _, d in details)
    assert any("listed twice" in d for _, d in details)
    with pytest.raises(ValidationFailed) as single:
        await catalog.publish_bundle(
            conn, catalog.Bundle(code="one", name=T(zh="一", en="One"), items=("t-fire",)), by="a", now=NOW
        )
    assert pointers(single.value) == {"/items"}


async def test_bundle_versions(conn: Connection, city: People) -> None:
    bundle = catalog.Bundle(code="pair", name=T(zh="两件", en="Pair"), items=("t-business", "t-fire"))
    first = await catalog.publish_bundle(conn, bundle, by="admin", now=NOW)
    assert first.version == 1
    assert await catalog.publish_bundle(conn, bundle, by="admin", now=NOW) == first
    second = await catalog.publish_bundle(
        conn, msgspec.structs.replace(bundle, items=("t-business", "t-fire", "t-food")), by="admin", now=NOW
    )
    assert second.version == 2
    assert await catalog.bundle(conn, "pair", 1) == first
    assert [r.version for r in await catalog_store.bundle_versions(conn, "pair")] == [2, 1]


# --- the form --------------------------------------------------------------------------------------


def test_one_form_asks_each_field_once() -> None:
    restaurant = [ITEMS[code] for code in ("t-business", "t-food", "t-fire", "t-signage")]
    schema = catalog.form_schema(restaurant)
    assert list(schema["properties"]) == ["company_name", "address", "area", "sign_text"]
    assert schema["required"] == ["company_name", "address", "area", "sign_text"]
    assert schema["additionalProperties"] is False


def test_one_form_merges_the_items_examples_into_one() -> None:
    """Each item's example is not carried into allOf: the items' first examples become one
    example of the whole form, each field once (the first item's value)."""
    sign = item(
        form_schema={
            **item().form_schema,
            "examples": [
                {"address": "滨河路 18 号", "owned": True},
                {"address": "江边路 2 号", "owned": False},
            ],
        }
    )
    stall = item(
        code="stall",
        form_schema={
            "type": "object",
            "properties": {
                "address": {"type": "string", "title": "地址 / Address", "minLength": 5},
                "goods": {"type": "string", "title": "货品 / Goods"},
            },
            "allOf": [{"if": {"required": ["goods"]}, "then": {"required": ["address"]}}],
            "examples": [{"address": "another address", "goods": "水果"}],
        },
    )
    schema = catalog.form_schema([sign, stall])
    assert schema["examples"] == [{"address": "滨河路 18 号", "owned": True, "goods": "水果"}]
    assert schema["allOf"] == [
        {"allOf": [{"if": {"required": ["goods"]}, "then": {"required": ["address"]}}]}
    ]
    assert "examples" not in str(schema["allOf"])
    # One item keeps its examples as written; items without examples give none.
    assert catalog.form_schema([sign])["examples"] == sign.form_schema["examples"]
    assert "examples" not in catalog.form_schema([item(), item(code="other")])


def test_form_errors_lists_every_problem_at_once_without_echoing_values() -> None:
    restaurant = [ITEMS[code] for code in ("t-business", "t-food", "t-fire", "t-signage")]
    errors = catalog.form_errors(restaurant, {"company_name": "X", "area": "big", "secret-extra": "1"})
    assert [(e.pointer, e.detail) for e in errors] == [
        ("/form/address", "Please fill in “Business address”."),
        ("/form/area", "“Floor area (m²)” must be a number."),
        ("/form/company_name", "“Company name” must be at least 2 characters long."),
        ("/form/secret-extra", "“secret-extra” is not a field of this form."),
        ("/form/sign_text", "Please fill in “sign_text”."),
    ]
    complete = {"company_name": "Noodles", "address": "1 River Road", "area": 80, "sign_text": "面"}
    assert catalog.form_errors(restaurant, complete) == []


def test_form_errors_of_formats_enums_and_conditional_rules() -> None:
    schema = {
        "type": "object",
        "properties": {
            "kind": {"type": "string", "title": "Kind", "enum": ["a", "limited_company"]},
            "day": {"type": "string", "format": "date", "title": "Day"},
            "capital": {"type": "integer", "title": "Capital"},
            "tags": {"type": "array", "items": {"type": "string", "title": "Tag"}, "title": "Tags"},
        },
        "allOf": [
            {"if": {"properties": {"kind": {"const": "limited_company"}}}, "then": {"required": ["capital"]}}
        ],
    }
    one = item(form_schema=schema)
    errors = catalog.form_errors([one], {"kind": "limited_company", "day": "2026-02-30", "tags": ["x", 3]})
    assert [(e.pointer, e.detail) for e in errors] == [
        ("/form/capital", "Please fill in “Capital”."),
        ("/form/day", "“Day” must be a date (YYYY-MM-DD)."),
        ("/form/tags/1", "“Tag” must be text."),
    ]
    assert catalog.form_errors([one], {"kind": "z"})[0].detail == "“Kind” must be one of: a, limited_company."


# --- the checklist ---------------------------------------------------------------------------------


def test_checklist_conditions_follow_the_form() -> None:
    one = item()
    assert [r.code for r in catalog.checklist([one], {"owned": True})] == ["photo"]
    [photo, consent] = catalog.checklist([one], {"owned": False})
    assert (consent.code, consent.later_allowed, consent.items) == ("consent", True, ("shop-sign",))
    assert photo.media_types == ("application/pdf", "image/jpeg", "image/png")


def test_checklist_merges_entries_asked_by_several_items() -> None:
    strict = catalog.ChecklistEntry(
        code="consent",
        name=T(zh="同意书", en="Consent"),
        media_types=("application/pdf", "image/png"),
        max_bytes=1000,
        later_allowed=False,
        optional=True,
        reusable_certificate="t-business",
    )
    loose = catalog.ChecklistEntry(
        code="consent",
        name=T(zh="同意书", en="Consent"),
        media_types=("image/png", "application/pdf", "image/jpeg"),
        max_bytes=5000,
        later_allowed=True,
        optional=True,
    )
    first = item(code="first", checklist=(loose,))
    second = item(code="second", checklist=(strict,))
    [merged] = catalog.checklist([first, second], {})
    assert merged.items == ("first", "second")
    assert merged.media_types == ("image/png", "application/pdf")
    assert merged.max_bytes == 1000
    assert (merged.later_allowed, merged.optional) == (False, True)
    assert merged.reusable_certificate == "t-business"
    restaurant = [ITEMS[code] for code in ("t-business", "t-food", "t-fire", "t-signage")]
    codes = [r.code for r in catalog.checklist(restaurant, {"area": 80})]
    assert codes == ["id_card", "lease", "floor_plan", "business_licence"]
    [floor_plan] = [r for r in catalog.checklist(restaurant, {"area": 80}) if r.code == "floor_plan"]
    assert floor_plan.items == ("t-food", "t-fire")
    assert "floor_plan" not in [r.code for r in catalog.checklist(restaurant, {"area": 20})]


# --- assurance -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("required", "acr", "met"),
    [
        ("low", None, True),
        ("substantial", None, False),
        ("substantial", "urn:onewindow:loa:low", False),
        ("substantial", "urn:onewindow:loa:substantial", True),
        ("substantial", "urn:onewindow:loa:high", True),
        ("high", "urn:onewindow:loa:substantial", False),
        ("high", "urn:onewindow:loa:high", True),
        ("low", "urn:example:unknown", False),
    ],
)
def test_assurance_levels(required: str, acr: str | None, met: bool) -> None:
    assert catalog.assurance_met(required, acr) is met
