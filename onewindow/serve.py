"""Start-up shared by every command: settings, logs, embedded servers, migrations."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import asyncpg
from pydantic import SecretStr

from identity.keys import ensure_key
from onewindow.db import connect
from onewindow.embedded import EmbeddedServers
from onewindow.errors import StartupError
from onewindow.migrate import migrate
from onewindow.settings import Settings
from onewindow.worker import install_contexts

log = logging.getLogger(__name__)


def ensure_secret_key(settings: Settings) -> Settings:
    """The master secret: from ONEWINDOW_SECRET_KEY, or in development one made once and kept
    in the data directory (readable by its owner only), so signing keys and encrypted personal
    data survive restarts. Production refuses to start without it."""
    if settings.secret_key is not None:
        return settings
    if settings.env == "production":
        raise StartupError(
            "ONEWINDOW_SECRET_KEY must be set in production (32+ random characters, e.g. the output of "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`), and kept safe: "
            "it decrypts the signing keys and personal data"
        )
    path = settings.data_dir / "secret.key"
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        value = path.read_text().strip()
    except OSError as exc:
        raise StartupError(
            f"data directory {settings.data_dir} is not writable ({exc.strerror}), so the development "
            "secret key cannot be kept there; set ONEWINDOW_DATA_DIR, or ONEWINDOW_SECRET_KEY"
        ) from None
    log.warning("using the development secret key", extra={"path": str(path)})
    return settings.model_copy(update={"secret_key": SecretStr(value)})


@contextmanager
def backing_services(settings: Settings) -> Iterator[Settings]:
    """Yield settings whose DATABASE_URL and REDIS_URL point at live servers, embedded if unset,
    and with the master secret resolved."""
    if not settings.embedded:
        yield ensure_secret_key(settings)
        return
    servers = EmbeddedServers(
        settings.data_dir, postgres=settings.database_url is None, redis=settings.redis_url is None
    )
    servers.start()
    try:
        # After the servers: the data directory is ours (locked) before anything is written to it.
        yield ensure_secret_key(
            settings.model_copy(
                update={
                    "database_url": settings.database_url or servers.database_url,
                    "redis_url": settings.redis_url or servers.redis_url,
                }
            )
        )
    finally:
        servers.stop()


def token_grace(settings: Settings) -> timedelta:
    """How long a retired signing key stays published: until every token it signed has expired."""
    return timedelta(seconds=max(settings.access_token_seconds, settings.id_token_seconds) + 60)


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
        # A new database gets its first signing key here, so no request ever finds none.
        await ensure_key(conn, settings.master_secret, grace=token_grace(settings))
        await install_contexts(conn, settings)
    finally:
        await conn.close()
    for name in applied:
        log.info("migration applied", extra={"migration": name})
    return applied
