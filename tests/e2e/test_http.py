"""Request body limits over real HTTP: uvicorn in front, OneWindow's app behind it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from onewindow.settings import Settings
from tests.conftest import server_env, stop
from tests.e2e.conftest import serve_testapp

pytestmark = pytest.mark.e2e

_LIMIT = 2048
_TOO_BIG = b"x" * 10_240


@pytest.fixture(scope="module")
def body_server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """OneWindow's app with a body-reading route (tests/e2e/testapp.py) under uvicorn, limit 2 kB."""
    log = tmp_path_factory.mktemp("body") / "uvicorn.log"
    env = server_env(settings, log.parent) | {"ONEWINDOW_MAX_BODY_BYTES": str(_LIMIT)}
    served = serve_testapp(env, log)
    try:
        yield served.base_url
    finally:
        stop(served.child.process)


def _assert_too_large(reply: httpx.Response) -> None:
    assert reply.status_code == 413, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    body = reply.json()
    assert body["type"] == "urn:onewindow:problem:too-large"
    assert body["status"] == 413
    assert body["request_id"] == reply.headers["x-request-id"]


def test_a_body_within_the_limit_is_read(body_server: str) -> None:
    """The route really reads bodies, so a 413 below is about size and nothing else."""
    reply = httpx.post(body_server + "/e2e/echo", content=b"x" * 1000, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"bytes": 1000}


def test_a_body_announced_larger_than_the_limit_is_413(body_server: str) -> None:
    reply = httpx.post(body_server + "/e2e/echo", content=_TOO_BIG, timeout=10)
    assert reply.request.headers["content-length"] == str(len(_TOO_BIG))
    _assert_too_large(reply)


def test_a_chunked_body_larger_than_the_limit_is_413(body_server: str) -> None:
    """No Content-Length to go by: the limit must hold on the bytes actually streamed."""

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"x" * 1024

    reply = httpx.post(body_server + "/e2e/echo", content=chunks(), timeout=10)
    assert "content-length" not in reply.request.headers
    assert reply.request.headers["transfer-encoding"] == "chunked"
    _assert_too_large(reply)


def test_an_oversized_body_to_a_route_without_post_is_405_problem(live_server: str) -> None:
    """Against `onewindow serve` itself: no route takes a body yet, and routing answers first, so
    the body is never read. A clean 405 problem, not a 500 and not a dropped connection."""
    reply = httpx.post(live_server + "/healthz", content=_TOO_BIG, timeout=10)
    assert reply.status_code == 405
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["type"] == "urn:onewindow:problem:method-not-allowed"
    # And the server carries on.
    assert httpx.get(live_server + "/healthz", timeout=5).status_code == 200
