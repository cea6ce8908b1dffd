"""Credential primitives of the identity context: the parts of signing in that are pure computation.

Owns password hashing (argon2id) and the password policy, one-time codes that prove a phone or
e-mail address, TOTP for the second factor with its QR code, recovery codes, and the protection of
citizens' personal data (AES-GCM encryption, keyed hashes for lookups, normalised phone and
national ID numbers).

The encryption itself (HKDF key derivation, AES-GCM) is the kernel's `onewindow.crypto`, shared
with other contexts' secrets at rest; it is re-exported here for identity's modules.

Nothing here touches the database, the settings, the clock or a log: keys, parameters and the time
are passed in, so every rule can be tested with fixed inputs and the store and HTTP modules decide
where secrets live. The one piece of I/O is reading `data/common-passwords.txt`, once, on first use.

Text that a person types (passwords, codes, phone and ID numbers) is NFKC-normalised before it is
hashed or compared: a Chinese input method in full-width mode types full-width digits (U+FF10 to
U+FF19), and the same password or code must not depend on the keyboard it was typed on (NIST SP
800-63B 5.1.1.2).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
import struct
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from importlib import resources
from typing import Final, Literal
from urllib.parse import quote, urlencode

import segno
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from onewindow.crypto import (
    KEY_BYTES,
    DecryptionError,
    decrypt,
    derive_key,
    encrypt,
    length_prefixed,
    require_key,
)

__all__ = [
    "KEY_BYTES",
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "RECOVERY_CODE_ALPHABET",
    "TOTP_DIGITS",
    "TOTP_PERIOD",
    "DecryptionError",
    "PasswordHashing",
    "PasswordProblem",
    "check_password",
    "code_digest",
    "common_passwords",
    "decrypt",
    "derive_key",
    "digests_equal",
    "dummy_verify",
    "encrypt",
    "hash_password",
    "keyed_hash",
    "match_recovery_code",
    "needs_rehash",
    "new_code",
    "new_recovery_codes",
    "new_totp_secret",
    "normalise_national_id",
    "normalise_phone",
    "normalise_recovery_code",
    "prc_id_check_character",
    "provisioning_uri",
    "qr_svg",
    "recovery_code_digest",
    "totp_at_step",
    "totp_now",
    "totp_step",
    "verify_code",
    "verify_password",
    "verify_totp",
]


def _typed_text(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


# --- passwords: hashing --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PasswordHashing:
    """argon2id cost parameters; the defaults are RFC 9106's second recommended option."""

    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 4

    def __post_init__(self) -> None:
        if self.time_cost < 1 or self.parallelism < 1:
            raise ValueError("argon2 time_cost and parallelism must be at least 1")
        # Argon2 needs 8 KiB per lane; argon2-cffi would only fail later, at the first hash.
        if self.memory_kib < 8 * self.parallelism:
            raise ValueError("argon2 memory_kib must be at least 8 x parallelism")


@functools.lru_cache(maxsize=8)
def _hasher(params: PasswordHashing) -> PasswordHasher:
    return PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=32,
        salt_len=16,
        type=Type.ID,
    )


def _password_bytes(password: str) -> bytes:
    # surrogatepass: a lone surrogate cannot come from a UTF-8 request body, but if one ever
    # arrives it should fail to match, not raise in the middle of a login.
    return _typed_text(password).encode("utf-8", "surrogatepass")


