"""The demo city's organisation, accounts and OpenID Connect clients (idempotent)."""

from __future__ import annotations

import hashlib

from identity import store
from identity.credentials import PasswordHashing, hash_password, verify_password
from identity.store import ClientRow, UnitRow
from onewindow.db import Connection
from onewindow.settings import Settings

# (code, kind, parent code, name_zh, name_en)
DEMO_UNITS: tuple[tuple[str, str, str | None, str, str], ...] = (
    ("demo", "city", None, "示范市", "Demo City"),
    ("bureau", "department", "demo", "行政审批服务局", "Administrative Approval Service Bureau"),
    ("market", "department", "demo", "市场监督管理局", "Market Regulation Department"),
    ("fire", "department", "demo", "消防救援支队", "Fire and Rescue Department"),
    ("urban", "department", "demo", "城市管理局", "Urban Management Department"),
    ("water", "department", "demo", "水务局", "Water Authority"),
    ("health", "department", "demo", "卫生健康委员会", "Health Commission"),
    ("housing", "department", "demo", "住房和城乡建设局", "Housing and Urban-Rural Development Bureau"),
    ("planning", "department", "demo", "自然资源和规划局", "Natural Resources and Planning Bureau"),
    ("central", "district", "demo", "中心区", "Central District"),
    ("riverside", "street", "central", "滨河街道", "Riverside Street"),
    ("riverside-1", "community", "riverside", "滨河一社区", "Riverside Community 1"),
    ("G-0107", "grid", "riverside-1", "第0107网格", "Grid G-0107"),
    ("G-0108", "grid", "riverside-1", "第0108网格", "Grid G-0108"),
    ("hillside", "street", "central", "山坡街道", "Hillside Street"),
    ("hillside-1", "community", "hillside", "山坡一社区", "Hillside Community 1"),
    ("G-0301", "grid", "hillside-1", "第0301网格", "Grid G-0301"),
)

# (username, display name, e-mail, role, unit code)
DEMO_ACCOUNTS: tuple[tuple[str, str, str, str, str], ...] = (
    ("admin1", "Administrator One", "admin1@demo.onewindow.invalid", "admin", "demo"),
    ("clerk1", "Clerk One", "clerk1@demo.onewindow.invalid", "clerk", "bureau"),
    ("officer1", "Officer One (market)", "officer1@demo.onewindow.invalid", "officer", "market"),
    ("officer2", "Officer Two (fire)", "officer2@demo.onewindow.invalid", "officer", "fire"),
    ("supervisor1", "Supervisor One", "supervisor1@demo.onewindow.invalid", "supervisor", "riverside-1"),
    ("worker1", "Grid Worker One", "worker1@demo.onewindow.invalid", "grid_worker", "G-0107"),
    ("worker2", "Grid Worker Two", "worker2@demo.onewindow.invalid", "grid_worker", "G-0301"),
    (
        "command1",
        "Command Centre (Riverside)",
        "command1@demo.onewindow.invalid",
        "command_centre",
        "riverside",
    ),
    (
        "command2",
        "Command Centre (Hillside)",
        "command2@demo.onewindow.invalid",
        "command_centre",
        "hillside",
    ),
    ("command0", "City Command Centre", "command0@demo.onewindow.invalid", "command_centre", "demo"),
    ("officer3", "Officer Three (urban)", "officer3@demo.onewindow.invalid", "officer", "urban"),
    ("officer4", "Officer Four (water)", "officer4@demo.onewindow.invalid", "officer", "water"),
    ("citizen1", "Citizen One", "citizen1@demo.onewindow.invalid", "citizen", "demo"),
    # The departments that own approval items (services' demo catalog): an officer who reviews
    # and a supervisor who signs off two-step approvals and follows up bad ratings, each held in
    # the department's own unit.
    ("officer5", "Officer Five (health)", "officer5@demo.onewindow.invalid", "officer", "health"),
    ("officer6", "Officer Six (housing)", "officer6@demo.onewindow.invalid", "officer", "housing"),
    ("officer7", "Officer Seven (planning)", "officer7@demo.onewindow.invalid", "officer", "planning"),
    *(
        (
            f"supervisor-{unit}",
            f"Supervisor ({unit})",
            f"supervisor-{unit}@demo.onewindow.invalid",
            "supervisor",
            unit,
        )
        for unit in ("market", "fire", "urban", "water", "health", "housing", "planning")
    ),
)

