"""End to end in a real browser: headless Chromium signs a staff member in, enrols TOTP, and
signs in to a second client without the password again (single sign-on).

The server is `onewindow serve` without --demo on a database of its own seeded by
`onewindow seed --demo`: outside demo mode staff must use a second factor, which is what the
enrolment pages are for. Its public URL is the address it really listens on, because the
console's registered redirect URI is built from it when seeding.

The browser is Debian's Chromium (/usr/bin/chromium), driven by Playwright for Python; `./dev test`
installs it where it can. Playwright's own browser download is never used (it fails on a closed
network), so without the system package the module is skipped, not failed.

JavaScript is switched off in the browser context: the sign-in pages promise to work without it.
The citizen app's loopback redirect is answered by a small HTTP listener of the test's own, as a
native app's is (RFC 8252). The console's redirect URI is on OneWindow's own origin and nothing
serves it; the test reads the code from the browser's request to it. (`page.route` cannot stand
in for either: Playwright does not route the hops of a redirect in Chromium,
microsoft/playwright#33882, and both URIs are reached by a redirect from /oauth2/authorize.)
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from identity.credentials import totp_now
from identity.mfa import PENDING_COOKIE
from identity.sessions import SESSION_COOKIE
from onewindow.settings import Settings
from tests.e2e.conftest import Provider, running_provider

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium package (`./dev test` does, as root with"
        " apt-get); Playwright's own browser download is not used",
        allow_module_level=True,
    )

from playwright.sync_api import (  # noqa: E402 - only once the browser is known to be there
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    Response,
    sync_playwright,
)

pytestmark = pytest.mark.e2e

# The flags the machine notes ask for: without the background-networking ones Chromium keeps
# trying to reach Google's hosts, which a closed network refuses (noise and delay, no failure).
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests run as root in a container, where the sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STAFF = ("officer1", "onewindow-demo")
CONSOLE = ("console", "console-demo-secret")
APP = "citizen-app"
LOA_SUBSTANTIAL = "urn:onewindow:loa:substantial"
TIMEOUT_MS = 10_000  # per browser action; the whole test takes a few seconds
CALLBACK_PAGE = "<!doctype html><title>callback</title><p>the client would take the code here</p>"


@pytest.fixture(scope="module")
def provider(
    servers: tuple[str, str], settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Provider]:
    """`onewindow seed --demo`, then `onewindow serve` (MFA required for staff), on its own database."""
    with running_provider(
        servers, settings, tmp_path_factory.mktemp("browser"), prefix="onewindow_browser", demo_mode=False
    ) as running:
        yield running


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    try:
        yield chromium
    finally:
        chromium.close()


@dataclass
class Watch:
    """What the browser saw besides the pages themselves: every URL it asked for, its console
    (CSP violations and blocked resources are reported there), and server errors."""

    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)

    def attach(self, context: BrowserContext) -> None:
        context.on("request", self._request)
        context.on("response", self._response)

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _response(self, response: Response) -> None:
        if response.status >= 500:
            self.server_errors.append(f"{response.status} {response.url}")

    def _console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text} ({message.location.get('url')})")

    def page(self, context: BrowserContext) -> Page:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", self._console)
        return page


def _context(browser: Browser, locale: str) -> BrowserContext:
    # No JavaScript at all: the sign-in, enrolment and recovery pages must work as plain HTML.
    return browser.new_context(java_script_enabled=False, locale=locale)


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


class _Callback(BaseHTTPRequestHandler):
    """The native app's redirect listener: keeps what the browser brought, shows a tiny page.

    It also serves /start?to=<url>, a page with one link to <url>: reached as http://localhost,
    it is another site than OneWindow's http://127.0.0.1 (ports do not make sites, host names
    do), so following its link is the cross-site navigation a real client's sign-in button makes,
    under which SameSite cookies behave as they will in production.
    """

    server: _Loopback

    def do_GET(self) -> None:
        self.server.received.append(self.path)
        parts = urlsplit(self.path)
        if parts.path == "/start":
            target = parse_qs(parts.query)["to"][0]
            body = f'<!doctype html><title>client</title><a id="sign-in" href="{html.escape(target)}">Sign in</a>'.encode()
        else:
            body = CALLBACK_PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return  # not to the test's stderr


class _Loopback(ThreadingHTTPServer):
    received: list[str]


@pytest.fixture
def loopback_app() -> Iterator[_Loopback]:
    """A listener on a port of its own choosing on 127.0.0.1, as the citizen app opens one."""
    listener = _Loopback(("127.0.0.1", 0), _Callback)
    listener.received = []
    thread = threading.Thread(target=listener.serve_forever, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        listener.shutdown()
        listener.server_close()
        thread.join(5)


def _follow_link_from_another_site(page: Page, elsewhere: _Loopback, url: str) -> None:
    """Open `url` the way a client's sign-in button does: a link on a page of another site."""
    page.goto(f"http://localhost:{elsewhere.server_port}/start?{urlencode({'to': url})}")
    with page.expect_request(url) as sent:
        page.click("#sign-in")
    # The browser itself says so: the request really is cross-site (else SameSite proves nothing).
    assert sent.value.all_headers().get("sec-fetch-site") == "cross-site"


