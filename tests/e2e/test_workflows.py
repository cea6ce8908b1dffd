"""Task actions over real HTTP against the live server: a race between two officers, a retry."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from identity.keys import KeyRing
from identity.tokens import RoleGrant, issue_access_token
from onewindow.db import PoolDatabase
from onewindow.settings import Settings, load_settings
from tests.conftest import TEST_SECRET, server_env, stop
from tests.e2e.conftest import run_async, run_command, serve_testapp
from tests.workflows.test_engine import PERMIT

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(settings: Settings, migrated_database: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    env = server_env(settings, tmp_path) | {"DATABASE_URL": migrated_database}
    migrated = run_command(["migrate"], env)  # also makes the provider's first signing key
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    served = serve_testapp(env, tmp_path / "uvicorn.log")
    try:
        yield served.base_url, migrated_database
    finally:
        stop(served.child.process)


def bearer(database_url: str, issuer: str, subject: str, *grants: tuple[str, str]) -> dict[str, str]:
    async def mint() -> str:
        db = await PoolDatabase.open(load_settings(database_url=database_url, db_pool_min=0), database_url)
        try:
            ring = KeyRing(db, TEST_SECRET.encode())
            await ring.load()
            roles = tuple(RoleGrant(role=r, unit=p.rsplit("/", 1)[-1], path=p) for r, p in grants)
            token, _ = await issue_access_token(
                ring,
                issuer=issuer,
                subject=subject,
                client_id="console",
                scope="openid",
                lifetime=300,
                roles=roles,
            )
            return token
        finally:
            await db.close()

    return {"Authorization": f"Bearer {run_async(mint())}"}


def test_two_officers_race_over_http_and_a_retry_replays(server: tuple[str, str], settings: Settings) -> None:
    base, database_url = server
    admin = bearer(database_url, settings.public_url, "admin-e2e", ("admin", "demo"))
    one = bearer(database_url, settings.public_url, "officer-a", ("officer", "demo/market"))
    two = bearer(database_url, settings.public_url, "officer-b", ("officer", "demo/market"))
    with httpx.Client(base_url=base, timeout=30) as http:
        uploaded = http.post(
            "/api/v1/workflow-definitions",
            content=PERMIT,
            headers={**admin, "Content-Type": "application/yaml"},
        )
        assert uploaded.status_code == 201, uploaded.text
        started = http.post("/e2e/workflows/permit/race-1", headers=admin)
        assert started.status_code == 201, started.text
        task_id = started.json()["open_tasks"][0]["id"]

    keys = {"a": str(uuid.uuid4()), "b": str(uuid.uuid4())}
    replies: dict[str, httpx.Response] = {}
    go = threading.Barrier(2)

    def act(name: str, headers: dict[str, str]) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            go.wait()
            replies[name] = client.post(
                f"/api/v1/tasks/{task_id}/actions",
                json={"action": "accept"},
                headers={**headers, "Idempotency-Key": keys[name]},
            )

    threads = [threading.Thread(target=act, args=("a", one)), threading.Thread(target=act, args=("b", two))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in replies.values()) == [200, 409], {
        k: r.text for k, r in replies.items()
    }
    winner = next(name for name, r in replies.items() if r.status_code == 200)
    loser = next(name for name, r in replies.items() if r.status_code == 409)
    assert replies[loser].headers["content-type"] == "application/problem+json"

    with httpx.Client(base_url=base, timeout=30) as http:
        retry = http.post(
            f"/api/v1/tasks/{task_id}/actions",
            json={"action": "accept"},
            headers={**(one if winner == "a" else two), "Idempotency-Key": keys[winner]},
        )
        assert retry.status_code == 200
        assert retry.headers["idempotent-replayed"] == "true"
        assert retry.json() == replies[winner].json()
        instance = http.get(f"/api/v1/workflow-instances/{started.json()['id']}", headers=admin).json()
    assert [h["event"] for h in instance["history"]] == ["started", "action"]