def hash_password(password: str, params: PasswordHashing) -> str:
    """The PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash) to store for `password`."""
    return _hasher(params).hash(_password_bytes(password))


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether `password` matches `stored_hash`; False (never an exception) for anything else."""
    try:
        # verify() reads the cost parameters from the hash itself, so any hasher will do.
        return _hasher(PasswordHashing()).verify(stored_hash, _password_bytes(password))
    except (VerificationError, InvalidHashError, ValueError):
        return False


def needs_rehash(stored_hash: str, params: PasswordHashing) -> bool:
    """Whether a hash was made with other parameters (or is no argon2id hash at all).

    Call after a successful login and store `hash_password(password, params)` if True: that is
    how raised costs reach existing accounts.
    """
    try:
        return _hasher(params).check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError):
        return True


@functools.lru_cache(maxsize=8)
def _dummy_hash(params: PasswordHashing) -> str:
    return _hasher(params).hash(secrets.token_bytes(16))


def dummy_verify(password: str, params: PasswordHashing) -> Literal[False]:
    """Spend the time of a real verification, for a login naming an account that does not exist.

    Without it, "no such user" answers at once and "wrong password" after an argon2 run, and the
    difference tells an attacker which accounts exist. The first call for a set of parameters
    also makes the hash it verifies against; call it once at start-up to have that done early.
    """
    verify_password(_dummy_hash(params), password)
    return False


# --- passwords: policy ---------------------------------------------------------------------------

MIN_PASSWORD_LENGTH: Final = 10
MAX_PASSWORD_LENGTH: Final = 256
# A one- or two-letter name ("li", "wu") would otherwise forbid every password containing it.
_MIN_NAME_LENGTH_TO_CONTAIN: Final = 3


class PasswordProblem(StrEnum):
    """Why `check_password` refuses a password; the values are stable codes for API replies."""

    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    COMMON = "common"
    CONTAINS_USERNAME = "contains_username"
    CONTAINS_EMAIL = "contains_email"
    ONE_CHARACTER = "one_character"


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lower-cased (see the data file's header)."""
    text = resources.files("identity").joinpath("data").joinpath("common-passwords.txt").read_text("utf-8")
    # The header ends at the first empty line; passwords may start with "#", so no comment syntax.
    _, separator, body = text.partition("\n\n")
    if not separator:
        raise RuntimeError("identity/data/common-passwords.txt has no header separator")
    return frozenset(line.lower() for line in body.splitlines() if line)


def _contains_name(password: str, name: str) -> bool:
    name = _typed_text(name).strip().casefold()
    if not name:
        return False
    if len(name) < _MIN_NAME_LENGTH_TO_CONTAIN:
        return password == name
    return name in password


def check_password(password: str, *, username: str | None = None, email: str | None = None) -> list[str]:
    """The problems that make `password` unacceptable for this account; empty when it is fine.

    Each problem is a `PasswordProblem` (a str), so the whole list can go into an API reply.
    """
    password = _typed_text(password)
    problems: list[str] = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(PasswordProblem.TOO_SHORT)
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(PasswordProblem.TOO_LONG)
    if len(set(password)) == 1:
        problems.append(PasswordProblem.ONE_CHARACTER)
    if password.lower() in common_passwords():
        problems.append(PasswordProblem.COMMON)
    folded = password.casefold()
    if username and _contains_name(folded, username):
        problems.append(PasswordProblem.CONTAINS_USERNAME)
    if email and _contains_name(folded, email.rpartition("@")[0] or email):
        problems.append(PasswordProblem.CONTAINS_EMAIL)
    return problems


# --- one-time codes for proving a phone number or e-mail address ---------------------------------


def new_code(digits: int = 6) -> str:
    """A random numeric code, zero-padded, to send by SMS or e-mail."""
    if not 4 <= digits <= 10:
        raise ValueError("a one-time code has 4 to 10 digits")
    return f"{secrets.randbelow(10**digits):0{digits}d}"


def _normalise_code(code: str) -> str:
    # People copy codes with the spaces or dashes some messages insert for readability.
    return re.sub(r"[\s-]", "", _typed_text(code))


def code_digest(secret_key: bytes, purpose: str, target: str, code: str) -> bytes:
    """What to store for a code sent to `target` (a normalised phone or e-mail) for `purpose`.

    A keyed hash, so a leaked table of pending codes is no list of six-digit numbers to try; the
    purpose and target are inside it, so a code sent for one use cannot confirm another.
    """
    require_key(secret_key)
    return hmac.digest(
        secret_key, length_prefixed("onewindow.code.v1", purpose, target, _normalise_code(code)), "sha256"
    )


