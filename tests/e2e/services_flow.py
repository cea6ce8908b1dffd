"""Helpers for the one-window approvals story over real HTTP (tests/e2e/test_services.py).

Everything here talks to a running `onewindow serve --demo` as its clients would: tokens come
from the provider's own authorization endpoint (code flow with PKCE through the login form, and
the TOTP page when the account has a second factor), never minted by the test. A citizen's
second factor is enrolled the way a citizen does it: signed in, on the provider's account
security page (`enrol_totp`), reading the key off the page as an authenticator app would.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import struct
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
import pytest

from identity.credentials import totp_at_step, totp_step
from onewindow.db import connect
from onewindow.settings import Settings
from tests.conftest import free_port
from tests.e2e.conftest import Provider, run_async
from workflows.calendar import WorkCalendar, parse_office_hours

CONSOLE = ("console", "console-demo-secret")
CITIZEN_APP = "citizen-app"
CITIZEN_SCOPE = "openid profile email"
SUBSTANTIAL = "urn:onewindow:loa:substantial"
ACCOUNT_SECURITY = "/account/security"
STAFF_SCOPE = "openid profile staff"
_HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">')
# Access tokens live ONEWINDOW_ACCESS_TOKEN_SECONDS (300 s by default): a cached one older than
# this is fetched again rather than risk one expiring half-way through a step.
_TOKEN_REUSE_SECONDS = 200.0
_SECRET = re.compile(r'id="totp-secret">([^<]+)<')
# The provider accepts each TOTP time step once: the last step used per secret, so the next
# code typed is a new one (as a person waits for the app to show the next code).
_LAST_STEP: dict[str, int] = {}


# --- sign-in through the provider ------------------------------------------------------------


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def _hidden_fields(page: httpx.Response) -> dict[str, str]:
    assert page.status_code == 200, f"{page.url}: {page.status_code} {page.text[:300]}"
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page.text)}


def _location(reply: httpx.Response) -> str:
    assert reply.status_code in (302, 303), f"{reply.request.url}: {reply.status_code} {reply.text[:300]}"
    return urljoin(str(reply.request.url), reply.headers["location"])


def code_flow(
    provider: Provider,
    *,
    client_id: str,
    redirect_uri: str,
    scope: str,
    login: str,
    password: str,
    client_secret: str | None = None,
    totp_secret: str | None = None,
    acr_values: str | None = None,
) -> dict[str, Any]:
    """One authorization-code flow with PKCE, signing `login` in through the login form (and the
    second-factor page when the provider asks for a code); the token endpoint's reply."""
    verifier, challenge = _pkce()
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if acr_values:
        query["acr_values"] = acr_values
    with httpx.Client(timeout=20) as browser:
        url = _location(browser.get(provider.endpoint("authorization_endpoint"), params=query))
        for _ in range(6):
            if url.startswith(redirect_uri):
                break
            path = urlsplit(url).path
            if path == "/login":
                form = _hidden_fields(browser.get(url)) | {"login": login, "password": password}
                url = _location(browser.post(urljoin(url, "/login"), data=form))
            elif path == "/login/mfa":
                assert totp_secret is not None, f"the provider asked {login} for a second factor"
                form = _hidden_fields(browser.get(url)) | {"code": fresh_code(totp_secret)}
                url = _location(browser.post(urljoin(url, "/login/mfa"), data=form))
            else:
                url = _location(browser.get(url))
        else:
            pytest.fail(f"no way back to {redirect_uri} after signing in {login}; stuck at {url}")
        code = parse_qs(urlsplit(url).query).get("code")
        assert code, url
        form = {
            "grant_type": "authorization_code",
            "code": code[0],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        if client_secret is None:
            form["client_id"] = client_id  # a public client names itself, no secret
            reply = browser.post(provider.endpoint("token_endpoint"), data=form)
        else:  # client_secret_basic
            auth = httpx.BasicAuth(client_id, client_secret)
            reply = browser.post(provider.endpoint("token_endpoint"), data=form, auth=auth)
    assert reply.status_code == 200, reply.text
    tokens: dict[str, Any] = reply.json()
    return tokens


def fresh_code(secret: str) -> str:
    """The code the authenticator app shows; when this time step's code was used already, the
    next step's (waiting for it, at most 30 seconds)."""
    step = totp_step(datetime.now(UTC))
    while step <= _LAST_STEP.get(secret, -1):
        time.sleep(0.5)
        step = totp_step(datetime.now(UTC))
    _LAST_STEP[secret] = step
    return totp_at_step(secret, step)


def enrol_totp(provider: Provider, login: str, password: str) -> str:
    """`login` signs in (password) and sets up TOTP on the provider's account security page; the
    secret read off the page (what the authenticator app holds). The recovery codes are shown."""
    with httpx.Client(base_url=provider.base_url, timeout=20) as browser:
        to_login = browser.get(ACCOUNT_SECURITY, params={"lang": "en"})
        url = _location(to_login)
        assert urlsplit(url).path == "/login", url
        form = _hidden_fields(browser.get(url)) | {"login": login, "password": password}
        back = _location(browser.post("/login", data=form))
        assert urlsplit(back).path == ACCOUNT_SECURITY, back
        overview = browser.get(back)
        assert 'data-enrolled="false"' in overview.text, overview.text[:500]
        setup = browser.get(f"{ACCOUNT_SECURITY}/totp", params={"lang": "en"})
        found = _SECRET.search(setup.text)
        assert found, setup.text[:500]
        secret = found.group(1).replace(" ", "")
        form = _hidden_fields(setup) | {"code": fresh_code(secret)}
        done = browser.post(f"{ACCOUNT_SECURITY}/totp", data=form)
        assert done.status_code == 200, done.text[:500]
        assert len(re.findall(r"<li><code>([^<]+)</code></li>", done.text)) == 10
        assert 'data-enrolled="true"' in browser.get(ACCOUNT_SECURITY).text
    return secret


@dataclass
class Tokens:
    """Bearer headers per account, each from a real sign-in, kept while they are fresh."""

    provider: Provider
    password: str
    totp: dict[str, str] = field(default_factory=dict)
    staff: set[str] = field(default_factory=set)
    extra_passwords: dict[str, str] = field(default_factory=dict)
    _cache: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)

    def reply(self, login: str) -> dict[str, Any]:
        cached = self._cache.get(login)
        if cached is not None and time.monotonic() - cached[0] < _TOKEN_REUSE_SECONDS:
            return cached[1]
        password = self.extra_passwords.get(login, self.password)
        if login in self.staff:
            tokens = code_flow(
                self.provider,
                client_id=CONSOLE[0],
                client_secret=CONSOLE[1],
                redirect_uri=f"{self.provider.base_url}/console/callback",
                scope=STAFF_SCOPE,
                login=login,
                password=password,
                totp_secret=self.totp.get(login),
            )
        else:
            tokens = code_flow(
                self.provider,
                client_id=CITIZEN_APP,
                redirect_uri=f"http://127.0.0.1:{free_port()}/callback",
                scope=CITIZEN_SCOPE,
                login=login,
                password=password,
                totp_secret=self.totp.get(login),
                # The citizen app asks for what a second factor gives, when the citizen has one.
                acr_values=SUBSTANTIAL if login in self.totp else None,
            )
        self._cache[login] = (time.monotonic(), tokens)
        return tokens

    def __call__(self, login: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.reply(login)['access_token']}"}

    def claims(self, login: str) -> dict[str, Any]:
        """The access token's claims (read, not verified: the API verifies them)."""
        payload = self.reply(login)["access_token"].split(".")[1]
        decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return decoded


