"""The second factor: TOTP (RFC 6238) with recovery codes, between the password and the session.

After a right password, a person who has a confirmed TOTP is asked for a code; staff without one
must enrol first when ONEWINDOW_STAFF_MFA is required. Between the two steps the browser holds
a short-lived signed cookie (`ow_mfa`: who, where to go back, when), never a session: nothing
is signed in until the second factor is right.

Anyone signed in (citizens too) enrols or removes their own TOTP on the account security page
(`/account/security`), with a recent sign-in; removal needs a current code. A relying party that
asks for more assurance than the session has (`acr_values`) gets the person stepped up: the
authorize endpoint sends them to the code page with the same signed cookie (`step_up`), and the
new session carries the higher `acr`.

Wrong codes count as failed sign-ins (identity.sessions' delays and lock), so a code cannot be
guessed by trying them all within the five minutes a half-finished sign-in lasts.

Levels of assurance: password alone is low; with the second factor substantial; and high when
the person's identity was also verified (at the counter or by a trusted eID).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any, Final, Literal
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency

from identity import sessions, store
from identity.credentials import (
    decrypt,
    derive_key,
    encrypt,
    match_recovery_code,
    new_recovery_codes,
    new_totp_secret,
    provisioning_uri,
    qr_svg,
    recovery_code_digest,
    verify_totp,
)
from identity.login import (
    TEXT,
    Unreadable,
    choose_language,
    csrf_cookie,
    csrf_ok,
    csrf_token_for,
    document,
    error_html,
    finish_sign_in,
    form_fields,
    html_response,
    login_url,
    redirect_to,
    safe_return_to,
)
from identity.sessions import SESSION_COOKIE, SignOn, current_sign_on, http_only_cookie
from onewindow.db import Connection
from onewindow.settings import Settings

MFA_PATH: Final = "/login/mfa"
SETUP_PATH: Final = "/login/mfa/setup"
ACCOUNT_PATH: Final = "/account/security"
ACCOUNT_SETUP_PATH: Final = "/account/security/totp"
ACCOUNT_REMOVE_PATH: Final = "/account/security/totp/remove"
# Enrolling or removing a second factor needs a sign-in at most this old: a session cookie left
# on a shared computer must not be enough to put an attacker's authenticator on the account.
RECENT_SIGN_IN: Final = timedelta(minutes=10)
PENDING_COOKIE: Final = "ow_mfa"
_PENDING_SECONDS: Final = 300
_ISSUER: Final = "OneWindow"

Step = Literal["verify", "enrol"]

MFA_TEXT: Final[dict[str, dict[str, str]]] = {
    "zh": {
        "title": "两步验证",
        "ask_code": "请输入身份验证器应用中显示的 6 位验证码，或一个恢复码。",
        "code_label": "验证码或恢复码",
        "verify": "验证",
        "wrong_code": "验证码不正确或已使用过。",
        "expired": "登录已超时，请重新登录。",
        "setup_title": "设置两步验证",
        "setup_intro": "工作人员账户需要两步验证。请用身份验证器应用扫描二维码，或手动输入密钥，然后输入应用显示的验证码。",
        "secret_label": "密钥",
        "setup_code_label": "应用显示的 6 位验证码",
        "confirm": "确认",
        "recovery_title": "请保存恢复码",
        "recovery_intro": "每个恢复码只能使用一次，可在手机丢失时代替验证码。此页面只显示一次。",
        "continue": "继续",
        "account_title": "账户安全",
        "totp_on": "两步验证：已开启（{date} 起）。",
        "totp_off": "两步验证：未开启。开启后，登录时除密码外还要输入身份验证器应用显示的验证码，"
        "可以在线办理要求较高安全级别的事项。",
        "start": "设置两步验证",
        "account_setup_intro": "请用身份验证器应用扫描二维码，或手动输入密钥，然后输入应用显示的验证码。",
        "recovery_left": "剩余可用恢复码：{count} 个。",
        "remove_title": "关闭两步验证",
        "remove_intro": "请输入身份验证器应用当前显示的验证码（或一个恢复码）以确认关闭。",
        "remove_button": "关闭两步验证",
        "removed": "两步验证已关闭。",
        "enrolled": "两步验证已开启。",
        "required": "您的岗位要求两步验证，不能关闭。",
        "back_to_account": "返回账户安全",
        "sign_out": "退出登录",
    },
    "en": {
        "title": "Two-step verification",
        "ask_code": "Enter the 6-digit code from your authenticator app, or one of your recovery codes.",
        "code_label": "Code or recovery code",
        "verify": "Verify",
        "wrong_code": "That code is not right, or has been used already.",
        "expired": "The sign-in took too long. Please sign in again.",
        "setup_title": "Set up two-step verification",
        "setup_intro": "Staff accounts need two-step verification. Scan the QR code with an authenticator app, "
        "or type the key into it, then enter the code it shows.",
        "secret_label": "Key",
        "setup_code_label": "The 6-digit code the app shows",
        "confirm": "Confirm",
        "recovery_title": "Keep your recovery codes",
        "recovery_intro": "Each recovery code works once, instead of a code, if you lose your phone. "
        "This page shows them only once.",
        "continue": "Continue",
        "account_title": "Account security",
        "totp_on": "Two-step verification: on (since {date}).",
        "totp_off": "Two-step verification: off. With it, signing in asks for a code from an authenticator"
        " app after the password, and you can apply online for services that need a higher level of assurance.",
        "start": "Set up two-step verification",
        "account_setup_intro": "Scan the QR code with an authenticator app, or type the key into it,"
        " then enter the code it shows.",
        "recovery_left": "Recovery codes left: {count}.",
        "remove_title": "Turn off two-step verification",
        "remove_intro": "To confirm, enter the code your authenticator app shows now (or a recovery code).",
        "remove_button": "Turn off two-step verification",
        "removed": "Two-step verification is off.",
        "enrolled": "Two-step verification is on.",
        "required": "Your role requires two-step verification: it cannot be turned off.",
        "back_to_account": "Back to account security",
        "sign_out": "Sign out",
    },
}


def _totp_key(settings: Settings) -> bytes:
    return derive_key(settings.master_secret, "identity.totp")


def _pending_key(settings: Settings) -> bytes:
    return derive_key(settings.master_secret, "identity.mfa-pending")


async def second_factor(conn: Connection, settings: Settings, person_id: UUID) -> Step | None:
    """What must follow a right password: a code, an enrolment, or nothing."""
    confirmed = await conn.fetchval(
        "SELECT confirmed_at IS NOT NULL FROM identity.totp WHERE person_id = $1", person_id
    )
    if confirmed:
        return "verify"
    if settings.mfa_required_for_staff:
        roles = await store.active_roles(conn, person_id)
        if any(grant.role != "citizen" for grant in roles):
            return "enrol"
    return None


def _sign(settings: Settings, payload: str) -> str:
    mac = hmac.new(_pending_key(settings), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def pending_cookie(settings: Settings, person_id: UUID, return_to: str) -> Cookie:
    target = base64.urlsafe_b64encode(safe_return_to(return_to).encode()).decode().rstrip("=")
    payload = f"{person_id}.{int(time.time())}.{target}"
    value = f"{payload}.{_sign(settings, payload)}"
    return http_only_cookie(settings, PENDING_COOKIE, value, path="/login", max_age=_PENDING_SECONDS)


def _clear_pending(settings: Settings) -> Cookie:
    return http_only_cookie(settings, PENDING_COOKIE, "", path="/login", max_age=0)


def read_pending(settings: Settings, request: Request[Any, Any, Any]) -> tuple[UUID, str] | None:
    """(person, return_to) of a half-finished sign-in, if the cookie is ours and fresh."""
    value = request.cookies.get(PENDING_COOKIE, "")
    payload, _, mac = value.rpartition(".")
    if not payload or not hmac.compare_digest(mac, _sign(settings, payload)):
        return None
    person, issued, target = [*payload.split("."), "", "", ""][:3]
    try:
        if time.time() - int(issued) > _PENDING_SECONDS:
            return None
        return_to = base64.urlsafe_b64decode(target + "=" * (-len(target) % 4)).decode()
        return UUID(person), safe_return_to(return_to)
    except (ValueError, UnicodeDecodeError):
        return None


def to_second_factor(
    settings: Settings, person_id: UUID, return_to: str, step: Step, *, lang: str
) -> Response[str]:
    """Where a right password leads when a second factor must follow (in the language chosen)."""
    path = SETUP_PATH if step == "enrol" else MFA_PATH
    return redirect_to(f"{path}?lang={lang}", cookies=[pending_cookie(settings, person_id, return_to)])


def _code_page(lang: str, *, csrf: str, error: str | None = None) -> str:
    text = MFA_TEXT[lang]
    body = (
        f"<h1>{escape(text['title'])}</h1>\n{error_html(error)}<p>{escape(text['ask_code'])}</p>\n"
        f'<form method="post" action="{MFA_PATH}">\n'
        f'<input type="hidden" name="csrf_token" value="{escape(csrf)}">\n'
        f'<input type="hidden" name="lang" value="{lang}">\n'
        f'<label for="code">{escape(text["code_label"])}</label>\n'
        '<input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"'
        ' required maxlength="20" autocapitalize="none" spellcheck="false">\n'
        f'<button type="submit">{escape(text["verify"])}</button>\n</form>'
    )
    return document(lang, text["title"], body)


def _setup_page(
    lang: str,
    *,
    csrf: str,
    secret: str,
    uri: str,
    error: str | None = None,
    action: str = SETUP_PATH,
    intro: str = "setup_intro",
) -> str:
    text = MFA_TEXT[lang]
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    body = (
        f"<h1>{escape(text['setup_title'])}</h1>\n{error_html(error)}<p>{escape(text[intro])}</p>\n"
        f'<div class="qr">{qr_svg(uri)}</div>\n'
        f'<p>{escape(text["secret_label"])}: <code id="totp-secret">{escape(grouped)}</code></p>\n'
        f'<form method="post" action="{action}">\n'
        f'<input type="hidden" name="csrf_token" value="{escape(csrf)}">\n'
        f'<input type="hidden" name="lang" value="{lang}">\n'
        f'<label for="code">{escape(text["setup_code_label"])}</label>\n'
        '<input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"'
        ' required maxlength="8">\n'
        f'<button type="submit">{escape(text["confirm"])}</button>\n</form>'
    )
    return document(lang, text["setup_title"], body)


def _recovery_page(lang: str, codes: list[str], next_url: str) -> str:
    text = MFA_TEXT[lang]
    items = "".join(f"<li><code>{escape(code)}</code></li>" for code in codes)
    body = (
        f"<h1>{escape(text['recovery_title'])}</h1>\n<p>{escape(text['recovery_intro'])}</p>\n"
        f'<ul id="recovery-codes">{items}</ul>\n<p><a href="{escape(next_url)}">{escape(text["continue"])}</a></p>'
    )
    return document(lang, text["recovery_title"], body)


def _language(request: Request[Any, Any, Any], fields: dict[str, str] | None = None) -> str:
    requested = (fields or {}).get("lang") or request.query_params.get("lang")
    return choose_language(requested, request.headers.get("accept-language"))


def _expired(settings: Settings, lang: str) -> Response[str]:
    return redirect_to(login_url("/", lang=lang), cookies=[_clear_pending(settings)])


async def _unconfirmed_secret(conn: Connection, settings: Settings, person_id: UUID) -> str:
    """The secret being enrolled: kept between showing the QR code and confirming it."""
    row = await conn.fetchrow(
        "SELECT secret_enc, confirmed_at FROM identity.totp WHERE person_id = $1", person_id
    )
    if row is not None and row["confirmed_at"] is None:
        return decrypt(_totp_key(settings), row["secret_enc"])
    secret = new_totp_secret()
    await conn.execute(
        "INSERT INTO identity.totp (person_id, secret_enc) VALUES ($1, $2)"
        " ON CONFLICT (person_id) DO UPDATE SET secret_enc = excluded.secret_enc, confirmed_at = NULL,"
        " last_used_step = NULL WHERE totp.confirmed_at IS NULL",
        person_id,
        encrypt(_totp_key(settings), secret),
    )
    return secret


async def _check_code(conn: Connection, settings: Settings, person_id: UUID, code: str) -> bool:
    """A TOTP code (each time step usable once) or a recovery code (each usable once)."""
    row = await conn.fetchrow(
        "SELECT secret_enc, last_used_step FROM identity.totp WHERE person_id = $1 AND confirmed_at IS NOT NULL"
        " FOR UPDATE",
        person_id,
    )
    if row is None:
        return False
    cleaned = code.replace(" ", "")
    if cleaned.isdigit():
        secret = decrypt(_totp_key(settings), row["secret_enc"])
        step = verify_totp(secret, cleaned, datetime.now(UTC), last_used_step=row["last_used_step"])
        if step is None:
            return False
        await conn.execute(
            "UPDATE identity.totp SET last_used_step = $2 WHERE person_id = $1", person_id, step
        )
        return True
    digests = [
        r["code_digest"]
        for r in await conn.fetch(
            "SELECT code_digest FROM identity.recovery_codes WHERE person_id = $1 AND used_at IS NULL",
            person_id,
        )
    ]
    used = match_recovery_code(code, digests, account=str(person_id))
    if used is None:
        return False
    await conn.execute(
        "UPDATE identity.recovery_codes SET used_at = now() WHERE person_id = $1 AND code_digest = $2",
        person_id,
        used,
    )
    return True


def _source(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client and request.client.host else "unknown"


async def _guarded_code(
    conn: Connection, request: Request[Any, Any, Any], settings: Settings, person_id: UUID, code: str
) -> bool | float:
    """`_check_code` behind the sign-in's brute-force protection: True or False, or the seconds
    to wait first. A wrong code counts as a failed sign-in of the account (delays, then a lock)."""
    source = _source(request)
    wait = await sessions.check_allowed(conn, person_id, source)
    if wait is not None:
        return max(1.0, wait)
    if await _check_code(conn, settings, person_id, code[:64]):
        return True
    await sessions.record_failure(conn, person_id, source)
    return False


def _throttled(lang: str, wait: float) -> Response[str]:
    """Too many wrong codes: the form is not shown again until the account's wait is over."""
    seconds = max(1, math.ceil(wait))
    message = TEXT[lang]["throttled"].format(seconds=seconds)
    return html_response(
        document(lang, MFA_TEXT[lang]["title"], error_html(message)),
        status=429,
        headers={"Retry-After": str(seconds)},
    )


