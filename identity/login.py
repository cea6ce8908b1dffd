"""The sign-in and sign-out pages: server-rendered HTML, no JavaScript, in Chinese and English.

Any endpoint that needs a signed-in person sends them here and gets them back:

    sign_on = await sessions.current_sign_on(conn, request.cookies.get(sessions.SESSION_COOKIE))
    if sign_on is None:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect(login_url(here), status_code=303)

After a successful sign-in the person is sent (303) to `return_to`, now carrying the session
cookie, and `current_sign_on` then says who they are. `return_to` must be a path on this site
("/oauth2/authorize?..."): anything else becomes "/", so the page cannot be used to bounce
people to another site.

CSRF protection is a double submit: a random token in a cookie scoped to the page's own path and
SameSite=Strict, and the same token in a hidden field; a POST without both, equal, is refused.
A page on another site can neither have the cookie sent with its POST (Strict) nor read it to
copy into the field.

The form body is parsed here rather than by litestar: litestar memoises parsed url-encoded
bodies in a process-wide LRU cache, and a login body holds a password.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import re
import secrets
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.params import FromQuery

from identity import sessions, store
from identity.credentials import (
    derive_key,
    dummy_verify,
    hash_password,
    keyed_hash,
    needs_rehash,
    normalise_phone,
    verify_password,
)
from identity.oidc import LOA_LOW
from identity.seed import password_hashing
from onewindow.db import Connection
from onewindow.settings import Settings

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "CSRF_COOKIE",
    "LoginController",
    "LogoutController",
    "choose_language",
    "finish_sign_in",
    "login_url",
    "safe_return_to",
]

LANGUAGES: Final = ("zh", "en")
DEFAULT_LANGUAGE: Final = "zh"
CSRF_COOKIE: Final = "ow_csrf"
LOGIN_PATH: Final = "/login"
LOGOUT_PATH: Final = "/logout"
MAX_FIELD_LENGTH: Final = 256
# An authorization request (client, redirect URI, scope, state, nonce, PKCE challenge) carried in
# return_to is longer than a form field; 2 KiB holds any reasonable one.
MAX_RETURN_TO_LENGTH: Final = 2048
_MAX_FORM_FIELDS: Final = 16
_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)

# litestar adds "; charset=utf-8" to text/html itself.
HTML: Final = MediaType.HTML
# No form-action: Chrome and Safari apply it to every redirect after a form is posted, and the
# sign-in form's redirects end at the client's own redirect URI (w3c/webappsec-csp#8).
CONTENT_SECURITY_POLICY: Final = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
_PAGE_HEADERS: Final = {
    # A sign-in page or its reply in a shared computer's cache or history would leak who signed in.
    "Cache-Control": "no-store",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

TEXT: Final[dict[str, dict[str, str]]] = {
    "zh": {
        "html_lang": "zh-CN",
        "service": "一网通办",
        "sign_in": "登录",
        "login_label": "用户名、手机号或电子邮箱",
        "password_label": "密码",
        "wrong_credentials": "用户名或密码错误。",
        "throttled": "尝试次数过多，请在 {seconds} 秒后再试。",
        "locked": "该账户因多次登录失败已被暂时锁定，请 {minutes} 分钟后再试，或联系管理员。",
        "disabled": "该账户已停用，无法登录。如有疑问请联系管理员。",
        "csrf": "页面已过期或请求来源无效。请重新打开登录页面后再试。",
        "missing": "请填写用户名（或手机号、电子邮箱）和密码。",
        "too_long": "输入内容过长（最多 256 个字符）。",
        "invalid": "输入内容包含无法识别的字符。",
        "unreadable": "无法读取提交的表单，请从登录页面重新提交。",
        "back_to_sign_in": "返回登录页面",
        "sign_out": "退出登录",
        "sign_out_question": "要在所有设备上退出登录吗？",
        "sign_out_button": "在所有设备上退出",
        "signed_out": "您已在所有设备上退出登录。",
        "other_language": "English",
    },
    "en": {
        "html_lang": "en",
        "service": "OneWindow",
        "sign_in": "Sign in",
        "login_label": "Username, phone number or e-mail",
        "password_label": "Password",
        "wrong_credentials": "Wrong username or password.",
        "throttled": "Too many attempts. Please try again in {seconds} seconds.",
        "locked": "This account is temporarily locked after too many failed sign-ins. Please try again in {minutes} minutes or contact an administrator.",
        "disabled": "This account is disabled and cannot sign in. Please contact an administrator.",
        "csrf": "This page has expired or the request did not come from it. Please open the sign-in page again.",
        "missing": "Please enter your username (or phone number, or e-mail) and your password.",
        "too_long": "An entry is too long (at most 256 characters).",
        "invalid": "An entry contains characters that cannot be used.",
        "unreadable": "The form could not be read. Please submit it again from the sign-in page.",
        "back_to_sign_in": "Back to sign in",
        "sign_out": "Sign out",
        "sign_out_question": "Sign out on all your devices?",
        "sign_out_button": "Sign out everywhere",
        "signed_out": "You are signed out on all your devices.",
        "other_language": "中文",
    },
}

_STYLE: Final = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;
color:#1a1a1a;background:#f4f5f7}
main{max-width:26rem;margin:2rem auto;padding:1.5rem;background:#fff;border-radius:8px}
h1{font-size:1.4rem;margin:0 0 1rem}
label{display:block;margin:1rem 0 .25rem;font-weight:600}
input{width:100%;padding:.6rem;font-size:1rem;border:1px solid #888;border-radius:4px}
button{width:100%;margin-top:1.5rem;padding:.7rem;font-size:1rem;border:0;border-radius:4px;
background:#0b5cad;color:#fff}
.error{padding:.6rem;border-left:4px solid #b00020;background:#fdecee}
.notice{padding:.6rem;border-left:4px solid #1b7f3b;background:#e9f6ee}
.lang{margin-top:1.5rem;text-align:right}
a{color:#0b5cad}
"""


