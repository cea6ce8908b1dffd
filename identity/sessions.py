"""The single sign-on session, and the brute-force protection in front of signing in.

The session cookie (`ow_session`) holds 32 random bytes; only their SHA-256 is stored, so a
leaked copy of `identity.sessions` cannot be replayed as cookies. A random token needs no slow
hash: nobody can guess it, so there is nothing to stretch.

Failed sign-ins are counted per account and per source address in a sliding window. An account
is slowed down first (a growing delay before the next attempt is even looked at), then locked
for a while; a source address that fails against many accounts is blocked as a whole. Refused
attempts are not counted again: a locked or waiting attacker cannot extend the wait indefinitely
against the account, and the counters show real guesses only.

Times come from PostgreSQL: one clock for every replica. The brute-force windows use `now()`,
the start of the request's transaction, which is fixed within a test so the delays can be
checked exactly; a session's `auth_time` is the moment it starts (see `start_session`).

Functions take the connection first and never commit; the request's transaction does.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal, TypeGuard
from uuid import UUID

from litestar.datastructures import Cookie

from identity import store
from onewindow.db import Connection
from onewindow.settings import Settings

__all__ = [
    "DELAY_AFTER_FAILURES",
    "FAILURE_WINDOW",
    "LOCK_AFTER_FAILURES",
    "LOCK_DURATION",
    "MAX_DELAY_SECONDS",
    "SESSION_COOKIE",
    "SOURCE_BLOCK_AFTER_FAILURES",
    "SOURCE_BLOCK_DURATION",
    "SignOn",
    "check_allowed",
    "clear_failures",
    "clear_session_cookie",
    "current_sign_on",
    "end_session",
    "end_sessions",
    "locked_until",
    "record_failure",
    "secure_cookies",
    "session_cookie",
    "start_session",
    "unlock",
]

SESSION_COOKIE: Final = "ow_session"
# secrets.token_urlsafe(32) is 43 characters; anything much longer is not one of ours, and is
# refused before it is hashed or sent to the database.
_MAX_COOKIE_LENGTH: Final = 128

FAILURE_WINDOW: Final = timedelta(minutes=15)
# Per account: after this many failures in the window, wait 2^(n - 3) seconds (capped) after
# the last one before the next attempt is looked at.
DELAY_AFTER_FAILURES: Final = 3
MAX_DELAY_SECONDS: Final = 60
# Per account: this many failures in the window lock it for LOCK_DURATION.
LOCK_AFTER_FAILURES: Final = 10
LOCK_DURATION: Final = timedelta(minutes=15)
LOCK_REASON: Final = "too_many_failures"
# Per source address: a password-spraying client tries many accounts a few times each, which the
# per-account counters never see.
SOURCE_BLOCK_AFTER_FAILURES: Final = 30
SOURCE_BLOCK_DURATION: Final = timedelta(minutes=15)
# The first key of the two-key advisory locks that serialise attempts on one account ("ow" and 1);
# the two-key form never collides with the one-key lock the migrations take.
_ATTEMPT_LOCKS: Final = 0x6F770001


@dataclass(frozen=True)
class SignOn:
    """A live single sign-on session: who signed in, when, and how (OIDC `auth_time`, `acr`, `amr`)."""

    person_id: UUID
    session_hash: bytes
    auth_time: datetime
    acr: str
    amr: tuple[str, ...]


def _digest(cookie_value: str) -> bytes:
    return hashlib.sha256(cookie_value.encode("utf-8")).digest()


def _usable(cookie_value: str | None) -> TypeGuard[str]:
    # Only characters token_urlsafe produces: anything else cannot name a session, and a lone
    # surrogate would fail in encode() rather than just not match.
    return (
        cookie_value is not None
        and 0 < len(cookie_value) <= _MAX_COOKIE_LENGTH
        and cookie_value.isascii()
        and all(c.isalnum() or c in "-_" for c in cookie_value)
    )


def _sign_on(row: Any) -> SignOn:
    return SignOn(
        person_id=row["person_id"],
        session_hash=bytes(row["id_hash"]),
        auth_time=row["auth_time"],
        acr=row["acr"],
        amr=tuple(row["amr"]),
    )


# --- sessions ------------------------------------------------------------------------------------


async def start_session(
    conn: Connection, settings: Settings, person_id: UUID, *, amr: Sequence[str], acr: str
) -> tuple[str, SignOn]:
    """Open a session for a person who has just proved who they are.

    Returns the cookie value (give it to `session_cookie`; it is not stored anywhere) and the
    sign-on as `current_sign_on` will report it.
    """
    cookie_value = secrets.token_urlsafe(32)
    # auth_time is the moment of signing in (clock_timestamp), not the start of the transaction
    # (now()): clients and the authorize endpoint compare it with wall-clock times, e.g. "signed
    # in after I sent the person to the login page" for prompt=login.
    row = await conn.fetchrow(
        "WITH signed_in AS (SELECT clock_timestamp() AS at)"
        " INSERT INTO identity.sessions (id_hash, person_id, auth_time, amr, acr, expires_at)"
        " SELECT $1, $2, at, $3, $4, at + make_interval(hours => $5) FROM signed_in"
        " RETURNING id_hash, person_id, auth_time, amr, acr",
        _digest(cookie_value),
        person_id,
        list(amr),
        acr,
        settings.session_hours,
    )
    return cookie_value, _sign_on(row)


async def current_sign_on(conn: Connection, cookie_value: str | None) -> SignOn | None:
    """The session a cookie names, or None: no cookie, unknown, expired, ended, or person disabled."""
    if not _usable(cookie_value):
        return None
    row = await conn.fetchrow(
        "SELECT s.id_hash, s.person_id, s.auth_time, s.amr, s.acr FROM identity.sessions s"
        " JOIN identity.persons p ON p.id = s.person_id"
        " WHERE s.id_hash = $1 AND s.ended_at IS NULL AND s.expires_at > now() AND p.disabled_at IS NULL",
        _digest(cookie_value),
    )
    return _sign_on(row) if row else None


async def end_session(conn: Connection, cookie_value: str | None) -> bool:
    """End the one session a cookie names; False when it names none that was still open."""
    if not _usable(cookie_value):
        return False
    result: str = await conn.execute(
        "UPDATE identity.sessions SET ended_at = now() WHERE id_hash = $1 AND ended_at IS NULL",
        _digest(cookie_value),
    )
    return result != "UPDATE 0"


async def end_sessions(conn: Connection, person_id: UUID) -> int:
    """Sign a person out everywhere: end every open session of theirs. Returns how many."""
    result: str = await conn.execute(
        "UPDATE identity.sessions SET ended_at = now() WHERE person_id = $1 AND ended_at IS NULL",
        person_id,
    )
    return int(result.rsplit(" ", 1)[-1])


def session_cookie(settings: Settings, value: str) -> Cookie:
    """The `Set-Cookie` for a session.

    SameSite=Lax, not Strict: a client on another site sends the person to /oauth2/authorize by a
    top-level link or redirect, and the session must travel with that navigation, or every
    sign-in through an app would ask for the password again.
    """
    return http_only_cookie(settings, SESSION_COOKIE, value, path="/", max_age=settings.session_hours * 3600)


def clear_session_cookie(settings: Settings) -> Cookie:
    """A `Set-Cookie` that removes the session cookie (same name, path and flags, expired)."""
    return http_only_cookie(settings, SESSION_COOKIE, "", path="/", max_age=0)


def http_only_cookie(
    settings: Settings,
    key: str,
    value: str,
    *,
    path: str,
    max_age: int | None = None,
    samesite: Literal["lax", "strict"] = "lax",
) -> Cookie:
    """Every cookie of the sign-in pages: HttpOnly (no script reads it), Secure over https.
    `max_age=0` with an empty value removes one; it must name the same path to reach it."""
    return Cookie(
        key=key,
        value=value,
        path=path,
        max_age=max_age,
        httponly=True,
        samesite=samesite,
        secure=secure_cookies(settings),
    )


def secure_cookies(settings: Settings) -> bool:
    """Whether cookies carry the Secure flag: when OneWindow is reached over https. Behind plain
    http (development, the tests) a browser would drop a Secure cookie altogether."""
    return settings.public_url.startswith("https://")


# --- brute-force protection ----------------------------------------------------------------------


async def record_failure(conn: Connection, person_id: UUID | None, source: str) -> None:
    """Count a failed sign-in against the account (None: no such account) and the source address.

    The failure that reaches LOCK_AFTER_FAILURES in the window locks the account.
    """
    await conn.execute(
        "INSERT INTO identity.login_failures (person_id, source) VALUES ($1, $2)", person_id, source
    )
    if person_id is None:
        return
    failures: int = await conn.fetchval(
        "SELECT count(*) FROM identity.login_failures WHERE person_id = $1 AND at > now() - $2::interval",
        person_id,
        FAILURE_WINDOW,
    )
    if failures < LOCK_AFTER_FAILURES:
        return
    # Only a lock that is not already in force is (re)written: the audit trail then has one row
    # per lock, not one per failure counted while it lasts.
    locked = await conn.fetchval(
        "INSERT INTO identity.account_locks (person_id, locked_until, reason)"
        " VALUES ($1, now() + $2::interval, $3)"
        " ON CONFLICT (person_id) DO UPDATE SET locked_until = excluded.locked_until, reason = excluded.reason"
        " WHERE account_locks.locked_until <= now()"
        " RETURNING locked_until",
        person_id,
        LOCK_DURATION,
        LOCK_REASON,
    )
    if locked is not None:
        await store.audit(
            conn,
            action="lock_account",
            subject=str(person_id),
            detail={"reason": LOCK_REASON, "failures": failures, "source": source},
        )


async def locked_until(conn: Connection, person_id: UUID) -> datetime | None:
    """When the account's lock ends, or None if it is not locked now."""
    found: datetime | None = await conn.fetchval(
        "SELECT locked_until FROM identity.account_locks WHERE person_id = $1 AND locked_until > now()",
        person_id,
    )
    return found