def _account_name(person: store.PersonRow | None, person_id: UUID) -> str:
    name = (person.username or person.email or str(person_id)) if person else str(person_id)
    return name.replace(":", "")  # the otpauth label is "issuer:account"


async def _enrolment_page(
    conn: Connection,
    settings: Settings,
    person_id: UUID,
    lang: str,
    *,
    csrf: str,
    action: str,
    intro: str,
    error: str | None = None,
) -> str:
    """The QR code and key of the secret being enrolled (made on first showing), and the form."""
    secret = await _unconfirmed_secret(conn, settings, person_id)
    account = _account_name(await store.person_by_id(conn, person_id), person_id)
    uri = provisioning_uri(secret, account, _ISSUER)
    return _setup_page(lang, csrf=csrf, secret=secret, uri=uri, error=error, action=action, intro=intro)


async def _confirm_enrolment(
    conn: Connection, settings: Settings, person_id: UUID, code: str, *, via: str
) -> list[str] | None:
    """Confirm the secret being enrolled with a code from the app: the new recovery codes (to be
    shown once), or None when the code is not right (nothing changes then)."""
    secret = await _unconfirmed_secret(conn, settings, person_id)
    step = verify_totp(secret, code[:16].replace(" ", ""), datetime.now(UTC), last_used_step=None)
    if step is None:
        await store.audit(
            conn,
            action="mfa.enrolled",
            actor_id=person_id,
            subject=str(person_id),
            outcome="wrong_code",
            detail={"via": via},
        )
        return None
    await conn.execute(
        "UPDATE identity.totp SET confirmed_at = now(), last_used_step = $2 WHERE person_id = $1",
        person_id,
        step,
    )
    codes = new_recovery_codes()
    await conn.execute("DELETE FROM identity.recovery_codes WHERE person_id = $1", person_id)
    await conn.executemany(
        "INSERT INTO identity.recovery_codes (person_id, code_digest) VALUES ($1, $2)",
        [(person_id, recovery_code_digest(code, account=str(person_id))) for code in codes],
    )
    await store.audit(
        conn, action="mfa.enrolled", actor_id=person_id, subject=str(person_id), detail={"via": via}
    )
    return codes


