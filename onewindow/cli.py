"""`onewindow`: serve, worker, migrate, seed."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
from collections.abc import Sequence

from onewindow.errors import StartupError
from onewindow.logs import configure_logging
from onewindow.serve import apply_migrations, backing_services
from onewindow.settings import Settings, SettingsError, load_settings

log = logging.getLogger("onewindow")


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onewindow", description="OneWindow: a city's citizen services backend."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API (and, when embedded or --demo, the worker)")
    serve.add_argument("--demo", action="store_true", help="seed the demo city on start (idempotent)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=_positive, default=1, help="HTTP worker processes")

    commands.add_parser("worker", help="run the background worker: outbox delivery, jobs, periodic jobs")
    commands.add_parser("migrate", help="apply pending database migrations and exit")

    keys = commands.add_parser("keys", help="signing keys of the OpenID Connect provider")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    rotate = key_commands.add_parser(
        "rotate", help="make a new signing key; the old one stays published until its tokens expire"
    )
    rotate.add_argument(
        "--if-due",
        action="store_true",
        help="only when the active key is older than ONEWINDOW_KEY_ROTATION_DAYS",
    )

    seed = commands.add_parser("seed", help="load data into the database")
    seed.add_argument("--demo", action="store_true", required=True, help="the demo city (idempotent)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings)
        if args.command == "serve":
            demo = args.demo or settings.demo
            _serve(settings, host=args.host, port=args.port, workers=args.workers, demo=demo)
        elif args.command == "worker":
            with backing_services(settings) as live:
                asyncio.run(_worker(live))
        elif args.command == "migrate":
            with backing_services(settings) as live:
                applied = asyncio.run(apply_migrations(live))
            print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))  # noqa: T201
        elif args.command == "keys":
            with backing_services(settings) as live:
                kid = asyncio.run(_rotate(live, if_due=args.if_due))
            print(f"new signing key {kid}" if kid else "the active signing key is not due for rotation")  # noqa: T201
        elif args.command == "seed":
            with backing_services(settings) as live:
                parts = asyncio.run(_seed(live))
            print("demo city seeded: " + (", ".join(parts) if parts else "nothing to seed yet"))  # noqa: T201
    except SettingsError as exc:
        print(f"onewindow: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except StartupError as exc:
        print(f"onewindow: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


async def _seed(settings: Settings) -> list[str]:
    from onewindow.db import PoolDatabase  # noqa: PLC0415
    from onewindow.demo import seed_demo  # noqa: PLC0415

    await apply_migrations(settings)
    db = await PoolDatabase.open(settings, settings.dsn)
    try:
        return await seed_demo(db, settings)
    finally:
        await db.close()


async def _rotate(settings: Settings, *, if_due: bool) -> str | None:
    from datetime import timedelta  # noqa: PLC0415

    from identity.keys import create_key, rotate_if_due  # noqa: PLC0415
    from onewindow.db import connect  # noqa: PLC0415
    from onewindow.serve import token_grace  # noqa: PLC0415

    await apply_migrations(settings)
    conn = await connect(settings.dsn)
    try:
        async with conn.transaction():
            if if_due:
                return await rotate_if_due(
                    conn,
                    settings.master_secret,
                    grace=token_grace(settings),
                    max_age=timedelta(days=settings.key_rotation_days),
                )
            return await create_key(conn, settings.master_secret, grace=token_grace(settings))
    finally:
        await conn.close()


async def _worker(settings: Settings) -> None:
    from onewindow import worker  # noqa: PLC0415

    await apply_migrations(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await worker.run(settings, stop)


def _stop_like_ctrl_c(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _serve(settings: Settings, *, host: str, port: int, workers: int, demo: bool) -> None:
    import uvicorn  # noqa: PLC0415

    from onewindow.app import create_app  # noqa: PLC0415

    # SIGTERM (docker stop, systemd) must stop as cleanly as Ctrl-C. uvicorn shuts down on it,
    # then raises it again under the handler it found; left at the default, that kills the
    # process before the embedded servers are stopped. As KeyboardInterrupt, uvicorn.run
    # swallows it and returns, and the `with` below shuts the servers down.
    signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
    with backing_services(settings) as started:
        # Embedded or demo: one command runs everything, so the worker runs in-process.
        in_process = settings.run_worker or settings.embedded or demo
        live = started.model_copy(update={"run_worker": in_process, "demo": demo})
        asyncio.run(_seed(live) if demo else apply_migrations(live))
        log.info("serving", extra={"url": f"http://{host}:{port}", "workers": workers})
        if workers == 1:
            uvicorn.run(create_app(live), host=host, port=port, log_config=None, server_header=False)
            return
        # Several processes: each builds its settings from the environment, so hand the live
        # servers and the worker switch down that way; metrics aggregate through a shared dir.
        metrics_dir = live.data_dir.resolve() / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ.update(
            {
                "DATABASE_URL": live.dsn,
                "REDIS_URL": live.redis_dsn,
                "ONEWINDOW_RUN_WORKER": "true" if live.run_worker else "false",
                "ONEWINDOW_SECRET_KEY": live.master_secret.decode(),
                "ONEWINDOW_DEMO": "true" if live.demo else "false",
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            }
        )
        uvicorn.run(
            "onewindow.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            server_header=False,
        )


if __name__ == "__main__":
    raise SystemExit(main())
