"""The demo city's organisation, accounts and clients: seeded, idempotent."""

from __future__ import annotations

from identity import store
from identity.credentials import verify_password
from identity.seed import DEMO_ACCOUNTS, seed_demo
from onewindow.db import Connection
from onewindow.settings import Settings

_COUNT = """
SELECT (SELECT count(*) FROM identity.org_units) AS units, (SELECT count(*) FROM identity.persons) AS persons,
       (SELECT count(*) FROM identity.role_assignments) AS roles, (SELECT count(*) FROM identity.clients) AS clients,
       (SELECT max(updated_at) FROM identity.org_units) AS touched, (SELECT max(changed_at) FROM identity.passwords) AS pw
"""


async def test_seeding_twice_changes_nothing(conn: Connection, settings: Settings) -> None:
    await seed_demo(conn, settings)
    first = dict(await conn.fetchrow(_COUNT) or {})
    await seed_demo(conn, settings)
    assert dict(await conn.fetchrow(_COUNT) or {}) == first
    assert first["persons"] == len(DEMO_ACCOUNTS)


async def test_demo_accounts_have_their_roles_in_their_units(conn: Connection, settings: Settings) -> None:
    await seed_demo(conn, settings)
    found = {}
    for username, *_ in DEMO_ACCOUNTS:
        person = await store.person_by_login(conn, login=username, phone_hash=None)
        assert person is not None
        password = await store.password_hash(conn, person.id)
        assert password is not None
        assert verify_password(password, settings.demo_password.get_secret_value())
        found[username] = [(g.role, g.unit) for g in await store.active_roles(conn, person.id)]
    assert found == {
        "admin1": [("admin", "demo")],
        "clerk1": [("clerk", "bureau")],
        "officer1": [("officer", "market")],
        "officer2": [("officer", "fire")],
        "supervisor1": [("supervisor", "riverside-1")],
        "worker1": [("grid_worker", "G-0107")],
        "worker2": [("grid_worker", "G-0301")],
        "command1": [("command_centre", "riverside")],
        "command2": [("command_centre", "hillside")],
        "command0": [("command_centre", "demo")],
        "officer3": [("officer", "urban")],
        "officer4": [("officer", "water")],
        "citizen1": [("citizen", "demo")],
        "officer5": [("officer", "health")],
        "officer6": [("officer", "housing")],
        "officer7": [("officer", "planning")],
        **{
            f"supervisor-{unit}": [("supervisor", unit)]
            for unit in ("market", "fire", "urban", "water", "health", "housing", "planning")
        },
    }
    grid = await store.unit_by_code(conn, "G-0107")
    assert grid is not None
    assert grid.path == "demo/central/riverside/riverside-1/G-0107"
    ioc = await store.client_by_id(conn, "ioc")
    assert ioc is not None
    assert ioc.grant_types == ["client_credentials"]
    assert ioc.scopes == ["ioc.feed", "ioc.update"]
