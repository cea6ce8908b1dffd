"""The OAuth 2.0 / OpenID Connect provider: authlib's server core behind a thin litestar adapter.

authlib's server side is synchronous (its storage callbacks are plain methods); our storage is
asyncpg. So each OAuth request runs authlib in a worker thread, and authlib's callbacks call back
into the event loop (`anyio.from_thread.run`) to run our store functions on the request's own
connection, inside the request's one transaction. The handler awaits the thread, so the
connection is never used by two tasks at once.

What authlib decides: request validation, client authentication, the grant flows, PKCE
verification, error responses as the specifications write them. What we decide (authlib leaves
it open or gets it wrong for us, see the notes at each class): S256-only PKCE required of public
clients, single-use codes consumed atomically, refresh-token rotation with family revocation on
reuse, RFC 9068 access tokens with roles, exact redirect URIs plus RFC 8252 loopback ports, and
error descriptions that never echo attacker input.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol, TypeVar, cast
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import anyio
import anyio.from_thread
import anyio.to_thread
from authlib.oauth2 import AuthorizationServer, OAuth2Error, OAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc6749.requests import OAuth2Payload
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import OpenIDCode, UserInfo
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from identity import store
from identity.keys import ALGORITHM, KeyRing
from identity.oidc import INTROSPECT, TOKEN
from identity.store import ClientRow, CodeRow, RefreshRow
from identity.tokens import InvalidToken, issue_access_token, resource_audience, verify_access_token
from onewindow.db import Connection

T = TypeVar("T")

# The request's connection, visible in the worker thread and in the coroutines it calls back.
_conn: contextvars.ContextVar[Connection] = contextvars.ContextVar("oauth_connection")
# OAuth requests get their own slice of threads, so a burst of logins cannot starve other
# to_thread users (and the other way round).
_THREADS = anyio.CapacityLimiter(20)


def call(fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T:
    """From authlib's thread: run `fn(conn, *args, **kwargs)` in the event loop and wait for it."""
    return anyio.from_thread.run(functools.partial(fn, _conn.get(), *args, **kwargs))


def digest(secret: str) -> bytes:
    """Codes and refresh tokens are random and long: SHA-256 keeps them useless if the table leaks."""
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True, slots=True)
class OAuthResult:
    status: int
    body: dict[str, Any] | str
    headers: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class RawRequest:
    """What authlib may see of a request: built in async code (the body is already read)."""

    method: str
    uri: str
    headers: Any  # litestar's case-insensitive headers: authlib looks up "Authorization"
    query: Sequence[tuple[str, str]]
    form: Sequence[tuple[str, str]]


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, query: Sequence[tuple[str, str]], form: Sequence[tuple[str, str]]) -> None:
        self._datalist: dict[str, list[str]] = defaultdict(list)
        for key, value in [*query, *form]:
            self._datalist[key].append(value)
        self._data = {key: values[-1] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._datalist


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, raw: RawRequest) -> None:
        super().__init__(method=raw.method, uri=raw.uri, headers=raw.headers)
        self._args = dict(raw.query)
        self._form = dict(raw.form)
        self.payload = _Payload(raw.query, raw.form)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


@dataclass(frozen=True, slots=True)
class EndUser:
    """A person as the grants see them: who, and how and when they signed in."""

    person_id: UUID
    auth_time: datetime
    acr: str
    amr: tuple[str, ...]
    session_hash: bytes | None
    name: str

    def get_user_id(self) -> str:
        return str(self.person_id)


def _loopback_match(uri: str, registered: Sequence[str]) -> bool:
    """RFC 8252 section 7.3: a native app's loopback redirect may use any port."""
    parts = urlsplit(uri)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "::1") or parts.fragment:
        return False
    for candidate in registered:
        known = urlsplit(candidate)
        if (
            known.scheme == "http"
            and known.hostname == parts.hostname
            and known.path == parts.path
            and known.query == parts.query
        ):
            return True
    return False


