"""The job boundary: an arq task body runs in one transaction, like a request; failures are counted."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import redis.exceptions

from onewindow.db import Connection, Database
from onewindow.metrics import JOB_FAILURES_KEY
from onewindow.settings import Settings

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

JobContext = dict[str, Any]


def transactional(
    fn: Callable[Concatenate[Connection, Settings, P], Awaitable[R]],
) -> Callable[Concatenate[JobContext, P], Awaitable[R]]:
    """Wrap `fn(conn, settings, ...)` as an arq task `task(ctx, ...)` running in one transaction."""

    @functools.wraps(fn)
    async def job(ctx: JobContext, /, *args: P.args, **kwargs: P.kwargs) -> R:
        db: Database = ctx["db"]
        try:
            async with db.transaction() as conn:
                return await fn(conn, ctx["settings"], *args, **kwargs)
        except Exception:
            log.exception("job failed", extra={"job": fn.__name__})
            await record_failure(ctx, fn.__name__)
            raise

    return job


async def record_failure(ctx: JobContext, job: str) -> None:
    """Count a failure in Redis so every process's /metrics can show it; never mask the real error."""
    connection = ctx.get("redis")  # arq puts its pool there; a direct call may not
    if connection is None:
        return
    with contextlib.suppress(redis.exceptions.RedisError, OSError):
        await connection.hincrby(JOB_FAILURES_KEY, job, 1)
