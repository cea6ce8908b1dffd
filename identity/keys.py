"""Signing keys: one active RSA key signs (RS256, which every OpenID Connect client supports);
older keys stay published in the JWKS until the last token they signed has expired.

Private keys are stored encrypted with a key derived from ONEWINDOW_SECRET_KEY. `rotate` makes a
new active key and retires the old one; `KeyRing` holds the keys in memory for signing and
verifying, and reloads when it meets a `kid` it does not know (another process rotated).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from joserfc.jwk import KeySet, RSAKey

from identity.credentials import DecryptionError, decrypt, derive_key, encrypt
from onewindow.db import Connection, Database, connect
from onewindow.errors import StartupError

ALGORITHM = "RS256"
_KEY_BITS = 2048
_RELOAD_AT_MOST_EVERY = 10.0  # seconds: an unknown kid must not turn into a database storm
_ACTIVE_KEY_RECHECK = 60.0  # seconds a process may sign with a key another process has retired


class _KeyRow(msgspec.Struct, frozen=True):
    kid: str
    private_key_enc: bytes
    public_jwk: dict[str, Any]
    created_at: datetime
    retired_at: datetime | None


def _encryption_key(master: bytes) -> bytes:
    return derive_key(master, "identity.signing-keys")


async def create_key(conn: Connection, master: bytes, *, grace: timedelta) -> str:
    """Make a new active key; the previous one stops signing and is unpublished after `grace`
    (the longest lifetime of a token it may have signed)."""
    kid = datetime.now(UTC).strftime("%Y%m%d") + "-" + secrets.token_hex(4)
    key = RSAKey.generate_key(_KEY_BITS, parameters={"kid": kid, "alg": ALGORITHM, "use": "sig"})
    private_pem = key.as_pem(private=True).decode()
    await conn.execute(
        "UPDATE identity.signing_keys SET retired_at = now(), unpublish_after = now() + $1"
        " WHERE retired_at IS NULL",
        grace,
    )
    await conn.execute(
        "INSERT INTO identity.signing_keys (kid, alg, private_key_enc, public_jwk) VALUES ($1, $2, $3, $4)",
        kid,
        ALGORITHM,
        encrypt(_encryption_key(master), private_pem),
        dict(key.as_dict(private=False)),
    )
    return kid


async def ensure_key(conn: Connection, master: bytes, *, grace: timedelta) -> str:
    """The active key's kid, making the first one if there is none (a new database)."""
    kid: str | None = await conn.fetchval("SELECT kid FROM identity.signing_keys WHERE retired_at IS NULL")
    return kid if kid is not None else await create_key(conn, master, grace=grace)


async def rotate_if_due(
    conn: Connection, master: bytes, *, grace: timedelta, max_age: timedelta
) -> str | None:
    """Rotate when the active key is older than `max_age`; the new kid, or None if not due."""
    due: bool | None = await conn.fetchval(
        "SELECT created_at < now() - $1::interval FROM identity.signing_keys WHERE retired_at IS NULL",
        max_age,
    )
    if due is False:
        return None
    return await create_key(conn, master, grace=grace)


@dataclass
class KeyRing:
    """The keys one process signs and verifies with. Safe to share between requests."""

    db: Database
    master: bytes
    # With a DSN the ring reads the keys over a connection of its own. A reload happens in the
    # middle of requests that already hold pooled connections; waiting for one more from a
    # pool that they have exhausted would wait for ever (well, until the acquire timeout).
    dsn: str | None = None
    _active: RSAKey | None = None
    _published: KeySet = field(default_factory=lambda: KeySet([]))
    _loaded_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def _rows(self) -> list[_KeyRow]:
        query = (
            "SELECT kid, private_key_enc, public_jwk, created_at, retired_at FROM identity.signing_keys"
            " WHERE unpublish_after IS NULL OR unpublish_after > now() ORDER BY created_at"
        )
        if self.dsn is None:
            async with self.db.connection() as conn:
                records = await conn.fetch(query)
        else:
            own = await connect(self.dsn, connect_timeout=5)
            try:
                records = await own.fetch(query)
            finally:
                await own.close()
        return [msgspec.convert(r, _KeyRow, from_attributes=True) for r in records]

    async def load(self) -> None:
        rows = await self._rows()
        active = next((row for row in rows if row.retired_at is None), None)
        if active is not None:
            try:
                pem = decrypt(_encryption_key(self.master), active.private_key_enc)
            except DecryptionError:
                raise StartupError(
                    f"the signing key {active.kid} cannot be decrypted: ONEWINDOW_SECRET_KEY is not the "
                    "secret it was made with (restore that secret; rotating keys does not help)"
                ) from None
            self._active = RSAKey.import_key(
                pem, parameters={"kid": active.kid, "alg": ALGORITHM, "use": "sig"}
            )
        self._published = KeySet.import_key_set({"keys": [row.public_jwk for row in rows]})
        self._loaded_at = time.monotonic()

    async def signing_key(self) -> RSAKey:
        # Another process may have rotated: look again now and then, so this one does not go on
        # signing with a retired key (still published, so its tokens verify, but not for long).
        if self._active is None or time.monotonic() - self._loaded_at > _ACTIVE_KEY_RECHECK:
            async with self._lock:
                if self._active is None or time.monotonic() - self._loaded_at > _ACTIVE_KEY_RECHECK:
                    await self.load()
        if self._active is None:
            raise RuntimeError("no active signing key: run `onewindow migrate` (start-up makes one)")
        return self._active

    def jwks(self) -> dict[str, Any]:
        return dict(self._published.as_dict(private=False))

    async def verification_keys(self, kid: str | None) -> KeySet:
        """The published keys, reloaded first if `kid` is unknown here (and we have not just reloaded)."""
        known = {key.kid for key in self._published.keys}
        if kid not in known and time.monotonic() - self._loaded_at > _RELOAD_AT_MOST_EVERY:
            async with self._lock:
                if kid not in {key.kid for key in self._published.keys}:
                    await self.load()
        return self._published
