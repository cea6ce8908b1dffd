"""identity.credentials: vectors, round trips, refusals. Pure functions: no database is started.

Where a value ends up stored (key derivation, keyed hashes, code and recovery digests), a known
answer is pinned: changing how it is computed would orphan every stored row, and should fail here.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re
import statistics
import string
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import segno
from argon2 import PasswordHasher, Type

from identity import credentials
from identity.credentials import (
    DecryptionError,
    PasswordHashing,
    PasswordProblem,
    check_password,
    code_digest,
    common_passwords,
    decrypt,
    derive_key,
    digests_equal,
    dummy_verify,
    encrypt,
    hash_password,
    keyed_hash,
    match_recovery_code,
    needs_rehash,
    new_code,
    new_recovery_codes,
    new_totp_secret,
    normalise_national_id,
    normalise_phone,
    normalise_recovery_code,
    prc_id_check_character,
    provisioning_uri,
    qr_svg,
    recovery_code_digest,
    totp_at_step,
    totp_now,
    totp_step,
    verify_code,
    verify_password,
    verify_totp,
)

# Small enough to keep the suite fast; the production defaults are checked separately.
FAST = PasswordHashing(time_cost=1, memory_kib=8 * 1024, parallelism=1)
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
DATA_FILE = Path(credentials.__file__).parent / "data" / "common-passwords.txt"


def full_width(text: str) -> str:
    """`text` as a Chinese input method in full-width mode types it (U+FF01 to U+FF5E)."""
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


# --- password hashing ----------------------------------------------------------------------------


def test_password_hashing_defaults_are_rfc_9106_second_recommendation() -> None:
    assert PasswordHashing() == PasswordHashing(time_cost=3, memory_kib=65536, parallelism=4)


@pytest.mark.parametrize(
    ("time_cost", "memory_kib", "parallelism"),
    [(0, 8192, 1), (1, 8192, 0), (1, 31, 4), (-1, 8192, 1)],
)
def test_password_hashing_refuses_impossible_parameters(
    time_cost: int, memory_kib: int, parallelism: int
) -> None:
    with pytest.raises(ValueError, match="argon2"):
        PasswordHashing(time_cost=time_cost, memory_kib=memory_kib, parallelism=parallelism)


def test_hash_is_argon2id_with_the_parameters_given_and_a_fresh_salt() -> None:
    first = hash_password("correct horse battery", FAST)
    second = hash_password("correct horse battery", FAST)
    assert first.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert first != second
    assert hash_password("x" * 20, PasswordHashing(time_cost=2, memory_kib=16, parallelism=2)).startswith(
        "$argon2id$v=19$m=16,t=2,p=2$"
    )


def test_verify_password_accepts_the_password_and_refuses_others() -> None:
    stored = hash_password("correct horse battery", FAST)
    assert verify_password(stored, "correct horse battery")
    assert not verify_password(stored, "correct horse battery ")
    assert not verify_password(stored, "Correct horse battery")
    assert not verify_password(stored, "")


def test_passwords_typed_in_full_width_match_their_ascii_form() -> None:
    stored = hash_password("Harbour2024", FAST)
    assert verify_password(stored, full_width("Harbour2024"))


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "not a hash",
        "$argon2id$v=19$m=8192,t=1,p=1$garbage",
        "$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHRzYWx0$",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        "pbkdf2_sha256$600000$salt$hash",
    ],
)
def test_verify_password_returns_false_for_malformed_hashes(stored: str) -> None:
    assert verify_password(stored, "anything at all") is False


def test_verify_password_returns_false_for_a_truncated_hash() -> None:
    stored = hash_password("correct horse battery", FAST)
    assert not verify_password(stored[:-5], "correct horse battery")


def test_verify_password_survives_a_lone_surrogate() -> None:
    stored = hash_password("correct horse battery", FAST)
    assert not verify_password(stored, "\ud800 correct horse")


def test_needs_rehash_when_any_parameter_differs() -> None:
    stored = hash_password("correct horse battery", FAST)
    assert not needs_rehash(stored, FAST)
    assert needs_rehash(stored, PasswordHashing(time_cost=2, memory_kib=8 * 1024, parallelism=1))
    assert needs_rehash(stored, PasswordHashing(time_cost=1, memory_kib=16 * 1024, parallelism=1))
    assert needs_rehash(stored, PasswordHashing(time_cost=1, memory_kib=8 * 1024, parallelism=2))


def test_needs_rehash_for_another_argon2_variant_or_garbage() -> None:
    argon2i = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1, type=Type.I).hash("pw")
    assert verify_password(argon2i, "pw")
    assert needs_rehash(argon2i, FAST)
    assert needs_rehash("not a hash", FAST)


def _median_seconds(action: Callable[[], object], runs: int = 5) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def test_dummy_verify_is_false_and_costs_about_a_real_verification() -> None:
    costly = PasswordHashing(time_cost=2, memory_kib=16 * 1024, parallelism=1)
    stored = hash_password("correct horse battery", costly)
    assert dummy_verify("correct horse battery", costly) is False  # also makes the dummy hash
    real = _median_seconds(lambda: verify_password(stored, "wrong password"))
    dummy = _median_seconds(lambda: dummy_verify("wrong password", costly))
    # Generous bounds: the point is that "no such user" is not answered in microseconds.
    assert dummy > real / 3, (dummy, real)


# --- password policy -----------------------------------------------------------------------------


def test_a_good_password_has_no_problems() -> None:
    assert check_password("violet tram at dusk 47", username="zhangsan", email="zhang.san@example.cn") == []


def test_problem_codes_are_stable_strings() -> None:
    assert [problem.value for problem in PasswordProblem] == [
        "too_short",
        "too_long",
        "common",
        "contains_username",
        "contains_email",
        "one_character",
    ]


def test_length_limits_are_10_and_256_characters() -> None:
    assert check_password("kq8#vt2!m") == [PasswordProblem.TOO_SHORT]
    assert check_password("kq8#vt2!mz") == []
    assert check_password(("kq8#vt2!mz" * 26)[:256]) == []
    assert check_password(("kq8#vt2!mz" * 26)[:257]) == ["too_long"]
    assert check_password("") == ["too_short"]


def test_length_counts_characters_not_bytes() -> None:
    assert check_password("长城脚下的小院子有棵树") == []  # 11 characters, 33 bytes
    assert check_password("长城脚下的小院子") == ["too_short"]


@pytest.mark.parametrize("password", ["1q2w3e4r5t", "QWERTYUIOP", "Basketball", "password12", "iloveyou123"])
def test_common_passwords_are_refused_whatever_their_case(password: str) -> None:
    assert password.lower() in common_passwords()
    assert PasswordProblem.COMMON in check_password(password)


def test_a_short_common_password_is_both_short_and_common() -> None:
    assert check_password("Password") == ["too_short", "common"]


def test_a_password_of_one_repeated_character_is_refused() -> None:
    assert PasswordProblem.ONE_CHARACTER in check_password("§§§§§§§§§§§§")
    assert check_password("§§§§§§§§§§§§") == ["one_character"]
    assert check_password("§§§§§§§§§§§!") == []


@pytest.mark.parametrize("password", ["ZhangSan", "zhangsan-river-2024", "my ZHANGSAN account!"])
def test_a_password_containing_the_username_is_refused(password: str) -> None:
    assert PasswordProblem.CONTAINS_USERNAME in check_password(password, username="ZhangSan")


def test_a_very_short_username_only_forbids_being_the_password() -> None:
    assert check_password("lilac garden 42", username="li") == []
    assert check_password("Li", username="li") == ["too_short", "contains_username"]


def test_a_password_containing_the_email_local_part_is_refused() -> None:
    email = "Zhang.San@example.cn"
    assert check_password("zhang.san.harbour", email=email) == ["contains_email"]
    assert check_password("ZHANG.SAN@example.cn", email=email) == ["contains_email"]
    assert check_password("example.cn harbour", email=email) == []


def test_no_username_or_email_means_no_such_check() -> None:
    assert check_password("zhangsan river", username=None, email=None) == []
    assert check_password("zhangsan river", username="", email="") == []


def test_the_common_password_list_is_the_shipped_file_unchanged() -> None:
    header, separator, body = DATA_FILE.read_text("utf-8").partition("\n\n")
    assert separator
    assert all(line.startswith("#") for line in header.splitlines())
    assert "BSD" in header
    recorded = re.search(
        r"sha256 of everything after the blank line\n#\s+that ends this header: ([0-9a-f]{64})", header
    )
    assert recorded is not None
    assert hashlib.sha256(body.encode("utf-8")).hexdigest() == recorded.group(1)


def test_the_common_password_list_loads_once_into_a_frozenset() -> None:
    loaded = common_passwords()
    assert isinstance(loaded, frozenset)
    assert loaded is common_passwords()
    assert len(loaded) == 19640
    assert {"123456", "password", "qwerty", "iloveyou"} <= loaded
    assert "#1bitch" in loaded  # passwords that look like comments are still passwords
    assert "" not in loaded
    assert all(entry == entry.lower() for entry in loaded)


# --- one-time codes ------------------------------------------------------------------------------


def test_new_code_is_the_number_of_digits_asked() -> None:
    codes = [new_code() for _ in range(300)]
    assert all(re.fullmatch(r"[0-9]{6}", code) for code in codes)
    assert len(set(codes)) > 250
    assert re.fullmatch(r"[0-9]{8}", new_code(8))
    # Zero-padded: with 300 draws of 4 digits, some start with 0 (probability of none: 0.9^300).
    assert any(code.startswith("0") for code in (new_code(4) for _ in range(300)))


@pytest.mark.parametrize("digits", [0, 3, 11])
def test_new_code_refuses_unreasonable_lengths(digits: int) -> None:
    with pytest.raises(ValueError, match="digits"):
        new_code(digits)


def test_code_digest_known_answer() -> None:
    digest = code_digest(bytes(32), "verify-phone", "+8613800138000", "012345")
    assert digest.hex() == "4588f6d252f182b7f260b17ae198258b4a3833575712d9d7a09c1296730e02fd"


def test_code_digest_binds_key_purpose_target_and_code() -> None:
    base = code_digest(KEY, "verify-phone", "+8613800138000", "012345")
    assert len(base) == 32
    assert base == code_digest(KEY, "verify-phone", "+8613800138000", "012345")
    assert base != code_digest(OTHER_KEY, "verify-phone", "+8613800138000", "012345")
    assert base != code_digest(KEY, "verify-email", "+8613800138000", "012345")
    assert base != code_digest(KEY, "verify-phone", "+8613800138001", "012345")
    assert base != code_digest(KEY, "verify-phone", "+8613800138000", "012346")
    # Field boundaries cannot be shifted to forge another purpose/target pair.
    assert code_digest(KEY, "ab", "c", "1") != code_digest(KEY, "a", "bc", "1")


def test_codes_are_compared_as_people_type_them() -> None:
    stored = code_digest(KEY, "verify-phone", "+8613800138000", "012345")
    assert verify_code(KEY, "verify-phone", "+8613800138000", "012345", stored)
    assert verify_code(KEY, "verify-phone", "+8613800138000", " 012 345 ", stored)
    assert verify_code(KEY, "verify-phone", "+8613800138000", "012-345", stored)
    assert verify_code(KEY, "verify-phone", "+8613800138000", full_width("012345"), stored)
    assert not verify_code(KEY, "verify-phone", "+8613800138000", "012346", stored)
    assert not verify_code(KEY, "verify-email", "+8613800138000", "012345", stored)


def test_code_keys_must_be_256_bits() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        code_digest(b"short key", "verify-phone", "+8613800138000", "012345")


def test_digests_equal() -> None:
    assert digests_equal(b"\x01\x02", b"\x01\x02")
    assert not digests_equal(b"\x01\x02", b"\x01\x03")
    assert not digests_equal(b"\x01\x02", b"\x01")


# --- TOTP ----------------------------------------------------------------------------------------

RFC_6238_SECRET = base64.b32encode(b"12345678901234567890").decode()


@pytest.mark.parametrize(
    ("unix_time", "expected"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_rfc_6238_sha1_vectors(unix_time: int, expected: str) -> None:
    at = datetime.fromtimestamp(unix_time, UTC)
    assert totp_now(RFC_6238_SECRET, at, digits=8) == expected
    assert totp_now(RFC_6238_SECRET, at) == expected[-6:]


def test_totp_time_zone_of_the_moment_does_not_matter() -> None:
    at = datetime.fromtimestamp(1111111109, UTC)
    beijing = at.astimezone(timezone(timedelta(hours=8)))
    assert totp_now(RFC_6238_SECRET, beijing, digits=8) == "07081804"


def test_totp_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        totp_now(RFC_6238_SECRET, datetime(2024, 1, 1))  # noqa: DTZ001 - the mistake under test


def test_new_totp_secret_is_160_bits_of_base32() -> None:
    secrets_made = {new_totp_secret() for _ in range(50)}
    assert len(secrets_made) == 50
    for secret in secrets_made:
        assert re.fullmatch(r"[A-Z2-7]{32}", secret)
        assert len(base64.b32decode(secret)) == 20


def test_totp_secret_may_be_typed_in_lower_case_with_spaces() -> None:
    at = datetime.fromtimestamp(59, UTC)
    spaced = " ".join(RFC_6238_SECRET[i : i + 4] for i in range(0, len(RFC_6238_SECRET), 4)).lower()
    assert totp_now(spaced, at, digits=8) == "94287082"


@pytest.mark.parametrize(
    "secret", ["not base32 at all!", "", full_width(RFC_6238_SECRET), base64.b32encode(bytes(15)).decode()]
)
def test_totp_refuses_a_secret_that_is_not_base32_of_128_bits(secret: str) -> None:
    with pytest.raises(ValueError, match="base32"):
        totp_now(secret, datetime.fromtimestamp(59, UTC))


@pytest.mark.parametrize("digits", [5, 9])
def test_totp_codes_have_6_to_8_digits(digits: int) -> None:
    with pytest.raises(ValueError, match="6 to 8 digits"):
        totp_now(RFC_6238_SECRET, datetime.fromtimestamp(59, UTC), digits=digits)


NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)


def test_verify_totp_returns_the_matched_step() -> None:
    secret = new_totp_secret()
    step = totp_step(NOW)
    assert step == int(NOW.timestamp()) // 30
    assert verify_totp(secret, totp_now(secret, NOW), NOW, last_used_step=None) == step


def test_verify_totp_accepts_drift_within_the_window_only() -> None:
    # A fixed secret and moment, so the five codes around NOW are known to be distinct.
    secret, step = RFC_6238_SECRET, totp_step(NOW)
    codes = {offset: totp_at_step(secret, step + offset) for offset in range(-2, 3)}
    assert len(set(codes.values())) == 5
    assert verify_totp(secret, codes[0], NOW, last_used_step=None) == step
    assert verify_totp(secret, codes[-1], NOW, last_used_step=None) == step - 1
    assert verify_totp(secret, codes[1], NOW, last_used_step=None) == step + 1
    assert verify_totp(secret, codes[-2], NOW, last_used_step=None) is None
    assert verify_totp(secret, codes[2], NOW, last_used_step=None) is None
    assert verify_totp(secret, codes[-2], NOW, last_used_step=None, window=2) == step - 2
    assert verify_totp(secret, codes[2], NOW, last_used_step=None, window=2) == step + 2
    assert verify_totp(secret, codes[0], NOW, last_used_step=None, window=0) == step
    assert verify_totp(secret, codes[-1], NOW, last_used_step=None, window=0) is None
    assert verify_totp(secret, codes[1], NOW, last_used_step=None, window=0) is None


def test_verify_totp_refuses_a_replayed_or_older_step() -> None:
    secret = new_totp_secret()
    code = totp_now(secret, NOW)
    used = verify_totp(secret, code, NOW, last_used_step=None)
    assert used is not None
    assert verify_totp(secret, code, NOW, last_used_step=used) is None
    assert verify_totp(secret, code, NOW + timedelta(seconds=20), last_used_step=used) is None
    older = totp_at_step(secret, used - 1)
    assert verify_totp(secret, older, NOW, last_used_step=used) is None
    # The next step's code is still good after the current one was used.
    following = totp_at_step(secret, used + 1)
    assert verify_totp(secret, following, NOW + timedelta(seconds=30), last_used_step=used) == used + 1


def test_verify_totp_refuses_wrong_and_malformed_codes() -> None:
    secret = new_totp_secret()
    right = totp_now(secret, NOW)
    window = {totp_at_step(secret, totp_step(NOW) + offset) for offset in (-1, 0, 1)}
    wrong = next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in window)
    assert verify_totp(secret, wrong, NOW, last_used_step=None) is None
    assert verify_totp(secret, right[:5], NOW, last_used_step=None) is None
    assert verify_totp(secret, right + "0", NOW, last_used_step=None) is None
    assert verify_totp(secret, "abcdef", NOW, last_used_step=None) is None
    assert verify_totp(secret, "", NOW, last_used_step=None) is None
    assert verify_totp(secret, f"{right[:3]} {right[3:]}", NOW, last_used_step=None) == totp_step(NOW)


@pytest.mark.parametrize("window", [-1, 11])
def test_verify_totp_refuses_an_unreasonable_window(window: int) -> None:
    with pytest.raises(ValueError, match="window"):
        verify_totp(new_totp_secret(), "123456", NOW, last_used_step=None, window=window)


def test_provisioning_uri_follows_the_key_uri_format() -> None:
    secret = new_totp_secret()
    uri = provisioning_uri(secret, "zhang.san@example.cn", "OneWindow City")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/OneWindow City:zhang.san@example.cn"
    assert " " not in uri
    query = parse_qs(parts.query, strict_parsing=True)
    assert query == {
        "secret": [secret],
        "issuer": ["OneWindow City"],
        "algorithm": ["SHA1"],
        "digits": ["6"],
        "period": ["30"],
    }


@pytest.mark.parametrize(("account", "issuer"), [("a:b", "OneWindow"), ("zhangsan", "One:Window")])
def test_provisioning_uri_refuses_a_colon_in_the_label(account: str, issuer: str) -> None:
    with pytest.raises(ValueError, match="':'"):
        provisioning_uri(new_totp_secret(), account, issuer)


def test_provisioning_uri_refuses_a_bad_secret() -> None:
    with pytest.raises(ValueError, match="base32"):
        provisioning_uri("1nv@lid", "zhangsan", "OneWindow")


def _dark_modules(svg: str) -> set[tuple[int, int]]:
    """The (column, row) of every dark module that segno's SVG path draws, border removed."""
    drawing = ET.fromstring(svg)  # noqa: S314 - parsing our own output, not untrusted input
    lines = [path for path in drawing.iter("path") if path.get("class") == "qrline"]
    assert len(lines) == 1
    commands = lines[0].get("d", "")
    assert re.fullmatch(r"(?:M-?[\d.]+ -?[\d.]+|m-?[\d.]+ -?[\d.]+|h\d+)+", commands)
    x = y = 0.0
    dark: set[tuple[int, int]] = set()
    for command, first, second in re.findall(r"([Mmh])(-?[\d.]+)(?: (-?[\d.]+))?", commands):
        if command == "M":
            x, y = float(first), float(second)
        elif command == "m":
            x, y = x + float(first), y + float(second)
        else:
            row = int(y - 0.5) - 4
            dark |= {(int(x) + offset - 4, row) for offset in range(int(first))}
            x += int(first)
    return dark


