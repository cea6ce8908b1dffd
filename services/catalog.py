"""The service catalog: approval items and bundles, and the rules read from them.

An *item* is one approval a department grants (a business licence, a drainage permit): its form
(a JSON Schema), the documents it asks for (a checklist whose entries may depend on the form),
its time limits in working days, its fee, the assurance a person must have signed in with, the
channels it is offered through and the workflow that reviews it. A *bundle* ("one thing") is
several items applied for together: one form asking each field once, one document set.

Items and bundles are versioned: every published change is a new version and an application is
judged by the versions it was made under (`items_of` reads them by code and version). The
Structs here are what other modules of services use; `catalog_store` holds the SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import jsonschema  # type: ignore[import-untyped]  # no stubs in the dev dependencies
import msgspec

from identity import api as identity
from onewindow.db import Connection
from onewindow.errors import FieldError, RuleViolation, ValidationFailed
from services import catalog_store
from workflows import api as workflows

__all__ = [
    "ASSURANCE_LEVELS",
    "CHANNELS",
    "MEDIA_TYPES",
    "Assurance",
    "Bundle",
    "Channel",
    "ChecklistEntry",
    "Item",
    "Requirement",
    "Text",
    "assurance_met",
    "bundle",
    "bundle_problems",
    "checklist",
    "form_errors",
    "form_schema",
    "item",
    "item_problems",
    "items_of",
    "publish_bundle",
    "publish_item",
]

Assurance = Literal["low", "substantial", "high"]
Channel = Literal["online", "app", "counter"]
ResultKind = Literal["certificate", "decision"]

# The assurance levels in order, and the acr value a token carries for each.
ASSURANCE_LEVELS: dict[str, str] = {
    "low": "urn:onewindow:loa:low",
    "substantial": "urn:onewindow:loa:substantial",
    "high": "urn:onewindow:loa:high",
}
CHANNELS: tuple[Channel, ...] = ("online", "app", "counter")
# What a checklist entry may accept: what the document store can sniff and a reviewer can open.
MEDIA_TYPES: tuple[str, ...] = ("application/pdf", "image/jpeg", "image/png", "image/webp", "image/heic")
_DEFAULT_MEDIA_TYPES: tuple[str, ...] = ("application/pdf", "image/jpeg", "image/png")


class Text(msgspec.Struct):
    """A name or description in the city's two languages."""

    zh: str
    en: str


class ChecklistEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One document an item asks for.

    `when` is a JSON Logic condition over `{"form": <form data>}` (None: always asked);
    `later_allowed` means it may be supplied after acceptance at the counter (容缺受理);
    `reusable_certificate` names an item whose valid certificate, held by the applicant,
    satisfies this entry without an upload.
    """

    code: str
    name: Text
    when: Any | None = None
    media_types: tuple[str, ...] = _DEFAULT_MEDIA_TYPES
    max_bytes: int | None = None
    later_allowed: bool = False
    optional: bool = False
    reusable_certificate: str | None = None


class Item(msgspec.Struct, frozen=True, kw_only=True):
    """One approval item, as published in one version."""

    code: str
    version: int = 1
    department: str
    name: Text
    description: Text | None = None
    legal_days: int
    promised_days: int
    form_schema: dict[str, Any]
    checklist: tuple[ChecklistEntry, ...] = ()
    fee_minor: int = 0
    currency: str = "CNY"
    min_assurance: Assurance = "substantial"
    channels: tuple[Channel, ...] = CHANNELS
    workflow: str = "approval-review"
    result: ResultKind = "decision"
    valid_days: int | None = None
    life_events: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    active: bool = True


class Bundle(msgspec.Struct, frozen=True, kw_only=True):
    """Several items applied for together ("one thing"): one form, one document set, one number;
    the items are reviewed in parallel, each in its own department."""

    code: str
    version: int = 1
    name: Text
    description: Text | None = None
    items: tuple[str, ...]
    life_events: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    active: bool = True


class Requirement(msgspec.Struct, frozen=True, kw_only=True):
    """One document an application must supply: the checklist entries of its items that apply
    to its form, merged by code (an entry asked by two items is supplied once)."""

    code: str
    name: Text
    media_types: tuple[str, ...]
    max_bytes: int | None
    later_allowed: bool
    optional: bool
    reusable_certificate: str | None
    items: tuple[str, ...]


# --- reads ---------------------------------------------------------------------------------------


async def item(conn: Connection, code: str, version: int | None = None) -> Item | None:
    """An item as published in `version` (None: its current version, active or not)."""
    return await catalog_store.item(conn, code, version)


async def bundle(conn: Connection, code: str, version: int | None = None) -> Bundle | None:
    """A bundle as published in `version` (None: its current version, active or not)."""
    return await catalog_store.bundle(conn, code, version)


async def items_of(conn: Connection, codes: Sequence[tuple[str, int]]) -> list[Item]:
    """The items at the given (code, version) pairs, in the order given; a pair that does not
    exist is left out (an application's pins always exist: a foreign key holds them)."""
    return await catalog_store.items_of(conn, codes)


# --- the form ------------------------------------------------------------------------------------

_DRAFT = "https://json-schema.org/draft/2020-12/schema"
# Keywords of an item's top-level schema that the union takes apart; any other (allOf, if/then,
# dependentRequired, ...) is kept as it was, as one member of the union's allOf.
_MERGED_KEYWORDS = frozenset(
    {
        "$schema",
        "$id",
        "type",
        "title",
        "description",
        "properties",
        "required",
        "additionalProperties",
        "$defs",
        "examples",
    }
)


def form_schema(items: Sequence[Item]) -> dict[str, Any]:
    """One form for the items applied for together: every field asked once (the first item's
    definition of it; a bundle is refused at publication when two items define a field
    differently), `required` the union. Unknown fields are refused when any item refuses them;
    each item's own cross-field rules (if/then, allOf, ...) all apply. One item's `examples` are
    kept; several items' first examples are merged into one example of the whole form (each field
    once, the first item's value), so a client sees one clean schema and one example to copy."""
    properties: dict[str, Any] = {}
    required: dict[str, None] = {}  # an ordered set
    definitions: dict[str, Any] = {}
    rules: list[dict[str, Any]] = []
    for each in items:
        schema = each.form_schema
        for name, field in (schema.get("properties") or {}).items():
            properties.setdefault(name, field)
        required.update(dict.fromkeys(schema.get("required") or ()))
        for name, definition in (schema.get("$defs") or {}).items():
            definitions.setdefault(name, definition)
        rest = {key: value for key, value in schema.items() if key not in _MERGED_KEYWORDS}
        if rest:
            rules.append(rest)
    union: dict[str, Any] = {"$schema": _DRAFT, "type": "object", "properties": properties}
    if len(items) == 1:
        union |= {
            key: items[0].form_schema[key]
            for key in ("title", "description", "examples")
            if key in items[0].form_schema
        }
    else:
        example = _merged_example(items)
        if example:
            union["examples"] = [example]
    optional_parts: dict[str, Any] = {
        "required": list(required),
        "additionalProperties": False
        if any(each.form_schema.get("additionalProperties") is False for each in items)
        else None,
        "$defs": definitions,
        "allOf": rules,
    }
    union |= {key: value for key, value in optional_parts.items() if value or value is False}
    return union


def _merged_example(items: Sequence[Item]) -> dict[str, Any]:
    """The items' first example forms as one: each field once, as the first item that has it
    gives it (a bundle's shared fields are defined alike, and its items' examples agree)."""
    merged: dict[str, Any] = {}
    for each in items:
        examples = each.form_schema.get("examples")
        first = examples[0] if isinstance(examples, list) and examples else None
        if isinstance(first, dict):
            for name, value in first.items():
                merged.setdefault(name, value)
    return merged


def _pointer(path: Sequence[str | int]) -> str:
    """RFC 6901: `~` and `/` escaped in each token."""
    return "".join("/" + str(token).replace("~", "~0").replace("/", "~1") for token in path)


def _label(schema: Any, name: str | int | None) -> str:
    title = schema.get("title") if isinstance(schema, dict) else None
    if isinstance(title, str) and title.strip():
        return f"“{title.strip()}”"
    return f"“{name}”" if name is not None else "The form"


_TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "yes or no",
    "array": "a list",
    "object": "a group of fields",
    "null": "empty",
}
_FORMAT_WORDS = {
    "date": "a date (YYYY-MM-DD)",
    "date-time": "a date and time",
    "time": "a time of day",
    "email": "an email address",
    "uri": "a web address",
    "uuid": "an identifier (UUID)",
    "ipv4": "an IPv4 address",
}