async def check_allowed(conn: Connection, person_id: UUID | None, source: str) -> float | None:
    """Seconds the caller must still wait before this attempt may be checked; None: go ahead.

    The longest of: the account's lock, the account's growing delay, the source's block. With an
    account, it also waits for (and then holds, until the transaction ends) the account's attempt
    lock: call it in the transaction that will record the outcome.
    """
    waits: list[float] = []
    if person_id is not None:
        # Attempts on one account are checked one after another: the lock lasts until the
        # request's transaction ends, after its failure (if any) is recorded. Without it, a burst
        # of parallel guesses would all pass this check before the first failure is counted.
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _ATTEMPT_LOCKS, str(person_id))
        account = await conn.fetchrow(
            "SELECT now() AS now,"
            " (SELECT locked_until FROM identity.account_locks"
            "   WHERE person_id = $1 AND locked_until > now()) AS locked_until,"
            " count(*) AS failures, max(at) AS last_failure"
            " FROM identity.login_failures WHERE person_id = $1 AND at > now() - $2::interval",
            person_id,
            FAILURE_WINDOW,
        )
        if account is not None:  # always: an aggregate without GROUP BY has one row
            now: datetime = account["now"]
            if account["locked_until"] is not None:
                waits.append((account["locked_until"] - now).total_seconds())
            failures: int = account["failures"]
            if failures >= DELAY_AFTER_FAILURES:
                delay = min(2 ** (failures - DELAY_AFTER_FAILURES), MAX_DELAY_SECONDS)
                waits.append((account["last_failure"] + timedelta(seconds=delay) - now).total_seconds())
    # The block starts at the failure that made the count: the most recent one, since failures
    # are not recorded while the block lasts.
    origin = await conn.fetchrow(
        "WITH last AS (SELECT max(at) AS at FROM identity.login_failures"
        "   WHERE source = $1 AND at > now() - $2::interval)"
        " SELECT now() AS now, last.at AS last_failure,"
        " (SELECT count(*) FROM identity.login_failures f"
        "   WHERE f.source = $1 AND f.at > last.at - $2::interval AND f.at <= last.at) AS failures"
        " FROM last",
        source,
        FAILURE_WINDOW,
    )
    if (
        origin is not None
        and origin["last_failure"] is not None
        and origin["failures"] >= SOURCE_BLOCK_AFTER_FAILURES
    ):
        waits.append((origin["last_failure"] + SOURCE_BLOCK_DURATION - origin["now"]).total_seconds())
    longest = max(waits, default=0.0)
    return longest if longest > 0 else None


async def clear_failures(conn: Connection, person_id: UUID) -> None:
    """Forget an account's failures: it has just signed in, so the counting starts afresh."""
    await conn.execute("DELETE FROM identity.login_failures WHERE person_id = $1", person_id)


async def unlock(conn: Connection, person_id: UUID, *, actor_id: UUID | None = None) -> bool:
    """Lift an account's lock and forget its failures (for the admin API); False if it was not locked.

    The failures go too: otherwise the next wrong password would find the account at the maximum
    delay and lock it again at once.
    """
    lifted = await conn.fetchval(
        "DELETE FROM identity.account_locks WHERE person_id = $1 RETURNING locked_until > now()", person_id
    )
    await clear_failures(conn, person_id)
    if lifted:
        await store.audit(conn, action="unlock_account", actor_id=actor_id, subject=str(person_id))
    return bool(lifted)