def test_qr_svg_draws_the_qr_code_of_the_uri() -> None:
    uri = provisioning_uri(new_totp_secret(), "zhang.san@example.cn", "OneWindow City")
    svg = qr_svg(uri)
    assert svg.startswith("<svg")
    assert "<script" not in svg
    assert "<?xml" not in svg  # inlined in HTML, so no XML declaration
    expected = segno.make_qr(uri, error="m").matrix
    assert _dark_modules(svg) == {
        (column, row) for row, cells in enumerate(expected) for column, cell in enumerate(cells) if cell
    }
    assert qr_svg(uri + "0") != svg


# --- recovery codes ------------------------------------------------------------------------------


def test_recovery_codes_are_three_groups_of_four_unambiguous_characters() -> None:
    codes = new_recovery_codes()
    assert len(codes) == 10
    assert len(set(codes)) == 10
    for code in codes:
        assert re.fullmatch(r"[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}", code)
        assert not set(code) & set("01ilo")
    assert len(new_recovery_codes(3)) == 3
    with pytest.raises(ValueError, match="recovery code"):
        new_recovery_codes(0)


def test_recovery_code_alphabet_has_no_look_alikes() -> None:
    alphabet = credentials.RECOVERY_CODE_ALPHABET
    assert len(alphabet) == len(set(alphabet)) == 31
    assert set(alphabet) <= set(string.ascii_lowercase + string.digits) - set("01ilo")


