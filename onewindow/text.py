"""Checks on free text that people and machines send: what PostgreSQL cannot store (NUL) and
what XML 1.0 cannot carry (the other C0 control characters) is refused at the edge, with a
field error, instead of failing deep inside a write or breaking a feed for every reader."""

from __future__ import annotations

import re
from typing import Final

import httpx

# C0 controls and DEL, except tab, line feed and carriage return (XML 1.0's Char production).
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# The same, and also the line breaks: for one-line values (names, subjects, codes).
_CONTROL_OR_BREAK: Final = re.compile(r"[\x00-\x1f\x7f]")


def has_control_characters(value: str, *, multiline: bool = True) -> bool:
    """Whether `value` holds a character no text field accepts (`multiline=False`: nor a line break)."""
    return bool((_CONTROL if multiline else _CONTROL_OR_BREAK).search(value))


MAX_URL: Final = 2000


def http_url_problem(value: str) -> str | None:
    """Why `value` is not an absolute http(s) URL OneWindow may store and call (None: it is):
    parsed as an HTTP client will parse it, so a URL that passes here never fails when it is used."""
    if len(value) > MAX_URL:
        return f"at most {MAX_URL} characters"
    if has_control_characters(value, multiline=False) or any(c.isspace() for c in value):
        return "no spaces or control characters"
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError):
        return "not a valid URL"
    if url.scheme not in ("http", "https") or not url.host:
        return "an absolute http:// or https:// URL with a host"
    return None