def _callback_query(url: str, redirect_uri: str) -> dict[str, str]:
    assert url.startswith(redirect_uri + "?"), url
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def _redeem(
    provider: Provider, code: str, redirect_uri: str, *, auth: tuple[str, str] | None, **extra: str
) -> dict[str, Any]:
    reply = httpx.post(
        provider.endpoint("token_endpoint"),
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, **extra},
        auth=auth,  # None: a public client, which sends its client_id instead
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    tokens: dict[str, Any] = reply.json()
    return tokens


def _id_claims(provider: Provider, id_token: str) -> dict[str, Any]:
    """The ID token's claims, its signature checked against the published JWKS."""
    jwks = httpx.get(provider.endpoint("jwks_uri"), timeout=5).json()
    claims: dict[str, Any] = jwt.decode(id_token, KeySet.import_key_set(jwks)).claims
    return claims


def _audience(claims: dict[str, Any]) -> list[str]:
    # OpenID Connect allows `aud` as one string or an array of them.
    aud = claims["aud"]
    return [aud] if isinstance(aud, str) else list(aud)


def _screenshot(page: Page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    # A blank or failed render is a few hundred bytes; a page with text, a form (and a QR code)
    # is tens of kilobytes.
    assert path.stat().st_size > 5_000, f"{path} is only {path.stat().st_size} bytes"


def test_staff_sign_in_with_totp_enrolment_then_single_sign_on(
    provider: Provider, browser: Browser, loopback_app: _Loopback, tmp_path: Path
) -> None:
    base = provider.base_url
    watch = Watch()
    context = _context(browser, "zh-CN")
    watch.attach(context)
    try:
        page = watch.page(context)

        # (1) The console (confidential web client) sends the browser to /authorize; nobody is
        # signed in, so it lands on the login page, in Chinese for a Chinese browser. The link
        # is followed from another site, so the CSRF cookie (SameSite=Strict) is set during a
        # cross-site navigation and must still be there when the form is posted.
        console_redirect = f"{base}/console/callback"
        state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
        authorize = (
            provider.endpoint("authorization_endpoint")
            + "?"
            + urlencode(
                {
                    "response_type": "code",
                    "client_id": CONSOLE[0],
                    "redirect_uri": console_redirect,
                    "scope": "openid profile staff",
                    "state": state,
                    "nonce": nonce,
                }
            )
        )
        _follow_link_from_another_site(page, loopback_app, authorize)
        page.wait_for_url(f"{base}/login?*")
        assert page.title() == "登录 · 一网通办"
        assert page.locator("script").count() == 0
        cookies = {cookie["name"]: cookie for cookie in context.cookies()}
        assert cookies["ow_csrf"]["httpOnly"]
        assert cookies["ow_csrf"]["sameSite"] == "Strict"
        _screenshot(page, tmp_path / "login.png")

        page.fill("#login", STAFF[0])
        page.fill("#password", STAFF[1])
        page.click("button[type=submit]")

        # (2) Staff outside demo mode must enrol a second factor before anything else.
        page.wait_for_url(f"{base}/login/mfa/setup?lang=*")
        qr = page.locator(".qr svg")
        box = qr.bounding_box()
        assert box is not None
        assert box["width"] > 100
        assert box["height"] > 100  # the inline SVG really renders under the CSP
        _screenshot(page, tmp_path / "enrolment.png")
        key = (page.text_content("#totp-secret") or "").replace(" ", "")
        assert len(key) >= 16, key
        page.fill("#code", totp_now(key, datetime.now(UTC)))
        page.click("button[type=submit]")

        # (3) The recovery codes, shown once; "Continue" goes back to the authorization request.
        codes = page.locator("#recovery-codes li")
        codes.first.wait_for()
        assert codes.count() == 10
        _screenshot(page, tmp_path / "recovery.png")
        with page.expect_request(lambda request: request.url.startswith(console_redirect)) as arrived:
            page.click("#recovery-codes + p a")

        # (4) The browser ends at the console's redirect URI with a code for it.
        query = _callback_query(arrived.value.url, console_redirect)
        assert query["state"] == state
        tokens = _redeem(provider, query["code"], console_redirect, auth=CONSOLE)
        console_claims = _id_claims(provider, tokens["id_token"])
        assert console_claims["iss"] == base
        assert _audience(console_claims) == [CONSOLE[0]]
        assert console_claims["nonce"] == nonce
        assert console_claims["acr"] == LOA_SUBSTANTIAL
        assert "otp" in console_claims["amr"]
        assert "pwd" in console_claims["amr"]
        jar = {cookie["name"]: cookie for cookie in context.cookies()}
        assert PENDING_COOKIE not in jar  # the half-way cookie is gone once signed in
        session = jar[SESSION_COOKIE]
        # Plain http here, so not Secure (the browser would drop a Secure cookie); the rest as
        # the issue asks: HttpOnly, SameSite=Lax so a client's top-level redirect carries it.
        assert session["httpOnly"]
        assert session["sameSite"] == "Lax"
        assert session["path"] == "/"

        # (5) Single sign-on: the citizen app (public, PKCE, loopback redirect on a port of its
        # own) gets a code straight away, without the login page. Its link is followed from
        # another site too: the session cookie (SameSite=Lax) must travel with that navigation.
        app_redirect = f"http://127.0.0.1:{loopback_app.server_port}/callback"
        verifier, challenge = _pkce()
        app_state, app_nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
        seen_before = len(watch.requests)
        _follow_link_from_another_site(
            page,
            loopback_app,
            provider.endpoint("authorization_endpoint")
            + "?"
            + urlencode(
                {
                    "response_type": "code",
                    "client_id": APP,
                    "redirect_uri": app_redirect,
                    "scope": "openid profile",
                    "state": app_state,
                    "nonce": app_nonce,
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                }
            ),
        )
        page.wait_for_url(f"{app_redirect}?*")
        asked = watch.requests[seen_before:]
        assert not [url for url in asked if urlsplit(url).path.startswith("/login")], asked
        app_query = _callback_query(page.url, app_redirect)
        assert app_query["state"] == app_state
        # The app's own listener, not only the address bar, got the code: the browser delivered it.
        delivered = [urlsplit(path) for path in loopback_app.received]
        # (after it, the browser asks the app for /favicon.ico)
        assert [hit.query for hit in delivered if hit.path == "/callback"] == [urlsplit(page.url).query]
        app_tokens = _redeem(
            provider, app_query["code"], app_redirect, auth=None, client_id=APP, code_verifier=verifier
        )
        app_claims = _id_claims(provider, app_tokens["id_token"])
        assert _audience(app_claims) == [APP]
        assert app_claims["nonce"] == app_nonce
        assert app_claims["sub"] == console_claims["sub"]
        assert app_claims["auth_time"] == console_claims["auth_time"]  # the same sign-in

        assert not watch.server_errors, watch.server_errors
        # With scripts off, what would show here is the browser refusing something the pages
        # ask for: a style or image blocked by the Content-Security-Policy, a mixed-content load.
        # Two 404s are expected and ignored: the console's redirect URI, which no console serves
        # here, and /favicon.ico, which browsers ask every site for and OneWindow does not have.
        expected_404 = (f"({console_redirect}?", f"({base}/favicon.ico)")
        errors = [
            line
            for line in watch.console
            if line.startswith("error") and not ("404" in line and any(url in line for url in expected_404))
        ]
        assert not errors, watch.console
    finally:
        context.close()


@pytest.mark.parametrize(
    ("locale", "query", "title"),
    [
        ("zh-CN", "", "登录 · 一网通办"),
        # A browser in a language the city has no pages for gets the default, Chinese.
        ("fr-FR", "", "登录 · 一网通办"),
        ("en-US", "", "Sign in · OneWindow"),
        ("zh-CN", "?lang=en", "Sign in · OneWindow"),
        ("en-US", "?lang=zh", "登录 · 一网通办"),
    ],
)
def test_login_page_language(
    provider: Provider, browser: Browser, locale: str, query: str, title: str
) -> None:
    context = _context(browser, locale)
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{provider.base_url}/login{query}")
        assert page.title() == title
    finally:
        context.close()


def test_the_language_link_keeps_the_authorization_request(provider: Provider, browser: Browser) -> None:
    """Switching to English on the login page must not lose where the sign-in goes back to."""
    context = _context(browser, "zh-CN")
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        return_to = "/oauth2/authorize?client_id=console&state=s"
        page.goto(f"{provider.base_url}/login?{urlencode({'return_to': return_to})}")
        page.click("a[hreflang=en]")
        assert page.title() == "Sign in · OneWindow"
        assert page.get_attribute("input[name=return_to]", "value") == return_to
        assert page.get_attribute("html", "lang") == "en"
    finally:
        context.close()


def test_the_language_chosen_on_the_login_page_carries_to_the_second_step(
    provider: Provider, browser: Browser
) -> None:
    context = _context(browser, "zh-CN")
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{provider.base_url}/login?lang=en")
        # officer2, not officer1: an account the other test has not enrolled yet.
        page.fill("#login", "officer2")
        page.fill("#password", STAFF[1])
        page.click("button[type=submit]")
        page.wait_for_url(f"{provider.base_url}/login/mfa/setup*")
        assert page.get_attribute("html", "lang") == "en"
    finally:
        context.close()