def _words(value: Any) -> str:
    if isinstance(value, list):
        return " or ".join(_TYPE_WORDS.get(str(v), str(v)) for v in value)
    return _TYPE_WORDS.get(str(value), str(value))


def _declared(root: Mapping[str, Any], path: Sequence[str | int]) -> Any:
    """The schema the form declares at an instance path (following properties and items), for
    the field's title when the failing subschema has none (a $ref target, an if/then branch)."""
    schema: Any = root
    for token in path:
        if not isinstance(schema, dict):
            return None
        schema = (
            (schema.get("properties") or {}).get(token) if isinstance(token, str) else schema.get("items")
        )
    return schema


def _field_errors(
    error: jsonschema.exceptions.ValidationError, root: Mapping[str, Any]
) -> Iterator[FieldError]:
    """What a citizen reads for one schema error: the field's title and what to do about it,
    never the value they typed (forms carry personal data)."""
    path = list(error.absolute_path)
    name = path[-1] if path else None
    has_title = isinstance(error.schema, dict) and "title" in error.schema
    label = _label(error.schema if has_title else _declared(root, path), name)
    value = error.validator_value
    kind = error.validator
    if kind == "required":
        present = error.instance if isinstance(error.instance, dict) else {}
        declared = _declared(root, path)
        fields = dict(declared.get("properties") or {}) if isinstance(declared, dict) else {}
        if isinstance(error.schema, dict):
            fields |= error.schema.get("properties") or {}
        message = str(error.message)
        for missing in value:
            if missing not in present and message.startswith(repr(missing)):
                yield FieldError(
                    pointer="/form" + _pointer([*path, missing]),
                    detail=f"Please fill in {_label(fields.get(missing), missing)}.",
                )
        return
    if kind == "additionalProperties":
        known = set(error.schema.get("properties", {})) if isinstance(error.schema, dict) else set()
        patterns = list(error.schema.get("patternProperties", {})) if isinstance(error.schema, dict) else []
        for extra in error.instance if isinstance(error.instance, dict) else {}:
            if extra not in known and not any(re.search(p, extra) for p in patterns):
                yield FieldError(
                    pointer="/form" + _pointer([*path, extra]),
                    detail=f"“{extra}” is not a field of this form.",
                )
        return
    details: dict[str, str] = {
        "type": f"{label} must be {_words(value)}.",
        "enum": f"{label} must be one of: {', '.join(str(v) for v in value) if isinstance(value, list) else value}.",
        "const": f"{label} must be {value}.",
        "minLength": f"Please fill in {label}."
        if value == 1
        else f"{label} must be at least {value} characters long.",
        "maxLength": f"{label} must be at most {value} characters long.",
        "minimum": f"{label} must be at least {value}.",
        "maximum": f"{label} must be at most {value}.",
        "exclusiveMinimum": f"{label} must be more than {value}.",
        "exclusiveMaximum": f"{label} must be less than {value}.",
        "multipleOf": f"{label} must be a multiple of {value}.",
        "pattern": f"{label} is not in the expected format.",
        "format": f"{label} must be {_FORMAT_WORDS.get(str(value), str(value))}.",
        "minItems": f"Choose at least {value} for {label}.",
        "maxItems": f"Choose at most {value} for {label}.",
        "uniqueItems": f"{label} lists the same thing twice.",
    }
    yield FieldError(
        pointer="/form" + _pointer(path), detail=details.get(str(kind), f"{label} is not valid.")
    )


