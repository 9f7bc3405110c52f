"""Routes of the sandbox's one key vault and its bearer challenge.

Like Key Vault, a request without a token gets 401 and a `WWW-Authenticate` challenge naming the
sandbox's Entra authority and the vault resource; the SDKs then ask Entra for
`https://vault.azure.net/.default` and retry. The vault's port is kept in the settings, so
`key_vault_url` stays the same across restarts (and resets: no resource owns it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jwt
from aiohttp import web

from ..core.errors import SandboxError
from ..core.http import RouterSpec, json_response
from . import keys_responses, models, responses

if TYPE_CHECKING:
    from ..core.http import Call, Route
    from ..runtime import Sandbox

ROLE = "vault"
RESOURCE = "https://vault.azure.net"
AUDIENCES = [RESOURCE, RESOURCE + "/"]
LATEST_API_VERSION = "2026-04-01"
API_VERSIONS = {"7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01", "2026-04-01"}

URLS = [
    ("GET", "/secrets", responses.list_secrets),
    ("GET", "/secrets/{name}/versions", responses.list_versions),
    ("PUT", "/secrets/{name}", responses.set_secret),
    ("GET", "/secrets/{name}", responses.get_secret),
    ("GET", "/secrets/{name}/{version}", responses.get_secret),
    ("DELETE", "/secrets/{name}", responses.delete_secret),
    ("GET", "/deletedsecrets", responses.list_deleted),
    ("GET", "/deletedsecrets/{name}", responses.get_deleted),
    ("POST", "/deletedsecrets/{name}/recover", responses.recover_deleted),
    ("DELETE", "/deletedsecrets/{name}", responses.purge_deleted),
    ("GET", "/keys", keys_responses.list_keys),
    ("GET", "/keys/{name}/versions", keys_responses.list_versions),
    ("POST", "/keys/{name}/create", keys_responses.create_key),
    ("GET", "/keys/{name}", keys_responses.get_key),
    ("GET", "/keys/{name}/{version}", keys_responses.get_key),
    ("POST", "/keys/{name}/{version}/sign", keys_responses.sign, False),
    ("POST", "/keys/{name}/{version}/verify", keys_responses.verify, False),
    ("DELETE", "/keys/{name}", keys_responses.delete_key),
    ("GET", "/deletedkeys", keys_responses.list_deleted),
    ("GET", "/deletedkeys/{name}", keys_responses.get_deleted),
    ("POST", "/deletedkeys/{name}/recover", keys_responses.recover_deleted),
    ("DELETE", "/deletedkeys/{name}", keys_responses.purge_deleted),
]


def render_error(err: SandboxError) -> web.Response:
    """Key Vault's error envelope (KeyVaultError): {"error": {"code", "message", "innererror"?}}, where
    `innererror` is itself an error (`details`, e.g. {"code": "ObjectIsDeletedButRecoverable"})."""
    error: dict = {"code": err.code, "message": err.message}
    if isinstance(err.details, dict):
        error["innererror"] = err.details
    return json_response({"error": error}, err.status, err.headers)


def _challenge(sandbox: Sandbox) -> dict[str, str]:
    authority = f"{sandbox.authority}/{sandbox.identity.tenant_id}"
    return {"WWW-Authenticate": f'Bearer authorization="{authority}", resource="{RESOURCE}"'}


def before(call: Call, route: Route) -> None:
    """Every request needs a vault token for the sandbox's tenant, then a supported api-version."""
    scheme, _, token = call.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise SandboxError(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.",
                           headers=_challenge(call.sandbox))
    try:
        claims = call.sandbox.tokens.verify(token.strip(), audiences=AUDIENCES)
    except jwt.PyJWTError as exc:
        raise SandboxError(401, "Unauthorized", f"AKV10032: Invalid token: {exc}.",
                           headers=_challenge(call.sandbox)) from exc
    if claims.get("tid") != call.sandbox.identity.tenant_id:
        raise SandboxError(401, "Unauthorized", "AKV10032: Invalid issuer.", headers=_challenge(call.sandbox))
    version = call.api_version
    if version not in API_VERSIONS:
        raise SandboxError(400, "BadParameter", f"The specified version ({version}) is not recognized. "
                                                f"Consider using the latest supported version ({LATEST_API_VERSION}).")


# The vault's one port (role "vault"), opened by service.py.
ROUTER = RouterSpec("keyvault", render_error=render_error, before=before)


def key_vault_url(sandbox: Sandbox) -> str | None:
    url = models.vault_url(sandbox)
    return url + "/" if url else None
