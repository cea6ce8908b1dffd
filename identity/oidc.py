"""What OneWindow's OpenID Connect provider offers, in one place: endpoints, scopes, levels of
assurance. Discovery is generated from it, so what is advertised is what is served."""

from __future__ import annotations

from typing import Any

from identity.keys import ALGORITHM

LOA_LOW = "urn:onewindow:loa:low"
LOA_SUBSTANTIAL = "urn:onewindow:loa:substantial"
LOA_HIGH = "urn:onewindow:loa:high"
ACR_VALUES = (LOA_LOW, LOA_SUBSTANTIAL, LOA_HIGH)

AUTHORIZE = "/oauth2/authorize"
TOKEN = "/oauth2/token"
USERINFO = "/oauth2/userinfo"
JWKS = "/oauth2/jwks"
REVOKE = "/oauth2/revoke"
INTROSPECT = "/oauth2/introspect"
LOGOUT = "/oauth2/logout"

SCOPES = ("openid", "profile", "email", "phone", "offline_access", "staff", "ioc.feed", "ioc.update")
CLAIMS = (
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "name",
    "email",
    "email_verified",
    "phone_number_verified",
    "locale",
    "roles",
)
CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")


def metadata(issuer: str) -> dict[str, Any]:
    """The discovery document (OpenID Connect Discovery 1.0, RFC 8414)."""
    return {
        "issuer": issuer,
        "authorization_endpoint": issuer + AUTHORIZE,
        "token_endpoint": issuer + TOKEN,
        "userinfo_endpoint": issuer + USERINFO,
        "jwks_uri": issuer + JWKS,
        "revocation_endpoint": issuer + REVOKE,
        "introspection_endpoint": issuer + INTROSPECT,
        "end_session_endpoint": issuer + LOGOUT,
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
        "token_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
        "revocation_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": [m for m in CLIENT_AUTH_METHODS if m != "none"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": list(CLAIMS),
        "acr_values_supported": list(ACR_VALUES),
        "prompt_values_supported": ["none", "login"],
        "ui_locales_supported": ["zh", "en"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "frontchannel_logout_supported": False,
        "backchannel_logout_supported": False,
    }