def form_errors(items: Sequence[Item], form: Mapping[str, Any]) -> list[FieldError]:
    """Every problem of the form at once (not the first only), each with a pointer
    `/form/<field>` and a message the applicant can act on; empty when the form is complete."""
    schema = form_schema(items)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    found: list[FieldError] = []
    for error in validator.iter_errors(dict(form)):
        for field_error in _field_errors(error, schema):
            if field_error not in found:
                found.append(field_error)
    return sorted(found, key=lambda e: e.pointer)


# --- the documents -------------------------------------------------------------------------------


def checklist(items: Sequence[Item], form: Mapping[str, Any]) -> list[Requirement]:
    """The documents an application must supply: the entries whose condition holds for the form,
    one per code across the items. An entry asked by several items may be left for later or
    left out only when every one of them allows it; it must be of a type all of them accept,
    within the smallest size limit."""
    data = {"form": dict(form)}
    merged: dict[str, Requirement] = {}
    for each in items:
        for entry in each.checklist:
            if entry.when is not None and not workflows.evaluate(entry.when, data):
                continue
            seen = merged.get(entry.code)
            if seen is None:
                merged[entry.code] = Requirement(
                    code=entry.code,
                    name=entry.name,
                    media_types=entry.media_types,
                    max_bytes=entry.max_bytes,
                    later_allowed=entry.later_allowed,
                    optional=entry.optional,
                    reusable_certificate=entry.reusable_certificate,
                    items=(each.code,),
                )
                continue
            limits = [limit for limit in (seen.max_bytes, entry.max_bytes) if limit is not None]
            merged[entry.code] = msgspec.structs.replace(
                seen,
                media_types=tuple(t for t in seen.media_types if t in entry.media_types),
                max_bytes=min(limits) if limits else None,
                later_allowed=seen.later_allowed and entry.later_allowed,
                optional=seen.optional and entry.optional,
                reusable_certificate=seen.reusable_certificate or entry.reusable_certificate,
                items=seen.items if each.code in seen.items else (*seen.items, each.code),
            )
    return list(merged.values())


# --- assurance -----------------------------------------------------------------------------------

_ACR_RANK = {acr: rank for rank, acr in enumerate(ASSURANCE_LEVELS.values())}


def assurance_met(required: str, acr: str | None) -> bool:
    """Did the person sign in with at least the assurance an item requires? A token without an
    acr counts as low (signed in, nothing more); an acr this city does not know meets nothing."""
    if required not in ASSURANCE_LEVELS:
        raise ValueError(f"unknown assurance level {required!r}")
    held = _ACR_RANK.get(acr if acr is not None else ASSURANCE_LEVELS["low"])
    return held is not None and held >= _ACR_RANK[ASSURANCE_LEVELS[required]]


# --- publishing: the checks an edit must pass -----------------------------------------------------

CODE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ENTRY_CODE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TAG_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
WORKFLOW_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")

# JSON Logic's operations (what the workflow engine evaluates), minus `log`.
_LOGIC_OPERATIONS = frozenset(
    {
        *("==", "!=", "===", "!==", "<", ">", "<=", ">=", "!", "!!"),
        *("+", "*", "-", "/", "%", "in", "min", "max", "cat", "substr", "merge"),
        *("var", "missing", "missing_some"),
        *("if", "?:", "and", "or", "filter", "map", "reduce", "all", "some", "none"),
    }
)
_ITERATING = frozenset({"filter", "map", "reduce", "all", "some", "none"})