async def _pending_post(
    request: Request[Any, Any, Any], settings: Settings
) -> tuple[dict[str, str], str, UUID, str] | Response[str]:
    """A posted second-step form: its fields, language, person and way back; or the reply refusing it."""
    try:
        fields = await form_fields(request)
    except Unreadable:
        fields = {}
    lang = _language(request, fields)
    pending = read_pending(settings, request)
    if pending is None:
        return _expired(settings, lang)
    if not csrf_ok(request, fields.get("csrf_token")):
        return html_response(document(lang, TEXT[lang]["csrf"], error_html(TEXT[lang]["csrf"])), status=403)
    person_id, return_to = pending
    return fields, lang, person_id, return_to


def step_up(settings: Settings, sign_on: SignOn, return_to: str, *, lang: str) -> Response[str]:
    """Ask a signed-in person for their second factor, then go on at `return_to` with a new session
    at the level of assurance the factor gives (the authorize endpoint, for `acr_values`).

    The session stands for the password here: the code page is the second step of a sign-in
    whose first step the session already made. Only for a person with a confirmed TOTP.
    """
    return to_second_factor(settings, sign_on.person_id, return_to, "verify", lang=lang)


# --- the account security page ---------------------------------------------------------------


def _account_url(lang: str) -> str:
    return f"{ACCOUNT_PATH}?lang={lang}"


