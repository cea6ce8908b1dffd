"""Operations endpoints and the request id, through litestar's async test client."""

from __future__ import annotations

import httpx


async def test_healthz_answers_without_touching_backing_services(client: httpx.AsyncClient) -> None:
    reply = await client.get("/healthz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok"}


async def test_readyz_reports_each_dependency(client: httpx.AsyncClient) -> None:
    reply = await client.get("/readyz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}}


async def test_every_reply_carries_a_request_id(client: httpx.AsyncClient) -> None:
    generated = await client.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32
    echoed = await client.get("/healthz", headers={"X-Request-ID": "counter-7.abc_1"})
    assert echoed.headers["x-request-id"] == "counter-7.abc_1"
    # A header that could smuggle text into logs is replaced, not echoed.
    forged = await client.get("/healthz", headers={"X-Request-ID": "a b\tc"})
    assert forged.headers["x-request-id"] != "a b\tc"


async def test_unknown_route_is_problem_json_with_request_id(client: httpx.AsyncClient) -> None:
    reply = await client.get("/no/such/page")
    assert reply.status_code == 404
    assert reply.headers["content-type"] == "application/problem+json"
    body = reply.json()
    assert body["type"] == "urn:onewindow:problem:not-found"
    assert body["status"] == 404
    assert body["request_id"] == reply.headers["x-request-id"]


async def test_openapi_has_an_operation_id_on_every_route(client: httpx.AsyncClient) -> None:
    reply = await client.get("/schema/openapi.json")
    assert reply.status_code == 200
    operations = [
        (path, method, operation)
        for path, item in reply.json()["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert operations
    missing = [(path, method) for path, method, operation in operations if not operation.get("operationId")]
    assert missing == []
    assert (await client.get("/schema")).status_code == 200


async def test_metrics_count_requests_by_route_and_status(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    await client.get("/no/such/page")
    text = (await client.get("/metrics")).text
    assert 'onewindow_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'route="<unmatched>",status="404"' in text
    assert "onewindow_http_request_duration_seconds_bucket" in text
    assert "onewindow_outbox_pending 0.0" in text
    assert "onewindow_outbox_dead 0.0" in text