def test_recovery_codes_are_normalised_before_hashing() -> None:
    assert normalise_recovery_code(" ABCD-efgh-JKMN ") == "abcdefghjkmn"
    digest = recovery_code_digest("abcd-efgh-jkmn", account="account-1")
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert recovery_code_digest("ABCD EFGH JKMN", account="account-1") == digest
    assert recovery_code_digest("abcdefghjkmn", account="account-1") == digest
    assert recovery_code_digest("abcd-efgh-jkmp", account="account-1") != digest


def test_recovery_code_digest_known_answer_and_salt() -> None:
    account = "00000000-0000-0000-0000-000000000001"
    digest = recovery_code_digest("abcd-efgh-jkmn", account=account)
    assert digest == "51b2b36ce954911bd9ac496e0a861f01d5622b891cff21691849ad9b77c7fe06"
    assert recovery_code_digest("abcd-efgh-jkmn", account="00000000-0000-0000-0000-000000000002") != digest


def test_match_recovery_code_finds_the_digest_to_spend() -> None:
    codes = new_recovery_codes()
    stored = [recovery_code_digest(code, account="account-1") for code in codes]
    assert match_recovery_code(codes[3].upper(), stored, account="account-1") == stored[3]
    assert match_recovery_code(codes[3], stored[:3] + stored[4:], account="account-1") is None
    assert match_recovery_code(codes[3], stored, account="account-2") is None
    assert match_recovery_code(codes[3][:-1], stored, account="account-1") is None
    assert match_recovery_code("", stored, account="account-1") is None
    assert match_recovery_code(codes[0], [], account="account-1") is None