def _to_login(lang: str) -> Response[str]:
    return redirect_to(login_url(_account_url(lang), lang=lang))


def _recent(sign_on: SignOn) -> bool:
    return datetime.now(UTC) - sign_on.auth_time <= RECENT_SIGN_IN


async def _signed_in(conn: Connection, request: Request[Any, Any, Any]) -> SignOn | None:
    return await current_sign_on(conn, request.cookies.get(SESSION_COOKIE))


async def _totp_state(conn: Connection, person_id: UUID) -> tuple[datetime | None, int]:
    """When the person's TOTP was confirmed (None: no second factor), and their unused recovery codes."""
    row = await conn.fetchrow(
        "SELECT (SELECT confirmed_at FROM identity.totp WHERE person_id = $1) AS confirmed_at,"
        " (SELECT count(*) FROM identity.recovery_codes WHERE person_id = $1 AND used_at IS NULL) AS left",
        person_id,
    )
    if row is None:  # always one row
        return None, 0
    return row["confirmed_at"], int(row["left"])


async def _required_for(conn: Connection, settings: Settings, person_id: UUID) -> bool:
    """Whether the person's roles require a second factor (staff, when ONEWINDOW_STAFF_MFA is)."""
    if not settings.mfa_required_for_staff:
        return False
    return any(grant.role != "citizen" for grant in await store.active_roles(conn, person_id))


