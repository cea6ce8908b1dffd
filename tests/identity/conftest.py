"""What the sign-in page tests share: a client on an app with the demo accounts, the password
step of the sign-in page, and reading a form's hidden fields."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from identity.seed import seed_demo
from onewindow.db import Connection
from onewindow.settings import Settings
from tests.conftest import RollbackDatabase, app_client, build_app

DEMO_PASSWORD = "onewindow-demo"
APP = "citizen-app"
APP_REDIRECT = "http://127.0.0.1:53999/callback"  # registered without a port: RFC 8252 loopback


@pytest.fixture
async def browser(
    settings: Settings, db: RollbackDatabase, conn: Connection
) -> AsyncIterator[httpx.AsyncClient]:
    await seed_demo(conn, settings)
    async with app_client(build_app(settings, db)) as client:
        yield client


def field(page: str, name: str) -> str:
    """The value of the hidden field `name` on `page`."""
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, page
    return found.group(1).replace("&amp;", "&")


async def sign_in_with_password(browser: httpx.AsyncClient, username: str, return_to: str) -> httpx.Response:
    """The sign-in page's password step, in English, as a person fills it in."""
    page = (await browser.get("/login", params={"return_to": return_to, "lang": "en"})).text
    return await browser.post(
        "/login",
        data={
            "csrf_token": field(page, "csrf_token"),
            "return_to": field(page, "return_to"),
            "lang": "en",
            "login": username,
            "password": DEMO_PASSWORD,
        },
    )


@dataclass
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        return cls(verifier, challenge)


async def redeem(browser: httpx.AsyncClient, code: str, pkce: Pkce) -> httpx.Response:
    """The citizen app redeems an authorization code at the token endpoint."""
    return await browser.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": APP_REDIRECT,
            "client_id": APP,
            "code_verifier": pkce.verifier,
        },
    )
