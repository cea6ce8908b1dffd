"""The composition root for HTTP: `create_app(settings)` wires every context into one litestar app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.types import ControllerRouterHandler
from redis.asyncio import Redis

import onewindow
from channels.ioc_http import IOC_CONTROLLERS
from channels.notify_http import NOTIFY_CONTROLLERS
from channels.open311 import OPEN311_CONTROLLERS
from grid.http import GRID_CONTROLLERS
from identity import api as identity_api
from identity.admin import ADMIN_CONTROLLERS
from identity.api import IdentityRuntime
from identity.http import AuthorizeController, DiscoveryController, PrincipalController, TokenController
from identity.keys import KeyRing
from identity.login import LoginController, LogoutController
from identity.mfa import MfaController
from identity.oauth import OneWindowAuthorizationServer
from identity.oidc import SCOPES
from identity.registration import CounterController, RegistrationController
from onewindow.db import Database, PoolDatabase
from onewindow.ops import ObserveMiddleware, OpsController
from onewindow.problems import exception_handlers
from onewindow.settings import Settings
from onewindow.web import Resources, provide_conn, provide_settings
from onewindow.worker import BackgroundWorker, configure_contexts
from services import api as services_api
from workflows.http import WORKFLOW_CONTROLLERS


def route_handlers() -> list[ControllerRouterHandler]:
    """Every context's controllers. Contexts add theirs here as their `http` modules appear."""
    return [
        OpsController,
        DiscoveryController,
        TokenController,
        AuthorizeController,
        PrincipalController,
        LoginController,
        LogoutController,
        MfaController,
        *ADMIN_CONTROLLERS,
        RegistrationController,
        CounterController,
        *WORKFLOW_CONTROLLERS,
        *GRID_CONTROLLERS,
        *services_api.CONTROLLERS,
        *OPEN311_CONTROLLERS,
        *NOTIFY_CONTROLLERS,
        *IOC_CONTROLLERS,
    ]


def create_app(
    settings: Settings,
    *,
    db: Database | None = None,
    extra_handlers: Sequence[ControllerRouterHandler] = (),
) -> Litestar:
    """Build the app. `db` replaces the pool (tests pass one connection inside a rolled-back transaction)."""
    configure_contexts(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        database = db or await PoolDatabase.open(settings, settings.dsn)
        redis = Redis.from_url(settings.redis_dsn, socket_timeout=5, socket_connect_timeout=2)
        app.state.resources = Resources(settings=settings, db=database, redis=redis)
        keys = KeyRing(database, settings.master_secret, dsn=None if db is not None else settings.dsn)
        await keys.load()
        identity_api.install(app.state, IdentityRuntime(issuer=settings.public_url, keys=keys))
        app.state.oauth_server = OneWindowAuthorizationServer(
            issuer=settings.public_url,
            keys=keys,
            access_token_seconds=settings.access_token_seconds,
            id_token_seconds=settings.id_token_seconds,
            refresh_token_days=settings.refresh_token_days,
            code_seconds=settings.authorization_code_seconds,
            scopes=SCOPES,
        )
        worker = BackgroundWorker(settings, database) if settings.run_worker else None
        if worker is not None:
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            await redis.aclose()
            if db is None:
                await database.close()

    app = Litestar(
        route_handlers=[*route_handlers(), *extra_handlers],
        lifespan=[lifespan],
        dependencies={
            "conn": Provide(provide_conn),
            "settings": Provide(provide_settings, sync_to_thread=False),
        },
        exception_handlers=exception_handlers(),
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="OneWindow",
            version=onewindow.__version__,
            description="One window for a city's citizen services. Errors are RFC 9457 problem+json.",
            path="/schema",
            render_plugins=[ScalarRenderPlugin()],
        ),
        debug=False,
        logging_config=None,  # onewindow.logs configures logging once, for every library
    )
    app.asgi_handler = ObserveMiddleware(app.asgi_handler)
    return app


def app_from_env() -> Litestar:
    """uvicorn's factory for `--workers N`: each worker process builds its settings once, here."""
    from onewindow.logs import configure_logging  # noqa: PLC0415
    from onewindow.serve import ensure_secret_key  # noqa: PLC0415
    from onewindow.settings import load_settings  # noqa: PLC0415

    settings = ensure_secret_key(load_settings())
    configure_logging(settings)
    return create_app(settings)
