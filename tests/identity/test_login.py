"""The sign-in and sign-out pages and the single sign-on session, driven over HTTP like a browser.

PostgreSQL's now() is the start of the test's transaction, fixed for the whole test: waits come
out exact, and "time passing" is done by moving stored timestamps back.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from uuid import UUID, uuid4

import httpx
import pytest

from identity import sessions, store
from identity.credentials import (
    PasswordHashing,
    derive_key,
    dummy_verify,
    encrypt,
    hash_password,
    keyed_hash,
    needs_rehash,
    normalise_phone,
    verify_password,
)
from identity.login import (
    CONTENT_SECURITY_POLICY,
    choose_language,
    login_url,
    safe_return_to,
)
from identity.oidc import LOA_LOW, LOA_SUBSTANTIAL
from identity.seed import password_hashing, seed_demo
from onewindow.db import Connection, connect
from onewindow.settings import Settings
from tests.conftest import RollbackDatabase, app_client, build_app

SOURCE = "127.0.0.1"  # the client address httpx's ASGI transport reports
WRONG = "definitely-not-the-password"
TOKEN_FIELD = re.compile(r'name="csrf_token" value="([^"]*)"')
RETURN_TO_FIELD = re.compile(r'name="return_to" value="([^"]*)"')
ERROR = re.compile(r'<p class="error" role="alert">([^<]*)</p>')

WRONG_ZH = "用户名或密码错误。"
WRONG_EN = "Wrong username or password."


# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def password(settings: Settings) -> str:
    return settings.demo_password.get_secret_value()


async def _person(conn: Connection, username: str) -> UUID:
    person = await store.person_by_login(conn, login=username, phone_hash=None)
    assert person is not None
    return person.id


@pytest.fixture
async def citizen(conn: Connection, settings: Settings) -> UUID:
    await seed_demo(conn, settings)
    return await _person(conn, "citizen1")


@pytest.fixture
async def http(settings: Settings, db: RollbackDatabase, citizen: UUID) -> AsyncIterator[httpx.AsyncClient]:
    # The password step on its own: staff's second factor is tested in test_mfa.py.
    password_only = settings.model_copy(update={"staff_mfa": "optional"})
    async with app_client(build_app(password_only, db)) as client:
        yield client


async def _token(http: httpx.AsyncClient, path: str = "/login", **params: str) -> str:
    page = await http.get(path, params=params)
    assert page.status_code == 200
    found = TOKEN_FIELD.search(page.text)
    assert found
    return found.group(1)


async def _sign_in(
    http: httpx.AsyncClient,
    password: str,
    login: str = "citizen1",
    *,
    return_to: str = "/",
    **extra: str,
) -> httpx.Response:
    token = await _token(http)
    form = {"login": login, "password": password, "csrf_token": token, "return_to": return_to, **extra}
    return await http.post("/login", data=form)


def _set_cookie(response: httpx.Response, name: str) -> dict[str, str]:
    """The attributes of one Set-Cookie header, names lower-cased; the value under "value"."""
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(name + "="):
            first, *attributes = (part.strip() for part in header.split(";"))
            parsed = {"value": first.partition("=")[2].strip('"')}
            for attribute in attributes:
                key, _, value = attribute.partition("=")
                parsed[key.lower()] = value
            return parsed
    raise AssertionError(f"no Set-Cookie for {name} in {response.headers.get_list('set-cookie')}")


def _error(response: httpx.Response) -> str:
    found = ERROR.search(response.text)
    assert found, response.text
    return found.group(1)


async def _age_failures(conn: Connection, seconds: float, *, person_id: UUID | None = None) -> None:
    """Let `seconds` pass for the failures counted so far (of one account, or of everyone)."""
    await conn.execute(
        "UPDATE identity.login_failures SET at = at - make_interval(secs => $2)"
        " WHERE $1::uuid IS NULL OR person_id = $1",
        person_id,
        float(seconds),
    )


async def _failures(conn: Connection, person_id: UUID) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM identity.login_failures WHERE person_id = $1", person_id
    )
    return count


def _assert_page_headers(response: httpx.Response) -> None:
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"


# --- the form ------------------------------------------------------------------------------------


async def test_the_form_is_chinese_by_default_and_carries_a_csrf_token(http: httpx.AsyncClient) -> None:
    page = await http.get("/login", params={"return_to": "/services?x=1"})
    assert page.status_code == 200
    _assert_page_headers(page)
    assert CONTENT_SECURITY_POLICY == "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
    assert '<html lang="zh-CN">' in page.text
    assert "用户名、手机号或电子邮箱" in page.text
    assert 'name="viewport"' in page.text
    assert "<script" not in page.text
    assert 'type="password"' in page.text
    token = TOKEN_FIELD.search(page.text)
    assert token
    cookie = _set_cookie(page, "ow_csrf")
    assert cookie["value"] == token.group(1)
    assert len(cookie["value"]) == 43
    assert "httponly" in cookie
    assert cookie["samesite"].lower() == "strict"
    assert cookie["path"] == "/login"
    assert RETURN_TO_FIELD.findall(page.text) == ["/services?x=1"]
    # The language switch keeps where the person is going.
    assert 'href="/login?lang=en&amp;return_to=%2Fservices%3Fx%3D1"' in page.text


async def test_a_second_visit_keeps_the_token_so_open_tabs_still_work(http: httpx.AsyncClient) -> None:
    assert await _token(http) == await _token(http)


@pytest.mark.parametrize(
    ("params", "headers", "expected"),
    [
        ({"lang": "en"}, {}, "en"),
        ({}, {"Accept-Language": "en-GB,en;q=0.9"}, "en"),
        ({"lang": "en"}, {"Accept-Language": "zh-CN,zh;q=0.9"}, "en"),
        ({"lang": "zh"}, {"Accept-Language": "en"}, "zh"),
        ({}, {"Accept-Language": "fr-FR, en;q=0.3, zh;q=0.8"}, "zh"),
        ({"lang": "de"}, {"Accept-Language": "en"}, "en"),
        ({}, {"Accept-Language": "fr"}, "zh"),
        ({}, {"Accept-Language": "en;q=nonsense, ;;, zh-TW;q=0.1"}, "zh"),
    ],
)
async def test_the_language_comes_from_the_query_then_accept_language(
    http: httpx.AsyncClient, params: dict[str, str], headers: dict[str, str], expected: str
) -> None:
    page = await http.get("/login", params=params, headers=headers)
    assert page.status_code == 200
    if expected == "en":
        assert '<html lang="en">' in page.text
        assert "Username, phone number or e-mail" in page.text
        assert ">中文</a>" in page.text
    else:
        assert '<html lang="zh-CN">' in page.text
        assert "密码" in page.text
        assert ">English</a>" in page.text


def test_choose_language() -> None:
    assert choose_language(None, None) == "zh"
    assert choose_language("en", "zh") == "en"
    assert choose_language(None, "en-US,zh;q=0.5") == "en"
    assert choose_language(None, "zh;q=0.4,en;q=0.5") == "en"


async def test_replies_after_a_post_keep_the_language_of_the_form(
    http: httpx.AsyncClient, password: str
) -> None:
    reply = await _sign_in(http, WRONG, lang="en")
    assert reply.status_code == 401
    assert _error(reply) == WRONG_EN
    assert '<html lang="en">' in reply.text


# --- signing in ----------------------------------------------------------------------------------


async def test_signing_in_sets_a_session_cookie_and_returns_to_the_page(
    http: httpx.AsyncClient, conn: Connection, settings: Settings, citizen: UUID, password: str
) -> None:
    reply = await _sign_in(http, password, return_to="/services/applications?status=open&page=2")
    assert reply.status_code == 303
    assert reply.headers["location"] == "/services/applications?status=open&page=2"
    assert reply.headers["cache-control"] == "no-store"
    cookie = _set_cookie(reply, "ow_session")
    assert "httponly" in cookie
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/"
    assert cookie["max-age"] == str(settings.session_hours * 3600)
    assert "secure" not in cookie  # the tests' public_url is http://
    assert _set_cookie(reply, "ow_csrf")["max-age"] == "0"  # the token has served its purpose

    sign_on = await sessions.current_sign_on(conn, cookie["value"])
    assert sign_on is not None
    assert sign_on.person_id == citizen
    assert sign_on.acr == LOA_LOW
    assert sign_on.amr == ("pwd",)
    # Only the SHA-256 of the cookie is stored.
    digest = hashlib.sha256(cookie["value"].encode()).digest()
    assert sign_on.session_hash == digest
    stored = await conn.fetch("SELECT id_hash FROM identity.sessions WHERE person_id = $1", citizen)
    assert [bytes(row["id_hash"]) for row in stored] == [digest]


async def test_signing_in_by_e_mail_in_any_case_works(
    http: httpx.AsyncClient, conn: Connection, citizen: UUID, password: str
) -> None:
    reply = await _sign_in(http, password, login="  Citizen1@Demo.OneWindow.invalid ")
    assert reply.status_code == 303
    sign_on = await sessions.current_sign_on(conn, http.cookies["ow_session"])
    assert sign_on is not None
    assert sign_on.person_id == citizen


async def test_signing_in_again_replaces_the_browsers_previous_session(
    http: httpx.AsyncClient, conn: Connection, password: str
) -> None:
    first = _set_cookie(await _sign_in(http, password), "ow_session")["value"]
    second = _set_cookie(await _sign_in(http, password, login="officer1"), "ow_session")["value"]
    assert await sessions.current_sign_on(conn, first) is None
    now = await sessions.current_sign_on(conn, second)
    assert now is not None
    assert now.person_id == await _person(conn, "officer1")


def test_cookies_are_secure_when_onewindow_is_served_over_https(settings: Settings) -> None:
    https = settings.model_copy(update={"public_url": "https://onewindow.city.example"})
    assert "Secure" in sessions.session_cookie(https, "value").to_header()
    assert "Secure" in sessions.clear_session_cookie(https).to_header()
    assert "Secure" not in sessions.session_cookie(settings, "value").to_header()
    cleared = sessions.clear_session_cookie(settings)
    assert cleared.key == "ow_session"
    assert cleared.max_age == 0
    assert cleared.path == "/"


@pytest.mark.parametrize(
    "return_to",
    [
        "//evil.example",
        "//evil.example/login",
        "https://evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "javascript:alert(1)",
        "evil.example",
        "",
        "/" + "a" * 3000,
    ],
)
async def test_return_to_outside_this_site_becomes_the_home_page(
    http: httpx.AsyncClient, password: str, return_to: str
) -> None:
    page = await http.get("/login", params={"return_to": return_to})
    assert page.status_code == 200
    assert RETURN_TO_FIELD.findall(page.text) == ["/"]
    # A hand-made form with the bad value is refused the same way.
    reply = await _sign_in(http, password, return_to=return_to)
    assert reply.status_code == 303
    assert reply.headers["location"] == "/"


def test_safe_return_to() -> None:
    assert (
        safe_return_to("/oauth2/authorize?client_id=a&state=b%20c")
        == "/oauth2/authorize?client_id=a&state=b%20c"
    )
    assert safe_return_to("/") == "/"
    assert safe_return_to(None) == "/"
    assert safe_return_to("/ok/../fine#frag") == "/ok/../fine#frag"
    for bad in ("//x", "http://x", "/\\x", "x", "/\x00", "/caf\u00e9", "/ spaced", "///x"):
        assert safe_return_to(bad) == "/", bad
    assert login_url("/oauth2/authorize?a=1&b=2") == "/login?return_to=%2Foauth2%2Fauthorize%3Fa%3D1%26b%3D2"
    assert login_url("//evil", lang="en") == "/login?return_to=%2F&lang=en"


# --- CSRF ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["missing field", "other token", "no cookie", "empty field"])
async def test_a_post_without_the_matching_csrf_token_is_refused(
    http: httpx.AsyncClient, conn: Connection, citizen: UUID, password: str, case: str
) -> None:
    token = await _token(http)
    form = {"login": "citizen1", "password": password, "return_to": "/"}
    if case == "missing field":
        pass
    elif case == "other token":
        form["csrf_token"] = ("A" if token[0] != "A" else "B") + token[1:]
    elif case == "no cookie":
        form["csrf_token"] = token
        http.cookies.clear()
    else:
        form["csrf_token"] = ""
    reply = await http.post("/login", data=form)
    assert reply.status_code == 403
    _assert_page_headers(reply)
    assert "页面已过期" in _error(reply)
    assert "ow_session" not in reply.headers.get("set-cookie", "")
    assert await conn.fetchval("SELECT count(*) FROM identity.sessions") == 0
    # Not an attempt on the account: nothing counted, nothing audited.
    assert await _failures(conn, citizen) == 0
    assert await conn.fetchval("SELECT count(*) FROM identity.audit_log WHERE action = 'login'") == 0


# --- failures and brute force --------------------------------------------------------------------


async def test_a_wrong_password_and_an_unknown_account_look_the_same(
    http: httpx.AsyncClient, password: str
) -> None:
    wrong = await _sign_in(http, WRONG)
    unknown = await _sign_in(http, WRONG, login="no.such.person")
    assert wrong.status_code == unknown.status_code == 401
    assert _error(wrong) == _error(unknown) == WRONG_ZH
    _assert_page_headers(wrong)
    # The form again: the login as typed, never the password, and a token to try again with.
    assert 'value="citizen1"' in wrong.text
    assert 'value="no.such.person"' in unknown.text
    assert WRONG not in wrong.text
    assert WRONG not in unknown.text
    assert TOKEN_FIELD.search(wrong.text)
    assert "ow_session" not in wrong.headers.get("set-cookie", "")
    # The token still works for the next try.
    assert (await _sign_in(http, password)).status_code == 303


async def test_an_unknown_account_takes_as_long_as_a_wrong_password(
    conn: Connection, db: RollbackDatabase, settings: Settings, citizen: UUID
) -> None:
    # With costs high enough that argon2 dominates a request, an unknown account must still
    # spend an argon2 run: answering at once would tell which accounts exist. Timings are
    # compared by their minimum over a few tries, and only to within a factor of two.
    slow = settings.model_copy(update={"password_time_cost": 2, "password_memory_kib": 32768})
    await store.set_password_hash(conn, citizen, hash_password("the-right-password", password_hashing(slow)))
    dummy_verify("warm-up", password_hashing(slow))  # the dummy hash is made on first use
    timings: dict[str, list[float]] = {"citizen1": [], "no.such.person": []}
    async with app_client(build_app(slow, db)) as client:
        for _ in range(3):  # three wrong passwords: the fourth attempt would be made to wait
            for login, spent in timings.items():
                token = await _token(client)
                started = time.perf_counter()
                reply = await client.post(
                    "/login", data={"login": login, "password": WRONG, "csrf_token": token}
                )
                spent.append(time.perf_counter() - started)
                assert reply.status_code == 401
    assert min(timings["no.such.person"]) > 0.5 * min(timings["citizen1"]), timings


async def test_the_login_is_escaped_when_shown_again(http: httpx.AsyncClient) -> None:
    reply = await _sign_in(http, WRONG, login='"><script>alert(1)</script>')
    assert reply.status_code == 401
    assert "<script>" not in reply.text
    assert "&quot;&gt;&lt;script&gt;" in reply.text


async def test_failures_slow_the_account_down_more_and_more(
    http: httpx.AsyncClient, conn: Connection, citizen: UUID, password: str
) -> None:
    for _ in range(3):
        assert (await _sign_in(http, WRONG)).status_code == 401
    # Three failures: even the right password waits 1 s, and is not looked at.
    waiting = await _sign_in(http, password)
    assert waiting.status_code == 429
    assert waiting.headers["retry-after"] == "1"
    assert "1 秒" in _error(waiting)
    _assert_page_headers(waiting)
    assert await _failures(conn, citizen) == 3  # a refused attempt is not counted

    await _age_failures(conn, 1, person_id=citizen)
    assert (await _sign_in(http, WRONG)).status_code == 401
    waiting = await _sign_in(http, password)
    assert waiting.status_code == 429
    assert waiting.headers["retry-after"] == "2"

    await _age_failures(conn, 2, person_id=citizen)
    assert (await _sign_in(http, WRONG)).status_code == 401
    assert (await _sign_in(http, password)).headers["retry-after"] == "4"

    # Once the wait is over, the right password works and the count starts afresh.
    await _age_failures(conn, 4, person_id=citizen)
    assert (await _sign_in(http, password)).status_code == 303
    assert await _failures(conn, citizen) == 0


async def test_check_allowed_doubles_the_delay_caps_it_and_then_locks(
    conn: Connection, citizen: UUID
) -> None:
    waits = []
    for _ in range(10):
        await sessions.record_failure(conn, citizen, SOURCE)
        waits.append(await sessions.check_allowed(conn, citizen, SOURCE))
    lock_seconds = sessions.LOCK_DURATION.total_seconds()
    assert waits == [None, None, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, lock_seconds]
    assert await sessions.locked_until(conn, citizen) is not None
    audit = await conn.fetchrow(
        "SELECT subject, detail FROM identity.audit_log WHERE action = 'lock_account'"
    )
    assert audit is not None
    assert audit["subject"] == str(citizen)
    assert audit["detail"]["reason"] == "too_many_failures"
    # Failures of other accounts, long ago, or of no account do not count against this one.
    other = await _person(conn, "officer1")
    assert await sessions.check_allowed(conn, other, "10.9.9.9") is None


async def test_attempts_on_one_account_are_checked_one_at_a_time(database_url: str) -> None:
    # Otherwise a burst of parallel guesses would all pass the check before any failure counted.
    person, other = uuid4(), uuid4()
    first, second = await connect(database_url), await connect(database_url)

    async def attempt(person_id: UUID) -> float | None:
        async with second.transaction():
            return await sessions.check_allowed(second, person_id, SOURCE)

    try:
        async with first.transaction():
            assert await sessions.check_allowed(first, person, SOURCE) is None
            assert await asyncio.wait_for(attempt(other), 5) is None  # other accounts go on
            waiting = asyncio.create_task(attempt(person))
            await asyncio.sleep(0.3)
            assert not waiting.done()
        assert await asyncio.wait_for(waiting, 5) is None
    finally:
        await first.close()
        await second.close()


async def test_ten_failures_lock_the_account_until_unlocked(
    http: httpx.AsyncClient, conn: Connection, citizen: UUID, password: str
) -> None:
    for _ in range(10):
        await _age_failures(conn, 61, person_id=citizen)  # past the longest delay, inside the window
        assert (await _sign_in(http, WRONG)).status_code == 401
    lock = await conn.fetchrow(
        "SELECT locked_until - now() AS remaining, reason FROM identity.account_locks WHERE person_id = $1",
        citizen,
    )
    assert lock is not None
    assert lock["reason"] == "too_many_failures"
    assert lock["remaining"] == timedelta(minutes=15)

    await _age_failures(conn, 61, person_id=citizen)
    locked = await _sign_in(http, password)
    assert locked.status_code == 423
    assert "暂时锁定" in _error(locked)
    assert locked.headers["retry-after"] == "900"
    assert "ow_session" not in locked.headers.get("set-cookie", "")

    assert await sessions.unlock(conn, citizen) is True
    assert await sessions.locked_until(conn, citizen) is None
    assert await _failures(conn, citizen) == 0
    assert await conn.fetchval("SELECT count(*) FROM identity.audit_log WHERE action = 'unlock_account'") == 1
    assert (await _sign_in(http, password)).status_code == 303
    assert await sessions.unlock(conn, citizen) is False


async def test_a_lock_ends_by_itself_after_fifteen_minutes(conn: Connection, citizen: UUID) -> None:
    for _ in range(10):
        await sessions.record_failure(conn, citizen, SOURCE)
    await conn.execute(
        "UPDATE identity.account_locks SET locked_until = now() - interval '1 second' WHERE person_id = $1",
        citizen,
    )
    await _age_failures(conn, 15 * 60 + 1, person_id=citizen)
    assert await sessions.locked_until(conn, citizen) is None
    assert await sessions.check_allowed(conn, citizen, SOURCE) is None


async def test_thirty_failures_from_one_address_block_it_for_fifteen_minutes(
    http: httpx.AsyncClient, conn: Connection, password: str
) -> None:
    # Password spraying: a few guesses at many accounts, which no account's counter sees.
    for _ in range(29):
        await sessions.record_failure(conn, None, SOURCE)
    assert await sessions.check_allowed(conn, None, SOURCE) is None
    assert (await _sign_in(http, WRONG, login="no.such.person")).status_code == 401  # the 30th

    blocked = await _sign_in(http, password)  # another account, the right password
    assert blocked.status_code == 429
    assert blocked.headers["retry-after"] == "900"
    assert await sessions.check_allowed(conn, None, "10.1.2.3") is None

    await _age_failures(conn, 15 * 60 - 10)
    assert await sessions.check_allowed(conn, None, SOURCE) == 10.0
    await _age_failures(conn, 11)
    assert await sessions.check_allowed(conn, None, SOURCE) is None
    assert (await _sign_in(http, password)).status_code == 303


async def test_a_disabled_account_is_refused(
    http: httpx.AsyncClient, conn: Connection, citizen: UUID, password: str
) -> None:
    await conn.execute("UPDATE identity.persons SET disabled_at = now() WHERE id = $1", citizen)
    # Without the password, it is just a wrong password: being disabled is not given away.
    assert _error(await _sign_in(http, WRONG)) == WRONG_ZH
    refused = await _sign_in(http, password)
    assert refused.status_code == 403
    _assert_page_headers(refused)
    assert "已停用" in _error(refused)
    assert "ow_session" not in refused.headers.get("set-cookie", "")
    assert await conn.fetchval("SELECT count(*) FROM identity.sessions") == 0


async def test_a_phone_number_signs_in_whatever_way_it_is_typed(
    http: httpx.AsyncClient, conn: Connection, settings: Settings, citizen: UUID, password: str
) -> None:
    phone = normalise_phone("+86 138 0013 8000")
    await conn.execute(
        "UPDATE identity.persons SET phone_hash = $2, phone_enc = $3 WHERE id = $1",
        citizen,
        keyed_hash(derive_key(settings.master_secret, "identity.phone"), phone),
        encrypt(
            derive_key(settings.master_secret, "identity.phone.enc"), phone, associated_data=citizen.bytes
        ),
    )
    typed = "+86 138-0013-8000"
    full_width = "".join(chr(ord(c) + 0xFEE0) if c != " " else c for c in typed)  # a Chinese IME
    for login in (typed, full_width):
        reply = await _sign_in(http, password, login=login)
        assert reply.status_code == 303, login
        sign_on = await sessions.current_sign_on(conn, _set_cookie(reply, "ow_session")["value"])
        assert sign_on is not None
        assert sign_on.person_id == citizen
    assert (await _sign_in(http, password, login="+86 138 0013 8001")).status_code == 401
    details = await conn.fetch("SELECT detail::text AS detail FROM identity.audit_log WHERE action = 'login'")
    assert len(details) == 3
    for row in details:
        assert '"via": "phone"' in row["detail"] or '"via":"phone"' in row["detail"]
        assert "138" not in row["detail"]


# --- the session ---------------------------------------------------------------------------------


async def test_current_sign_on_follows_the_session_until_it_expires_or_ends(
    conn: Connection, settings: Settings, citizen: UUID
) -> None:
    cookie, started = await sessions.start_session(
        conn, settings, citizen, amr=("pwd", "otp"), acr=LOA_SUBSTANTIAL
    )
    assert await sessions.current_sign_on(conn, cookie) == started
    assert started.amr == ("pwd", "otp")
    assert started.acr == LOA_SUBSTANTIAL
    lifetime = await conn.fetchval(
        "SELECT expires_at - auth_time FROM identity.sessions WHERE id_hash = $1", started.session_hash
    )
    assert lifetime == timedelta(hours=settings.session_hours)

    for bad in (None, "", "x" * 200, "not a token", cookie + "x", cookie[:-1], "\x00", "\ud800"):
        assert await sessions.current_sign_on(conn, bad) is None, bad

    await conn.execute(
        "UPDATE identity.sessions SET expires_at = now() - interval '1 second' WHERE id_hash = $1",
        started.session_hash,
    )
    assert await sessions.current_sign_on(conn, cookie) is None

    cookie, _ = await sessions.start_session(conn, settings, citizen, amr=["pwd"], acr=LOA_LOW)
    assert await sessions.end_session(conn, cookie) is True
    assert await sessions.current_sign_on(conn, cookie) is None
    assert await sessions.end_session(conn, cookie) is False

    cookie, _ = await sessions.start_session(conn, settings, citizen, amr=["pwd"], acr=LOA_LOW)
    await conn.execute("UPDATE identity.persons SET disabled_at = now() WHERE id = $1", citizen)
    assert await sessions.current_sign_on(conn, cookie) is None


async def test_signing_out_ends_every_session_of_the_person(
    http: httpx.AsyncClient, conn: Connection, settings: Settings, citizen: UUID, password: str
) -> None:
    phone, _ = await sessions.start_session(conn, settings, citizen, amr=["pwd"], acr=LOA_LOW)
    officer, _ = await sessions.start_session(
        conn, settings, await _person(conn, "officer1"), amr=["pwd"], acr=LOA_LOW
    )
    assert (await _sign_in(http, password)).status_code == 303
    browser = http.cookies["ow_session"]

    page = await http.get("/logout", params={"lang": "en"})
    assert page.status_code == 200
    _assert_page_headers(page)
    assert "Sign out on all your devices?" in page.text
    assert _set_cookie(page, "ow_csrf")["path"] == "/logout"
    # Showing the page signs nobody out.
    assert await sessions.current_sign_on(conn, browser) is not None
    found = TOKEN_FIELD.search(page.text)
    assert found
    token = found.group(1)

    refused = await http.post("/logout", data={"csrf_token": "A" * 43})
    assert refused.status_code == 403
    assert await sessions.current_sign_on(conn, browser) is not None

    done = await http.post("/logout", data={"csrf_token": token, "lang": "en"})
    assert done.status_code == 200
    _assert_page_headers(done)
    assert "You are signed out on all your devices." in done.text
    cleared = _set_cookie(done, "ow_session")
    assert cleared["max-age"] == "0"
    assert cleared["path"] == "/"
    assert await sessions.current_sign_on(conn, browser) is None
    assert await sessions.current_sign_on(conn, phone) is None
    assert await sessions.current_sign_on(conn, officer) is not None  # someone else's
    audit = await conn.fetchrow("SELECT subject, detail FROM identity.audit_log WHERE action = 'logout'")
    assert audit is not None
    assert audit["subject"] == str(citizen)
    assert audit["detail"]["sessions"] == 2

    # Signing out again, signed in or not, is harmless.
    again = await http.post("/logout", data={"csrf_token": await _token(http, "/logout")})
    assert again.status_code == 200
    assert "您已在所有设备上退出登录。" in again.text


async def test_end_sessions_counts_only_open_sessions(
    conn: Connection, settings: Settings, citizen: UUID
) -> None:
    first, _ = await sessions.start_session(conn, settings, citizen, amr=["pwd"], acr=LOA_LOW)
    await sessions.start_session(conn, settings, citizen, amr=["pwd"], acr=LOA_LOW)
    await sessions.end_session(conn, first)
    assert await sessions.end_sessions(conn, citizen) == 1
    assert await sessions.end_sessions(conn, citizen) == 0


# --- audit and rehashing -------------------------------------------------------------------------


async def test_every_attempt_is_audited_without_the_login_or_the_password(
    http: httpx.AsyncClient, conn: Connection, citizen: UUID, password: str
) -> None:
    assert (await _sign_in(http, WRONG)).status_code == 401
    assert (await _sign_in(http, WRONG, login="no.such.person@example.org")).status_code == 401
    assert (await _sign_in(http, password)).status_code == 303
    for _ in range(3):
        await sessions.record_failure(conn, citizen, SOURCE)
    assert (await _sign_in(http, password)).status_code == 429
    await sessions.unlock(conn, citizen)
    for _ in range(10):
        await sessions.record_failure(conn, citizen, SOURCE)
    assert (await _sign_in(http, password)).status_code == 423
    await sessions.unlock(conn, citizen)
    await conn.execute("UPDATE identity.persons SET disabled_at = now() WHERE id = $1", citizen)
    assert (await _sign_in(http, password)).status_code == 403

    rows = await conn.fetch(
        "SELECT actor_id, subject, outcome, detail, detail::text AS text FROM identity.audit_log"
        " WHERE action = 'login' ORDER BY id"
    )
    assert [row["outcome"] for row in rows] == [
        "wrong_password",
        "unknown_account",
        "ok",
        "throttled",
        "locked",
        "disabled",
    ]
    for row in rows:
        assert row["detail"]["source"] == SOURCE
        for secret in ("citizen1", "no.such.person", "example.org", password, WRONG):
            assert secret not in row["text"], (row["outcome"], secret)
        if row["outcome"] == "unknown_account":
            assert row["subject"] is None
            assert row["actor_id"] is None
        else:
            assert row["subject"] == str(citizen)
            assert row["actor_id"] == citizen
    assert rows[2]["detail"]["amr"] == ["pwd"]
    assert rows[2]["detail"]["acr"] == LOA_LOW


async def test_a_hash_made_with_old_costs_is_replaced_at_sign_in(
    http: httpx.AsyncClient, conn: Connection, settings: Settings, citizen: UUID, password: str
) -> None:
    old = hash_password(password, PasswordHashing(time_cost=2, memory_kib=8192, parallelism=1))
    await store.set_password_hash(conn, citizen, old)
    assert needs_rehash(old, password_hashing(settings))

    assert (await _sign_in(http, WRONG)).status_code == 401
    assert await store.password_hash(conn, citizen) == old  # only a right password can be rehashed

    assert (await _sign_in(http, password)).status_code == 303
    new = await store.password_hash(conn, citizen)
    assert new is not None
    assert new != old
    assert not needs_rehash(new, password_hashing(settings))
    assert verify_password(new, password)

    # A current hash is left alone.
    assert (await _sign_in(http, password)).status_code == 303
    assert await store.password_hash(conn, citizen) == new


# --- bad input -----------------------------------------------------------------------------------


URLENCODED = {"content-type": "application/x-www-form-urlencoded"}
# (form fields, raw body, headers) from the page's CSRF token and the right password.
BadBody = tuple[dict[str, str] | None, bytes | None, dict[str, str]]


def _fields(token: str, right_password: str, /, *, drop: str | None = None, **changes: str) -> BadBody:
    form = {"csrf_token": token, "return_to": "/", "login": "citizen1", "password": right_password, **changes}
    if drop:
        del form[drop]
    return form, None, {}


def _raw(body: str, headers: dict[str, str] = URLENCODED, encoding: str = "utf-8") -> BadBody:
    return None, body.encode(encoding), headers


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(400, lambda t, p: _fields(t, p, drop="login"), id="no login"),
        pytest.param(400, lambda t, p: _fields(t, p, drop="password"), id="no password"),
        pytest.param(400, lambda t, p: _fields(t, p, login="   "), id="blank login"),
        pytest.param(400, lambda t, p: _fields(t, p, login="c" * 257), id="long login"),
        pytest.param(400, lambda t, p: _fields(t, p, password="c" * 257), id="long password"),
        pytest.param(400, lambda t, p: _fields(t, p, login="citizen1\x00"), id="NUL in login"),
        pytest.param(
            400, lambda t, p: _raw(f"csrf_token={t}&login=citizen1&password=a&password=b"), id="twice"
        ),
        pytest.param(400, lambda t, p: _raw(f"csrf_token={t}" + "&f=1" * 40), id="too many fields"),
        pytest.param(
            400, lambda t, p: _raw(f"csrf_token={t}&login=\xff", encoding="latin-1"), id="not UTF-8"
        ),
        pytest.param(
            400, lambda t, p: _raw(f"csrf_token={t}&login=%ff%fe&password=x"), id="escaped not UTF-8"
        ),
        pytest.param(
            415, lambda t, p: _raw('{"login": "citizen1"}', {"content-type": "application/json"}), id="JSON"
        ),
        pytest.param(
            415,
            lambda t, p: _raw(
                f'--b\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{t}\r\n--b--\r\n',
                {"content-type": "multipart/form-data; boundary=b"},
            ),
            id="multipart",
        ),
        pytest.param(415, lambda t, p: _raw(f"csrf_token={t}", {}), id="no content type"),
    ],
)
async def test_bad_input_gets_a_page_never_a_server_error(
    http: httpx.AsyncClient, conn: Connection, password: str, status: int, body: Callable[[str, str], BadBody]
) -> None:
    form, content, headers = body(await _token(http), password)
    reply = await http.post("/login", data=form, content=content, headers=headers)
    assert reply.status_code == status, reply.text
    _assert_page_headers(reply)
    if form and any(len(value) > 256 for value in form.values()):
        assert "c" * 257 not in reply.text  # not even the login is shown again
        assert "最多 256 个字符" in _error(reply)
    assert await conn.fetchval("SELECT count(*) FROM identity.login_failures") == 0
    assert await conn.fetchval("SELECT count(*) FROM identity.sessions") == 0


@pytest.mark.parametrize(
    "query",
    [
        "return_to=/a&return_to=/b",
        "lang=en&lang=zh",
        "return_to=" + "%2F" * 5000,
        "lang=" + "x" * 5000,
        "return_to=%00",
        "return_to=%ff",
    ],
)
async def test_odd_queries_still_show_the_form(http: httpx.AsyncClient, query: str) -> None:
    page = await http.get("/login?" + query)
    assert page.status_code < 500
    if page.status_code == 200:
        assert RETURN_TO_FIELD.findall(page.text) in (["/"], ["/a"], ["/b"])


async def test_every_page_has_an_operation_id(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/schema/openapi.json")).json()
    operations = {
        operation["operationId"]
        for path, methods in schema["paths"].items()
        if path in ("/login", "/logout")
        for operation in methods.values()
    }
    assert operations == {"login_form", "login_submit", "logout_form", "logout_submit"}
