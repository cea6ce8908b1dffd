"""Idempotency-Key for POSTs that create or act (draft-ietf-httpapi-idempotency-key-header).

The key is reserved in the request's own transaction, before the effect, and the reply is stored
beside it before commit: the effect and the memory of it commit together or not at all. A second
request with the same key blocks on the key's primary key until the first transaction ends;
then it finds the stored reply (and returns it), or, if the first rolled back, goes ahead as
the first. A key reused for a different request is a 422; a key is the caller's own (scoped by
principal and operation), so one caller can never replay another's reply.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from onewindow.db import Connection
from onewindow.errors import DomainError, FieldError, ValidationFailed

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_MAX_KEY = 255


class KeyReused(DomainError):
    status = 422
    type = "idempotency-key-reused"
    title = "The Idempotency-Key was used for a different request"


class Stored(msgspec.Struct, frozen=True):
    """The reply given the first time: return it again, with `Idempotent-Replayed: true`."""

    status: int
    reply: Any


def require_key(value: str | None) -> str:
    """The header's value, checked: required, printable, at most 255 characters."""
    if value is None or not value.strip():
        raise ValidationFailed(
            f"This request needs an {HEADER} header (a unique value per intended action, e.g. a UUID):"
            " retrying with the same key never acts twice.",
            errors=[FieldError(pointer="", parameter=HEADER, detail="missing")],
        )
    key = value.strip()
    if len(key) > _MAX_KEY or not key.isprintable():
        raise ValidationFailed(
            f"The {HEADER} must be at most {_MAX_KEY} printable characters.",
            errors=[FieldError(pointer="", parameter=HEADER, detail="malformed")],
        )
    return key


def fingerprint(*parts: Any) -> bytes:
    """What makes two requests the same request: the target and the body, as canonical JSON."""
    return hashlib.sha256(msgspec.json.encode(parts, order="sorted")).digest()


async def begin(conn: Connection, *, principal: str, scope: str, key: str, request: bytes) -> Stored | None:
    """Reserve `key`: None means go ahead (then call `finish` in the same transaction)."""
    reserved = await conn.fetchval(
        "INSERT INTO onewindow.idempotency_keys (principal, scope, key, fingerprint)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
        principal,
        scope,
        key,
        request,
    )
    if reserved:
        return None
    row = await conn.fetchrow(
        "SELECT fingerprint, status, reply FROM onewindow.idempotency_keys"
        " WHERE principal = $1 AND scope = $2 AND key = $3",
        principal,
        scope,
        key,
    )
    if row is None or row["status"] is None:  # pragma: no cover - finish runs in the same transaction
        raise KeyReused("The Idempotency-Key is held by a request that has not finished; retry.")
    if bytes(row["fingerprint"]) != request:
        raise KeyReused(
            f"This {HEADER} was already used for a different request; use a new key for a new action."
        )
    return Stored(status=row["status"], reply=row["reply"])


async def finish(conn: Connection, *, principal: str, scope: str, key: str, status: int, reply: Any) -> None:
    await conn.execute(
        "UPDATE onewindow.idempotency_keys SET status = $4, reply = $5"
        " WHERE principal = $1 AND scope = $2 AND key = $3",
        principal,
        scope,
        key,
        status,
        msgspec.to_builtins(reply),
    )


async def prune(conn: Connection, *, older_than_days: int) -> int:
    """Keys are remembered for a while (clients retry within minutes), not for ever."""
    result: str = await conn.execute(
        "DELETE FROM onewindow.idempotency_keys WHERE created_at < now() - make_interval(days => $1)",
        older_than_days,
    )
    return int(result.rsplit(maxsplit=1)[-1])
