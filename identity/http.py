"""Identity's HTTP surface: discovery, JWKS and the OAuth 2.0 / OpenID Connect endpoints.

The OAuth endpoints answer as the specifications say (JSON `{error, error_description}`,
`Cache-Control: no-store`), not as problem+json: OAuth clients parse exactly that.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import SerializationException

from identity import oauth, store
from identity.api import IdentityRuntime
from identity.oidc import INTROSPECT, JWKS, REVOKE, TOKEN, USERINFO, metadata
from identity.tokens import InvalidToken, verify_access_token
from onewindow.db import Connection

_CACHE_PUBLIC = {"Cache-Control": "public, max-age=300"}
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_MAX_PARAMETER = 4096  # characters: longer values are refused before authlib sees them

AnyRequest = Request[Any, Any, Any]


def _runtime(state: State) -> IdentityRuntime:
    runtime: IdentityRuntime = state["identity"]
    return runtime


def _server(state: State) -> oauth.OneWindowAuthorizationServer:
    server: oauth.OneWindowAuthorizationServer = state["oauth_server"]
    return server


def _authlib_uri(issuer: str, path: str) -> str:
    # authlib refuses to build a request whose URI is not https (or loopback). It uses the URI for
    # nothing else; whether the deployment really serves TLS is ONEWINDOW_PUBLIC_URL's business.
    return f"https://{urlsplit(issuer).netloc}{path}"


def oauth_error(status: int, error: str, description: str) -> Response[dict[str, str]]:
    return Response({"error": error, "error_description": description}, status_code=status, headers=_NO_STORE)


def to_response(result: oauth.OAuthResult) -> Response[Any]:
    headers = {**dict(result.headers), **_NO_STORE}
    if isinstance(result.body, dict):
        return Response(result.body, status_code=result.status, headers=headers)
    return Response(result.body, status_code=result.status, headers=headers, media_type="text/plain")


async def raw_request(
    request: AnyRequest, issuer: str, path: str, *, with_query: bool
) -> oauth.RawRequest | Response[Any]:
    """The request as authlib may see it, or an OAuth error when the parameters are unusable."""
    form: list[tuple[str, str]] = []
    if request.method == "POST":
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return oauth_error(400, "invalid_request", "The body must be application/x-www-form-urlencoded.")
        try:
            form = list((await request.form()).multi_items())
        except (SerializationException, ValueError, UnicodeDecodeError):
            return oauth_error(400, "invalid_request", "The form body could not be read.")
    query = list(request.query_params.multi_items()) if with_query else []
    for _, value in (*form, *query):
        if not isinstance(value, str) or len(value) > _MAX_PARAMETER:
            return oauth_error(400, "invalid_request", "A parameter is too long or not text.")
    return oauth.RawRequest(
        method=request.method,
        uri=_authlib_uri(issuer, path),
        headers=request.headers,
        query=query,
        form=[(k, v) for k, v in form if isinstance(v, str)],
    )


async def _endpoint(
    request: AnyRequest, conn: Connection, state: State, path: str, name: str
) -> Response[Any]:
    server = _server(state)
    raw = await raw_request(request, server.issuer, path, with_query=False)
    if isinstance(raw, Response):
        return raw
    try:
        if name == "token":
            result = await oauth.run(conn, server.create_token_response, raw)
        else:
            result = await oauth.run(conn, server.create_endpoint_response, name, raw)
    except ValueError:
        # authlib builds error descriptions from request values; some characters make that
        # raise instead of answering. It is still the caller's bad input.
        return oauth_error(400, "invalid_request", "The request contains characters that are not allowed.")
    return to_response(result)


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

    @get(JWKS, operation_id="jwks", summary="The public keys that verify OneWindow's tokens")
    async def jwks(self, state: State) -> Response[dict[str, Any]]:
        runtime = _runtime(state)
        await runtime.keys.verification_keys(None)  # picks up a rotation made by another process
        return Response(runtime.keys.jwks(), media_type="application/jwk-set+json", headers=_CACHE_PUBLIC)


class TokenController(Controller):
    """Token, revocation (RFC 7009) and introspection (RFC 7662) endpoints; UserInfo."""

    tags = ["identity"]  # noqa: RUF012 - litestar's declared type

    @post(TOKEN, operation_id="oauth_token", summary="Token endpoint", status_code=200)
    async def token(self, request: AnyRequest, conn: Connection, state: State) -> Response[Any]:
        return await _endpoint(request, conn, state, TOKEN, "token")

    @post(REVOKE, operation_id="oauth_revoke", summary="Token revocation (RFC 7009)", status_code=200)
    async def revoke(self, request: AnyRequest, conn: Connection, state: State) -> Response[Any]:
        return await _endpoint(request, conn, state, REVOKE, "revocation")

    @post(
        INTROSPECT, operation_id="oauth_introspect", summary="Token introspection (RFC 7662)", status_code=200
    )
    async def introspect(self, request: AnyRequest, conn: Connection, state: State) -> Response[Any]:
        return await _endpoint(request, conn, state, INTROSPECT, "introspection")

    @get(USERINFO, operation_id="oidc_userinfo_get", summary="UserInfo")
    async def userinfo_get(self, request: AnyRequest, conn: Connection, state: State) -> Response[Any]:
        return await _userinfo(request, conn, state, None)

    @post(
        USERINFO,
        operation_id="oidc_userinfo_post",
        summary="UserInfo (token in the header or the form body)",
        status_code=200,
    )
    async def userinfo_post(self, request: AnyRequest, conn: Connection, state: State) -> Response[Any]:
        body_token = None
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            value = (await request.form()).get("access_token")
            body_token = value if isinstance(value, str) else None
        return await _userinfo(request, conn, state, body_token)


def _bearer_error(status: int, error: str, description: str) -> Response[dict[str, str]]:
    return Response(
        {"error": error, "error_description": description},
        status_code=status,
        headers={
            **_NO_STORE,
            "WWW-Authenticate": f'Bearer error="{error}", error_description="{description}"',
        },
    )


async def _userinfo(
    request: AnyRequest, conn: Connection, state: State, body_token: str | None
) -> Response[Any]:
    header = request.headers.get("authorization", "")
    header_token = header[7:].strip() if header[:7].lower() == "bearer " else None
    if header_token and body_token:
        return _bearer_error(400, "invalid_request", "Send the token in one place only.")
    token = header_token or body_token
    if not token:
        return Response({}, status_code=401, headers={**_NO_STORE, "WWW-Authenticate": "Bearer"})
    runtime = _runtime(state)
    try:
        claims = await verify_access_token(runtime.keys, token, issuer=runtime.issuer)
    except InvalidToken:
        return _bearer_error(401, "invalid_token", "The access token is not valid.")
    if await store.access_token_revoked(conn, claims.jti):
        return _bearer_error(401, "invalid_token", "The access token has been revoked.")
    if "openid" not in claims.scope.split() or claims.sub == claims.client_id:
        return _bearer_error(403, "insufficient_scope", "UserInfo needs a token with the openid scope.")
    return Response(await oauth.user_claims(conn, UUID(claims.sub), claims.scope), headers=_NO_STORE)
