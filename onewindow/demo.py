"""The demo city: `onewindow seed --demo` and `onewindow serve --demo`.

Every seeder is idempotent (it upserts by a natural key), and all of them run in one
transaction, so running the seed twice changes nothing and a failed seed leaves nothing half
done. Contexts add their seeders to `SEEDERS` as they land (departments, accounts, catalog,
grids, services' catalog and demo applications, Open311 services).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from channels import open311_seed
from grid import seed as grid_seed
from identity import seed as identity_seed
from onewindow.db import Connection, Database
from onewindow.settings import Settings
from onewindow.worker import configure_contexts
from services import seed as services_seed
from workflows import seed as workflows_seed

log = logging.getLogger(__name__)

# A seeder may return what it seeded (for its own tests); the demo ignores it.
Seeder = Callable[[Connection, Settings], Awaitable[object]]

SEEDERS: list[tuple[str, Seeder]] = [
    ("identity", identity_seed.seed_demo),
    ("workflows", workflows_seed.seed_demo),
    ("grid", grid_seed.seed_demo),
    ("services catalog", services_seed.seed_catalog),
    ("services applications", services_seed.seed_applications),
    ("open311", open311_seed.seed_demo),
]


async def seed_demo(db: Database, settings: Settings) -> list[str]:
    """Run every seeder in one transaction; return their names."""
    configure_contexts(settings)  # the seeders drive the workflow engine
    async with db.transaction() as conn:
        for name, seeder in SEEDERS:
            await seeder(conn, settings)
            log.info("demo seeded", extra={"part": name})
    return [name for name, _ in SEEDERS]
