"""The background worker: the outbox drainer and the arq queue (jobs and periodic jobs).

`onewindow worker` runs it as its own process; in embedded/demo mode `onewindow serve` runs the
same thing inside the HTTP process. The drainer and the queue are supervised separately: Redis
being away stops jobs, not the delivery of events, and each comes back by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from arq.connections import RedisSettings
from arq.cron import CronJob, cron
from arq.worker import Worker

from channels import ioc_endpoints, ioc_feed, ioc_push, notify
from channels.notify_delivery import prune_notifications, send_notifications
from grid import api as grid_api
from onewindow import idempotency
from onewindow.db import Connection, Database, PoolDatabase
from onewindow.events import Subscription
from onewindow.jobs import JobContext, transactional
from onewindow.outbox import Drainer, DrainPolicy, prune
from onewindow.settings import Settings
from services import api as services_api
from workflows import api as workflows_api
from workflows.jobs import fire_deadlines

log = logging.getLogger(__name__)

_RESTART_DELAY_MAX = 30.0


@transactional
async def prune_outbox(conn: Connection, settings: Settings) -> int:
    """Daily: forget delivered events past the retention (dead letters are kept for operators)."""
    deleted = await prune(conn, older_than_days=settings.outbox_retention_days)
    log.info("outbox pruned", extra={"deleted": deleted})
    return deleted


@transactional
async def prune_idempotency_keys(conn: Connection, settings: Settings) -> int:
    """Daily: clients retry within minutes; a week of keys is plenty."""
    return await idempotency.prune(conn, older_than_days=7)


def functions() -> list[Callable[..., Awaitable[Any]]]:
    """Every arq task the contexts offer. Contexts add theirs here as their `jobs` modules appear."""
    return [prune_outbox, prune_idempotency_keys, fire_deadlines, send_notifications, prune_notifications]


def cron_jobs() -> list[CronJob]:
    return [
        cron(prune_outbox, hour={3}, minute={17}, run_at_startup=False),  # type: ignore[arg-type]
        cron(prune_idempotency_keys, hour={3}, minute={27}, run_at_startup=False),  # type: ignore[arg-type]
        cron(prune_notifications, hour={3}, minute={37}, run_at_startup=False),  # type: ignore[arg-type]
        # Every minute, and at start: a worker that was off catches up on what fell due meanwhile.
        cron(fire_deadlines, second={0}, run_at_startup=True, unique=True),
        # Notifications queued by the outbox subscriber, sent after its commit: every 5 s.
        cron(send_notifications, second=set(range(0, 60, 5)), run_at_startup=True, unique=True),
    ]


def subject_kinds() -> list[workflows_api.SubjectKind]:
    """The contexts whose work runs on the workflow engine (services' applications, grid's cases)."""
    return [grid_api.subject_kind(), *services_api.subject_kinds()]


async def install_contexts(conn: Connection, settings: Settings | None = None) -> None:
    """What contexts ship as data and must find in every database (grid's case loop; with the
    settings, the IOC endpoint they configure), after the migrations, in one transaction; idempotent."""
    async with conn.transaction():
        await grid_api.install(conn)
        await services_api.install(conn)
        if settings is not None:
            await ioc_endpoints.configure(conn, settings)


def configure_contexts(settings: Settings) -> None:
    """Per-process set-up of the contexts that need it, in every process (HTTP and worker)."""
    workflows_api.configure(settings, subject_kinds())
    services_api.configure(settings)
    notify.configure(settings)


def subscriptions() -> list[Subscription]:
    """Every outbox subscriber (notifications, the IOC feed, ...). Registered here, at the root."""
    return [notify.subscription(), ioc_feed.subscription()]


class BackgroundWorker:
    """Runs the drainer and the arq worker until `stop()`; restarts either after a failure."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        subscribers: Sequence[Subscription] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.drainer = Drainer(
            db,
            settings.dsn,
            subscriptions() if subscribers is None else subscribers,
            DrainPolicy.from_settings(settings),
            sweep_seconds=settings.outbox_sweep_seconds,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._arq: Worker | None = None

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._supervise("outbox drainer", self.drainer.run)),
            asyncio.create_task(self._supervise("job queue", self._run_queue)),
            # The IOC feed's webhooks: POSTs outside any transaction, so a loop of its own, not a job.
            asyncio.create_task(self._supervise("ioc push", ioc_push.Pusher(self.db, self.settings).run)),
        ]

    async def _run_queue(self) -> None:
        ctx: JobContext = {"settings": self.settings, "db": self.db}
        self._arq = Worker(
            functions=functions(),  # type: ignore[arg-type]
            cron_jobs=cron_jobs(),
            redis_settings=RedisSettings.from_dsn(self.settings.redis_dsn),
            queue_name=self.settings.queue_name,
            ctx=ctx,
            handle_signals=False,
            # Cron times are the city's; arq annotates datetime.timezone but takes any tzinfo.
            timezone=ZoneInfo(self.settings.timezone),  # type: ignore[arg-type]
            max_jobs=10,
            job_timeout=300,
        )
        try:
            await self._arq.main()
        finally:
            with contextlib.suppress(Exception):
                await self._arq.close()

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        delay = 0.5
        while True:
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task stopped; restarting", extra={"task": name, "delay": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RESTART_DELAY_MAX)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def wait(self) -> None:
        await asyncio.gather(*self._tasks)


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """`onewindow worker`: run until `stop` is set (SIGINT/SIGTERM)."""
    configure_contexts(settings)
    db = await PoolDatabase.open(settings, settings.dsn)
    worker = BackgroundWorker(settings, db)
    worker.start()
    log.info("worker started", extra={"queue": settings.queue_name})
    try:
        await stop.wait()
    finally:
        await worker.stop()
        await db.close()
        log.info("worker stopped")