@dataclass(frozen=True)
class OAuthClient(ClientMixin):  # type: ignore[misc]
    row: ClientRow

    @property
    def is_public(self) -> bool:
        return self.row.token_endpoint_auth_method == "none"

    @property
    def client_metadata(self) -> dict[str, Any]:
        return {"post_logout_redirect_uris": self.row.post_logout_redirect_uris}

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # redirect_uri is always required, and always compared at the token step

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = set(self.row.scopes)
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        if redirect_uri in self.row.redirect_uris:
            return True
        return self.row.allow_loopback_redirects and _loopback_match(redirect_uri, self.row.redirect_uris)

    def check_client_secret(self, client_secret: str) -> bool:
        if self.row.secret_hash is None:
            return False
        offered = hashlib.sha256(client_secret.encode()).hexdigest()
        return secrets.compare_digest(offered, self.row.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # One method per client: a confidential client can never fall back to "none".
        return method == self.row.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.row.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.row.grant_types


@dataclass(frozen=True)
class _Code:
    """An authorization code as authlib's code grant and OpenIDCode read it."""

    row: CodeRow
    code_hash: bytes

    @property
    def code_challenge(self) -> str | None:
        return self.row.code_challenge

    @property
    def code_challenge_method(self) -> str | None:
        return self.row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    def get_nonce(self) -> str | None:
        return self.row.nonce

    def get_auth_time(self) -> int:
        return int(self.row.auth_time.timestamp())

    def get_acr(self) -> str:
        return self.row.acr

    def get_amr(self) -> list[str]:
        return list(self.row.amr)


@dataclass(frozen=True)
class _Refresh:
    row: RefreshRow
    live: bool = True

    def check_client(self, client: OAuthClient) -> bool:
        return client.get_client_id() == self.row.client_id

    def get_scope(self) -> str:
        return self.row.scope

    def is_expired(self) -> bool:
        return self.row.expires_at <= datetime.now(UTC)

    def is_revoked(self) -> bool:
        return not self.live


@dataclass(frozen=True)
class _Access:
    jti: str
    client_id: str
    subject: str
    scope: str
    exp: int
    iat: int
    revoked: bool

    def check_client(self, client: OAuthClient) -> bool:
        return client.get_client_id() == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return self.exp <= time.time()

    def is_revoked(self) -> bool:
        return self.revoked


class SignedIn(Protocol):
    """How a person proved who they are: a sign-on session, or the code or refresh token it led to."""

    @property
    def person_id(self) -> UUID: ...
    @property
    def auth_time(self) -> datetime: ...
    @property
    def acr(self) -> str: ...
    @property
    def amr(self) -> Sequence[str]: ...
    @property
    def session_hash(self) -> bytes | None: ...


async def end_user(conn: Connection, signed_in: SignedIn) -> EndUser | None:
    """The person behind a sign-in, None when their account has been disabled since."""
    person = await store.person_by_id(conn, signed_in.person_id)
    if person is None or person.disabled_at is not None:
        return None
    return EndUser(
        person_id=person.id,
        auth_time=signed_in.auth_time,
        acr=signed_in.acr,
        amr=tuple(signed_in.amr),
        session_hash=signed_in.session_hash,
        name=person.display_name,
    )


async def id_token_hint_claims(ring: KeyRing, issuer: str, hint: str) -> dict[str, Any] | None:
    """The claims of an ID token we issued (signature and issuer checked; expiry ignored, as
    RP-initiated logout allows), or None."""
    try:
        keys = await ring.verification_keys(None)
        decoded = jwt.decode(hint, keys, algorithms=[ALGORITHM])
    except (JoseError, ValueError):
        return None
    claims: dict[str, Any] = decoded.claims
    return claims if claims.get("iss") == issuer and claims.get("sub") else None


class _CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none",
    ]

    @staticmethod
    def validate_authorization_redirect_uri(request: _Request, client: OAuthClient) -> str:
        # authlib's own message quotes the URI, and a quote in it would turn a 400 into a 500.
        uri: str | None = request.payload.redirect_uri
        if not uri:
            raise InvalidRequestError("Missing redirect_uri.")
        if not client.check_redirect_uri(uri):
            raise InvalidRequestError("redirect_uri is not registered for this client.")
        return uri

    def save_authorization_code(self, code: str, request: _Request) -> None:
        data = request.payload.data
        user = cast(EndUser, request.user)
        server = cast(OneWindowAuthorizationServer, self.server)
        row = CodeRow(
            client_id=request.client.get_client_id(),
            person_id=user.person_id,
            session_hash=user.session_hash,
            redirect_uri=data["redirect_uri"],
            scope=request.scope,
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            auth_time=user.auth_time,
            acr=user.acr,
            amr=list(user.amr),
        )
        call(store.save_code, digest(code), row, lifetime_seconds=server.code_seconds)

    def query_authorization_code(self, code: str, client: OAuthClient) -> _Code | None:
        # Consumed here, atomically: authlib deletes only after issuing, so two concurrent
        # redemptions of one code would both succeed otherwise.
        code_hash = digest(code)
        row = call(store.consume_code, code_hash, client.get_client_id())
        return _Code(row, code_hash) if row else None

    def delete_authorization_code(self, authorization_code: _Code) -> None:
        return None  # already consumed

    def authenticate_user(self, authorization_code: _Code) -> EndUser | None:
        return call(end_user, authorization_code.row)