# --- personal data -------------------------------------------------------------------------------


def _hkdf_sha256(master: bytes, info: bytes) -> bytes:
    # RFC 5869 written out, to check derive_key independently of the library it uses.
    prk = hmac.new(b"\x00" * 32, master, "sha256").digest()
    return hmac.new(prk, info + b"\x01", "sha256").digest()


def test_derive_key_is_hkdf_sha256_with_a_purpose_label() -> None:
    encrypt_key = derive_key(KEY, "encrypt")
    assert encrypt_key.hex() == "6239aedcab057bc8bf6f69c2c91986b9791d400fdde64c57e15eb080b6fdce92"
    info = b"\x00\x00\x00\x10onewindow.key.v1\x00\x00\x00\x07encrypt"
    assert encrypt_key == _hkdf_sha256(KEY, info)
    hash_key = derive_key(KEY, "hash")
    assert hash_key.hex() == "d968d02bb4b3dedf0189fbe24ff98ad775e2af61d9875154fbd97d2f5c32705a"
    assert derive_key(OTHER_KEY, "encrypt") != encrypt_key
    assert len(hash_key) == 32


def test_derive_key_refuses_a_weak_master_or_no_purpose() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        derive_key(b"0123456789", "encrypt")
    with pytest.raises(ValueError, match="purpose"):
        derive_key(KEY, "")


