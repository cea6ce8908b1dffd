"""Checks on text that people and machines send, made once for every context.

- Free text: what PostgreSQL cannot store (NUL) and what XML 1.0 cannot carry (the other C0
  control characters) is refused at the edge, with a field error, instead of failing deep inside
  a write or breaking a feed for every reader.
- URLs that OneWindow stores and later calls (webhooks, a gateway, media links).
- Standard Webhooks secrets (`whsec_...`), checked by the settings and by the signing code alike.
"""

from __future__ import annotations

import base64
import binascii
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


WEBHOOK_SECRET_PREFIX: Final = "whsec_"
WEBHOOK_SECRET_MIN_BYTES: Final = 24
WEBHOOK_SECRET_MAX_BYTES: Final = 64
_WEBHOOK_SECRET: Final = re.compile(r"whsec_[A-Za-z0-9+/]+={0,2}")


def webhook_secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: `whsec_` and standard, padded base64 of 24 to 64
    bytes. ValueError (never quoting the secret) for anything else. The one check of such a
    secret: the settings' validator and the signing code (channels.webhooks) both call it."""
    if not _WEBHOOK_SECRET.fullmatch(secret):
        raise ValueError("a secret is whsec_ followed by base64")
    try:
        key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a secret is whsec_ followed by base64") from None
    if not WEBHOOK_SECRET_MIN_BYTES <= len(key) <= WEBHOOK_SECRET_MAX_BYTES:
        raise ValueError(
            f"a secret decodes to {WEBHOOK_SECRET_MIN_BYTES} to {WEBHOOK_SECRET_MAX_BYTES} bytes"
        )
    return key