# --- rules that other modules may call -------------------------------------------------------


def safe_return_to(value: str | None) -> str:
    """`value` if it is a path on this site, else "/".

    Refused: anything not starting with "/", "//" (a scheme-relative URL is another host), a
    backslash (browsers read "/\\host" as "//host"), and any character outside printable ASCII:
    browsers drop tabs and newlines from URLs, so "/\\t/host" would also become "//host", and a
    Location header cannot carry the rest.
    """
    if not value or len(value) > MAX_RETURN_TO_LENGTH:
        return "/"
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if not all("!" <= c <= "~" for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def login_url(return_to: str = "/", *, lang: str | None = None) -> str:
    """Where to send a person who must sign in first, to come back to `return_to` afterwards."""
    query = {"return_to": safe_return_to(return_to)}
    if lang in LANGUAGES:
        query["lang"] = lang
    return f"{LOGIN_PATH}?{urlencode(query)}"


def choose_language(requested: str | None, accept_language: str | None) -> str:
    """`?lang=` when it is one we have, else the best of Accept-Language, else Chinese."""
    if requested in LANGUAGES:
        return requested
    best, best_quality = DEFAULT_LANGUAGE, 0.0
    # A browser sends a handful of entries; a longer header is not worth parsing.
    for entry in (accept_language or "").split(",")[:20]:
        tag, _, parameters = entry.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        quality = 1.0
        name, _, number = parameters.strip().partition("=")
        if name.strip() == "q":
            try:
                quality = float(number)
            except ValueError:
                quality = 0.0
        if primary in LANGUAGES and quality > best_quality:
            best, best_quality = primary, quality
    return best


# --- pages -----------------------------------------------------------------------------------


def document(lang: str, title: str, body: str) -> str:
    text = TEXT[lang]
    return (
        "<!doctype html>\n"
        f'<html lang="{text["html_lang"]}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)} · {escape(text['service'])}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def error_html(message: str | None) -> str:
    return f'<p class="error" role="alert">{escape(message)}</p>\n' if message else ""


def _notice(message: str) -> str:
    return f'<p class="notice" role="status">{escape(message)}</p>\n'


def _login_page(lang: str, *, csrf: str, return_to: str, login: str = "", error: str | None = None) -> str:
    text = TEXT[lang]
    other = "en" if lang == "zh" else "zh"
    switch = f"{LOGIN_PATH}?{urlencode({'lang': other, 'return_to': return_to})}"
    body = (
        f"<h1>{escape(text['sign_in'])}</h1>\n"
        f"{error_html(error)}"
        f'<form method="post" action="{LOGIN_PATH}">\n'
        f'<input type="hidden" name="csrf_token" value="{escape(csrf)}">\n'
        f'<input type="hidden" name="return_to" value="{escape(return_to)}">\n'
        f'<input type="hidden" name="lang" value="{lang}">\n'
        f'<label for="login">{escape(text["login_label"])}</label>\n'
        f'<input id="login" name="login" type="text" value="{escape(login)}" required'
        f' maxlength="{MAX_FIELD_LENGTH}" autocomplete="username" autocapitalize="none" spellcheck="false">\n'
        f'<label for="password">{escape(text["password_label"])}</label>\n'
        f'<input id="password" name="password" type="password" required maxlength="{MAX_FIELD_LENGTH}"'
        ' autocomplete="current-password">\n'
        f'<button type="submit">{escape(text["sign_in"])}</button>\n'
        "</form>\n"
        f'<p class="lang"><a href="{escape(switch)}" hreflang="{other}" lang="{TEXT[other]["html_lang"]}">'
        f"{escape(text['other_language'])}</a></p>"
    )
    return document(lang, text["sign_in"], body)


def _message_page(
    lang: str, title: str, message: str, *, link: str, link_text: str, problem: bool = True
) -> str:
    body = (
        f"<h1>{escape(title)}</h1>\n{error_html(message) if problem else _notice(message)}"
        f'<p><a href="{escape(link)}">{escape(link_text)}</a></p>'
    )
    return document(lang, title, body)


def _logout_page(lang: str, *, csrf: str) -> str:
    text = TEXT[lang]
    other = "en" if lang == "zh" else "zh"
    body = (
        f"<h1>{escape(text['sign_out'])}</h1>\n"
        f"<p>{escape(text['sign_out_question'])}</p>\n"
        f'<form method="post" action="{LOGOUT_PATH}">\n'
        f'<input type="hidden" name="csrf_token" value="{escape(csrf)}">\n'
        f'<input type="hidden" name="lang" value="{lang}">\n'
        f'<button type="submit">{escape(text["sign_out_button"])}</button>\n'
        "</form>\n"
        f'<p class="lang"><a href="{LOGOUT_PATH}?lang={other}" hreflang="{other}"'
        f' lang="{TEXT[other]["html_lang"]}">{escape(text["other_language"])}</a></p>'
    )
    return document(lang, text["sign_out"], body)


def html_response(
    page: str, *, status: int = 200, headers: dict[str, str] | None = None, cookies: Sequence[Cookie] = ()
) -> Response[str]:
    return Response(
        page,
        status_code=status,
        media_type=HTML,
        headers={**_PAGE_HEADERS, **(headers or {})},
        cookies=list(cookies),
    )


def redirect_to(location: str, *, cookies: Sequence[Cookie] = ()) -> Response[str]:
    # `location` has passed safe_return_to: printable ASCII, so it goes into the header as is.
    return Response(
        "",
        status_code=303,
        media_type=MediaType.TEXT,
        headers={**_PAGE_HEADERS, "Location": location},
        cookies=list(cookies),
    )


# --- CSRF and the form body ------------------------------------------------------------------


def csrf_cookie(settings: Settings, token: str, path: str) -> Cookie:
    # HttpOnly: the page has no script that needs it. Strict: never sent from another site's
    # page, which is the point. Path: only the page that checks it ever receives it.
    return sessions.http_only_cookie(settings, CSRF_COOKIE, token, path=path, samesite="strict")


def _clear_csrf_cookie(settings: Settings, path: str) -> Cookie:
    return sessions.http_only_cookie(settings, CSRF_COOKIE, "", path=path, max_age=0, samesite="strict")


def csrf_token_for(request: Request[Any, Any, Any]) -> str:
    """The browser's token if it has a well-formed one (several open tabs keep working), else a new one."""
    current = request.cookies.get(CSRF_COOKIE)
    return current if current and _TOKEN.fullmatch(current) else secrets.token_urlsafe(32)


def csrf_ok(request: Request[Any, Any, Any], submitted: str | None) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted or not _TOKEN.fullmatch(cookie):
        return False
    # Constant time, so the reply time does not reveal how much of a guessed token was right.
    return hmac.compare_digest(cookie.encode(), submitted.encode())


@dataclass(frozen=True)
class _Posted:
    """A form that was readable and carried the right CSRF token."""

    fields: dict[str, str]
    language: str
    csrf: str


async def _posted_form(
    request: Request[Any, Any, Any], *, title: str, back: Callable[[str, dict[str, str]], str]
) -> _Posted | Response[str]:
    """The url-encoded form if it is readable and CSRF-checked; else the page saying why not.

    `back(language, fields)` is where the refusal page links to, to start over.
    """
    accepted = request.headers.get("accept-language")
    try:
        fields = await form_fields(request)
    except Unreadable as unreadable:
        language = choose_language(None, accepted)
        text = TEXT[language]
        page = _message_page(
            language, text[title], text["unreadable"], link=back(language, {}), link_text=text[title]
        )
        return html_response(page, status=unreadable.status)
    language = choose_language(fields.get("lang"), accepted)
    submitted = fields.get("csrf_token")
    if submitted is None or not csrf_ok(request, submitted):
        text = TEXT[language]
        page = _message_page(
            language, text[title], text["csrf"], link=back(language, fields), link_text=text[title]
        )
        return html_response(page, status=403)
    return _Posted(fields=fields, language=language, csrf=submitted)


class Unreadable(Exception):
    """A body that is not the page's form: wrong content type, undecodable, or malformed."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


async def form_fields(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The url-encoded form, one value per name. Raises `Unreadable`."""
    content_type, _ = request.content_type
    if content_type != "application/x-www-form-urlencoded":
        raise Unreadable(415)
    try:
        # Strict UTF-8, for the raw bytes and for what percent-escapes decode to: what is not
        # text is refused here, before it can reach a hash or a query.
        pairs = parse_qsl(
            (await request.body()).decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=_MAX_FORM_FIELDS,
            errors="strict",
        )
    except ValueError as error:  # UnicodeDecodeError too, and too many fields
        raise Unreadable(400) from error
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:  # two values for one field: which one is "the" token or password?
            raise Unreadable(400)
        fields[name] = value
    return fields


def _source(request: Request[Any, Any, Any]) -> str:
    # The peer address as the ASGI server reports it; behind a reverse proxy, run uvicorn with
    # --proxy-headers and --forwarded-allow-ips so this is the client, not the proxy.
    return request.client.host if request.client and request.client.host else "unknown"


def _phone_hash(settings: Settings, login: str) -> bytes | None:
    """The keyed hash to look a phone number up by, when `login` can be one."""
    try:
        phone = normalise_phone(login)
    except ValueError:
        return None
    return keyed_hash(derive_key(settings.master_secret, "identity.phone"), phone)


# --- signing in ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Attempt:
    """One submitted sign-in form, CSRF-checked."""

    language: str
    csrf: str
    return_to: str
    login: str
    password: str = field(repr=False)
    source: str

    @property
    def text(self) -> dict[str, str]:
        return TEXT[self.language]

    def input_problem(self) -> str | None:
        """The TEXT key saying what is wrong with the fields as typed, or None."""
        if len(self.login) > MAX_FIELD_LENGTH or len(self.password) > MAX_FIELD_LENGTH:
            return "too_long"
        if not self.login or not self.password:
            return "missing"
        # Control characters cannot be in any login name, and NUL would fail in PostgreSQL.
        if any(unicodedata.category(c) == "Cc" for c in self.login):
            return "invalid"
        return None

    def form_again(
        self, status: int, message: str, *, headers: dict[str, str] | None = None
    ) -> Response[str]:
        """The form again with the message, keeping the login as typed; never the password."""
        keep = len(self.login) <= MAX_FIELD_LENGTH and self.input_problem() != "invalid"
        page = _login_page(
            self.language,
            csrf=self.csrf,
            return_to=self.return_to,
            login=self.login if keep else "",
            error=message,
        )
        return html_response(page, status=status, headers=headers)

    def message(self, status: int, key: str) -> Response[str]:
        page = _message_page(
            self.language,
            self.text["sign_in"],
            self.text[key],
            link=login_url(self.return_to, lang=self.language),
            link_text=self.text["back_to_sign_in"],
        )
        return html_response(page, status=status)


async def _password_matches(settings: Settings, stored: str | None, password: str) -> bool:
    hashing = password_hashing(settings)
    # argon2 is slow on purpose (tens of milliseconds and 64 MiB): in a thread, not on the event
    # loop, so one sign-in does not stall every other request of the process.
    if stored is None:
        # No such account (or no password): spend the same time, so the reply does not say so.
        await asyncio.to_thread(dummy_verify, password, hashing)
        return False
    return await asyncio.to_thread(verify_password, stored, password)


async def _sign_in(
    conn: Connection, settings: Settings, request: Request[Any, Any, Any], attempt: _Attempt
) -> Response[str]:
    """The password step: look the person up, refuse while throttled, check the password."""
    phone_hash = _phone_hash(settings, attempt.login)
    person = await store.person_by_login(conn, login=attempt.login, phone_hash=phone_hash)
    person_id = person.id if person else None

    # No login name in the audit trail (it may be a phone number, or a password typed into the
    # wrong field); how it was looked up is enough to follow an incident.
    via = {"via": "phone" if phone_hash else "name"}

    async def audit(outcome: str, **extra: Any) -> None:
        detail = {"source": attempt.source, **via, **extra}
        await store.audit(
            conn,
            action="login",
            actor_id=person_id,
            subject=str(person_id) if person_id else None,
            outcome=outcome,
            detail=detail,
        )

    # Before the password is even looked at: a guess refused here teaches an attacker nothing.
    wait = await sessions.check_allowed(conn, person_id, attempt.source)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        retry = {"Retry-After": str(seconds)}
        if person_id is not None and await sessions.locked_until(conn, person_id) is not None:
            await audit("locked", wait_seconds=seconds)
            message = attempt.text["locked"].format(minutes=max(1, math.ceil(seconds / 60)))
            return attempt.form_again(423, message, headers=retry)
        await audit("throttled", wait_seconds=seconds)
        return attempt.form_again(429, attempt.text["throttled"].format(seconds=seconds), headers=retry)

    stored = await store.password_hash(conn, person_id) if person_id else None
    matched = await _password_matches(settings, stored, attempt.password)
    if not matched or person is None or stored is None:
        await sessions.record_failure(conn, person_id, attempt.source)
        await audit("wrong_password" if person else "unknown_account")
        return attempt.form_again(401, attempt.text["wrong_credentials"])
    if person.disabled_at is not None:
        # Said only to someone who knows the password: to anyone else it is a wrong password.
        await audit("disabled")
        return attempt.message(403, "disabled")

    hashing = password_hashing(settings)
    if needs_rehash(stored, hashing):
        # The only moment the password is at hand: raised costs reach the account now.
        rehashed = await asyncio.to_thread(hash_password, attempt.password, hashing)
        await store.set_password_hash(conn, person.id, rehashed)
    from identity import mfa  # noqa: PLC0415 - mfa builds its pages from this module's

    step = await mfa.second_factor(conn, settings, person.id)
    if step is not None:
        await audit("second_factor_required")
        return mfa.to_second_factor(settings, person.id, attempt.return_to, step, lang=attempt.language)
    return await finish_sign_in(
        conn,
        settings,
        request,
        person.id,
        amr=("pwd",),
        acr=LOA_LOW,
        return_to=attempt.return_to,
        audit_detail=via,
    )


async def finish_sign_in(
    conn: Connection,
    settings: Settings,
    request: Request[Any, Any, Any],
    person_id: UUID,
    *,
    amr: Sequence[str],
    acr: str,
    return_to: str,
    audit_detail: Mapping[str, Any] | None = None,
) -> Response[str]:
    """Everything after the person has proved who they are: the session, the audit row, the way back.

    A second factor (TOTP for staff) belongs between the password check and this call: instead
    of calling it, render the code page, and call it when the code is right, with
    amr=("pwd", "otp") and the higher acr. `audit_detail` is added to the audit row's detail
    (no personal data).
    """
    # A browser that was signed in (perhaps as someone else) gets a new session, not a second one.
    await sessions.end_session(conn, request.cookies.get(sessions.SESSION_COOKIE))
    await sessions.clear_failures(conn, person_id)
    cookie_value, sign_on = await sessions.start_session(conn, settings, person_id, amr=amr, acr=acr)
    await store.audit(
        conn,
        action="login",
        actor_id=person_id,
        subject=str(person_id),
        outcome="ok",
        detail={
            **(audit_detail or {}),
            "source": _source(request),
            "amr": list(sign_on.amr),
            "acr": sign_on.acr,
        },
    )
    return redirect_to(
        safe_return_to(return_to),
        cookies=[sessions.session_cookie(settings, cookie_value), _clear_csrf_cookie(settings, LOGIN_PATH)],
    )


# --- the controllers -------------------------------------------------------------------------


def _back_to_login(language: str, fields: dict[str, str]) -> str:
    return login_url(safe_return_to(fields.get("return_to")), lang=language)


def _back_to_logout(language: str, _: dict[str, str]) -> str:
    return f"{LOGOUT_PATH}?lang={language}"


class LoginController(Controller):
    """The sign-in page (GET) and its form (POST)."""

    path = LOGIN_PATH
    tags = ["identity"]  # noqa: RUF012 - litestar's declared type

    @get(
        "/",
        operation_id="login_form",
        summary="The sign-in page (HTML)",
        media_type=HTML,
        description=(
            "Query: `return_to` (a path on this site to continue at), `lang` (zh or en), `login_hint`"
            " (fills in the login field, as an OpenID Connect client asked)."
        ),
    )
    async def form(
        self,
        request: Request[Any, Any, Any],
        settings: NamedDependency[Settings],
        return_to: FromQuery[str | None] = None,
        lang: FromQuery[str | None] = None,
        login_hint: FromQuery[str | None] = None,
    ) -> Response[str]:
        language = choose_language(lang, request.headers.get("accept-language"))
        token = csrf_token_for(request)
        hint = (
            login_hint
            if login_hint and len(login_hint) <= MAX_FIELD_LENGTH and login_hint.isprintable()
            else ""
        )
        page = _login_page(language, csrf=token, return_to=safe_return_to(return_to), login=hint)
        return html_response(page, cookies=[csrf_cookie(settings, token, LOGIN_PATH)])

    @post(
        "/",
        operation_id="login_submit",
        summary="Sign in with a username, phone number or e-mail and a password",
        media_type=HTML,
        status_code=303,
        description=(
            "Form fields (application/x-www-form-urlencoded): login, password, csrf_token, return_to, lang."
            " 303 to return_to on success; 400, 401, 403, 415, 423 or 429 with a page saying why."
        ),
    )
    async def submit(
        self, request: Request[Any, Any, Any], conn: Connection, settings: NamedDependency[Settings]
    ) -> Response[str]:
        posted = await _posted_form(request, title="sign_in", back=_back_to_login)
        if isinstance(posted, Response):
            return posted
        attempt = _Attempt(
            language=posted.language,
            csrf=posted.csrf,
            return_to=safe_return_to(posted.fields.get("return_to")),
            login=unicodedata.normalize("NFKC", posted.fields.get("login", "")).strip(),
            password=posted.fields.get("password", ""),
            source=_source(request),
        )
        problem = attempt.input_problem()
        if problem is not None:
            return attempt.form_again(400, attempt.text[problem])
        return await _sign_in(conn, settings, request, attempt)


class LogoutController(Controller):
    """Signing out: a confirmation page (GET), and the form that ends every session (POST).

    A GET never signs anyone out: an image on another site's page could otherwise do it.
    """

    path = LOGOUT_PATH
    tags = ["identity"]  # noqa: RUF012 - litestar's declared type

    @get("/", operation_id="logout_form", summary="The sign-out confirmation page (HTML)", media_type=HTML)
    async def form(
        self,
        request: Request[Any, Any, Any],
        settings: NamedDependency[Settings],
        lang: FromQuery[str | None] = None,
    ) -> Response[str]:
        language = choose_language(lang, request.headers.get("accept-language"))
        token = csrf_token_for(request)
        page = _logout_page(language, csrf=token)
        return html_response(page, cookies=[csrf_cookie(settings, token, LOGOUT_PATH)])

    @post(
        "/",
        operation_id="logout_submit",
        summary="Sign out on every device (ends all of the person's sessions)",
        media_type=HTML,
        status_code=200,
        description="Form fields (application/x-www-form-urlencoded): csrf_token, lang.",
    )
    async def submit(
        self, request: Request[Any, Any, Any], conn: Connection, settings: NamedDependency[Settings]
    ) -> Response[str]:
        posted = await _posted_form(request, title="sign_out", back=_back_to_logout)
        if isinstance(posted, Response):
            return posted
        cookie = request.cookies.get(sessions.SESSION_COOKIE)
        sign_on = await sessions.current_sign_on(conn, cookie)
        if sign_on is not None:
            ended = await sessions.end_sessions(conn, sign_on.person_id)
            await store.audit(
                conn,
                action="logout",
                actor_id=sign_on.person_id,
                subject=str(sign_on.person_id),
                detail={"source": _source(request), "sessions": ended},
            )
        else:
            # Expired, or its person disabled: nobody to sign out, but the row should not stay open.
            await sessions.end_session(conn, cookie)
        text = TEXT[posted.language]
        page = _message_page(
            posted.language,
            text["sign_out"],
            text["signed_out"],
            link=login_url(lang=posted.language),
            link_text=text["sign_in"],
            problem=False,
        )
        clear = [sessions.clear_session_cookie(settings), _clear_csrf_cookie(settings, LOGOUT_PATH)]
        return html_response(page, cookies=clear)
