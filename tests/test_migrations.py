"""Migrations: numbering, a database built from nothing, and refusing an edited or missing history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from onewindow.db import connect
from onewindow.errors import StartupError
from onewindow.migrate import Migration, load_migrations, migrate, migrations_dir
from tests.conftest import create_database, drop_database


@pytest.fixture
async def empty_url(servers: tuple[str, str]) -> AsyncIterator[str]:
    admin_url, _ = servers
    url = await create_database(admin_url, prefix="onewindow_migrations")
    yield url
    await drop_database(admin_url, url)


def test_files_are_numbered_without_gaps_and_head_names_the_newest() -> None:
    directory = migrations_dir()
    migrations = load_migrations(directory)
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert (directory / "HEAD").read_text().strip() == migrations[-1].name


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"0001_a.sql": "", "0003_c.sql": ""}, "expected 0002"),
        ({"0001_a.sql": "", "0001_b.sql": ""}, "expected 0002"),
        ({"1_a.sql": ""}, "is not named NNNN_lowercase_words.sql"),
        ({"0001_a.sql": "", "0002_b.sql": "", "HEAD": "0001_a\n"}, "HEAD says 0001_a"),
    ],
)
def test_bad_numbering_is_refused(tmp_path: Path, files: dict[str, str], message: str) -> None:
    with pytest.raises(StartupError, match=message):
        load_migrations(_write(tmp_path / "m", files))


async def test_an_empty_database_is_built_from_the_migrations(empty_url: str) -> None:
    conn = await connect(empty_url)
    try:
        applied = await migrate(conn)
        assert applied == [m.name for m in load_migrations()]
        tables = {
            f"{r['table_schema']}.{r['table_name']}"
            for r in await conn.fetch(
                "SELECT table_schema, table_name FROM information_schema.tables"
                " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            )
        }
        assert {"public.schema_migrations", "onewindow.outbox", "onewindow.outbox_deliveries"} <= tables
        recorded = await conn.fetch("SELECT version, checksum FROM public.schema_migrations ORDER BY version")
        assert [(r["version"], r["checksum"]) for r in recorded] == [
            (m.version, m.checksum) for m in load_migrations()
        ]
        # Running again applies nothing.
        assert await migrate(conn) == []
    finally:
        await conn.close()


async def test_an_edited_applied_migration_stops_start_up(empty_url: str) -> None:
    conn = await connect(empty_url)
    try:
        first = Migration(1, "0001_create", "CREATE TABLE public.t (id int)")
        await migrate(conn, migrations=[first])
        edited = Migration(1, "0001_create", "CREATE TABLE public.t (id bigint)")
        with pytest.raises(StartupError, match=r"0001_create\.sql was edited after it was applied"):
            await migrate(conn, migrations=[edited])
        with pytest.raises(
            StartupError, match="0001_create was applied to this database but its file is missing"
        ):
            await migrate(conn, migrations=[])
    finally:
        await conn.close()


async def test_a_failing_migration_is_rolled_back_whole(empty_url: str) -> None:
    conn = await connect(empty_url)
    try:
        good = Migration(1, "0001_good", "CREATE TABLE public.good (id int)")
        bad = Migration(2, "0002_bad", "CREATE TABLE public.half (id int); SELECT no_such_function()")
        with pytest.raises(StartupError, match=r"0002_bad\.sql failed and was rolled back"):
            await migrate(conn, migrations=[good, bad])
        assert await conn.fetchval("SELECT to_regclass('public.good') IS NOT NULL")
        assert await conn.fetchval("SELECT to_regclass('public.half') IS NULL")
        assert await conn.fetchval("SELECT max(version) FROM public.schema_migrations") == 1
    finally:
        await conn.close()


async def test_concurrent_starts_migrate_once(empty_url: str) -> None:
    """Several processes starting at once: the advisory lock lets one migrate, the others find nothing."""
    migrations = [Migration(1, "0001_slow", "SELECT pg_sleep(0.3); CREATE TABLE public.once (id int)")]
    conns = [await connect(empty_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c, migrations=migrations) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, 1]
    finally:
        for c in conns:
            await c.close()


async def test_a_held_lock_makes_start_up_give_up_with_a_clear_message(empty_url: str) -> None:
    holder = await connect(empty_url)
    waiter = await connect(empty_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", 0x0E11D0_0001)
        with pytest.raises(StartupError, match="another process has been migrating"):
            await migrate(waiter, lock_wait=0.5, migrations=[])
    finally:
        await holder.close()
        await waiter.close()


async def test_ddl_waits_only_briefly_behind_other_transactions(empty_url: str) -> None:
    """The short lock_timeout: a migration blocked by a long transaction fails fast, not queues traffic."""
    setup = await connect(empty_url)
    await setup.execute("CREATE TABLE public.busy (id int)")
    blocker = await connect(empty_url)
    try:
        await blocker.execute("BEGIN; LOCK TABLE public.busy IN ACCESS SHARE MODE")
        alter = Migration(1, "0001_alter", "ALTER TABLE public.busy ADD COLUMN x int")
        with pytest.raises(StartupError, match="lock timeout"):
            await migrate(setup, lock_timeout="200ms", migrations=[alter])
    finally:
        await blocker.close()
        await setup.close()
