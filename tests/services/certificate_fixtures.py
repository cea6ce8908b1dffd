"""Helpers of the certificate, rating and statistics tests, on top of tests/services/conftest.py
(the city, its people, the test catalog, `bearer`, `http`): applications and their items written
straight into the tables. These tests judge what comes after a decision (certificates, ratings,
figures), not how an application gets there, so they do not depend on the review's workflow."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import msgspec

from onewindow.db import Connection
from tests.services.conftest import ITEMS

DEPARTMENT_OF = {code: item.department for code, item in ITEMS.items()}


class Decided(msgspec.Struct, kw_only=True):
    """One application item as the test wants it (an item code of the test catalog)."""

    item: str
    status: str = "approved"
    decided_at: datetime | None = None
    decided_by: str | None = "officer"
    working_days: int | None = 3
    on_time: bool | None = True
    corrections: int = 0


async def insert_application(
    conn: Connection,
    *,
    applicant: str,
    items: Sequence[Decided],
    at: datetime,
    status: str = "decided",
    number: str | None = None,
) -> tuple[UUID, list[UUID]]:
    """An application submitted at `at` and its items (decided at `at` unless they say)."""
    app_id = uuid.uuid4()
    decided = status == "decided"
    await conn.execute(
        "INSERT INTO services.applications (id, number, applicant, created_by, channel, status, outcome,"
        " created_at, updated_at, submitted_at, decided_at)"
        " VALUES ($1, $2, $3, $3, 'online', $4, $5, $6, $6, $6, $7)",
        app_id,
        number or f"YC-2026-{uuid.uuid4().int % 1_000_000:06d}",
        applicant,
        status,
        "approved" if decided else None,
        at,
        at if decided else None,
    )
    ids: list[UUID] = []
    for position, entry in enumerate(items, start=1):
        item_id = uuid.uuid4()
        final = entry.status in ("approved", "rejected", "withdrawn")
        await conn.execute(
            "INSERT INTO services.application_items (id, application_id, position, item_code, item_version,"
            " department, status, started_at, decided_at, decided_by, working_days, on_time, corrections)"
            " VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, $9, $10, $11, $12)",
            item_id,
            app_id,
            position,
            entry.item,
            DEPARTMENT_OF[entry.item],
            entry.status,
            at,
            (entry.decided_at or at) if final else None,
            entry.decided_by if final else None,
            entry.working_days if final else None,
            entry.on_time if final else None,
            entry.corrections,
        )
        ids.append(item_id)
    return app_id, ids
