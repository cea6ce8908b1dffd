#!/usr/bin/env python3
"""bench/grid_sync.py: a grid worker's offline sync batch over HTTP, end to end.

Usage: DATABASE_URL=postgresql://... REDIS_URL=redis://... bench/grid_sync.py [--items 200] [--batches 40]

Starts OneWindow (`onewindow serve --demo`, one worker process) on a scratch database of the
DATABASE_URL server (dropped afterwards), signs a bearer token for a grid worker of demo grid
G-0107 with the server's own key ring, then posts `--batches` batches of `--items` new cases each
(every item its own client id, located, numbered, its loop started, its events written), one
after the other as one phone would, and the same batches again (a phone replaying what it is not
sure arrived). Prints p50/p95/max per batch and items per second for both.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from grid import seed as grid_seed  # noqa: E402
from identity.keys import KeyRing  # noqa: E402
from identity.tokens import RoleGrant, issue_access_token  # noqa: E402
from onewindow.db import PoolDatabase  # noqa: E402
from onewindow.settings import load_settings  # noqa: E402

GRID = "demo/central/riverside/riverside-1/G-0107"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def admin_sql(url: str, statement: str) -> None:
    subprocess.run(["psql", url, "-qAtc", statement], check=True, stdout=subprocess.DEVNULL)


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"bench: the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as reply:  # noqa: S310 - loopback
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    sys.exit("bench: the server was not ready in time")


async def worker_token(database_url: str, secret: str, issuer: str) -> str:
    db = await PoolDatabase.open(load_settings(database_url=database_url, db_pool_min=0), database_url)
    try:
        ring = KeyRing(db, secret.encode())
        await ring.load()
        token, _ = await issue_access_token(
            ring,
            issuer=issuer,
            subject="bench-worker",
            client_id="console",
            scope="openid",
            lifetime=3600,
            roles=(RoleGrant(role="grid_worker", unit="G-0107", path=GRID),),
        )
        return token
    finally:
        await db.close()


def batch(items: int) -> dict[str, object]:
    lat, lon = grid_seed.grid_centre("G-0107")
    return {
        "items": [
            {
                "type": "case",
                "client_id": str(uuid.uuid4()),
                "category": "stair_light" if n % 2 else "illegal_dumping",
                "description": f"Bench case {n}: stair light out in block {n % 40}.",
                "lat": lat + (n % 17) * 1e-5,
                "lon": lon + (n % 13) * 1e-5,
            }
            for n in range(items)
        ]
    }


def figures(label: str, times: list[float], items: int) -> None:
    ordered = sorted(times)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    print(
        f"{label:<28} batches {len(times):>4}  p50 {statistics.median(ordered) * 1000:8.1f} ms"
        f"  p95 {p95 * 1000:8.1f} ms  max {ordered[-1] * 1000:8.1f} ms"
        f"  {items * len(times) / sum(times):8.0f} items/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    server_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if not (server_url and redis_url):
        sys.exit("bench: set DATABASE_URL and REDIS_URL (the machine's servers)")
    name = f"onewindow_bench_sync_{secrets.token_hex(4)}"
    admin_sql(server_url, f'CREATE DATABASE "{name}"')
    database_url = urlsplit(server_url)._replace(path="/" + name).geturl()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    secret = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as workdir:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "ONEWINDOW_DATA_DIR": workdir,
            "ONEWINDOW_SECRET_KEY": secret,
            "ONEWINDOW_PUBLIC_URL": base,
            "ONEWINDOW_LOG_LEVEL": "WARNING",
            "ONEWINDOW_SYNC_MAX_ITEMS": str(max(500, args.items)),
        }
        log = Path(workdir) / "server.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "onewindow", "serve", "--demo", "--port", str(port)],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=out,
            )
        try:
            wait_ready(base, server)
            token = asyncio.run(worker_token(database_url, secret, base))
            headers = {"Authorization": f"Bearer {token}"}
            batches = [batch(args.items) for _ in range(args.batches)]
            with httpx.Client(base_url=base, timeout=120, headers=headers) as http:
                warm = http.post("/api/v1/grid/sync", json=batch(20))
                if warm.status_code != 200 or warm.json()["applied"] != 20:
                    sys.exit(f"bench: warm-up failed: {warm.status_code} {warm.text[:500]}")
                fresh, replayed = [], []
                for body in batches:
                    started = time.perf_counter()
                    reply = http.post("/api/v1/grid/sync", json=body)
                    fresh.append(time.perf_counter() - started)
                    if reply.status_code != 200 or reply.json()["applied"] != args.items:
                        sys.exit(f"bench: a batch failed: {reply.status_code} {reply.text[:500]}")
                for body in batches:
                    started = time.perf_counter()
                    reply = http.post("/api/v1/grid/sync", json=body)
                    replayed.append(time.perf_counter() - started)
                    if reply.status_code != 200 or reply.json()["replayed"] != args.items:
                        sys.exit(f"bench: a replay failed: {reply.status_code} {reply.text[:500]}")
            print(f"grid sync over HTTP, {args.items} new cases per batch, one phone, one server process")
            figures("new cases", fresh, args.items)
            figures("the same batches replayed", replayed, args.items)
        finally:
            server.terminate()
            server.wait(timeout=60)
            admin_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
