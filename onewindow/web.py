"""What every context's `http.py` shares: the app's resources and the transaction-per-request dependency."""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from litestar import Response
from litestar.datastructures import State
from redis.asyncio import Redis

from onewindow import idempotency
from onewindow.db import Connection, Database
from onewindow.errors import FieldError, PreconditionFailed, PreconditionRequired, ValidationFailed
from onewindow.settings import Settings


@dataclass(frozen=True, slots=True)
class Resources:
    """Built once per process at start-up and kept in `app.state.resources`."""

    settings: Settings
    db: Database
    redis: Redis


def resources(state: State) -> Resources:
    found: Resources = state["resources"]
    return found


async def provide_conn(state: State) -> AsyncGenerator[Connection, None]:
    """One transaction per request: committed when the handler returns, rolled back if it raises.

    Litestar finishes this generator before the reply is sent, so a failed commit is an error
    reply, never a success the database does not have.
    """
    async with resources(state).db.transaction() as conn:
        yield conn


def provide_settings(state: State) -> Settings:
    return resources(state).settings


T = TypeVar("T")


# --- pagination and versions: shared by every list and every versioned write ---


def encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode().rstrip("=")


def decode_cursor(cursor: str | None, shape: type[T]) -> T | None:
    """The sort key a cursor carries; a 400 naming the parameter for anything this list did not give."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw, type=shape)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ValidationFailed(
            "The cursor is not one this list gave out.",
            errors=[FieldError(pointer="", parameter="query.cursor", detail="not a cursor of this list")],
        ) from None


def page(rows: list[T], limit: int, key: Any) -> tuple[list[T], str | None]:
    """The page (rows were fetched with limit + 1) and the cursor of the next one, if any."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(key(rows[-1]))


def etag(version: int) -> str:
    return f'"{version}"'


def check_if_match(if_match: str | None, current: int, *, what: str = "resource") -> None:
    """RFC 9110 section 13.1.1 with the strong comparison: weak tags never match."""
    if if_match is None:
        raise PreconditionRequired(
            "Send If-Match with the ETag of the version you read: a write without it could undo "
            "someone else's change."
        )
    tags = [tag.strip() for tag in if_match.split(",")]
    if "*" not in tags and etag(current) not in tags:
        raise PreconditionFailed(
            f"The {what} has changed since you read it: read it again and reapply your change."
        )


def replay(stored: idempotency.Stored) -> Response[Any]:
    """The first reply to an Idempotency-Key, again, marked `Idempotent-Replayed: true`."""
    return Response(stored.reply, status_code=stored.status, headers={idempotency.REPLAYED_HEADER: "true"})


async def idempotent(
    conn: Connection,
    *,
    principal: str,
    scope: str,
    key: str | None,
    request: Any,
    run: Callable[[], Awaitable[Any]],
    status: int = 200,
    headers: Callable[[Any], dict[str, str]] | None = None,
) -> Response[Any]:
    """Run `run` once per Idempotency-Key: a retry gets the stored reply (`Idempotent-Replayed`).
    `request` is what makes two requests the same (the target and the body)."""
    claim = idempotency.Claim.of(principal=principal, scope=scope, key=key, request=request)
    stored = await idempotency.begin(conn, claim)
    if stored is not None:
        return replay(stored)
    reply = await run()
    await idempotency.finish(conn, claim.answer(status, msgspec.to_builtins(reply)))
    return Response(reply, status_code=status, headers=headers(reply) if headers else None)
