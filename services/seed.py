"""The demo city's service catalog (services/data/catalog.yaml), published at demo start.

Idempotent: every item and bundle goes through the same checks as an administrator's edit, and
an item equal to its current version is not a change, so seeding at every start adds no
versions; an edited YAML file publishes the edited entries as their next versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import msgspec
import yaml

from onewindow.db import Connection
from onewindow.settings import Settings
from services import catalog
from workflows import api as workflows

__all__ = ["SEEDED_BY", "DemoCatalog", "demo_catalog", "seed_catalog"]

SEEDED_BY = "demo-seed"


@dataclass(frozen=True, slots=True)
class DemoCatalog:
    items: list[catalog.Item]
    bundles: list[catalog.Bundle]


def demo_catalog() -> DemoCatalog:
    """The catalog as written in services/data/catalog.yaml (the `fields` and `media` sections
    only hold the YAML anchors the items share)."""
    text = resources.files("services").joinpath("data", "catalog.yaml").read_text(encoding="utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return DemoCatalog(
        items=msgspec.convert(document.get("items") or [], list[catalog.Item]),
        bundles=msgspec.convert(document.get("bundles") or [], list[catalog.Bundle]),
    )


async def seed_catalog(conn: Connection, settings: Settings) -> DemoCatalog:
    """Publish the demo catalog (the departments must exist: identity's demo seed runs first).
    Returns what is published now. `settings` is taken for the demo's seeding signature; the
    catalog itself needs none."""
    del settings
    demo = demo_catalog()
    now = workflows.now()
    items = [
        await catalog.publish_item(conn, item, by=SEEDED_BY, now=now, note="demo catalog")
        for item in demo.items
    ]
    bundles = [
        await catalog.publish_bundle(conn, bundle, by=SEEDED_BY, now=now, note="demo catalog")
        for bundle in demo.bundles
    ]
    return DemoCatalog(items=items, bundles=bundles)