# --- documents -------------------------------------------------------------------------------


def pdf_bytes(title: str) -> bytes:
    """A small, well-formed one-page PDF (its title makes each upload's content its own)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
        b"<< /Title (" + title.encode("ascii") + b") >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 4 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def png_bytes(title: str) -> bytes:
    """A valid 1x1 RGB PNG with a tEXt chunk naming what it shows."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"tEXt", b"Title\x00" + title.encode("ascii"))
        + chunk(b"IDAT", zlib.compress(b"\x00\x20\x80\x40"))
        + chunk(b"IEND", b"")
    )


def document_for(code: str, media_types: Iterable[str]) -> tuple[str, bytes, str]:
    """(file name, bytes, declared type) of a file an entry accepts: a PDF where it may, else a PNG."""
    accepted = set(media_types)
    if "application/pdf" in accepted:
        return f"{code}.pdf", pdf_bytes(code), "application/pdf"
    assert "image/png" in accepted, (code, accepted)
    return f"{code}.png", png_bytes(code), "image/png"


# --- the workflow engine's view ---------------------------------------------------------------


async def _calendar_overrides(database_url: str) -> dict[date, bool]:
    conn = await connect(database_url)
    try:
        rows = await conn.fetch("SELECT day, working FROM workflows.calendar_days")
    finally:
        await conn.close()
    return {row["day"]: row["working"] for row in rows}


def working_days_between(provider: Provider, settings: Settings, start: datetime, end: datetime) -> timedelta:
    """Working time (the working-days clock) from `start` to `end` on the city's calendar as the
    server has it: its weekend and time zone (the same settings) and the holidays in its database."""
    calendar = WorkCalendar(
        tz=ZoneInfo(settings.timezone),
        weekend=frozenset(settings.weekend),
        office_hours=parse_office_hours(settings.office_hours),
        overrides=run_async(_calendar_overrides(provider.database_url)),
    )
    return calendar.elapsed(start, end, "working_days")


def idempotency() -> dict[str, str]:
    return {"Idempotency-Key": str(UUID(bytes=secrets.token_bytes(16), version=4))}