def test_encrypt_round_trip() -> None:
    key = derive_key(KEY, "encrypt")
    for plaintext in ["11010519491231002X", "", "张三 +86 138 0013 8000"]:
        assert decrypt(key, encrypt(key, plaintext)) == plaintext


def test_ciphertext_is_version_nonce_then_sealed_text() -> None:
    key = derive_key(KEY, "encrypt")
    plaintext = "11010519491231002X"
    first, second = encrypt(key, plaintext), encrypt(key, plaintext)
    assert first[0] == 1
    assert len(first) == 1 + 12 + len(plaintext) + 16
    assert first[1:13] != second[1:13]  # a fresh nonce each time
    assert first != second
    assert plaintext.encode() not in first


@pytest.mark.parametrize("position", [0, 1, 12, 13, 20, -1])
def test_tampered_ciphertext_is_refused(position: int) -> None:
    key = derive_key(KEY, "encrypt")
    blob = bytearray(encrypt(key, "11010519491231002X"))
    blob[position] ^= 0x01
    with pytest.raises(DecryptionError):
        decrypt(key, bytes(blob))


def test_truncated_or_foreign_ciphertext_is_refused() -> None:
    key = derive_key(KEY, "encrypt")
    blob = encrypt(key, "11010519491231002X")
    for broken in [b"", blob[:1], blob[:28], blob[:-1], bytes([2]) + blob[1:]]:
        with pytest.raises(DecryptionError):
            decrypt(key, broken)
    with pytest.raises(DecryptionError, match="authentication"):
        decrypt(derive_key(OTHER_KEY, "encrypt"), blob)