def _account_page(
    lang: str,
    *,
    csrf: str,
    confirmed_at: datetime | None,
    recovery_left: int,
    notice: str | None = None,
    error: str | None = None,
) -> str:
    text = MFA_TEXT[lang]
    other = "en" if lang == "zh" else "zh"
    status = (f'<p class="notice" role="status">{escape(notice)}</p>\n' if notice else "") + error_html(error)
    if confirmed_at is None:
        body = (
            f'<p id="totp-status" data-enrolled="false">{escape(text["totp_off"])}</p>\n'
            f'<p><a id="totp-start" href="{ACCOUNT_SETUP_PATH}?lang={lang}">{escape(text["start"])}</a></p>\n'
        )
    else:
        since = confirmed_at.astimezone(UTC).date().isoformat()
        body = (
            f'<p id="totp-status" data-enrolled="true">{escape(text["totp_on"].format(date=since))}</p>\n'
            f"<p>{escape(text['recovery_left'].format(count=recovery_left))}</p>\n"
            f"<h2>{escape(text['remove_title'])}</h2>\n<p>{escape(text['remove_intro'])}</p>\n"
            f'<form method="post" action="{ACCOUNT_REMOVE_PATH}">\n'
            f'<input type="hidden" name="csrf_token" value="{escape(csrf)}">\n'
            f'<input type="hidden" name="lang" value="{lang}">\n'
            f'<label for="code">{escape(text["code_label"])}</label>\n'
            '<input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"'
            ' required maxlength="20" autocapitalize="none" spellcheck="false">\n'
            f'<button type="submit">{escape(text["remove_button"])}</button>\n</form>\n'
        )
    page = (
        f"<h1>{escape(text['account_title'])}</h1>\n{status}{body}"
        f'<p><a href="/logout?lang={lang}">{escape(text["sign_out"])}</a></p>\n'
        f'<p class="lang"><a href="{ACCOUNT_PATH}?lang={other}" hreflang="{other}"'
        f' lang="{TEXT[other]["html_lang"]}">{escape(TEXT[lang]["other_language"])}</a></p>'
    )
    return document(lang, text["account_title"], page)


