"""Open311 api keys as stored (a digest, never the key), and the demo city's key.

The demo city's Open311 services need no seeding of their own: every citizen-reportable case
category is a service, and grid's demo categories carry their attributes.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Final

from channels import open311_store as store
from onewindow.db import Connection
from onewindow.settings import Settings

KEY_PREFIX: Final = "o311_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> bytes:
    """Keys are 256 random bits (the demo's excepted), so a plain SHA-256 is enough to store them:
    nobody can find a key from its digest, and a lookup is one index probe."""
    return hashlib.sha256(key.encode()).digest()


def key_prefix(key: str) -> str:
    return key[:9]


async def seed_demo(conn: Connection, settings: Settings) -> None:
    """The demo app's key (`ONEWINDOW_DEMO_OPEN311_KEY`); idempotent."""
    key = settings.demo_open311_key.get_secret_value()
    await store.insert_key(
        conn, app="demo", digest=key_digest(key), prefix=key_prefix(key), rate_per_minute=None, by="demo"
    )
