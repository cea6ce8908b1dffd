"""Identity's HTTP surface: OpenID Connect discovery and the JWKS (more endpoints join here)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get
from litestar.datastructures import State

from identity.api import IdentityRuntime
from identity.oidc import ACR_VALUES, metadata

_CACHE_PUBLIC = {"Cache-Control": "public, max-age=300"}


def _runtime(state: State) -> IdentityRuntime:
    runtime: IdentityRuntime = state["identity"]
    return runtime


class DiscoveryController(Controller):
    """Public documents any client or resource server may fetch without signing in."""

    tags = ["identity"]  # noqa: RUF012 - litestar's declared type

    @get(
        "/.well-known/openid-configuration",
        operation_id="openid_configuration",
        summary="OpenID Connect discovery",
    )
    async def configuration(self, state: State) -> Response[dict[str, Any]]:
        return Response(metadata(_runtime(state).issuer), headers=_CACHE_PUBLIC)

    @get(
        "/.well-known/oauth-authorization-server",
        operation_id="oauth_authorization_server",
        summary="OAuth 2.0 authorization server metadata (RFC 8414): the same document",
    )
    async def oauth_metadata(self, state: State) -> Response[dict[str, Any]]:
        return Response(metadata(_runtime(state).issuer), headers=_CACHE_PUBLIC)

    @get("/oauth2/jwks", operation_id="jwks", summary="The public keys that verify OneWindow's tokens")
    async def jwks(self, state: State) -> Response[dict[str, Any]]:
        runtime = _runtime(state)
        await runtime.keys.verification_keys(None)  # picks up a rotation made by another process
        return Response(runtime.keys.jwks(), media_type="application/jwk-set+json", headers=_CACHE_PUBLIC)


__all__ = ["ACR_VALUES", "DiscoveryController"]
