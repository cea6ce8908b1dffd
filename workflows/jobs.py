"""The deadline scan: an arq cron job that fires due warnings and breaches.

Each batch is its own transaction, so a long catch-up (a worker that was off for a day) commits
as it goes; a timer is marked fired in the same transaction as its escalation, so it fires once.
"""

from __future__ import annotations

import logging

from onewindow.jobs import JobContext, record_failure
from workflows import engine

log = logging.getLogger(__name__)

_BATCH = 200
_MAX_BATCHES = 50  # the rest waits for the next minute; other jobs get their turn


async def fire_deadlines(ctx: JobContext) -> int:
    fired = 0
    try:
        for _ in range(_MAX_BATCHES):
            async with ctx["db"].transaction() as conn:
                count = await engine.fire_due_timers(conn, limit=_BATCH)
            fired += count
            if count < _BATCH:
                break
    except Exception:
        log.exception("deadline scan failed")
        await record_failure(ctx, "fire_deadlines")
        raise
    if fired:
        log.info("deadlines fired", extra={"fired": fired})
    return fired
