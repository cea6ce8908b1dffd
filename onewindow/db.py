"""The database kernel: an asyncpg pool with jsonb <-> msgspec codecs, and transactions at the boundary.

Store functions take a connection first and never commit. The boundary (a request's `conn`
dependency, a job's wrapper, the outbox drainer) opens one transaction and commits it or rolls
it back. In tests the same code runs on one connection inside a rolled-back transaction: a
nested `transaction()` in asyncpg is a SAVEPOINT, so nothing here needs to know.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from onewindow.errors import Unavailable
from onewindow.settings import Settings

# What store functions take: a plain connection or one borrowed from the pool (a proxy to one).
# asyncpg's classes are generic only in its stubs, hence the two spellings. At run time the alias
# is read only by litestar when a handler takes `conn: Connection`; it must pass the value
# through unchecked (a union of two classes is not something its validator accepts).
if TYPE_CHECKING:
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]
else:
    from litestar.params import SkipValidation

    Connection = SkipValidation[asyncpg.Connection | PoolConnectionProxy]
    Pool = asyncpg.Pool

# Errors that mean "the database is not reachable right now", not "the query is wrong".
# Class 08 is connection exceptions, class 57 operator intervention (shutdown, restart).
UNREACHABLE: tuple[type[Exception], ...] = (
    ConnectionError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
)
# The same, plus OSError: what connecting can raise (refused, socket file gone).
UNREACHABLE_ON_CONNECT: tuple[type[Exception], ...] = (OSError, *UNREACHABLE)

_JSONB_VERSION = b"\x01"


def _encode_jsonb(value: Any) -> bytes:
    return _JSONB_VERSION + msgspec.json.encode(value)


def _decode_jsonb(data: bytes) -> Any:
    return msgspec.json.decode(data[1:])


def _encode_json(value: Any) -> bytes:
    return msgspec.json.encode(value)


async def register_codecs(conn: Connection) -> None:
    """jsonb and json columns take and give Python values through msgspec (fast, and Structs encode)."""
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_encode_jsonb, decoder=_decode_jsonb, format="binary"
    )
    # json's binary wire format is its text: msgspec's bytes go as they are, both ways.
    await conn.set_type_codec(
        "json", schema="pg_catalog", encoder=_encode_json, decoder=msgspec.json.decode, format="binary"
    )


class Database(Protocol):
    """Where connections come from. The pool in production, one test connection in tests."""

    def connection(self) -> AbstractAsyncContextManager[Connection]:
        """A connection, no transaction: raises `Unavailable` when PostgreSQL cannot be reached."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        """A connection inside a transaction, committed when the block ends without an error."""
        ...

    async def close(self) -> None: ...


async def _keep_session(conn: asyncpg.Connection) -> None:
    # A transaction left open by a cancelled request must never reach the next one.
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class PoolDatabase:
    """The production `Database`: an asyncpg pool."""

    def __init__(self, pool: Pool, *, acquire_timeout: float) -> None:
        self.pool = pool
        self._acquire_timeout = acquire_timeout

    @classmethod
    async def open(cls, settings: Settings, dsn: str) -> PoolDatabase:
        """Create the pool and open `db_pool_min` connections."""
        pool = asyncpg.create_pool(
            dsn,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            command_timeout=settings.db_command_timeout,
            init=register_codecs,
            # asyncpg resets a connection on release (unlock, UNLISTEN, RESET ALL): one round
            # trip per request. Pooled connections never hold session state here (transaction-
            # scoped locks only; LISTEN and the migration lock use connections of their own).
            reset=_keep_session,
            server_settings={"application_name": "onewindow", "timezone": "UTC"},
        )
        await pool
        return cls(pool, acquire_timeout=settings.db_acquire_timeout)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        try:
            conn = await self.pool.acquire(timeout=self._acquire_timeout)
        except UNREACHABLE_ON_CONNECT as exc:
            raise Unavailable("The database cannot be reached; try again shortly.") from exc
        try:
            yield conn
        finally:
            await self.pool.release(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.pool.close(), timeout=10)
        except TimeoutError:
            self.pool.terminate()


async def connect(dsn: str, *, connect_timeout: float = 10) -> asyncpg.Connection[asyncpg.Record]:
    """A single connection with OneWindow's codecs (the migration runner, LISTEN, tools)."""
    conn: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(
        dsn, timeout=connect_timeout, server_settings={"application_name": "onewindow"}
    )
    await register_codecs(conn)
    return conn


RowT = TypeVar("RowT")


def row_as(record: Any, kind: type[RowT]) -> RowT:
    """A record as the `...Row` Struct of a store (its columns by name)."""
    return msgspec.convert(record, kind, from_attributes=True)


def rows_as(records: list[Any], kind: type[RowT]) -> list[RowT]:
    return [msgspec.convert(record, kind, from_attributes=True) for record in records]
