"""What the sign-in page tests share: a client on an app with the demo accounts, the password
step of the sign-in page, and reading a form's hidden fields."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from identity.seed import seed_demo
from onewindow.db import Connection
from onewindow.settings import Settings
from tests.conftest import RollbackDatabase, app_client, build_app

DEMO_PASSWORD = "onewindow-demo"


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