class _S256Only(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 only; required of public clients at /authorize, not late at /token."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 - authlib's declared type
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: _CodeGrant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        client = cast(OAuthClient, grant.request.client)
        if client.is_public and not data.get("code_challenge"):
            raise InvalidRequestError("code_challenge (PKCE, S256) is required for this client.")
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class _OpenIDCode(OpenIDCode):  # type: ignore[misc]
    def __init__(self, server: OneWindowAuthorizationServer) -> None:
        super().__init__(require_nonce=False)
        self._server = server

    def exists_nonce(self, nonce: str, request: _Request) -> bool:
        return call(store.code_nonce_used, request.payload.client_id, nonce)

    def resolve_client_private_key(self, client: OAuthClient) -> KeySet:
        return KeySet([call_ring(self._server.keys)])

    def get_client_algorithm(self, client: OAuthClient) -> str:
        return ALGORITHM

    def get_encode_header(self, client: OAuthClient) -> dict[str, str]:
        return {"alg": ALGORITHM, "kid": str(call_ring(self._server.keys).kid), "typ": "JWT"}

    def get_client_claims(self, client: OAuthClient) -> dict[str, Any]:
        now = int(time.time())  # authlib leaves out iss unless we give it
        return {
            "iss": self._server.issuer,
            "aud": [client.get_client_id()],
            "iat": now,
            "exp": now + self._server.id_token_seconds,
        }

    def generate_user_info(self, user: EndUser, scope: str) -> UserInfo:
        return UserInfo(call(user_claims, user.person_id, scope))


def call_ring(ring: KeyRing) -> Any:
    return anyio.from_thread.run(ring.signing_key)


async def user_claims(conn: Connection, person_id: UUID, scope: str) -> dict[str, Any]:
    """The claims a person releases for `scope` (ID token and UserInfo share this)."""
    person = await store.person_by_id(conn, person_id)
    if person is None:
        return {"sub": str(person_id)}
    scopes = set(scope.split())
    claims: dict[str, Any] = {"sub": str(person.id)}
    if "profile" in scopes or "openid" in scopes:
        claims["name"] = person.display_name
        claims["locale"] = person.locale
    if "email" in scopes and person.email:
        claims["email"] = person.email
        claims["email_verified"] = person.email_verified_at is not None
    if "phone" in scopes:
        claims["phone_number_verified"] = person.phone_verified_at is not None
    if "staff" in scopes:
        roles = await store.active_roles(conn, person.id)
        claims["roles"] = [{"role": g.role, "unit": g.unit, "path": g.path} for g in roles]
    return claims


class _RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none",
    ]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation on every use

    def authenticate_refresh_token(self, refresh_token: str) -> _Refresh | None:
        row = call(store.consume_refresh_token, digest(refresh_token))
        return _Refresh(row) if row else None

    def authenticate_user(self, refresh_token: _Refresh) -> EndUser | None:
        return call(end_user, refresh_token.row)

    def revoke_old_credential(self, refresh_token: _Refresh) -> None:
        return None  # consumed in authenticate_refresh_token


class _ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ]


