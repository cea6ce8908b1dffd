"""Helpers for the end-to-end tests: start `onewindow` as a child process, watch it, talk to it.

The child's output goes to a file, not a pipe: a server that logs more than a pipe buffer holds
would block on a pipe nobody reads, and the file is still there to show when a test fails.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil  # type: ignore[import-untyped]  # no stubs in the dev dependencies
import pytest

from onewindow.db import connect
from onewindow.migrate import migrate
from onewindow.settings import Settings
from tests.conftest import (
    REPO,
    create_database,
    drop_database,
    free_port,
    onewindow_command,
    server_env,
    stop,
    wait_ready,
)

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion in a thread of its own.

    The e2e tests are synchronous (they block on child processes and plain HTTP). `asyncio.run`
    in the test's own thread would reset that thread's current event loop, which pytest-asyncio's
    session loop still uses for the other tests; a private thread keeps the two apart.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass
class Child:
    """A running `onewindow` command and the file its output (stdout and stderr) goes to."""

    process: subprocess.Popen[str]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def launch(args: Sequence[str], env: dict[str, str], log: Path) -> Child:
    """Start `python -m onewindow <args>` with exactly `env`; output appends to `log`."""
    with log.open("a") as sink:
        process = subprocess.Popen(
            [*onewindow_command(), *args],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return Child(process, log)


@dataclass
class Served:
    """A `onewindow serve` that has answered /readyz with 200."""

    child: Child
    base_url: str
    ready_after: float


def serve(env: dict[str, str], log: Path, *, timeout: float = 60.0, extra: Sequence[str] = ()) -> Served:
    """Start `onewindow serve` on a free port and wait for /readyz 200, showing its log if it never comes."""
    port = free_port()
    child = launch(["serve", "--port", str(port), *extra], env, log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        took = wait_ready(base_url, child.process, timeout)
    except pytest.fail.Exception as exc:
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait()
        pytest.fail(f"{exc}\n--- onewindow output ---\n{child.output()}")
    return Served(child, base_url, took)


def serve_testapp(env: dict[str, str], log: Path, *, timeout: float = 30.0) -> Served:
    """Serve tests/e2e/testapp.py (OneWindow's app plus test-only routes) with uvicorn."""
    port = free_port()
    uvicorn = [sys.executable, "-m", "uvicorn", "tests.e2e.testapp:app", "--factory", "--no-server-header"]
    with log.open("a") as sink:
        process = subprocess.Popen(
            [*uvicorn, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    child = Child(process, log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        took = wait_ready(base_url, process, timeout)
    except pytest.fail.Exception as exc:
        if process.poll() is None:
            process.kill()
            process.wait()
        pytest.fail(f"{exc}\n--- uvicorn output ---\n{child.output()}")
    return Served(child, base_url, took)


@pytest.fixture
def live_server(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """The real server (`onewindow serve`, uvicorn) on a free loopback port, on the test database."""
    served = serve(server_env(settings, tmp_path), tmp_path / "serve.log")
    try:
        yield served.base_url
    finally:
        stop(served.child.process)


def run_command(
    args: Sequence[str], env: dict[str, str], timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run a `onewindow` command that is expected to finish by itself."""
    return subprocess.run(
        [*onewindow_command(), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for_status(url: str, status: int, timeout: float) -> tuple[httpx.Response, float]:
    """Poll `url` until it answers `status`; return that reply and the seconds it took."""
    started = time.monotonic()
    seen: list[str] = []
    while time.monotonic() - started < timeout:
        try:
            reply = httpx.get(url, timeout=5)
        except httpx.HTTPError as exc:
            seen.append(type(exc).__name__)
        else:
            if reply.status_code == status:
                return reply, time.monotonic() - started
            seen.append(str(reply.status_code))
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer {status} within {timeout} s; saw {seen[-10:]}")


def processes_mentioning(needle: str) -> list[psutil.Process]:
    """Live processes (zombies excluded) whose command line contains `needle`."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if needle in " ".join(proc.info["cmdline"] or ()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_gone(needle: str, timeout: float = 5.0) -> list[psutil.Process]:
    """Processes mentioning `needle` that are still alive after `timeout` (the init process may
    take a moment to reap daemons whose parent has just exited)."""
    deadline = time.monotonic() + timeout
    left = processes_mentioning(needle)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = processes_mentioning(needle)
    return left


async def _migrated(url: str) -> None:
    conn = await connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()


@pytest.fixture
def empty_database(servers: tuple[str, str]) -> Iterator[str]:
    """A database that exists and holds nothing yet, dropped after the test."""
    admin_url, _ = servers
    url = run_async(create_database(admin_url, prefix="onewindow_e2e"))
    try:
        yield url
    finally:
        run_async(drop_database(admin_url, url))


@pytest.fixture
def migrated_database(empty_database: str) -> str:
    """A fresh database built from the migrations, for one test (dropped afterwards)."""
    run_async(_migrated(empty_database))
    return empty_database


@dataclass(frozen=True)
class Provider:
    """A running OneWindow acting as the OpenID provider, and what its discovery document says."""

    base_url: str
    database_url: str
    metadata: dict[str, Any]

    def endpoint(self, name: str) -> str:
        url: str = self.metadata[name]
        return url


@contextmanager
def running_provider(
    servers: tuple[str, str], settings: Settings, workdir: Path, *, prefix: str, demo_mode: bool
) -> Iterator[Provider]:
    """`onewindow serve` on a database of its own, its public URL its real address.

    Its own database: the demo seed and the sign-ins and tokens of these tests are committed, and
    the rolled-back tests must not see them. `demo_mode=False` seeds the demo city first and
    serves without `--demo`, so staff need their second factor as in production.
    """
    admin_url, _ = servers
    database_url = run_async(create_database(admin_url, prefix=prefix))
    # The port is chosen first: the issuer and the console's redirect URI are made from it.
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = server_env(settings, workdir / "data") | {
        "DATABASE_URL": database_url,
        "ONEWINDOW_PUBLIC_URL": base_url,
        # Cheap argon2id for seeding and signing in: what a login costs is the benchmark's
        # business. Seed and server agree, so a sign-in does not rehash.
        "ONEWINDOW_PASSWORD_TIME_COST": str(settings.password_time_cost),
        "ONEWINDOW_PASSWORD_MEMORY_KIB": str(settings.password_memory_kib),
    }
    try:
        if not demo_mode:
            seeded = run_command(["seed", "--demo"], env)
            assert seeded.returncode == 0, seeded.stdout + seeded.stderr
        args = ["serve", "--port", str(port), *(["--demo"] if demo_mode else [])]
        child = launch(args, env, workdir / "serve.log")
        try:
            try:
                wait_ready(base_url, child.process, timeout=60)
            except pytest.fail.Exception as exc:
                pytest.fail(f"{exc}\n--- onewindow output ---\n{child.output()}")
            metadata = httpx.get(base_url + "/.well-known/openid-configuration", timeout=5).json()
            yield Provider(base_url, database_url, metadata)
        finally:
            stop(child.process)
    finally:
        run_async(drop_database(admin_url, database_url))
