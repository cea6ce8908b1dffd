"""Domain errors: what the rules raise. `onewindow.problems` turns them into RFC 9457 replies.

Each error has a stable `type` slug (the last part of its problem type URI) and an HTTP status.
Contexts raise these (or subclasses) and never build HTTP responses for errors themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec


class FieldError(msgspec.Struct, frozen=True, omit_defaults=True):
    """One offending field: a JSON Pointer into the request body (RFC 6901), or the name of a
    query/path/header parameter, and what is wrong with it."""

    pointer: str
    detail: str
    parameter: str | None = None


class DomainError(Exception):
    """Base of every error the rules raise on purpose."""

    status: int = 400
    type: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self, detail: str, *, errors: Sequence[FieldError] = (), headers: dict[str, str] | None = None
    ):
        super().__init__(detail)
        self.detail = detail
        self.errors = tuple(errors)
        self.headers = headers or {}


class ValidationFailed(DomainError):
    status = 400
    type = "validation"
    title = "The request is not valid"


class NotFound(DomainError):
    status = 404
    type = "not-found"
    title = "Not found"


class PreconditionRequired(DomainError):
    status = 428
    type = "precondition-required"
    title = "If-Match required"


class Conflict(DomainError):
    status = 409
    type = "conflict"
    title = "Conflict"


class PreconditionFailed(DomainError):
    status = 412
    type = "precondition-failed"
    title = "The resource has changed"


class Unauthorized(DomainError):
    status = 401
    type = "unauthorized"
    title = "Sign-in required"


class Forbidden(DomainError):
    status = 403
    type = "forbidden"
    title = "Not allowed"


class TooLarge(DomainError):
    """A body (or an item of it) beyond a limit of its own: a photo, a sync batch."""

    status = 413
    type = "too-large"
    title = "Too large"


class UnsupportedMediaType(DomainError):
    status = 415
    type = "unsupported-media-type"
    title = "Unsupported media type"


class RuleViolation(DomainError):
    """The request is well-formed but the rules of the city do not allow it now."""

    status = 422
    type = "rule-violation"
    title = "Not allowed by the rules"


class RateLimited(DomainError):
    status = 429
    type = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A backing service (PostgreSQL, Redis) cannot be reached right now."""

    status = 503
    type = "unavailable"
    title = "Service temporarily unavailable"

    def __init__(self, detail: str, *, retry_after: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class StartupError(Exception):
    """OneWindow cannot start; the message is one line saying why and what to do."""
