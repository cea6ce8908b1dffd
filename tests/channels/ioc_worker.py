"""A real IOC pusher in a process of its own, for the kill test in tests/channels/test_ioc_kill.py.

Run as `python -m tests.channels.ioc_worker DSN` from the repository root; it pushes until killed.
"""

from __future__ import annotations

import argparse
import asyncio

from channels.ioc_push import Pusher
from onewindow.db import PoolDatabase
from onewindow.settings import load_settings
from tests.conftest import TEST_SECRET


async def main(dsn: str, post_timeout: float) -> None:
    settings = load_settings(
        database_url=dsn,
        db_pool_max=3,
        secret_key=TEST_SECRET,
        ioc_timeout_seconds=post_timeout,
        ioc_retry_base_seconds=0.05,
        ioc_retry_max_seconds=0.2,
    )
    db = await PoolDatabase.open(settings, dsn)
    await Pusher(db, settings).run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dsn")
    parser.add_argument("--timeout", type=float, default=3.0)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.dsn, arguments.timeout))