async def _account_reply(
    conn: Connection,
    settings: Settings,
    request: Request[Any, Any, Any],
    person_id: UUID,
    lang: str,
    *,
    status: int = 200,
    notice: str | None = None,
    error: str | None = None,
) -> Response[str]:
    confirmed_at, left = await _totp_state(conn, person_id)
    csrf = csrf_token_for(request)
    page = _account_page(
        lang, csrf=csrf, confirmed_at=confirmed_at, recovery_left=left, notice=notice, error=error
    )
    return html_response(page, status=status, cookies=[csrf_cookie(settings, csrf, ACCOUNT_PATH)])


async def _account_post(
    conn: Connection, request: Request[Any, Any, Any]
) -> tuple[dict[str, str], str, SignOn] | Response[str]:
    """A posted account form: fields, language and a recent sign-in; or the reply refusing it."""
    try:
        fields = await form_fields(request)
    except Unreadable as unreadable:
        lang = _language(request)
        message = TEXT[lang]["unreadable"]
        return html_response(document(lang, message, error_html(message)), status=unreadable.status)
    lang = _language(request, fields)
    if not csrf_ok(request, fields.get("csrf_token")):
        message = TEXT[lang]["csrf"]
        return html_response(document(lang, message, error_html(message)), status=403)
    sign_on = await _signed_in(conn, request)
    if sign_on is None or not _recent(sign_on):
        return _to_login(lang)
    return fields, lang, sign_on