def _text_problems(value: Text | None, pointer: str, *, required: bool = True) -> list[FieldError]:
    if value is None:
        return [FieldError(pointer=pointer, detail="Give it in Chinese and English.")] if required else []
    return [
        FieldError(pointer=f"{pointer}/{language}", detail="Must not be empty.")
        for language in ("zh", "en")
        if not getattr(value, language).strip()
    ]


def _tag_problems(values: Sequence[str], pointer: str, what: str) -> list[FieldError]:
    problems = [
        FieldError(pointer=f"{pointer}/{index}", detail=f"A {what} is lower-case letters, digits and '-'.")
        for index, value in enumerate(values)
        if not TAG_PATTERN.match(value)
    ]
    if len(set(values)) != len(values):
        problems.append(FieldError(pointer=pointer, detail=f"A {what} is listed twice."))
    return problems


def _logic_problems(condition: Any, pointer: str, *, scoped: bool = False) -> list[FieldError]:
    """JSON Logic as data: known operations only, one per object, and `var` reading the form
    (`form.<field>`); inside filter/map/... a `var` reads the current element."""
    if isinstance(condition, list):
        return [
            problem
            for index, part in enumerate(condition)
            for problem in _logic_problems(part, f"{pointer}/{index}", scoped=scoped)
        ]
    if not isinstance(condition, dict):
        return []
    if len(condition) != 1:
        return [FieldError(pointer=pointer, detail="A condition object has exactly one operation.")]
    ((operation, argument),) = condition.items()
    here = f"{pointer}/{_pointer([operation])[1:]}"
    if operation not in _LOGIC_OPERATIONS:
        return [FieldError(pointer=here, detail=f"Unknown JSON Logic operation {operation!r}.")]
    arguments = argument if isinstance(argument, list) else [argument]
    if operation == "var":
        path = arguments[0] if arguments else ""
        if isinstance(path, dict | list):
            return _logic_problems(path, here, scoped=scoped)
        if not scoped and not (str(path) == "form" or str(path).startswith("form.")):
            return [FieldError(pointer=here, detail="A condition reads the form: write var as form.<field>.")]
        return []
    return [
        problem
        for index, part in enumerate(arguments)
        for problem in _logic_problems(
            part,
            f"{here}/{index}" if isinstance(argument, list) else here,
            scoped=scoped or (operation in _ITERATING and index == 1),
        )
    ]