def test_associated_data_binds_a_ciphertext_to_its_row() -> None:
    key = derive_key(KEY, "encrypt")
    blob = encrypt(key, "11010519491231002X", associated_data=b"account-1")
    assert decrypt(key, blob, associated_data=b"account-1") == "11010519491231002X"
    with pytest.raises(DecryptionError):
        decrypt(key, blob, associated_data=b"account-2")
    with pytest.raises(DecryptionError):
        decrypt(key, blob)


def test_encryption_keys_are_exactly_256_bits() -> None:
    with pytest.raises(ValueError, match="exactly 32 bytes"):
        encrypt(KEY[:16], "x")
    with pytest.raises(ValueError, match="exactly 32 bytes"):
        decrypt(KEY + b"\x00", encrypt(KEY, "x"))


def test_keyed_hash_known_answer_and_normalisation() -> None:
    key = bytes(32)
    digest = keyed_hash(key, "+8613800138000")
    assert digest == hmac.new(key, b"+8613800138000", "sha256").digest()
    assert digest.hex() == "cb5ef8aa0167c6f09e07f447be3b9de22bf5f36022701b9c8340889e95a79b90"
    assert keyed_hash(key, full_width(" +8613800138000 ")) == digest
    assert keyed_hash(KEY, "+8613800138000") != digest
    with pytest.raises(ValueError, match="32 bytes"):
        keyed_hash(b"short", "+8613800138000")


