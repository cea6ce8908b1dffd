"""Every error is RFC 9457 problem+json: bad input, domain errors, and the unexpected."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, ClassVar

import httpx
import msgspec
import pytest
from litestar import get, post
from litestar.params import FromPath, JSONBody

from onewindow import errors
from onewindow.db import Connection
from onewindow.events import Event
from onewindow.outbox import publish
from onewindow.settings import Settings
from onewindow.text import has_control_characters, http_url_problem
from tests.conftest import RollbackDatabase, app_client, build_app


class Applicant(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(min_length=1)]
    age: Annotated[int, msgspec.Meta(ge=0)]


class Application(msgspec.Struct):
    service_code: str
    applicant: Applicant
    documents: list[str] = []


class Submitted(Event, frozen=True):
    topic: ClassVar[str] = "test.application.submitted"
    service_code: str


@post("/test/applications", operation_id="test_submit")
async def submit(data: JSONBody[Application], conn: Connection) -> dict[str, str]:
    await publish(conn, Submitted(service_code=data.service_code))
    if data.service_code == "fail-after-write":
        raise errors.RuleViolation("The item is closed for applications.")
    return {"service_code": data.service_code}


_RAISED = {
    "not-found": errors.NotFound("No application YC-2026-000001."),
    "conflict": errors.Conflict("Someone else acted on this task first."),
    "precondition-failed": errors.PreconditionFailed("The task changed since you read it."),
    "unauthorized": errors.Unauthorized("Sign in first."),
    "forbidden": errors.Forbidden("Officers of another department cannot see this."),
    "rate-limited": errors.RateLimited("Slow down.", retry_after=30),
    "validation": errors.ValidationFailed(
        "The form has errors.", errors=[errors.FieldError(pointer="/applicant/age", detail="too young")]
    ),
}


@get("/test/raise/{kind:str}", operation_id="test_raise")
async def raise_domain(kind: FromPath[str]) -> None:
    raise _RAISED[kind]


@get("/test/items/{number:str}", operation_id="test_item")
async def item(number: FromPath[int]) -> int:
    return number


@post("/test/forms", operation_id="test_form")
async def form(data: JSONBody[dict[str, Any]]) -> int:
    return len(data)


_SQLSTATES = {"deadlock": "40P01", "serialization": "40001"}


@post("/test/races/{kind:str}", operation_id="test_race")
async def lose_a_race(kind: FromPath[str], conn: Connection) -> None:
    # PostgreSQL itself raises the error a deadlock or a serialisation failure gives.
    await conn.execute(f"DO $$ BEGIN RAISE EXCEPTION 'lost' USING ERRCODE = '{_SQLSTATES[kind]}'; END $$")


@get("/test/boom", operation_id="test_boom")
async def boom() -> None:
    raise RuntimeError("secret internals: password=hunter2")


@pytest.fixture
async def http(settings: Settings, db: RollbackDatabase) -> AsyncIterator[httpx.AsyncClient]:
    limited = settings.model_copy(update={"max_body_bytes": 4096})
    async with app_client(
        build_app(limited, db, [submit, raise_domain, item, form, lose_a_race, boom])
    ) as client:
        yield client


def _problem(reply: httpx.Response, status: int, slug: str) -> dict[str, object]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = reply.json()
    assert body["type"] == f"urn:onewindow:problem:{slug}"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["request_id"] == reply.headers["x-request-id"]
    return body


async def test_valid_request_passes(http: httpx.AsyncClient) -> None:
    reply = await http.post(
        "/test/applications", json={"service_code": "BL-01", "applicant": {"name": "Li", "age": 30}}
    )
    assert reply.status_code == 201
    assert reply.json() == {"service_code": "BL-01"}


async def test_malformed_json_is_400(http: httpx.AsyncClient) -> None:
    reply = await http.post(
        "/test/applications",
        content=b'{"service_code": "BL-01",',
        headers={"content-type": "application/json"},
    )
    body = _problem(reply, 400, "bad-request")
    assert "could not be read" in str(body["detail"])


async def test_every_offending_field_is_reported_with_its_path(http: httpx.AsyncClient) -> None:
    reply = await http.post(
        "/test/applications", json={"service_code": "BL-01", "applicant": {"name": "Li", "age": -1}}
    )
    body = _problem(reply, 400, "validation")
    assert body["errors"] == [{"pointer": "/applicant/age", "detail": "Expected `int` >= 0"}]


async def test_missing_field_is_reported(http: httpx.AsyncClient) -> None:
    reply = await http.post("/test/applications", json={"applicant": {"name": "Li", "age": 3}})
    body = _problem(reply, 400, "validation")
    assert body["errors"] == [
        {"pointer": "/service_code", "detail": "Object missing required field `service_code`"}
    ]


async def test_nested_list_items_have_their_index_in_the_pointer(http: httpx.AsyncClient) -> None:
    reply = await http.post(
        "/test/applications",
        json={"service_code": "BL-01", "applicant": {"name": "Li", "age": 3}, "documents": ["a", 7]},
    )
    body = _problem(reply, 400, "validation")
    assert body["errors"] == [{"pointer": "/documents/1", "detail": "Expected `str`, got `int`"}]


async def test_bad_path_parameter_is_named(http: httpx.AsyncClient) -> None:
    reply = await http.get("/test/items/not-a-number")
    body = _problem(reply, 400, "validation")
    assert body["errors"] == [
        {"pointer": "", "detail": "Expected `int`, got `str`", "parameter": "path.number"}
    ]


async def test_wrong_content_type_is_4xx_not_500(http: httpx.AsyncClient) -> None:
    reply = await http.post(
        "/test/applications", content=b"service_code=BL-01", headers={"content-type": "text/plain"}
    )
    assert 400 <= reply.status_code < 500
    assert reply.headers["content-type"] == "application/problem+json"


async def test_oversized_body_is_413(http: httpx.AsyncClient) -> None:
    payload = {"service_code": "BL-01", "applicant": {"name": "x" * 10_000, "age": 1}}
    reply = await http.post(
        "/test/applications", content=json.dumps(payload), headers={"content-type": "application/json"}
    )
    _problem(reply, 413, "too-large")


@pytest.mark.parametrize("slug", sorted(_RAISED))
async def test_domain_errors_map_to_their_status(http: httpx.AsyncClient, slug: str) -> None:
    error = _RAISED[slug]
    reply = await http.get(f"/test/raise/{slug}")
    body = _problem(reply, error.status, slug)
    assert body["detail"] == error.detail
    if slug == "rate-limited":
        assert reply.headers["retry-after"] == "30"
    if slug == "validation":
        assert body["errors"] == [{"pointer": "/applicant/age", "detail": "too young"}]


async def test_unexpected_error_is_500_with_correlation_id_and_no_internals(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    reply = await http.get("/test/boom")
    body = _problem(reply, 500, "internal")
    assert "hunter2" not in reply.text
    assert "Traceback" not in reply.text
    assert "RuntimeError" not in reply.text
    # The log has the stack trace, under the same request id the client was given.
    logged = [r for r in caplog.records if r.getMessage() == "unexpected error"]
    assert logged
    assert logged[0].exc_info is not None
    assert body["request_id"]


async def test_a_failed_request_writes_nothing(http: httpx.AsyncClient, conn: Connection) -> None:
    """The transaction per request: the event written before the rule failed is rolled back."""
    before = await conn.fetchval("SELECT count(*) FROM onewindow.outbox")
    reply = await http.post(
        "/test/applications",
        json={"service_code": "fail-after-write", "applicant": {"name": "Li", "age": 30}},
    )
    _problem(reply, 422, "rule-violation")
    assert await conn.fetchval("SELECT count(*) FROM onewindow.outbox") == before
    ok = await http.post(
        "/test/applications", json={"service_code": "BL-02", "applicant": {"name": "Li", "age": 30}}
    )
    assert ok.status_code == 201
    assert await conn.fetchval("SELECT count(*) FROM onewindow.outbox") == before + 1


async def test_a_nul_byte_that_reaches_the_database_is_400_not_500(http: httpx.AsyncClient) -> None:
    # The handler stores the code (in the outbox's jsonb), which PostgreSQL refuses with \u0000.
    reply = await http.post(
        "/test/applications", json={"service_code": "a\u0000b", "applicant": {"name": "Li", "age": 30}}
    )
    body = _problem(reply, 400, "validation")
    assert "cannot be stored" in str(body["detail"])


@pytest.mark.parametrize(
    ("value", "multiline", "refused"),
    [
        ("Blocked drain\nat the corner\r\n\tsee photo", True, False),
        ("Blocked drain\nat the corner", False, True),
        ("NUL \x00 here", True, True),
        ("bell \x07", True, True),
        ("delete \x7f", True, True),
        ("井盖缺失 — 请尽快处理", False, False),
    ],
)
def test_control_characters_are_found(value: str, multiline: bool, refused: bool) -> None:
    assert has_control_characters(value, multiline=multiline) is refused


@pytest.mark.parametrize(
    ("url", "good"),
    [
        ("https://ioc.example/hook", True),
        ("http://127.0.0.1:8080/events?x=1", True),
        ("http://[::1/x", False),
        ("http://a\x00b/", False),
        ("http://a b/", False),
        ("ftp://files.example/x", False),
        ("http:///no-host", False),
        ("https://ioc.example/" + "a" * 2000, False),
    ],
)
def test_http_urls_are_checked_as_a_client_parses_them(url: str, good: bool) -> None:
    assert (http_url_problem(url) is None) is good


async def test_a_client_that_goes_away_mid_body_is_no_server_error(
    settings: Settings, db: RollbackDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    app = build_app(settings, db, [submit])
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/test/applications",
        "raw_path": b"/test/applications",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"40")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    with caplog.at_level("INFO"):
        await app(scope, receive, send)  # type: ignore[arg-type]
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 400
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize("depth", [1_000, 1_900])
async def test_a_body_nested_too_deeply_is_400_not_500(http: httpx.AsyncClient, depth: int) -> None:
    body = '{"form": ' + "[" * depth + "]" * depth + "}"
    reply = await http.post("/test/forms", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["type"] == "urn:onewindow:problem:validation"
    shallow = await http.post("/test/forms", json={"form": [[[]]]})
    assert (shallow.status_code, shallow.json()) == (201, 1)


@pytest.mark.parametrize("kind", ["deadlock", "serialization"])
async def test_a_transaction_the_database_rolled_back_is_409_with_retry_after(
    http: httpx.AsyncClient, kind: str
) -> None:
    reply = await http.post(f"/test/races/{kind}")
    assert reply.status_code == 409, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.headers["retry-after"] == "1"
    body = reply.json()
    assert body["type"] == "urn:onewindow:problem:conflict"
    assert "lost" not in body["detail"]
