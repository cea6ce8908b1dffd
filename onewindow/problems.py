"""RFC 9457 problem details: every error OneWindow answers with is mapped here, in one place.

The reply is `application/problem+json` with a stable `type` (`urn:onewindow:problem:<slug>`,
listed in docs/problems.md), a `title`, the `status`, a human `detail`, the `request_id` (the
same id as in the logs), and for validation the offending fields as JSON Pointers. Nothing else
leaks: no stack trace, no SQL, no exception text from an unexpected error.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import asyncpg
import msgspec
import redis.exceptions
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from onewindow.db import UNREACHABLE
from onewindow.errors import DomainError, FieldError, Unavailable
from onewindow.logs import request_id

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:onewindow:problem:"

_SLUG_BY_STATUS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    412: "precondition-failed",
    413: "too-large",
    415: "unsupported-media-type",
    422: "validation",
    429: "rate-limited",
    500: "internal",
    503: "unavailable",
}


class Problem(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    request_id: str | None = None
    errors: list[FieldError] = msgspec.field(default_factory=list)


def problem_response(
    status: int,
    slug: str,
    detail: str,
    *,
    title: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Problem]:
    body = Problem(
        type=TYPE_PREFIX + slug,
        title=title or HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        request_id=request_id.get(),
        errors=errors or [],
    )
    return Response(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _domain(_: Request[Any, Any, Any], exc: DomainError) -> Response[Problem]:
    if isinstance(exc, Unavailable):
        log.warning("backing service unavailable", extra={"detail": exc.detail})
    return problem_response(
        exc.status, exc.type, exc.detail, title=exc.title, errors=list(exc.errors), headers=exc.headers
    )


_MISSING = re.compile(r"missing required field `([^`]+)`")


def _pointer(key: str) -> str:
    """litestar's `applicant.documents[0].name` to RFC 6901's `/applicant/documents/0/name`.

    The body as a whole is reported under the key `data`, which is the pointer "".
    """
    if key == "data":
        return ""
    parts = re.findall(r"([^.\[\]]+)|\[(\d+)\]", key)
    return "".join("/" + (name or index).replace("~", "~0").replace("/", "~1") for name, index in parts)


def _field_errors(exc: ValidationException) -> list[FieldError]:
    errors: list[FieldError] = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", ""))
        key = str(item.get("key", ""))
        source = item.get("source")
        source = getattr(source, "value", source)  # litestar gives a ParamType enum or a string
        if source not in (None, "body"):
            # A query, path or header parameter: named, since a JSON Pointer would point nowhere.
            errors.append(FieldError(pointer="", parameter=f"{source}.{key}", detail=message))
            continue
        pointer = _pointer(key)
        missing = _MISSING.search(message)
        if missing:
            pointer = f"{pointer}/{missing.group(1)}"
        errors.append(FieldError(pointer=pointer, detail=message))
    return errors


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Problem]:
    errors = _field_errors(exc)
    detail = exc.detail if exc.detail and exc.detail != "Bad Request" else "The request is not valid."
    if detail.startswith("Validation failed for"):
        detail = "The request is not valid; see `errors` for each offending field."
    return problem_response(400, "validation", detail, title="The request is not valid", errors=errors)


_CLIENT_GONE = "client disconnected prematurely"  # litestar's words, raised while reading a body


def client_went_away(exc: Exception) -> bool:
    """The client closed the connection before its request body arrived: nobody reads the
    answer, and it is no fault of ours (an error log for it would only hide real ones)."""
    return isinstance(exc, HTTPException) and exc.status_code == 500 and exc.detail == _CLIENT_GONE


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    if client_went_away(exc):
        log.info("client went away before its request was read")
        return problem_response(400, "bad-request", "The request body did not arrive: the client went away.")
    status = exc.status_code
    slug = _SLUG_BY_STATUS.get(status, "bad-request" if status < 500 else "internal")
    detail = exc.detail or HTTPStatus(status).phrase
    if status == 413:
        detail = "The request body is larger than this server accepts."
    elif status == 400 and detail != "Bad Request":
        # litestar's words for a body it could not decode ("JSON is malformed: ...").
        detail = f"The request body could not be read: {detail}"
    if status >= 500:
        log.error("http error", extra={"status": status})
        detail = HTTPStatus(status).phrase
    headers = dict(exc.headers or {})
    return problem_response(status, slug, detail, headers=headers)


def _unreachable(_: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    log.warning("backing service unreachable", extra={"error": type(exc).__name__})
    return problem_response(
        503,
        "unavailable",
        "A service OneWindow depends on cannot be reached; try again shortly.",
        title="Service temporarily unavailable",
        headers={"Retry-After": "5"},
    )


def _unstorable(_: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    # A backstop: inputs are checked at the edge (onewindow.text); this keeps a missed field a 400.
    return problem_response(
        400,
        "validation",
        "The request holds characters that cannot be stored (a NUL byte or another control character).",
        title="The request is not valid",
    )


def _lost_a_race(_: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    # PostgreSQL rolled the transaction back to break a deadlock or a serialisation failure: a
    # concurrent request won. Nothing was written; the same request again is expected to pass.
    log.warning("transaction rolled back by the database", extra={"error": type(exc).__name__})
    return problem_response(
        409,
        "conflict",
        "Another change to the same record happened at the same moment, and yours was not applied: try"
        " again.",
        title="Conflict",
        headers={"Retry-After": "1"},
    )


def _too_deep(_: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    # A body nested deeper than the decoder recurses (msgspec gives up with RecursionError at
    # about a thousand levels): nothing anyone sends on purpose, and no fault of ours.
    log.warning("request nested too deeply", extra={"error": type(exc).__name__})
    return problem_response(
        400,
        "validation",
        "The request body is nested too deeply to be read.",
        title="The request is not valid",
        errors=[FieldError(pointer="", detail="nested too deeply")],
    )


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    log.error("unexpected error", exc_info=exc)
    return problem_response(
        500,
        "internal",
        "Something went wrong on our side. Quote the request_id when you report it.",
        title="Internal error",
    )


def exception_handlers() -> ExceptionHandlersMap:
    handlers: ExceptionHandlersMap = {
        DomainError: _domain,
        ValidationException: _validation,
        HTTPException: _http,
        redis.exceptions.ConnectionError: _unreachable,
        redis.exceptions.TimeoutError: _unreachable,
        asyncpg.CharacterNotInRepertoireError: _unstorable,
        asyncpg.UntranslatableCharacterError: _unstorable,
        RecursionError: _too_deep,
        asyncpg.DeadlockDetectedError: _lost_a_race,
        asyncpg.SerializationError: _lost_a_race,
        Exception: _unexpected,
    }
    for error in UNREACHABLE:
        handlers[error] = _unreachable
    return handlers