@pytest.mark.parametrize(
    ("typed", "normalised"),
    [
        ("+86 138-0013-8000", "+8613800138000"),
        ("(010) 6552 9988", "01065529988"),
        ("138.0013.8000", "13800138000"),
        (full_width("13800138000"), "13800138000"),
        ("+44 20 7946 0958", "+442079460958"),
        ("123456", "123456"),
        ("+123456789012345", "+123456789012345"),
    ],
)
def test_normalise_phone(typed: str, normalised: str) -> None:
    assert normalise_phone(typed) == normalised


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "+",
        "   ",
        "12345",
        "+1234567890123456",
        "138 0013 800O",
        "86+13800138000",
        "++8613800138000",
        "١٣٨٠٠١٣٨٠٠٠",
        "call me",
        "13800138000 ext 12",
    ],
)
def test_normalise_phone_refuses_what_cannot_be_a_phone_number(typed: str) -> None:
    with pytest.raises(ValueError, match="phone number"):
        normalise_phone(typed)


def test_prc_id_check_character_is_iso_7064_mod_11_2() -> None:
    # GB 11643's example and a second well-known one, checked by hand.
    assert prc_id_check_character("11010519491231002") == "X"
    assert prc_id_check_character("44052418800101001") == "4"
    assert credentials._PRC_ID_WEIGHTS == (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def test_prc_id_check_character_satisfies_iso_7064_for_every_remainder() -> None:
    # ISO 7064's own criterion, independent of the lookup table: with the check character's value
    # (X = 10) at weight 1, the weighted sum of all 18 characters is 1 modulo 11.
    seen = set()
    for number in range(0, 10**17, 10**17 // 997):
        first_17 = f"{number:017d}"
        check = prc_id_check_character(first_17)
        value = 10 if check == "X" else int(check)
        weighted = sum(int(digit) * pow(2, 17 - position, 11) for position, digit in enumerate(first_17))
        assert (weighted + value) % 11 == 1, first_17
        seen.add(check)
    assert seen == set("0123456789X")


@pytest.mark.parametrize(
    ("typed", "normalised"),
    [
        ("11010519491231002X", "11010519491231002X"),
        ("11010519491231002x", "11010519491231002X"),
        (" 110105 19491231 002x ", "11010519491231002X"),
        (full_width("11010519491231002X"), "11010519491231002X"),
        ("440524188001010014", "440524188001010014"),
        ("110105491231002", "110105491231002"),  # 15-digit legacy ID: no check digit
        ("e12345678", "E12345678"),  # a passport
        ("A123456(7)", "A123456(7)"),  # a Hong Kong identity card
    ],
)
def test_normalise_national_id(typed: str, normalised: str) -> None:
    assert normalise_national_id(typed) == normalised


def test_exactly_one_check_character_is_accepted_for_a_resident_id() -> None:
    accepted = []
    for last in "0123456789XAZ":
        with contextlib.suppress(ValueError):
            accepted.append(normalise_national_id("11010519491231002" + last))
    assert accepted == ["11010519491231002X"]


@pytest.mark.parametrize(
    "typed",
    [
        "110105194912310021",
        "440524188001010015",
        "44052418800101001X",
        "",
        "  ",
        "110105-1949/1231",
        "A" * 33,
    ],
)
def test_normalise_national_id_refuses_bad_input(typed: str) -> None:
    with pytest.raises(ValueError, match="ID number"):
        normalise_national_id(typed)
