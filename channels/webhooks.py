"""Standard Webhooks signing (https://www.standardwebhooks.com), and keeping the secrets at rest.

A secret is `whsec_` + base64 of 24 to 64 random bytes; the HMAC key is the decoded bytes. A
message is signed as `v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`, once
per active secret, space-separated in `webhook-signature`: during a rotation the receiver
verifies with whichever secret it has. Written out here (a few lines of hmac) so the tests can
check it with the `standardwebhooks` library as an independent implementation.

Secrets are stored encrypted (AES-256-GCM, a key derived from ONEWINDOW_SECRET_KEY with HKDF for
this one purpose), bound to their endpoint: they have to be read back to sign, so a hash would
not do, and a database dump alone does not give them away.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from onewindow.text import (
    WEBHOOK_SECRET_MAX_BYTES,
    WEBHOOK_SECRET_MIN_BYTES,
    WEBHOOK_SECRET_PREFIX,
    webhook_secret_key,
)

PREFIX: Final = WEBHOOK_SECRET_PREFIX
MIN_BYTES: Final = WEBHOOK_SECRET_MIN_BYTES
MAX_BYTES: Final = WEBHOOK_SECRET_MAX_BYTES
_VERSION: Final = b"\x01"
_NONCE: Final = 12


class BadSecret(ValueError):
    """Not a Standard Webhooks secret."""


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret; BadSecret for anything else. The parse is the kernel's
    (onewindow.text.webhook_secret_key), which the settings' validator uses too."""
    try:
        return webhook_secret_key(secret)
    except ValueError as problem:
        raise BadSecret(str(problem)) from None


def new_secret() -> str:
    """A fresh secret of 32 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def hint(secret: str) -> str:
    """What an admin sees of a stored secret: enough to tell two apart, nothing to sign with."""
    return secret[: len(PREFIX) + 4] + "…" + hashlib.sha256(secret.encode()).hexdigest()[:8]


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature of the message."""
    signed = message_id.encode() + b"." + str(timestamp).encode() + b"." + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(active: list[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every active secret."""
    if not active:
        raise BadSecret("an endpoint needs at least one active secret to sign with")
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(secret, message_id, timestamp, body) for secret in active),
    }


# --- at rest -------------------------------------------------------------------------------------


def _key(master: bytes) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"onewindow.channels.ioc.webhook-secret.v1"
    )
    return hkdf.derive(master)


def seal(master: bytes, secret: str, endpoint_id: UUID) -> bytes:
    """version || nonce || AES-GCM(secret), authenticated with the endpoint's id."""
    nonce = secrets.token_bytes(_NONCE)
    return (
        _VERSION + nonce + AESGCM(_key(master)).encrypt(nonce, secret.encode(), _VERSION + endpoint_id.bytes)
    )


def unseal(master: bytes, blob: bytes, endpoint_id: UUID) -> str:
    """The secret `seal` stored; BadSecret if it does not authenticate (another key, another row)."""
    if len(blob) < 1 + _NONCE + 16 or blob[:1] != _VERSION:
        raise BadSecret("not a sealed secret")
    try:
        plain = AESGCM(_key(master)).decrypt(
            blob[1 : 1 + _NONCE], blob[1 + _NONCE :], _VERSION + endpoint_id.bytes
        )
    except InvalidTag:
        raise BadSecret("the sealed secret does not authenticate with this key") from None
    return plain.decode()
