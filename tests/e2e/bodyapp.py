"""OneWindow's own app plus one route that reads a request body, for the body-limit test.

No route of OneWindow takes a body yet, and litestar enforces the limit only where a body is
read (a body sent to a GET route is refused by method first, and never read). This factory
builds the very app `onewindow serve` runs, from the same environment, and adds that route, so
uvicorn can serve it over real HTTP.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, post

from onewindow.app import create_app
from onewindow.logs import configure_logging
from onewindow.settings import load_settings


@post("/e2e/echo", operation_id="e2eEcho", status_code=200)
async def echo(request: Request[Any, Any, Any]) -> dict[str, int]:
    """Reads the raw body, through the same stream a handler's `data` parameter is parsed from."""
    return {"bytes": len(await request.body())}


def app() -> Litestar:
    settings = load_settings()
    configure_logging(settings)
    return create_app(settings, extra_handlers=[echo])