class _PrivateKeyJWT(JWTBearerClientAssertion):  # type: ignore[misc]
    CLIENT_AUTH_METHOD = "private_key_jwt"
    # authlib's own client makes assertions that live an hour; each is still usable once, since its
    # id is remembered until it expires. Longer-lived ones are refused as a replay risk.
    _MAX_LIFETIME = 3600

    def __init__(self, issuer: str) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self._issuer = issuer

    def get_audiences(self) -> list[str]:
        return [self._issuer, self._issuer + TOKEN, self._issuer + INTROSPECT]

    def resolve_client_public_key(self, client: OAuthClient) -> KeySet:
        if not client.row.jwks:
            raise InvalidClientError(description="The client has no registered keys.")
        return KeySet.import_key_set(client.row.jwks)  # type: ignore[arg-type]

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=["RS256", "PS256", "ES256"])
        except JoseError:
            # joserfc's message quotes the header; a quote in it would make authlib fail with a 500.
            raise InvalidClientError(description="Invalid client assertion.") from None
        self.verify_claims(token.claims)
        claims: dict[str, Any] = token.claims
        return claims

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        expires = int(claims.get("exp", 0))
        if expires - time.time() > self._MAX_LIFETIME + self.leeway:
            raise InvalidClientError(description="The client assertion may live at most one hour.")
        return call(store.remember_assertion, str(claims["sub"]), jti, datetime.fromtimestamp(expires, UTC))


async def _find_token(conn: Connection, ring: KeyRing, issuer: str, token: str) -> _Refresh | _Access | None:
    if token.count(".") == 2:
        try:
            claims = await verify_access_token(ring, token, issuer=issuer)
        except InvalidToken:
            return None
        revoked = await store.access_token_revoked(conn, claims.jti)
        return _Access(
            jti=claims.jti,
            client_id=claims.client_id,
            subject=claims.sub,
            scope=claims.scope,
            exp=claims.exp,
            iat=claims.iat,
            revoked=revoked,
        )
    found = await store.refresh_token(conn, digest(token))
    return _Refresh(found[0], found[1]) if found else None


async def _revoke(conn: Connection, token: _Refresh | _Access) -> None:
    if isinstance(token, _Access):
        await store.revoke_access_token(conn, token.jti)
    else:
        await store.revoke_family(conn, token.row.family_id)


class _TokenLookup:
    """What revocation and introspection share: tokens of both kinds, hints ignored."""

    server: OneWindowAuthorizationServer

    def check_params(self, request: _Request, client: OAuthClient) -> None:
        # authlib answers an unknown token_type_hint with a 401; RFC 7009 says ignore it.
        if not request.form.get("token"):
            raise InvalidRequestError("Missing token.")

    def query_token(self, token_string: str, token_type_hint: str | None) -> _Refresh | _Access | None:
        return call(_find_token, self.server.keys, self.server.issuer, token_string)


class _Revocation(_TokenLookup, RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]  # noqa: RUF012

    def revoke_token(self, token: _Refresh | _Access, request: _Request) -> None:
        call(_revoke, token)


class _Introspection(_TokenLookup, IntrospectionEndpoint):  # type: ignore[misc]
    # Confidential clients only: "none" is not among the methods.
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]  # noqa: RUF012

    def check_permission(self, token: _Refresh | _Access, client: OAuthClient, request: _Request) -> bool:
        return True

    def introspect_token(self, token: _Refresh | _Access) -> dict[str, Any]:
        if isinstance(token, _Access):
            return {
                "client_id": token.client_id,
                "scope": token.scope,
                "sub": token.subject,
                "aud": resource_audience(self.server.issuer),
                "iss": self.server.issuer,
                "exp": token.exp,
                "iat": token.iat,
                "jti": token.jti,
                "token_type": "Bearer",
            }
        row = token.row
        return {
            "client_id": row.client_id,
            "scope": row.scope,
            "sub": str(row.person_id),
            "iss": self.server.issuer,
            "exp": int(row.expires_at.timestamp()),
            "token_type": "refresh_token",
        }


class OneWindowAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(
        self,
        *,
        issuer: str,
        keys: KeyRing,
        access_token_seconds: int,
        id_token_seconds: int,
        refresh_token_days: int,
        code_seconds: int,
        scopes: Sequence[str],
    ) -> None:
        super().__init__(scopes_supported=list(scopes))
        self.issuer = issuer
        self.keys = keys
        self.access_token_seconds = access_token_seconds
        self.id_token_seconds = id_token_seconds
        self.refresh_seconds = refresh_token_days * 86400
        self.code_seconds = code_seconds
        self.register_token_generator("default", self._generate_token)
        self.register_client_auth_method("private_key_jwt", _PrivateKeyJWT(issuer))
        self.register_grant(_CodeGrant, [_S256Only(required=True), _OpenIDCode(self)])
        self.register_grant(_RefreshGrant)
        self.register_grant(_ClientCredentialsGrant)
        self.register_endpoint(_Revocation(server=self))
        self.register_endpoint(_Introspection(server=self))

    # --- authlib's framework integration ---
    def query_client(self, client_id: str) -> OAuthClient | None:
        row = call(store.client_by_id, client_id)
        return OAuthClient(row) if row is not None and row.disabled_at is None else None

    def create_oauth2_request(self, request: RawRequest | OAuth2Request) -> OAuth2Request:
        return request if isinstance(request, OAuth2Request) else _Request(request)

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError("dynamic client registration is not offered")

    def handle_response(
        self, status: int, body: dict[str, Any] | str, headers: list[tuple[str, str]]
    ) -> OAuthResult:
        return OAuthResult(status, body, list(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    # --- tokens ---
    def _generate_token(
        self,
        grant_type: str,
        client: OAuthClient,
        user: EndUser | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        granted = client.get_allowed_scope(scope)
        if scope and not granted:
            raise InvalidScopeError()
        roles = call(store.active_roles, user.person_id) if user and "staff" in granted.split() else ()
        access_token, claims = anyio.from_thread.run(
            functools.partial(
                issue_access_token,
                self.keys,
                issuer=self.issuer,
                subject=user.get_user_id() if user else client.get_client_id(),
                client_id=client.get_client_id(),
                scope=granted,
                lifetime=self.access_token_seconds,
                roles=roles,
                acr=user.acr if user else None,
                auth_time=int(user.auth_time.timestamp()) if user else None,
                name=user.name if user else None,
            )
        )
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": access_token,
            "expires_in": self.access_token_seconds,
            "_claims": claims,
        }
        if granted:
            token["scope"] = granted
        if include_refresh_token and user is not None:
            token["refresh_token"] = secrets.token_urlsafe(48)
        return token

    def save_token(self, token: dict[str, Any], request: _Request) -> None:
        claims = token.pop("_claims")  # ours, not for the response body
        user = cast(EndUser | None, request.user)
        client = cast(OAuthClient, request.client)
        previous = cast(_Refresh | None, getattr(request, "refresh_token", None))
        code = cast(_Code | None, getattr(request, "authorization_code", None))
        family: UUID | None = previous.row.family_id if previous else (uuid4() if user else None)
        if code is not None and family is not None:
            call(store.link_code_to_family, code.code_hash, family)
        call(
            store.record_access_token,
            jti=claims.jti,
            family_id=family,
            client_id=client.get_client_id(),
            person_id=user.person_id if user else None,
            scope=claims.scope,
            expires_at=datetime.fromtimestamp(claims.exp, UTC),
        )
        if "refresh_token" in token and user is not None and family is not None:
            row = RefreshRow(
                token_hash=digest(token["refresh_token"]),
                family_id=family,
                client_id=client.get_client_id(),
                person_id=user.person_id,
                session_hash=user.session_hash,
                scope=token.get("scope", ""),
                auth_time=user.auth_time,
                acr=user.acr,
                amr=list(user.amr),
                expires_at=previous.row.expires_at
                if previous
                else datetime.now(UTC) + timedelta(seconds=self.refresh_seconds),
            )
            call(store.save_refresh_token, row)


async def run(conn: Connection, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run an authlib entry point in a worker thread, its storage on `conn` (the request's transaction)."""
    token = _conn.set(conn)
    try:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=_THREADS)
    finally:
        _conn.reset(token)


def error_result(error: OAuth2Error) -> OAuthResult:
    status, body, headers = error()
    return OAuthResult(status, body, list(headers))