class MfaController(Controller):
    """The second sign-in step, TOTP enrolment at sign-in, and the account security page."""

    path = "/"
    tags = ["identity"]  # noqa: RUF012 - litestar's declared type
    include_in_schema = False

    @get(MFA_PATH, operation_id="mfa_form", summary="Ask for the second factor")
    async def form(
        self, request: Request[Any, Any, Any], settings: NamedDependency[Settings]
    ) -> Response[str]:
        lang = _language(request)
        if read_pending(settings, request) is None:
            return _expired(settings, lang)
        csrf = csrf_token_for(request)
        return html_response(_code_page(lang, csrf=csrf), cookies=[csrf_cookie(settings, csrf, "/login")])

    @post(
        MFA_PATH,
        operation_id="mfa_verify",
        summary="Check the second factor and finish signing in",
        status_code=303,
    )
    async def verify(
        self, request: Request[Any, Any, Any], conn: Connection, settings: NamedDependency[Settings]
    ) -> Response[str]:
        posted = await _pending_post(request, settings)
        if isinstance(posted, Response):
            return posted
        fields, lang, person_id, return_to = posted
        checked = await _guarded_code(conn, request, settings, person_id, fields.get("code", ""))
        if checked is not True:
            await store.audit(
                conn,
                action="login.second_factor",
                actor_id=person_id,
                subject=str(person_id),
                outcome="wrong_code" if checked is False else "throttled",
            )
            if checked is not False:
                return _throttled(lang, checked)
            csrf = csrf_token_for(request)
            return html_response(_code_page(lang, csrf=csrf, error=MFA_TEXT[lang]["wrong_code"]), status=401)
        acr = await store.assurance_level(conn, person_id)  # the second factor was just used
        done = await finish_sign_in(
            conn, settings, request, person_id, amr=("pwd", "otp"), acr=acr, return_to=return_to
        )
        done.cookies.append(_clear_pending(settings))
        return done

    @get(SETUP_PATH, operation_id="mfa_setup_form", summary="Show the TOTP enrolment page")
    async def setup_form(
        self, request: Request[Any, Any, Any], conn: Connection, settings: NamedDependency[Settings]
    ) -> Response[str]:
        lang = _language(request)
        pending = read_pending(settings, request)
        if pending is None:
            return _expired(settings, lang)
        person_id, _ = pending
        csrf = csrf_token_for(request)
        page = await _enrolment_page(
            conn, settings, person_id, lang, csrf=csrf, action=SETUP_PATH, intro="setup_intro"
        )
        return html_response(page, cookies=[csrf_cookie(settings, csrf, "/login")])

    @post(SETUP_PATH, operation_id="mfa_setup_confirm", summary="Confirm TOTP enrolment", status_code=200)
    async def setup_confirm(
        self, request: Request[Any, Any, Any], conn: Connection, settings: NamedDependency[Settings]
    ) -> Response[str]:
        posted = await _pending_post(request, settings)
        if isinstance(posted, Response):
            return posted
        fields, lang, person_id, return_to = posted
        codes = await _confirm_enrolment(conn, settings, person_id, fields.get("code", ""), via="sign_in")
        if codes is None:
            csrf = csrf_token_for(request)
            page = await _enrolment_page(
                conn,
                settings,
                person_id,
                lang,
                csrf=csrf,
                action=SETUP_PATH,
                intro="setup_intro",
                error=MFA_TEXT[lang]["wrong_code"],
            )
            return html_response(page, status=400)
        acr = await store.assurance_level(conn, person_id)  # the second factor was just used
        done = await finish_sign_in(
            conn, settings, request, person_id, amr=("pwd", "otp"), acr=acr, return_to=return_to
        )
        # The recovery codes are shown once, with the session already set; "continue" goes on.
        return html_response(
            _recovery_page(lang, codes, done.headers["Location"]),
            cookies=[*done.cookies, _clear_pending(settings)],
        )

    # --- the account security page: any signed-in person ---------------------------------------

    @get(ACCOUNT_PATH, operation_id="account_security", summary="The account security page")
    async def account(
        self, request: Request[Any, Any, Any], conn: Connection, settings: NamedDependency[Settings]
    ) -> Response[str]:
        lang = _language(request)
        sign_on = await _signed_in(conn, request)
        if sign_on is None:
            return _to_login(lang)
        return await _account_reply(conn, settings, request, sign_on.person_id, lang)

    @get(ACCOUNT_SETUP_PATH, operation_id="account_totp_form", summary="Start enrolling TOTP")
    async def account_setup_form(
        self, request: Request[Any, Any, Any], conn: Connection, settings: NamedDependency[Settings]
    ) -> Response[str]:
        lang = _language(request)
        sign_on = await _signed_in(conn, request)
        if sign_on is None or not _recent(sign_on):
            return _to_login(lang)
        confirmed_at, _ = await _totp_state(conn, sign_on.person_id)
        if confirmed_at is not None:  # already enrolled: remove first to replace it
            return redirect_to(_account_url(lang))
        csrf = csrf_token_for(request)
        page = await _enrolment_page(
            conn,
            settings,
            sign_on.person_id,
            lang,
            csrf=csrf,
            action=ACCOUNT_SETUP_PATH,
            intro="account_setup_intro",
        )
        return html_response(page, cookies=[csrf_cookie(settings, csrf, ACCOUNT_PATH)])

    @post(
        ACCOUNT_SETUP_PATH,
        operation_id="account_totp_confirm",
        summary="Confirm TOTP enrolment",
        status_code=200,
    )
    async def account_setup_confirm(
        self, request: Request[Any, Any, Any], conn: Connection, settings: NamedDependency[Settings]
    ) -> Response[str]:
        posted = await _account_post(conn, request)
        if isinstance(posted, Response):
            return posted
        fields, lang, sign_on = posted
        confirmed_at, _ = await _totp_state(conn, sign_on.person_id)
        if confirmed_at is not None:
            return redirect_to(_account_url(lang))
        codes = await _confirm_enrolment(
            conn, settings, sign_on.person_id, fields.get("code", ""), via="account"
        )
        if codes is None:
            csrf = csrf_token_for(request)
            page = await _enrolment_page(
                conn,
                settings,
                sign_on.person_id,
                lang,
                csrf=csrf,
                action=ACCOUNT_SETUP_PATH,
                intro="account_setup_intro",
                error=MFA_TEXT[lang]["wrong_code"],
            )
            return html_response(page, status=400)
        # This session stays at the level it was signed in with: a client asking for more steps
        # the person up (a code again), as any later sign-in asks for one.
        return html_response(_recovery_page(lang, codes, _account_url(lang)))

    @post(ACCOUNT_REMOVE_PATH, operation_id="account_totp_remove", summary="Remove TOTP", status_code=200)
    async def account_remove(
        self, request: Request[Any, Any, Any], conn: Connection, settings: NamedDependency[Settings]
    ) -> Response[str]:
        posted = await _account_post(conn, request)
        if isinstance(posted, Response):
            return posted
        fields, lang, sign_on = posted
        person_id = sign_on.person_id

        async def audit(outcome: str) -> None:
            await store.audit(
                conn, action="mfa.removed", actor_id=person_id, subject=str(person_id), outcome=outcome
            )

        text = MFA_TEXT[lang]
        if await _required_for(conn, settings, person_id):
            await audit("required")
            return await _account_reply(
                conn, settings, request, person_id, lang, status=403, error=text["required"]
            )
        checked = await _guarded_code(conn, request, settings, person_id, fields.get("code", ""))
        if checked is not True:
            await audit("wrong_code" if checked is False else "throttled")
            if checked is not False:
                return _throttled(lang, checked)
            return await _account_reply(
                conn, settings, request, person_id, lang, status=400, error=text["wrong_code"]
            )
        await conn.execute("DELETE FROM identity.recovery_codes WHERE person_id = $1", person_id)
        await conn.execute("DELETE FROM identity.totp WHERE person_id = $1", person_id)
        await audit("ok")
        return await _account_reply(conn, settings, request, person_id, lang, notice=text["removed"])
