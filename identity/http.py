"""Identity's HTTP surface: discovery, JWKS and the OAuth 2.0 / OpenID Connect endpoints.

The OAuth endpoints answer as the specifications say (JSON `{error, error_description}`,
`Cache-Control: no-store`), not as problem+json: OAuth clients parse exactly that.
"""

from __future__ import annotations

import html
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit
from uuid import UUID

import msgspec
from authlib.oauth2 import OAuth2Error
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import SerializationException

from identity import mfa, oauth, store
from identity.api import IdentityRuntime, current_principal, require_signed_in
from identity.login import choose_language
from identity.oidc import (
    AUTHORIZE,
    INTROSPECT,
    JWKS,
    LOA_HIGH,
    LOA_LOW,
    LOA_SUBSTANTIAL,
    LOGOUT,
    REVOKE,
    TOKEN,
    USERINFO,
    metadata,
)
from identity.sessions import SESSION_COOKIE, SignOn, clear_session_cookie, current_sign_on, end_sessions
from identity.tokens import InvalidToken, RoleGrant, verify_access_token
from onewindow.db import Connection
from onewindow.settings import Settings
from onewindow.web import resources

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


# --- Authorization and logout: the browser-facing endpoints ---------------------------------

_ACR_RANK = {LOA_LOW: 0, LOA_SUBSTANTIAL: 1, LOA_HIGH: 2}
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_RESUME_MARK = "ow_signed_in_after"  # ours: set on the way to the login page for prompt=login


