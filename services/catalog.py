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

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from onewindow.db import Connection
from services import catalog_store

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
    "bundle",
    "item",
    "items_of",
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