CITIZEN_SCOPES = ["openid", "profile", "email", "phone", "offline_access"]


def secret_digest(secret: str) -> str:
    """Client secrets are long random strings: a plain SHA-256 is enough to keep them unusable
    if the table leaks, and cheap enough for a busy token endpoint."""
    return hashlib.sha256(secret.encode()).hexdigest()


def password_hashing(settings: Settings) -> PasswordHashing:
    return PasswordHashing(time_cost=settings.password_time_cost, memory_kib=settings.password_memory_kib)


def demo_clients(settings: Settings) -> list[ClientRow]:
    origin = settings.public_url
    return [
        ClientRow(
            client_id="citizen-app",
            name="Citizen app",
            kind="public",
            secret_hash=None,
            jwks=None,
            token_endpoint_auth_method="none",
            grant_types=["authorization_code", "refresh_token"],
            redirect_uris=["http://127.0.0.1/callback", "city.onewindow.app:/callback"],
            allow_loopback_redirects=True,
            post_logout_redirect_uris=["http://127.0.0.1/signed-out"],
            scopes=CITIZEN_SCOPES,
            disabled_at=None,
        ),
        ClientRow(
            client_id="console",
            name="Staff console",
            kind="confidential",
            secret_hash=secret_digest(settings.demo_console_secret.get_secret_value()),
            jwks=None,
            token_endpoint_auth_method="client_secret_basic",
            grant_types=["authorization_code", "refresh_token"],
            redirect_uris=[f"{origin}/console/callback"],
            allow_loopback_redirects=False,
            post_logout_redirect_uris=[f"{origin}/console/signed-out"],
            scopes=[*CITIZEN_SCOPES, "staff"],
            disabled_at=None,
        ),
        ClientRow(
            client_id="ioc",
            name="Intelligent Operations Centre",
            kind="confidential",
            secret_hash=secret_digest(settings.demo_ioc_secret.get_secret_value()),
            jwks=None,
            token_endpoint_auth_method="client_secret_basic",
            grant_types=["client_credentials"],
            redirect_uris=[],
            allow_loopback_redirects=False,
            post_logout_redirect_uris=[],
            scopes=["ioc.feed", "ioc.update"],
            disabled_at=None,
        ),
    ]


async def seed_demo(conn: Connection, settings: Settings) -> None:
    units: dict[str, UnitRow] = {}
    for code, kind, parent, name_zh, name_en in DEMO_UNITS:
        units[code] = await store.upsert_unit(
            conn,
            code=code,
            kind=kind,
            parent=units[parent] if parent else None,
            name_zh=name_zh,
            name_en=name_en,
        )
    password = settings.demo_password.get_secret_value()
    hashing = password_hashing(settings)
    for username, display_name, email, role, unit in DEMO_ACCOUNTS:
        person = await store.upsert_person_by_username(
            conn, username=username, display_name=display_name, email=email, locale="en"
        )
        current = await store.password_hash(conn, person.id)
        # Hash only when the password changed: argon2 is slow on purpose, and seeding runs at every start.
        if current is None or not verify_password(current, password):
            await store.set_password_hash(conn, person.id, hash_password(password, hashing))
        await store.insert_role_assignment(
            conn, person_id=person.id, role=role, unit_id=units[unit].id, granted_by=None
        )
    for client in demo_clients(settings):
        await store.upsert_client(conn, client)
