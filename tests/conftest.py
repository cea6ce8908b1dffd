"""The test harness: real PostgreSQL and Redis, a database built from the migrations once per run.

With DATABASE_URL / REDIS_URL set, those servers are used (a fresh database is created for the
run and dropped at the end); without them, embedded servers are started in a temporary
directory, exactly as OneWindow itself does. Each test gets one connection inside a
transaction that is rolled back at the end; the app's own transactions become savepoints.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.types import ControllerRouterHandler
from redis.asyncio import Redis

from identity.keys import KeyRing, ensure_key
from onewindow.app import create_app
from onewindow.db import Connection, PoolDatabase, connect
from onewindow.embedded import EmbeddedServers
from onewindow.migrate import migrate
from onewindow.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
# The master secret of the test run (signing keys, personal data): fixed, so failures reproduce.
TEST_SECRET = "test-secret-for-onewindow-only-0123456789abcdef"


def with_database(url: str, name: str) -> str:
    """The same server URL, another database (works for host= sockets in the query too)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(admin PostgreSQL URL, Redis URL): the machine's when set, else embedded ones."""
    database_url = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    embedded = None
    if not database_url or not redis_url:
        embedded = EmbeddedServers(
            tmp_path_factory.mktemp("embedded"), postgres=not database_url, redis=not redis_url
        )
        embedded.start()
        database_url = database_url or embedded.database_url
        redis_url = redis_url or embedded.redis_url
    assert database_url
    assert redis_url
    try:
        yield database_url, redis_url
    finally:
        if embedded is not None:
            embedded.stop()


async def create_database(admin_url: str, prefix: str = "onewindow_test") -> str:
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return with_database(admin_url, name)


async def drop_database(admin_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def database_url(servers: tuple[str, str]) -> AsyncIterator[str]:
    """A database built from the migrations, once per run."""
    admin_url, _ = servers
    url = await create_database(admin_url)
    conn = await connect(url)
    try:
        await migrate(conn)
        await ensure_key(conn, TEST_SECRET.encode(), grace=timedelta(minutes=6))
    finally:
        await conn.close()
    yield url
    await drop_database(admin_url, url)


@pytest.fixture(scope="session")
def redis_url(servers: tuple[str, str]) -> str:
    return servers[1]


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp_path_factory.mktemp("data"),
        # Each run has its own queue and keys, so a shared Redis is not disturbed.
        queue_name=f"onewindow:test:{secrets.token_hex(4)}",
        log_format="text",
        outbox_sweep_seconds=0.2,
        secret_key=TEST_SECRET,
        # Cheap password hashing: the tests check the rules, not argon2's cost.
        password_time_cost=1,
        password_memory_kib=8192,
    )


class RollbackDatabase:
    """The `Database` of a test: one connection, already inside a transaction that is rolled back.

    Requests are served one at a time on it (a lock), which is what one asyncpg connection allows.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        async with self._lock:
            yield self.conn

    def connection(self) -> AbstractAsyncContextManager[Connection]:
        return self._connection()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        async with self._lock, self.conn.transaction():
            yield self.conn

    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        return self._transaction()

    async def close(self) -> None:
        return None


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[Connection]:
    """A connection inside a transaction that is rolled back when the test ends."""
    connection = await connect(database_url)
    transaction = connection.transaction()
    await transaction.start()
    try:
        yield connection
    finally:
        await transaction.rollback()
        await connection.close()


@pytest.fixture
def db(conn: Connection) -> RollbackDatabase:
    return RollbackDatabase(conn)


@pytest.fixture
async def ring(db: RollbackDatabase) -> KeyRing:
    """The provider's signing keys, on the test's database (tokens the app under test accepts)."""
    keys = KeyRing(db, TEST_SECRET.encode())
    await keys.load()
    return keys


@pytest.fixture
async def committing_db(database_url: str) -> AsyncIterator[PoolDatabase]:
    """A real pool whose transactions commit: for the outbox, LISTEN/NOTIFY and SKIP LOCKED.

    What a test commits through it is removed afterwards, so the rolled-back tests see a clean
    outbox.
    """
    settings = load_settings(database_url=database_url, db_pool_max=5)
    database = await PoolDatabase.open(settings, database_url)
    try:
        yield database
    finally:
        async with database.connection() as c:
            await c.execute("TRUNCATE onewindow.outbox, onewindow.outbox_deliveries")
        await database.close()


def build_app(
    settings: Settings, db: RollbackDatabase, handlers: Sequence[ControllerRouterHandler] = ()
) -> Litestar:
    return create_app(settings, db=db, extra_handlers=handlers)


@asynccontextmanager
async def app_client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client calling `app` in this event loop (litestar's own test client runs the app
    in a thread with its own loop, where the test's connection cannot follow)."""
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    """Run the ASGI lifespan protocol in a task of its own: start-up and shutdown then happen in
    one task, whichever tasks pytest uses for a fixture's set-up and teardown."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive() -> dict[str, str]:
        return await inbox.get()

    async def send(message: dict[str, Any]) -> None:
        await outbox.put(message)

    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))  # type: ignore[arg-type]
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"app did not start: {started.get('message')}")
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


@pytest.fixture
async def client(settings: Settings, db: RollbackDatabase) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(build_app(settings, db)) as http:
        yield http


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    connection = Redis.from_url(redis_url)
    try:
        yield connection
    finally:
        await connection.aclose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def onewindow_command() -> list[str]:
    return [sys.executable, "-m", "onewindow"]


def clean_env(**overrides: str) -> dict[str, str]:
    """The environment for a child OneWindow: no inherited OneWindow/URL settings unless given."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ONEWINDOW_") and key not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(overrides)
    return env


def wait_ready(base_url: str, process: subprocess.Popen[Any], timeout: float = 60.0) -> float:
    """Poll /readyz until 200; return the seconds it took. Fails early if the process dies."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"OneWindow exited with {process.returncode}:\n{output}")
        try:
            if httpx.get(base_url + "/readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{base_url}/readyz not 200 within {timeout} s")


def stop(process: subprocess.Popen[Any], sig: int = 2, timeout: float = 30.0) -> int:
    """Send `sig` (SIGINT, as Ctrl-C does) and wait; kill if it does not stop in time."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"OneWindow did not stop within {timeout} s of a signal")
    return process.returncode


def server_env(settings: Settings, data_dir: Path) -> dict[str, str]:
    """The environment for a child `onewindow` on the test database and the run's Redis queue."""
    return clean_env(
        DATABASE_URL=settings.dsn,
        REDIS_URL=settings.redis_dsn,
        ONEWINDOW_DATA_DIR=str(data_dir),
        ONEWINDOW_QUEUE_NAME=settings.queue_name,
        ONEWINDOW_LOG_LEVEL="WARNING",
        ONEWINDOW_SECRET_KEY=TEST_SECRET,  # the test database's signing key is encrypted with it
    )
