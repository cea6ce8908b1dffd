"""Start-up shared by every command: settings, logs, embedded servers, migrations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from onewindow.db import connect
from onewindow.embedded import EmbeddedServers
from onewindow.errors import StartupError
from onewindow.migrate import migrate
from onewindow.settings import Settings

log = logging.getLogger(__name__)


@contextmanager
def backing_services(settings: Settings) -> Iterator[Settings]:
    """Yield settings whose DATABASE_URL and REDIS_URL point at live servers, embedded if unset."""
    if not settings.embedded:
        yield settings
        return
    servers = EmbeddedServers(
        settings.data_dir, postgres=settings.database_url is None, redis=settings.redis_url is None
    )
    servers.start()
    try:
        yield settings.model_copy(
            update={
                "database_url": settings.database_url or servers.database_url,
                "redis_url": settings.redis_url or servers.redis_url,
            }
        )
    finally:
        servers.stop()


async def apply_migrations(settings: Settings) -> list[str]:
    try:
        conn = await asyncio.wait_for(connect(settings.dsn), timeout=30)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        # The URL is not repeated: it may carry a password.
        raise StartupError(f"cannot connect to PostgreSQL at DATABASE_URL: {exc}") from None
    try:
        applied = await migrate(
            conn, lock_wait=settings.migration_lock_wait, lock_timeout=settings.migration_lock_timeout
        )
    finally:
        await conn.close()
    for name in applied:
        log.info("migration applied", extra={"migration": name})
    return applied
