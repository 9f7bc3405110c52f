"""Blob downloads through a registry's dedicated data endpoint, as ACR splits them.

Microsoft Learn, "Configure rules to access an Azure container registry behind a firewall"
(container-registry-firewall-access-rules.md, "About registry endpoints"): a client talks to two
endpoints, the registry REST API (the login server: authentication and manifests) and the data
endpoint, which serves image layers. With dedicated data endpoints enabled that endpoint is
`<registry>.<region>.data.azurecr.io` (container-registry-dedicated-data-endpoints.md); a blob GET on
the login server answers with a redirect to it, carrying a short-lived signed URL, so a firewall
that allows only the login server breaks pulls. Real redirects look like
`https://<registry>.<region>.data.azurecr.io/<account>//docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data?se=...&sig=...`
(seen in Microsoft's Azure/unbounded tests of ACR origin URLs); the signed URL needs no bearer
token: its signature is the authorization, and it expires.

Here: on a registry with `dataEndpointEnabled`, `GET /v2/<name>/blobs/<digest>` on the login server,
and on the data endpoint itself (a connected registry's parent gateway), answers 307 to
`https://<data endpoint>/<registry>//docker/registry/v2/blobs/<algorithm>/<2 hex>/<hex>/data` with
`se` (expiry), `sp=r`, `spr=https` and `sig`, an HMAC over the registry, the digest, the expiry,
`sp` and `spr` with a key kept in the sandbox's state folder. Only the data endpoint serves that path; a wrong or
expired signature is refused with 403, as Azure Storage refuses a bad SAS. Without a data endpoint
the login server serves blobs itself (ACR then redirects to its storage account, which the sandbox
does not model). HEAD is redirected too, as distribution's redirecting storage drivers do: no
Microsoft document says ACR answers it in place, so the harsher choice.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from aiohttp import web

from ..core.errors import SandboxError

if TYPE_CHECKING:
    from ..core.http import Call
    from ..runtime import Sandbox

SIGNED_URL_LIFETIME_S = 20 * 60
KEY_FILE = "blob-sas.key"
_PATH = "/{registry}//docker/registry/v2/blobs/{algorithm}/{prefix}/{hexdigest}/data"


def _key(sandbox: Sandbox) -> bytes:
    path = sandbox.state_dir / KEY_FILE
    if not path.exists():
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


def _signature(sandbox: Sandbox, registry_id: str, digest: str, expiry: str, permissions: str, protocol: str) -> str:
    # Like a storage SAS's string-to-sign, every signed field is in it (Microsoft Learn, "Create a
    # service SAS"): permissions and protocol cannot be changed without breaking the signature.
    message = "\n".join([registry_id.lower(), digest, expiry, permissions, protocol]).encode()
    return base64.b64encode(hmac.new(_key(sandbox), message, hashlib.sha256).digest()).decode()


def _registry(call: Call) -> dict | None:
    """The cloud registry behind this host, when it is a login server or data endpoint."""
    if call.host.role not in ("login", "data") or call.host.key is None:
        return None
    return call.sandbox.store.get(call.host.key)


def redirect_to_data_endpoint(call: Call, digest: str) -> web.Response | None:
    """A 307 to the signed blob URL on the registry's data endpoint, or None to serve it here."""
    registry = _registry(call)
    if registry is None or not registry["properties"].get("dataEndpointEnabled"):
        return None
    hosts = registry["properties"].get("dataEndpointHostNames") or []
    if not hosts:
        return None
    expiry = datetime.fromtimestamp(int(time.time()) + SIGNED_URL_LIFETIME_S, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    algorithm, _, hexdigest = digest.partition(":")
    path = _PATH.format(registry=quote(registry["name"]), algorithm=algorithm, prefix=hexdigest[:2],
                        hexdigest=hexdigest)
    query = urlencode({"se": expiry, "sp": "r", "spr": "https",
                       "sig": _signature(call.sandbox, registry["id"], digest, expiry, "r", "https")})
    return web.Response(status=307, headers={"Location": f"https://{hosts[0]}{path}?{query}",
                                             "Docker-Distribution-API-Version": "registry/2.0"})


def check_signed_blob(call: Call) -> str:
    """The digest a signed blob URL names, once its signature and expiry hold (else 403)."""
    registry = _registry(call)
    if call.host.role != "data" or registry is None or registry["name"] != call.params["registry"]:
        raise SandboxError(404, "NOT_FOUND", "The requested resource does not exist on this endpoint.")
    digest = f"{call.params['algorithm']}:{call.params['hexdigest']}"
    if call.params["prefix"] != call.params["hexdigest"][:2]:
        raise SandboxError(404, "BLOB_UNKNOWN", f"blob unknown to registry: {digest}")
    expiry, signature = call.query.get("se", ""), call.query.get("sig", "")
    expected = _signature(call.sandbox, registry["id"], digest, expiry, call.query.get("sp", ""),
                          call.query.get("spr", ""))
    if not signature or not hmac.compare_digest(signature.encode(), expected.encode()):
        raise SandboxError(403, "AuthenticationFailed", "Server failed to authenticate the request: the "
                                                        "signature of the signed blob URL does not match.")
    try:
        expires = datetime.strptime(expiry, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise SandboxError(403, "AuthenticationFailed", "Signed expiry time (se) is malformed.") from exc
    if expires.timestamp() <= time.time():
        raise SandboxError(403, "AuthenticationFailed", "Signed expiry time has passed: the blob URL has expired; "
                                                        "request the blob from the registry again.")
    return digest
