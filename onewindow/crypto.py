"""Symmetric protection of secrets at rest: keys derived from the master secret (HKDF) and
AES-256-GCM encryption with a version byte.

Kernel, so that every context encrypts the same way: identity keeps its OpenID Connect signing
keys and citizens' personal data with it, services its e-certificate signing keys. Pure
computation: keys and plaintexts are passed in, nothing is read from the settings or logged.
"""

from __future__ import annotations

import secrets
import struct
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "KEY_BYTES",
    "DecryptionError",
    "decrypt",
    "derive_key",
    "encrypt",
    "length_prefixed",
    "require_key",
]

# Keys for HMAC and AES are 256 bits; anything shorter is a configuration mistake worth failing on.
KEY_BYTES: Final = 32
_ENCRYPTION_VERSION: Final = 1
_NONCE_BYTES: Final = 12


class DecryptionError(ValueError):
    """A blob that this key cannot open: tampered, truncated, another key, or an unknown version."""


def require_key(key: bytes, *, exact: bool = False) -> None:
    """Refuse a key shorter than 256 bits (or, with `exact`, of any other length)."""
    if (len(key) != KEY_BYTES) if exact else (len(key) < KEY_BYTES):
        wanted = "exactly" if exact else "at least"
        raise ValueError(f"a key must be {wanted} {KEY_BYTES} bytes, not {len(key)}")


def length_prefixed(*fields: str) -> bytes:
    """The fields joined for a MAC or a KDF's info, each after its length."""
    # Length-prefixed, so ("ab", "c") and ("a", "bc") can never hash alike.
    encoded = [field.encode("utf-8") for field in fields]
    return b"".join(struct.pack(">I", len(field)) + field for field in encoded)


def derive_key(master: bytes, purpose: str) -> bytes:
    """A 256-bit key for one purpose ("encrypt", "hash", ...) derived from the master secret (HKDF).

    One secret in the settings, and still no key serves two uses: an encryption key leaking
    through one path says nothing about the keyed hashes, and each can be rotated on its own.
    """
    require_key(master)
    if not purpose:
        raise ValueError("a key needs a purpose")
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=None,
        info=length_prefixed("onewindow.key.v1", purpose),
    )
    return hkdf.derive(master)


def encrypt(key: bytes, plaintext: str, *, associated_data: bytes = b"") -> bytes:
    """version byte || 96-bit random nonce || AES-256-GCM ciphertext and tag.

    `associated_data` (e.g. the account's id) is authenticated but not stored: a blob copied to
    another row then fails to decrypt there. The version byte is authenticated too, and names the
    format and key generation so keys can rotate later.
    """
    require_key(key, exact=True)
    header = bytes([_ENCRYPTION_VERSION])
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return header + nonce + AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), header + associated_data)


def decrypt(key: bytes, blob: bytes, *, associated_data: bytes = b"") -> str:
    """The plaintext of an `encrypt` blob; `DecryptionError` if it cannot be authenticated."""
    require_key(key, exact=True)
    if len(blob) < 1 + _NONCE_BYTES + 16:
        raise DecryptionError("ciphertext too short")
    if blob[0] != _ENCRYPTION_VERSION:
        raise DecryptionError(f"unknown ciphertext version {blob[0]}")
    header, nonce, sealed = blob[:1], blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
    try:
        plaintext = AESGCM(key).decrypt(nonce, sealed, header + associated_data)
    except InvalidTag as error:
        raise DecryptionError("ciphertext failed authentication") from error
    return plaintext.decode("utf-8")
