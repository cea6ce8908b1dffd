"""Idempotency-Key for POSTs that create or act (draft-ietf-httpapi-idempotency-key-header).

The key is reserved in the request's own transaction, before the effect (a transaction-scoped
advisory lock on it, migration 0015), and stored with the reply before commit: the effect and the
memory of it commit together or not at all. A second request with the same key waits for the
first transaction to end; then it finds the stored reply (and returns it), or, if the first
rolled back, goes ahead as the first. A key reused for a different request is a 422; a key is
the caller's own (scoped by principal and operation), so one caller can never replay another's
reply.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
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


class Claim(msgspec.Struct, frozen=True):
    """A request's Idempotency-Key, checked, with its fingerprint: what `begin` reserves.
    `reserving` puts the reservation inside a caller's statement (its first round trip)."""

    principal: str
    scope: str
    key: str
    fingerprint: bytes

    @classmethod
    def of(cls, *, principal: str, scope: str, key: str | None, request: Any) -> Claim:
        """The claim for the header's value `key` (400 if missing or malformed); `request` is
        what makes two requests the same (the target and the body)."""
        return cls(principal, scope, require_key(key), fingerprint(scope, request))

    def reserving(self, param: int) -> tuple[str, list[Any]]:
        """An SQL expression that reserves the key (migration 0015) and the values to bind from
        `$param` on: it is NULL when the caller goes ahead (and later stores its `answer` in the
        same transaction), else what `stored` turns into the first reply. It waits for a
        transaction holding the same key to end, and holds the key until its own transaction
        ends: evaluate it before anything the reply depends on."""
        sql = f"onewindow.reserve_idempotency_key(${param}, ${param + 1}, ${param + 2}, ${param + 3})"
        return sql, [self.principal, self.scope, self.key, self.fingerprint]

    def row(self) -> dict[str, Any]:
        """The claim as a json row, for statements that take several (json_to_recordset with
        principal, scope, key and fingerprint as text: msgspec writes the bytes as base64, which
        the statement decodes)."""
        return {
            "principal": self.principal,
            "scope": self.scope,
            "key": self.key,
            "fingerprint": self.fingerprint,
        }

    def answer(self, status: int, reply: Any) -> Answer:
        return Answer(claim=self, status=status, reply=reply)


class Answer(msgspec.Struct, frozen=True):
    """The reply to keep under a reserved key, before the transaction commits."""

    claim: Claim
    status: int
    reply: Any


def staged(answers: Sequence[Answer], param: int) -> tuple[str, list[Any]]:
    """`finish` for several keys inside a caller's larger statement: a CTE list entry
    (`, answered AS (...)`) to put after the caller's last CTE, and the value to bind as
    `$param` (the rows as json: one statement text however many keys a transaction keeps)."""
    sql = (
        ", answered AS (INSERT INTO onewindow.idempotency_keys (principal, scope, key, fingerprint,"
        " status, reply) SELECT a.principal, a.scope, a.key, decode(a.fingerprint, 'base64'), a.status,"
        f" a.reply FROM json_to_recordset(${param}::json) AS a(principal text, scope text, key text,"
        " fingerprint text, status integer, reply json))"
    )
    return sql, [
        [{**answer.claim.row(), "status": answer.status, "reply": answer.reply} for answer in answers]
    ]


def stored(found: Any) -> Stored | None:
    """What a reservation (`Claim.reserving`) evaluated to: None, go ahead; else the first reply.
    A key used for a different request is a 422."""
    if found is None:
        return None
    if found["status"] is None:  # pragma: no cover - a row reserved before migration 0015
        raise KeyReused("The Idempotency-Key is held by a request that has not finished; retry.")
    if not found["same"]:
        raise KeyReused(
            f"This {HEADER} was already used for a different request; use a new key for a new action."
        )
    return Stored(status=found["status"], reply=found["reply"])


async def begin(conn: Connection, claim: Claim) -> Stored | None:
    """Reserve the key: None means go ahead (then call `finish` in the same transaction)."""
    reserving, values = claim.reserving(1)
    return stored(await conn.fetchval(f"SELECT {reserving}", *values))


async def finish(conn: Connection, answer: Answer) -> None:
    """Keep the reply under the key reserved by `begin`, in the same transaction."""
    sql, values = staged([answer], 1)
    await conn.execute(f"WITH done AS (SELECT 1){sql} SELECT 1", *values)


async def prune(conn: Connection, *, older_than_days: int) -> int:
    """Keys are remembered for a while (clients retry within minutes), not for ever."""
    result: str = await conn.execute(
        "DELETE FROM onewindow.idempotency_keys WHERE created_at < now() - make_interval(days => $1)",
        older_than_days,
    )
    return int(result.rsplit(maxsplit=1)[-1])
