"""Helpers of the document and counter tests, on top of tests/services/conftest.py: real minimal
files (a PDF, a PNG, a JPEG) and drafts written through the applications' store, so the
document rules are tested whatever state the rest of the application flow is in."""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from onewindow.db import Connection
from services import application_store, catalog

# A one-page PDF (the smallest a reader opens).
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


# A 1x1 white PNG.
PNG = (
    b"\x89PNG\r\n\x1a\n"
    + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    + _png_chunk(b"IDAT", zlib.compress(b"\x00\xff\xff\xff"))
    + _png_chunk(b"IEND", b"")
)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
TEXT = b"just some text, not a document we accept\n"


async def make_draft(
    conn: Connection,
    *,
    applicant: str,
    items: Sequence[str],
    form: dict[str, Any],
    at: datetime,
    channel: str = "online",
    created_by: str | None = None,
    bundle: str | None = None,
) -> UUID:
    """A draft for the test catalog's `items` (current versions), as the applications' store
    writes one."""
    app = await application_store.insert_application(
        conn,
        application_id=uuid.uuid4(),
        applicant=applicant,
        created_by=created_by or applicant,
        channel=channel,  # type: ignore[arg-type]
        bundle=(bundle, 1) if bundle else None,
        form=form,
        now=at,
    )
    for position, code in enumerate(items, start=1):
        item = await catalog.item(conn, code)
        assert item is not None
        await application_store.insert_item(
            conn,
            application_id=app.id,
            position=position,
            item_code=item.code,
            item_version=item.version,
            department=item.department,
            fee_minor=item.fee_minor,
        )
    return app.id


async def set_status(conn: Connection, app_id: UUID, status: str) -> None:
    await conn.execute("UPDATE services.applications SET status = $2 WHERE id = $1", app_id, status)


BUSINESS_FORM = {"company_name": "Riverside Noodles", "address": "12 River Road, Demo City"}


def food_form(area: float) -> dict[str, Any]:
    return {**BUSINESS_FORM, "area": area}
