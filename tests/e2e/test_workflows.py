"""Task actions over real HTTP against the live server: a race between two officers, a retry."""

from __future__ import annotations

import asyncio
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


def upload_permit(http: httpx.Client, admin: dict[str, str]) -> None:
    uploaded = http.post(
        "/api/v1/workflow-definitions", content=PERMIT, headers={**admin, "Content-Type": "application/yaml"}
    )
    assert uploaded.status_code == 201, uploaded.text


def test_two_officers_race_over_http_and_a_retry_replays(server: tuple[str, str], settings: Settings) -> None:
    base, database_url = server
    admin = bearer(database_url, settings.public_url, "admin-e2e", ("admin", "demo"))
    one = bearer(database_url, settings.public_url, "officer-a", ("officer", "demo/market"))
    two = bearer(database_url, settings.public_url, "officer-b", ("officer", "demo/market"))
    with httpx.Client(base_url=base, timeout=30) as http:
        upload_permit(http, admin)
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


def test_many_actions_at_once_each_answered_and_written_once(
    server: tuple[str, str], settings: Settings
) -> None:
    """Two dozen officers' actions at the same moment (the live server writes those that wait
    together in one transaction): each gets its own answer, a refused one its problem+json,
    and each is written once; retries replay."""
    base, database_url = server
    admin = bearer(database_url, settings.public_url, "admin-e2e", ("admin", "demo"))
    officer = bearer(database_url, settings.public_url, "officer-a", ("officer", "demo/market"))
    with httpx.Client(base_url=base, timeout=30) as http:
        upload_permit(http, admin)
        tasks = []
        for n in range(24):
            started = http.post(f"/e2e/workflows/permit/many-{n}", headers=admin)
            assert started.status_code == 201, started.text
            tasks.append(started.json()["open_tasks"][0]["id"])
    bodies = [{"action": "accept"}] * 24
    bodies[7] = {"action": "return"}  # its comment is required: 422, and the others go through
    keys = [str(uuid.uuid4()) for _ in tasks]

    async def send_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=24)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"/api/v1/tasks/{task}/actions",
                        json=body,
                        headers={**officer, "Idempotency-Key": key},
                    )
                    for task, body, key in zip(tasks, bodies, keys, strict=True)
                )
            )

    first = run_async(send_all())
    assert [r.status_code for r in first] == [200] * 7 + [422] + [200] * 16, [r.text for r in first]
    assert first[7].headers["content-type"] == "application/problem+json"
    assert first[7].json()["errors"] == [{"pointer": "/comment", "detail": "required for this action"}]
    again = run_async(send_all())
    assert [r.status_code for r in again] == [200] * 7 + [422] + [200] * 16
    assert all(r.headers.get("idempotent-replayed") == "true" for n, r in enumerate(again) if n != 7)
    assert [r.json() for n, r in enumerate(again) if n != 7] == [
        r.json() for n, r in enumerate(first) if n != 7
    ]

    async def written() -> tuple[int, int, int]:
        db = await PoolDatabase.open(load_settings(database_url=database_url, db_pool_min=0), database_url)
        try:
            async with db.connection() as conn:
                row = await conn.fetchrow(
                    "SELECT count(*) FILTER (WHERE h.event = 'action') AS actions,"
                    " count(DISTINCT h.instance_id) FILTER (WHERE h.event = 'action') AS instances,"
                    " (SELECT count(*) FROM workflows.tasks t JOIN workflows.instances i ON i.id = t.instance_id"
                    "  WHERE i.subject_id LIKE 'many-%' AND t.status = 'completed') AS completed"
                    " FROM workflows.history h JOIN workflows.instances i ON i.id = h.instance_id"
                    " WHERE i.subject_id LIKE 'many-%'"
                )
                assert row is not None
                return row["actions"], row["instances"], row["completed"]
        finally:
            await db.close()

    assert run_async(written()) == (23, 23, 23)