def _refs(schema: Any, pointer: str) -> Iterator[tuple[str, str]]:
    """Every $ref / $dynamicRef in a schema with where it is."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            here = f"{pointer}{_pointer([key])}"
            if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                yield here, value
            else:
                yield from _refs(value, here)
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from _refs(value, f"{pointer}/{index}")


def _schema_problems(schema: dict[str, Any]) -> list[FieldError]:
    problems: list[FieldError] = []
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.exceptions.SchemaError as error:
        problems.append(
            FieldError(
                pointer="/form_schema" + _pointer(list(error.absolute_path)),
                detail=f"Not a valid JSON Schema (Draft 2020-12): {error.message}",
            )
        )
    if schema.get("type") != "object":
        problems.append(FieldError(pointer="/form_schema/type", detail="A form's schema has type object."))
    if not isinstance(schema.get("properties", {}), dict) or not schema.get("properties"):
        problems.append(
            FieldError(pointer="/form_schema/properties", detail="A form has at least one field.")
        )
    if "$schema" in schema and schema["$schema"] != _DRAFT:
        problems.append(FieldError(pointer="/form_schema/$schema", detail=f"Forms are written in {_DRAFT}."))
    for where, target in _refs(schema, "/form_schema"):
        if not target.startswith("#"):
            problems.append(
                FieldError(pointer=where, detail="Only references inside the form (#/$defs/...) are allowed.")
            )
    return problems


async def item_problems(conn: Connection, item: Item) -> list[FieldError]:
    """Everything wrong with an item an administrator wants to publish, all at once; pointers
    into the item as written (`/checklist/2/when`, `/form_schema/properties/x/type`)."""
    problems: list[FieldError] = []
    if not CODE_PATTERN.match(item.code):
        problems.append(
            FieldError(pointer="/code", detail="A code is lower-case letters, digits, '-' and '_'.")
        )
    problems += _text_problems(item.name, "/name")
    problems += _text_problems(item.description, "/description", required=False)
    if await identity.unit_path(conn, item.department) is None:
        problems.append(FieldError(pointer="/department", detail=f"There is no unit {item.department!r}."))
    if item.legal_days < 1:
        problems.append(
            FieldError(pointer="/legal_days", detail="The legal time limit is at least 1 working day.")
        )
    if not 1 <= item.promised_days <= max(item.legal_days, 1):
        problems.append(
            FieldError(
                pointer="/promised_days",
                detail="The promised time limit is at least 1 working day and no longer than the legal one.",
            )
        )
    problems += _schema_problems(item.form_schema)
    problems += await _checklist_problems(conn, item)
    if item.fee_minor < 0:
        problems.append(FieldError(pointer="/fee_minor", detail="A fee is zero or more (in minor units)."))
    if not CURRENCY_PATTERN.match(item.currency):
        problems.append(FieldError(pointer="/currency", detail="A currency is an ISO 4217 code such as CNY."))
    if not item.channels:
        problems.append(
            FieldError(pointer="/channels", detail="Offer the item through at least one channel.")
        )
    elif len(set(item.channels)) != len(item.channels):
        problems.append(FieldError(pointer="/channels", detail="A channel is listed twice."))
    if not WORKFLOW_PATTERN.match(item.workflow):
        problems.append(FieldError(pointer="/workflow", detail="Name a workflow definition by its key."))
    if item.valid_days is not None and item.valid_days < 1:
        problems.append(FieldError(pointer="/valid_days", detail="A validity is at least 1 day (or none)."))
    if item.valid_days is not None and item.result != "certificate":
        problems.append(FieldError(pointer="/valid_days", detail="Only a certificate has a validity."))
    problems += _tag_problems(item.life_events, "/life_events", "life event")
    problems += [
        FieldError(pointer=f"/keywords/{index}", detail="A keyword is not empty.")
        for index, keyword in enumerate(item.keywords)
        if not keyword.strip()
    ]
    return problems


async def _checklist_problems(conn: Connection, item: Item) -> list[FieldError]:
    problems: list[FieldError] = []
    seen: set[str] = set()
    for index, entry in enumerate(item.checklist):
        at = f"/checklist/{index}"
        if not ENTRY_CODE_PATTERN.match(entry.code):
            problems.append(
                FieldError(
                    pointer=f"{at}/code", detail="A checklist code is lower-case letters, digits and '_'."
                )
            )
        if entry.code in seen:
            problems.append(
                FieldError(pointer=f"{at}/code", detail=f"The checklist has {entry.code!r} twice.")
            )
        seen.add(entry.code)
        problems += _text_problems(entry.name, f"{at}/name")
        if not entry.media_types:
            problems.append(
                FieldError(pointer=f"{at}/media_types", detail="Accept at least one type of file.")
            )
        for position, media_type in enumerate(entry.media_types):
            if media_type not in MEDIA_TYPES:
                problems.append(
                    FieldError(
                        pointer=f"{at}/media_types/{position}",
                        detail=f"{media_type!r} is not one of {', '.join(MEDIA_TYPES)}.",
                    )
                )
        if entry.max_bytes is not None and entry.max_bytes < 1:
            problems.append(FieldError(pointer=f"{at}/max_bytes", detail="A size limit is at least 1 byte."))
        if entry.when is not None:
            logic = _logic_problems(entry.when, f"{at}/when")
            if not logic:
                try:
                    workflows.evaluate(entry.when, {"form": {}})
                except RuleViolation as error:
                    logic = [FieldError(pointer=f"{at}/when", detail=error.detail)]
            problems += logic
        if entry.reusable_certificate is not None:
            source = (
                item
                if entry.reusable_certificate == item.code
                else await catalog_store.item(conn, entry.reusable_certificate)
            )
            if source is None or source.result != "certificate":
                problems.append(
                    FieldError(
                        pointer=f"{at}/reusable_certificate",
                        detail=f"{entry.reusable_certificate!r} is not an item whose result is a certificate.",
                    )
                )
    return problems


async def bundle_problems(conn: Connection, bundle: Bundle) -> list[FieldError]:
    """Everything wrong with a bundle: its items must exist and be active, at least two and
    each once, share a channel, and define every field they share the same way (one form asks
    it once)."""
    problems: list[FieldError] = []
    if not CODE_PATTERN.match(bundle.code):
        problems.append(
            FieldError(pointer="/code", detail="A code is lower-case letters, digits, '-' and '_'.")
        )
    problems += _text_problems(bundle.name, "/name")
    problems += _text_problems(bundle.description, "/description", required=False)
    problems += _tag_problems(bundle.life_events, "/life_events", "life event")
    if len(bundle.items) < 2:
        problems.append(FieldError(pointer="/items", detail="A bundle has at least two items."))
    if len(set(bundle.items)) != len(bundle.items):
        problems.append(FieldError(pointer="/items", detail="An item is listed twice."))
    found = await catalog_store.current_items(conn, bundle.items)
    members: list[Item] = []
    for index, code in enumerate(bundle.items):
        member = found.get(code)
        if member is None:
            problems.append(FieldError(pointer=f"/items/{index}", detail=f"There is no item {code!r}."))
        elif not member.active:
            problems.append(FieldError(pointer=f"/items/{index}", detail=f"The item {code!r} is not active."))
        elif member not in members:
            members.append(member)
    if members and not set.intersection(*(set(member.channels) for member in members)):
        problems.append(FieldError(pointer="/items", detail="The items share no channel to apply through."))
    problems += _conflicts(members)
    return problems


def _conflicts(members: Sequence[Item]) -> list[FieldError]:
    """Fields (and $defs) that two items define differently."""
    problems: list[FieldError] = []
    for keyword, what in (("properties", "field"), ("$defs", "definition")):
        first: dict[str, tuple[str, Any]] = {}
        for member in members:
            for name, schema in (member.form_schema.get(keyword) or {}).items():
                if name not in first:
                    first[name] = (member.code, schema)
                elif first[name][1] != schema:
                    problems.append(
                        FieldError(
                            pointer="/items",
                            detail=f"The {what} {name!r} is defined differently by {first[name][0]!r} and "
                            f"{member.code!r}: one form asks it once, so they must agree.",
                        )
                    )
    return problems


async def publish_item(
    conn: Connection,
    item: Item,
    *,
    by: str,
    now: datetime,
    note: str | None = None,
    expected_version: int | None = None,
) -> Item:
    """Check an item and publish it (a new version unless nothing changed); every problem is
    one FieldError of a 400."""
    problems = await item_problems(conn, item)
    if problems:
        raise ValidationFailed(f"The item {item.code!r} cannot be published as it is.", errors=problems)
    return await catalog_store.save_item(
        conn, item, by=by, now=now, note=note, expected_version=expected_version
    )


async def publish_bundle(
    conn: Connection,
    bundle: Bundle,
    *,
    by: str,
    now: datetime,
    note: str | None = None,
    expected_version: int | None = None,
) -> Bundle:
    """Check a bundle and publish it, as `publish_item` does for an item."""
    problems = await bundle_problems(conn, bundle)
    if problems:
        raise ValidationFailed(f"The bundle {bundle.code!r} cannot be published as it is.", errors=problems)
    return await catalog_store.save_bundle(
        conn, bundle, by=by, now=now, note=note, expected_version=expected_version
    )
