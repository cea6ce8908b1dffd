"""What every context's `http.py` shares: the app's resources and the transaction-per-request dependency."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

from litestar.datastructures import State
from redis.asyncio import Redis

from onewindow.db import Connection, Database
from onewindow.settings import Settings


@dataclass(frozen=True, slots=True)
class Resources:
    """Built once per process at start-up and kept in `app.state.resources`."""

    settings: Settings
    db: Database
    redis: Redis


def resources(state: State) -> Resources:
    found: Resources = state["resources"]
    return found


async def provide_conn(state: State) -> AsyncGenerator[Connection, None]:
    """One transaction per request: committed when the handler returns, rolled back if it raises.

    Litestar finishes this generator before the reply is sent, so a failed commit is an error
    reply, never a success the database does not have.
    """
    async with resources(state).db.transaction() as conn:
        yield conn


def provide_settings(state: State) -> Settings:
    return resources(state).settings