def error_page(status: int, title: str, detail: str) -> Response[str]:
    """Errors that must not go back to a redirect URI we could not verify are shown here."""
    body = (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head>"
        '<body style="font-family:sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem">'
        f"<h1>{html.escape(title)}</h1><p>{html.escape(detail)}</p></body></html>"
    )
    return Response(body, status_code=status, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


def _redirect(location: str, status: int = 302) -> Response[str]:
    return Response("", status_code=status, headers={"Location": location, **_NO_STORE})


def _oauth_result_response(result: oauth.OAuthResult) -> Response[Any]:
    headers = dict(result.headers)
    if "Location" in headers:
        return _redirect(headers["Location"], result.status)
    return error_page(result.status, "Sign-in request refused", str(result.body))


def _fresh_enough(sign_on: SignOn, params: dict[str, str]) -> bool:
    """max_age and prompt=login: has the person signed in recently enough for this request?"""
    now = datetime.now(UTC)
    max_age = params.get("max_age", "")
    if max_age.isdigit() and (now - sign_on.auth_time).total_seconds() > int(max_age):
        return False
    if "login" in params.get("prompt", "").split():
        # Sent to the login page once already? Then a sign-in after that moment satisfies it.
        after = params.get(_RESUME_MARK, "")
        return after.isdigit() and sign_on.auth_time.timestamp() >= int(after)
    return True


def _acr_unmet(params: dict[str, str], achieved: str) -> bool:
    """A client asking acr_values gets one of them or an error, never less (fail closed)."""
    requested = [value for value in params.get("acr_values", "").split() if value in _ACR_RANK]
    if not params.get("acr_values"):
        return False
    return not any(_ACR_RANK[achieved] >= _ACR_RANK[value] for value in requested)


def _unmet_description(issuer: str, reachable: str) -> str:
    """What the person can do about an unreachable level (error_description: plain ASCII)."""
    if reachable == LOA_LOW:
        return (
            "The requested level of assurance needs a second factor. Enrol one (an authenticator app)"
            f" at {issuer.rstrip('/')}{mfa.ACCOUNT_PATH} and sign in again."
        )
    return (
        "The requested level of assurance needs the identity verified in person at a service"
        " counter (or by a trusted eID), in addition to the second factor."
    )


class AuthorizeController(Controller):
    tags = ["identity"]  # noqa: RUF012 - litestar's declared type

    @get(AUTHORIZE, operation_id="oauth_authorize", summary="Authorization endpoint (code flow, PKCE)")
    async def authorize(self, request: AnyRequest, conn: Connection, state: State) -> Response[Any]:
        server = _server(state)
        raw = await raw_request(request, server.issuer, AUTHORIZE, with_query=True)
        if isinstance(raw, Response):
            return error_page(400, "Sign-in request refused", "A parameter is too long or not text.")
        params = dict(raw.query)
        sign_on = await current_sign_on(conn, request.cookies.get(SESSION_COOKIE))
        end_user = None
        if sign_on is not None and _fresh_enough(sign_on, params):
            end_user = await oauth.end_user(conn, sign_on)
        try:
            grant = await oauth.run(conn, server.get_consent_grant, request=raw, end_user=end_user)
        except OAuth2Error as error:
            if error.redirect_uri:
                return _oauth_result_response(oauth.error_result(error))
            return error_page(400, "Sign-in request refused", error.description or error.error)
        except ValueError:
            return error_page(
                400, "Sign-in request refused", "The request contains characters that are not allowed."
            )
        if end_user is None:
            # To the login page, and back here afterwards with the same request.
            back = [(k, v) for k, v in raw.query if k != _RESUME_MARK]
            if "login" in params.get("prompt", "").split():
                back.append((_RESUME_MARK, str(int(time.time()))))
            login_query = {"return_to": f"{AUTHORIZE}?{urlencode(back)}"}
            if params.get("login_hint"):
                login_query["login_hint"] = params["login_hint"]
            return _redirect(f"/login?{urlencode(login_query)}", 303)
        if sign_on is not None and _acr_unmet(params, end_user.acr):
            reachable = await store.assurance_level(conn, sign_on.person_id)
            step_up = not _acr_unmet(params, reachable)
            if step_up and "none" not in params.get("prompt", "").split():
                # Step-up: the account can reach the level with its second factor, which this
                # session did not use. Ask for the code, then come back with the same request
                # (a prompt=login mark included: the new session is later than it).
                lang = choose_language(
                    (params.get("ui_locales") or "").split(" ")[0][:2] or None,
                    request.headers.get("accept-language"),
                )
                again = f"{AUTHORIZE}?{urlencode(raw.query)}"
                return mfa.step_up(_settings(state), sign_on, again, lang=lang)
            unmet = OAuth2Error(
                description=(
                    "The requested level of assurance needs the second factor: prompt=none cannot ask for it."
                    if step_up
                    else _unmet_description(server.issuer, reachable)
                ),
                error="interaction_required" if step_up else "unmet_authentication_requirements",
                redirect_uri=grant.redirect_uri,
                state=params.get("state"),
            )
            return _oauth_result_response(oauth.error_result(unmet))
        result = await oauth.run(
            conn, server.create_authorization_response, request=raw, grant_user=end_user, grant=grant
        )
        return _oauth_result_response(result)

    @get(LOGOUT, operation_id="oidc_logout", summary="RP-initiated logout")
    async def logout(self, request: AnyRequest, conn: Connection, state: State) -> Response[Any]:
        return await _logout(request, conn, state, list(request.query_params.multi_items()))

    @post(LOGOUT, operation_id="oidc_logout_post", summary="RP-initiated logout (form post)", status_code=200)
    async def logout_post(self, request: AnyRequest, conn: Connection, state: State) -> Response[Any]:
        raw = await raw_request(request, _server(state).issuer, LOGOUT, with_query=False)
        if isinstance(raw, Response):
            return error_page(400, "Sign-out request refused", "The form could not be read.")
        return await _logout(request, conn, state, list(raw.form))


async def _logout(
    request: AnyRequest, conn: Connection, state: State, pairs: list[tuple[str, str]]
) -> Response[Any]:
    server = _server(state)
    params = {k: v for k, v in pairs if isinstance(v, str) and len(v) <= _MAX_PARAMETER}
    hint = params.get("id_token_hint")
    target = params.get("post_logout_redirect_uri")
    claims = await oauth.id_token_hint_claims(server.keys, server.issuer, hint) if hint else None
    if hint and claims is None:
        return error_page(
            400, "Sign-out request refused", "The id_token_hint is not an ID token issued here."
        )
    if claims is None:
        # Without proof of who asks, a link must not sign anyone out: confirm on our own page.
        return _redirect("/logout", 303)
    audiences = claims.get("aud")
    audience = [audiences] if isinstance(audiences, str) else list(audiences or [])
    client_id = params.get("client_id") or (audience[0] if audience else None)
    if client_id is None or client_id not in audience:
        return error_page(400, "Sign-out request refused", "client_id does not match the id_token_hint.")
    if target:
        client = await store.client_by_id(conn, client_id)
        if client is None or target not in client.post_logout_redirect_uris:
            return error_page(400, "Sign-out request refused", "post_logout_redirect_uri is not registered.")
    sign_on = await current_sign_on(conn, request.cookies.get(SESSION_COOKIE))
    if sign_on is not None and str(sign_on.person_id) == claims.get("sub"):
        await end_sessions(conn, sign_on.person_id)
    await store.audit(conn, action="logout", client_id=client_id, subject=str(claims.get("sub")))
    response: Response[Any]
    if target:
        location = (
            target + ("&" if "?" in target else "?") + urlencode({"state": params["state"]})
            if params.get("state")
            else target
        )
        response = _redirect(location, 303)
    else:
        response = error_page(200, "Signed out", "You have been signed out of OneWindow.")
    response.set_cookie(clear_session_cookie(_settings(state)))
    return response


def _settings(state: State) -> Settings:
    return resources(state).settings


class MeReply(msgspec.Struct, frozen=True):
    subject: str
    client_id: str
    kind: str
    scopes: list[str]
    roles: list[RoleGrant]
    acr: str | None
    name: str | None


class PrincipalController(Controller):
    """Who the bearer token says the caller is: what a front end needs to shape its menus."""

    path = "/api/v1/identity"
    tags = ["identity"]  # noqa: RUF012 - litestar's declared type

    @get("/me", operation_id="identity_me", summary="The calling principal", middleware=[require_signed_in()])
    async def me(self, request: AnyRequest) -> MeReply:
        principal = current_principal(request)
        return MeReply(
            subject=principal.subject,
            client_id=principal.client_id,
            kind=principal.kind,
            scopes=sorted(principal.scopes),
            roles=list(principal.roles),
            acr=principal.acr,
            name=principal.name,
        )
