"""The migration runner: numbered plain-SQL files, applied in order, each in its own transaction.

Files are `NNNN_what_it_does.sql` in `migrations/`. `migrations/HEAD` names the newest file, so
two branches that each add a migration conflict in git instead of silently sharing a number.

Why the locks:
- A session-level advisory lock serialises every process that starts at once (several API
  replicas, the worker): one migrates, the others wait up to `migration_lock_wait` and then find
  nothing pending.
- Each migration runs with a short `lock_timeout`: DDL that waits behind a long transaction would
  otherwise queue every query that arrives after it, and take the city's services down while it
  waits. Failing fast and retrying the deploy is the better outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

import onewindow
from onewindow.db import Connection
from onewindow.errors import StartupError

# Any constant will do; it only has to be the same in every OneWindow process.
_ADVISORY_LOCK_KEY = 0x0E11D0_0001
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS public.schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations_dir() -> Path:
    """`migrations/` beside the packages in a checkout, or the copy a wheel carries."""
    package = Path(onewindow.__file__).resolve().parent
    for candidate in (package.parent / "migrations", package / "_migrations"):
        if candidate.is_dir():
            return candidate
    raise StartupError(f"no migrations directory found beside {package}")


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Read and check the files: names well-formed, numbers 1..n without gaps, HEAD naming the last."""
    directory = directory or migrations_dir()
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise StartupError(f"migration file {path.name} is not named NNNN_lowercase_words.sql")
        found.append(Migration(int(match.group(1)), path.stem, path.read_text(encoding="utf-8")))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise StartupError(
                f"migration numbering broken at {migration.name}.sql: expected {expected:04d}"
                " (numbers run 0001, 0002, ... without gaps or repeats)"
            )
    head = directory / "HEAD"
    if found and head.exists() and head.read_text().strip() != found[-1].name:
        raise StartupError(
            f"migrations/HEAD says {head.read_text().strip()} but the newest file is {found[-1].name}.sql"
        )
    return found


async def _take_lock(conn: Connection, wait: float) -> None:
    deadline = time.monotonic() + wait
    while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _ADVISORY_LOCK_KEY):
        if time.monotonic() > deadline:
            raise StartupError(
                f"another process has been migrating this database for over {wait:.0f} s; "
                "check it, or raise ONEWINDOW_MIGRATION_LOCK_WAIT"
            )
        await asyncio.sleep(0.2)


async def migrate(
    conn: Connection,
    *,
    lock_wait: float = 60.0,
    lock_timeout: str = "5s",
    migrations: list[Migration] | None = None,
) -> list[str]:
    """Apply pending migrations; return the names applied. Refuse to run on an edited history."""
    migrations = load_migrations() if migrations is None else migrations
    await _take_lock(conn, lock_wait)
    try:
        await conn.execute(_CREATE_TABLE)
        applied = {
            row["version"]: (row["name"], row["checksum"])
            for row in await conn.fetch("SELECT version, name, checksum FROM public.schema_migrations")
        }
        by_version = {m.version: m for m in migrations}
        for version, (name, checksum) in sorted(applied.items()):
            migration = by_version.get(version)
            if migration is None:
                raise StartupError(
                    f"migration {name} was applied to this database but its file is missing; "
                    "restore it (applied migrations are never removed)"
                )
            if migration.checksum != checksum:
                raise StartupError(
                    f"migration {migration.name}.sql was edited after it was applied "
                    "(checksum differs); put it back and add a new migration instead"
                )
        done: list[str] = []
        for migration in migrations:
            if migration.version in applied:
                continue
            try:
                async with conn.transaction():
                    # SET takes no parameters; the value is checked by Settings (digits and a unit).
                    await conn.execute(f"SET LOCAL lock_timeout = '{lock_timeout}'")
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO public.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
            except asyncpg.PostgresError as exc:
                raise StartupError(
                    f"migration {migration.name}.sql failed and was rolled back: {exc}"
                ) from exc
            done.append(migration.name)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _ADVISORY_LOCK_KEY)