def digests_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison, so the time taken does not reveal how many bytes matched."""
    return hmac.compare_digest(a, b)


def verify_code(secret_key: bytes, purpose: str, target: str, code: str, stored_digest: bytes) -> bool:
    """Whether `code` is the one whose `code_digest` was stored."""
    return digests_equal(code_digest(secret_key, purpose, target, code), stored_digest)


# --- TOTP (RFC 6238) -----------------------------------------------------------------------------
# Written out rather than taken from pyotp: it is twenty lines over hmac, and the login flow needs
# the matched time step back to refuse a replay, which pyotp's verify() does not return.

TOTP_DIGITS: Final = 6
TOTP_PERIOD: Final = 30
_MAX_TOTP_WINDOW: Final = 10
_MIN_TOTP_KEY_BYTES: Final = 16  # RFC 4226 R6: the shared secret is at least 128 bits


def new_totp_secret() -> str:
    """A new shared secret: 160 random bits (RFC 4226's recommendation) as 32 base32 characters."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii")


def _totp_key(secret: str) -> bytes:
    cleaned = re.sub(r"\s", "", secret).upper().rstrip("=")
    try:
        key = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except ValueError as error:  # binascii.Error, or non-ASCII text
        raise ValueError("a TOTP secret must be base32") from error
    if len(key) < _MIN_TOTP_KEY_BYTES:
        raise ValueError(f"a TOTP secret must be base32 of at least {_MIN_TOTP_KEY_BYTES * 8} bits")
    return key


def totp_step(at: datetime, period: int = TOTP_PERIOD) -> int:
    """The RFC 6238 time step (T) that `at` falls in."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("a TOTP time must be timezone-aware")
    return int(at.timestamp()) // period


def totp_at_step(secret: str, step: int, digits: int = TOTP_DIGITS) -> str:
    """The code for one time step: HOTP (RFC 4226) with the step as its counter, HMAC-SHA1."""
    if not 6 <= digits <= 8:
        raise ValueError("a TOTP code has 6 to 8 digits (RFC 4226)")
    mac = hmac.digest(_totp_key(secret), struct.pack(">Q", step), "sha1")
    offset = mac[-1] & 0x0F
    (number,) = struct.unpack(">I", mac[offset : offset + 4])
    return f"{(number & 0x7FFFFFFF) % 10**digits:0{digits}d}"


def totp_now(secret: str, at: datetime, *, digits: int = TOTP_DIGITS, period: int = TOTP_PERIOD) -> str:
    """The code an authenticator app shows at `at`."""
    return totp_at_step(secret, totp_step(at, period), digits)


def verify_totp(
    secret: str,
    code: str,
    at: datetime,
    *,
    last_used_step: int | None,
    window: int = 1,
    digits: int = TOTP_DIGITS,
    period: int = TOTP_PERIOD,
) -> int | None:
    """The time step `code` belongs to, or None if it matches none or was already used.

    `window` steps either side are accepted for clock drift. A step at or before `last_used_step`
    is refused: store the returned step, so an observed code (or an older one) cannot be replayed.
    """
    if not 0 <= window <= _MAX_TOTP_WINDOW:
        raise ValueError(f"a TOTP window is 0 to {_MAX_TOTP_WINDOW} steps")
    code = _normalise_code(code)
    if len(code) != digits or not code.isascii() or not code.isdigit():
        return None
    current = totp_step(at, period)
    offsets = [0]
    for distance in range(1, window + 1):
        offsets += [-distance, distance]
    for step in (current + offset for offset in offsets):
        if step < 0 or (last_used_step is not None and step <= last_used_step):
            continue
        if hmac.compare_digest(totp_at_step(secret, step, digits), code):
            return step
    return None


def provisioning_uri(secret: str, account_name: str, issuer: str) -> str:
    """The otpauth:// URI (Google Authenticator's Key URI Format) that sets up an app."""
    if ":" in issuer or ":" in account_name:
        # The label is "issuer:account"; a colon inside either would split it wrongly in apps.
        raise ValueError("issuer and account name must not contain ':'")
    _totp_key(secret)
    label = f"{quote(issuer, safe='')}:{quote(account_name, safe='')}"
    query = urlencode(
        {
            "secret": re.sub(r"\s", "", secret).upper().rstrip("="),
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": TOTP_DIGITS,
            "period": TOTP_PERIOD,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"


def qr_svg(uri: str) -> str:
    """The QR code of `uri` as an SVG element to inline in a page (no script, no image request)."""
    qr = segno.make_qr(uri, error="m")
    # A white background of its own: the page may be in a dark theme, and apps need the contrast.
    return qr.svg_inline(
        scale=4, border=4, dark="#000", light="#fff", title="QR code to set up an authenticator app"
    )


# --- recovery codes ------------------------------------------------------------------------------

# No 0/o, 1/l/i: codes are read off paper and typed by hand.
RECOVERY_CODE_ALPHABET: Final = "abcdefghjkmnpqrstuvwxyz23456789"
_RECOVERY_GROUPS: Final = 3
_RECOVERY_GROUP_LENGTH: Final = 4


def new_recovery_codes(count: int = 10) -> list[str]:
    """`count` codes like "k7mp-x3qa-tr9e": 12 characters of 31, about 59 bits each."""
    if count < 1:
        raise ValueError("at least one recovery code")
    return [
        "-".join(
            "".join(secrets.choice(RECOVERY_CODE_ALPHABET) for _ in range(_RECOVERY_GROUP_LENGTH))
            for _ in range(_RECOVERY_GROUPS)
        )
        for _ in range(count)
    ]


def normalise_recovery_code(code: str) -> str:
    """The code as its digest sees it: lower case, without dashes or spaces."""
    return re.sub(r"[\s-]", "", _typed_text(code)).lower()


def recovery_code_digest(code: str, *, account: str) -> str:
    """SHA-256 (hex) of a normalised recovery code, salted with the account's stable id.

    The codes are random enough that a fast hash is fine for one account; the salt is what keeps
    a stolen table of every account's digests from being attacked all at once (one guess tried
    against millions of digests).
    """
    return hashlib.sha256(
        length_prefixed("onewindow.recovery.v1", account, normalise_recovery_code(code))
    ).hexdigest()


def match_recovery_code(code: str, digests: Iterable[str], *, account: str) -> str | None:
    """The stored digest that `code` matches (delete it: each code works once), or None."""
    if len(normalise_recovery_code(code)) != _RECOVERY_GROUPS * _RECOVERY_GROUP_LENGTH:
        return None
    candidate = recovery_code_digest(code, account=account)
    matched: str | None = None
    for digest in digests:
        # Every digest is compared, so the time does not tell which one matched.
        if hmac.compare_digest(candidate, digest):
            matched = digest
    return matched


# --- personal data: keys, encryption, lookups, normalisation -------------------------------------


def keyed_hash(key: bytes, value: str) -> bytes:
    """HMAC-SHA256 of a value, for finding a row by a national ID or phone number without storing it.

    Pass the value through `normalise_phone` / `normalise_national_id` first: only the NFKC form
    and surrounding space are normalised here, and two spellings of one number must hash alike.
    """
    require_key(key)
    return hmac.digest(key, _typed_text(value).strip().encode("utf-8"), "sha256")


_PHONE_SEPARATORS: Final = re.compile(r"[\s.()-]")
_E164_MAX_DIGITS: Final = 15
_PHONE_MIN_DIGITS: Final = 6


def normalise_phone(phone: str) -> str:
    """Digits only, keeping a leading "+": "+86 138-0013-8000" -> "+8613800138000".

    Raises ValueError for anything that cannot be a phone number: letters, a "+" elsewhere than
    first, fewer than 6 or more than 15 digits (E.164's maximum).
    """
    compact = _PHONE_SEPARATORS.sub("", _typed_text(phone))
    digits = compact.removeprefix("+")
    # isascii(): str.isdigit() is also true of other scripts' digits and of superscripts.
    if not digits.isascii() or not digits.isdigit():
        raise ValueError("a phone number has digits, separators and an optional leading +")
    if not _PHONE_MIN_DIGITS <= len(digits) <= _E164_MAX_DIGITS:
        raise ValueError(f"a phone number has {_PHONE_MIN_DIGITS} to {_E164_MAX_DIGITS} digits")
    return compact


# ISO 7064 MOD 11-2 as GB 11643 uses it: weight of position i (from the left) is 2^(17-i) mod 11.
_PRC_ID_WEIGHTS: Final = tuple(pow(2, 17 - position, 11) for position in range(17))
_PRC_ID_CHECK: Final = "10X98765432"
_NATIONAL_ID_SHAPE: Final = re.compile(r"[A-Z0-9()-]{1,32}")


def prc_id_check_character(first_17: str) -> str:
    """The check character of an 18-character PRC resident ID, from its first 17 digits."""
    return _PRC_ID_CHECK[
        sum(int(digit) * weight for digit, weight in zip(first_17, _PRC_ID_WEIGHTS, strict=True)) % 11
    ]


def normalise_national_id(value: str) -> str:
    """Upper case without spaces; an 18-character PRC resident ID must also have a valid check digit.

    Other documents (15-digit legacy IDs, passports, Hong Kong or Macao IDs with their bracketed
    check digit) pass with only the spacing and case normalised. Raises ValueError otherwise.
    """
    compact = re.sub(r"\s", "", _typed_text(value)).upper()
    if not _NATIONAL_ID_SHAPE.fullmatch(compact):
        raise ValueError("an ID number has 1 to 32 letters, digits, '-', '(' or ')'")
    # A last character other than the computed one (a digit, or X for 10) is a typing error.
    if len(compact) == 18 and compact[:17].isdigit() and compact[17] != prc_id_check_character(compact[:17]):
        raise ValueError("the check digit of this resident ID number is wrong")
    return compact
