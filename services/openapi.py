"""The OpenAPI documentation of the services routes: the problem+json replies a route can give
(RFC 9457), and replies and bodies with named examples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from litestar.enums import MediaType
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example

from onewindow.problems import MEDIA_TYPE as PROBLEM
from onewindow.problems import Problem

__all__ = ["Problems", "example", "reply"]

# The texts every route module shares; a module adds (or replaces) its own, a route its own again.
_TEXT: Final = {
    400: "The request is not valid (every offending field is listed)",
    401: "Sign in first",
    403: "Not allowed for this caller",
    422: "Not allowed by the rules",
}
_SLUG: Final = {
    400: "validation",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    409: "conflict",
    412: "precondition-failed",
    413: "too-large",
    415: "unsupported-media-type",
    422: "rule-violation",
    428: "precondition-required",
}


def example(summary: str, value: Any) -> Example:
    """A named example, for `reply` and for `Body(examples=[...])`."""
    return Example(summary=summary, value=value)


def reply(
    container: Any,
    description: str,
    *examples: Example,
    media_type: MediaType | str = MediaType.JSON,
    generate_examples: bool = False,
) -> ResponseSpec:
    """A documented reply: its type, its description and its examples (none generated unless asked)."""
    return ResponseSpec(
        data_container=container,
        description=description,
        media_type=media_type,
        generate_examples=generate_examples,
        examples=list(examples) or None,
    )


class Problems:
    """The problem+json replies of one module's routes, each with an example: the shared texts,
    the module's (`text`), and a route's own (`text` of the call). `errors`: the offending fields
    a 400's example lists, if any."""

    def __init__(
        self, text: Mapping[int, str] | None = None, *, errors: Sequence[Mapping[str, str]] = ()
    ) -> None:
        self.text = {**_TEXT, **(text or {})}
        self.errors = [dict(error) for error in errors]

    def __call__(self, *statuses: int, text: Mapping[int, str] | None = None) -> dict[int, ResponseSpec]:
        texts = {**self.text, **(text or {})}
        specs: dict[int, ResponseSpec] = {}
        for status in statuses:
            title = texts.get(status, "A problem")
            value: dict[str, Any] = {
                "type": f"urn:onewindow:problem:{_SLUG.get(status, 'bad-request')}",
                "title": title,
                "status": status,
                "detail": title + ".",
            }
            if status == 400 and self.errors:
                value["errors"] = [dict(error) for error in self.errors]
            specs[status] = reply(Problem, title, example(title, value), media_type=PROBLEM)
        return specs
