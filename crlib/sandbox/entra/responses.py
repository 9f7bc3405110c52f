"""HTTP layer for Entra ID: discovery documents and the token endpoint (OAuth 2.0 error format)."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from aiohttp import web

from ..core.http import Call, json_response
from .models import audience_of


def _tenant(call: Call) -> str | None:
    tenant = call.params["tenant"]
    ours = call.sandbox.identity.tenant_id
    return ours if tenant.lower() in {ours, "organizations", "common"} else None


def _oauth_error(status: int, error: str, description: str, codes: list[int]) -> web.Response:
    return json_response({"error": error, "error_description": description, "error_codes": codes}, status)


def openid_configuration(call: Call) -> web.Response:
    tenant = _tenant(call)
    if tenant is None:
        return _oauth_error(400, "invalid_tenant", f"AADSTS90002: Tenant '{call.params['tenant']}' not found.",
                            [90002])
    base = f"{call.sandbox.authority}/{tenant}"
    v2 = "/v2.0" if "v2.0" in call.request.path else ""
    return json_response({
        "issuer": f"{base}{v2}",
        "authorization_endpoint": f"{base}/oauth2{v2}/authorize",
        "token_endpoint": f"{base}/oauth2{v2}/token",
        "device_authorization_endpoint": f"{base}/oauth2{v2}/devicecode",
        "jwks_uri": f"{base}/discovery{v2}/keys",
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "tenant_region_scope": "NA",
        "cloud_instance_name": "crlib.sandbox",
    })


def keys(call: Call) -> web.Response:
    return json_response(call.sandbox.tokens.jwks())


def token(call: Call) -> web.Response:
    tenant = _tenant(call)
    if tenant is None:
        return _oauth_error(400, "invalid_tenant", f"AADSTS90002: Tenant '{call.params['tenant']}' not found.",
                            [90002])
    form = {k: v[0] for k, v in parse_qs(call.body.decode()).items()}
    identity = call.sandbox.identity
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type",
                            "AADSTS70003: The sandbox supports only the client_credentials grant.", [70003])
    if form.get("client_id", "").lower() != identity.client_id:
        return _oauth_error(400, "unauthorized_client",
                            f"AADSTS700016: Application with identifier '{form.get('client_id')}' was not "
                            f"found in the directory '{tenant}'.", [700016])
    if not hmac.compare_digest(form.get("client_secret", ""), identity.client_secret):
        return _oauth_error(401, "invalid_client",
                            "AADSTS7000215: Invalid client secret provided.", [7000215])
    scope = form.get("scope") or form.get("resource", "")
    audience = audience_of(scope)
    if not audience:
        return _oauth_error(400, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid.",
                            [1002012])
    access_token, lifetime = call.sandbox.tokens.issue(
        issuer=f"{call.sandbox.authority}/{tenant}/", tenant_id=tenant, client_id=identity.client_id,
        audience=audience,
    )
    return json_response({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                          "access_token": access_token},
                         headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def instance_discovery(call: Call) -> web.Response:
    """MSAL's instance metadata, for clients that still ask for it: the sandbox is its own cloud."""
    host = call.request.host
    return json_response({
        "tenant_discovery_endpoint": f"https://{host}/{call.sandbox.identity.tenant_id}/v2.0/.well-known/"
        "openid-configuration",
        "api-version": "1.1",
        "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
    })
