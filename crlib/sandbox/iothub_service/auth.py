"""Who may call a hub's service API: shared access signatures and Microsoft Entra ID tokens,
checked as IoT Hub checks them.

A shared access signature reads `SharedAccessSignature sr=<resource>&sig=<signature>&se=<expiry>[&skn=<policy>]`,
where the signature is base64(HMAC-SHA256(base64decode(key), <sr as sent> + "\\n" + <se>)) and
sr is URL-encoded.

- With skn, one of the hub's shared access policies signs it (primary or secondary key). Its sr
  must be the hub's host name, or a prefix of the resource requested, and the policy's rights
  must cover the operation: RegistryRead or RegistryWrite to read the identity registry,
  RegistryWrite to change it, ServiceConnect for twins, configurations and queries.
- Without skn, a device's own key signs it (sr = <host>/devices/<id>), or a module's
  (<host>/devices/<id>/modules/<id>). Such a token reaches that device's or module's own twin
  and nothing else: it is how the simulated device reads desired properties and reports.
- `Bearer <token>`: a Microsoft Entra ID access token for IoT Hub's resource
  (`https://iothubs.azure.net`, asked for as `https://iothubs.azure.net/.default`) from the
  sandbox's tenant. IoT Hub accepts these on its service APIs whether or not local auth is
  disabled ("Control access to IoT Hub by using Microsoft Entra ID"). Azure then checks the
  principal's RBAC role; the sandbox's one service principal counts as holding IoT Hub Data
  Contributor, which allows every service API operation.

The hub's `disableLocalAuth` refuses tokens signed with a shared access policy's key ("SAS tokens
with Iot hub scoped SAS keys cannot be used", IotHubProperties in the 2023-06-30 spec); a
device's or module's own key is refused only by `disableDeviceSAS` / `disableModuleSAS`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

import jwt

from ..core.errors import SandboxError
from ..core.http import Call, Route
from . import journal, models
from .errors import unauthorized

if TYPE_CHECKING:
    from ..runtime import Sandbox

API_VERSIONS = ("2020-03-13", "2021-04-12", "2024-03-31")
REGISTRY_READ = ("RegistryRead", "RegistryWrite")  # a policy that may write the registry may read it
REGISTRY_WRITE = ("RegistryWrite",)
SERVICE_CONNECT = ("ServiceConnect",)
# The resource an Entra ID token for IoT Hub names: Entra gives "<resource>/.default" tokens the
# resource as audience (some clients send it with a trailing slash).
ENTRA_RESOURCE = "https://iothubs.azure.net"
ENTRA_AUDIENCES = [ENTRA_RESOURCE, ENTRA_RESOURCE + "/"]
# IoT Hub Data Contributor: full access to the service APIs (what the sandbox's principal holds).
DATA_CONTRIBUTOR = ("RegistryRead", "RegistryWrite", "ServiceConnect")


@dataclass(frozen=True)
class Access:
    rights: tuple[str, ...]  # a policy needs any one of these
    device: bool = False  # a device or module may call this on its own twin


def requires(rights: tuple[str, ...], *, device: bool = False):
    """Mark a handler with the access it needs; admit() enforces it before the handler runs."""

    def mark(handler):
        handler.access = Access(rights, device)
        return handler

    return mark


@dataclass(frozen=True)
class Principal:
    """Who a valid token speaks for: a shared access policy, one device or module, or an Entra ID
    principal (`entra`: its object id) with the rights its role grants."""

    policy: str | None = None
    rights: tuple[str, ...] = ()
    device_id: str | None = None
    module_id: str | None = None
    entra: str | None = None

    @property
    def scheme(self) -> str:
        """How it signed in, as the auth journal records it."""
        if self.entra is not None:
            return journal.ENTRA
        if self.policy is not None:
            return journal.POLICY_SAS
        return journal.MODULE_SAS if self.module_id else journal.DEVICE_SAS

    @property
    def name(self) -> str | None:
        if self.module_id:
            return f"{self.device_id}/{self.module_id}"
        return self.entra or self.policy or self.device_id


def sign(key: str, resource: str, expiry: str) -> str:
    """The base64 signature of a token for `resource` (as it appears in the token) and `expiry`."""
    digest = hmac.new(base64.b64decode(key), f"{resource}\n{expiry}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _parse(header: str | None) -> dict[str, str]:
    if not header:
        raise unauthorized("The request has no Authorization header.")
    scheme, _, rest = header.strip().partition(" ")
    if scheme != "SharedAccessSignature":
        raise unauthorized("The Authorization header is not a SharedAccessSignature.")
    fields = dict(part.partition("=")[::2] for part in rest.split("&"))
    missing = [k for k in ("sr", "sig", "se") if not fields.get(k)]
    if missing:
        raise unauthorized(f"The shared access signature lacks {', '.join(missing)}.")
    try:
        expiry = int(fields["se"])
    except ValueError:
        raise unauthorized("The shared access signature's expiry (se) is not a number.") from None
    if expiry <= time.time():
        raise unauthorized("The shared access signature has expired.")
    return fields


def _signed_by(fields: dict[str, str], keys: list[str]) -> bool:
    sent = unquote(fields["sig"])
    try:
        return any(hmac.compare_digest(sign(k, fields["sr"], fields["se"]), sent) for k in keys if k)
    except binascii.Error:
        return False


def authenticate(sandbox: Sandbox, hub: dict, header: str | None, path: str) -> Principal:
    """Check a request's token against the hub: an Entra ID token's signature, audience and tenant,
    or a shared access signature's signature, expiry and resource. Refuse with 401."""
    scheme, _, rest = (header or "").strip().partition(" ")
    if scheme.lower() == "bearer":
        return _entra_principal(sandbox, rest.strip())
    fields = _parse(header)
    host = hub["properties"]["hostName"]
    resource = unquote(fields["sr"]).rstrip("/")
    if resource.lower() != host.lower() and not resource.lower().startswith(host.lower() + "/"):
        raise unauthorized(f"The token is for '{resource}', not for this hub ({host}).")
    if "skn" in fields:
        return _policy_principal(hub, fields, resource, f"{host}{path}")
    return _identity_principal(sandbox.store, hub, fields, resource[len(host):].strip("/").split("/"))


def _entra_principal(sandbox: Sandbox, token: str) -> Principal:
    if not token:
        raise unauthorized("The Bearer authorization header carries no token.")
    try:
        claims = sandbox.tokens.verify(token, audiences=ENTRA_AUDIENCES)
    except jwt.PyJWTError as exc:
        raise unauthorized(f"The Entra ID token was refused: {exc} (IoT Hub's audience is {ENTRA_RESOURCE}).") \
            from exc
    if claims.get("tid") != sandbox.identity.tenant_id:
        raise unauthorized("The Entra ID token is not from this hub's tenant.")
    principal = str(claims.get("oid") or claims.get("sub") or "")
    # Azure RBAC decides what the principal may do; the sandbox's only principal holds IoT Hub Data
    # Contributor (docs/sandbox.md, "What is simplified").
    return Principal(entra=principal, rights=DATA_CONTRIBUTOR)


def _policy_principal(hub: dict, fields: dict[str, str], resource: str, requested: str) -> Principal:
    if hub["properties"].get("disableLocalAuth"):
        raise unauthorized("Shared access policies are disabled on this hub (disableLocalAuth).")
    name = fields["skn"]
    policy = next((p for p in hub["_sandbox"]["policies"] if p["keyName"].lower() == name.lower()), None)
    if policy is None:
        raise unauthorized(f"The hub has no shared access policy named '{name}'.")
    if not _signed_by(fields, [policy["primaryKey"], policy["secondaryKey"]]):
        raise unauthorized(f"The signature does not match the keys of policy '{name}'.")
    if not (requested.lower() + "/").startswith(resource.lower() + "/"):
        raise unauthorized(f"The token's resource '{resource}' does not cover '{requested}'.")
    return Principal(policy=policy["keyName"], rights=tuple(r.strip() for r in policy["rights"].split(",")))


def _identity_principal(store, hub: dict, fields: dict[str, str], segments: list[str]) -> Principal:
    # Some SDKs encode the ids inside sr before encoding sr itself, hence one more unquote.
    if len(segments) == 2 and segments[0] == "devices":
        device_id, module_id = unquote(segments[1]), None
    elif len(segments) == 4 and segments[0] == "devices" and segments[2] == "modules":
        device_id, module_id = unquote(segments[1]), unquote(segments[3])
    else:
        raise unauthorized("A token without a policy (skn) must be for <host>/devices/<id>[/modules/<id>].")
    props = hub["properties"]
    if props.get("disableModuleSAS" if module_id else "disableDeviceSAS"):
        raise unauthorized(f"{'Module' if module_id else 'Device'} SAS tokens are disabled on this hub.")
    device = store.get(models.device_key(hub["id"], device_id))
    if device is None or device["status"] != "enabled":
        raise unauthorized(f"Device '{device_id}' is not registered or not enabled.")
    identity = device if module_id is None else store.get(models.module_key(hub["id"], device_id, module_id))
    if identity is None or identity["authentication"]["type"] != "sas":
        raise unauthorized("The token's identity does not exist or does not use SAS keys.")
    keys = identity["authentication"]["symmetricKey"]
    if not _signed_by(fields, [keys["primaryKey"], keys["secondaryKey"]]):
        raise unauthorized("The signature does not match the identity's keys.")
    return Principal(device_id=device_id, module_id=module_id)


def authorize(principal: Principal, access: Access | None, params: dict[str, str]) -> None:
    if access is None:  # a route nobody marked: refuse rather than let it through
        raise unauthorized("This operation is not open to any token.")
    if principal.policy is not None or principal.entra is not None:
        if not set(principal.rights) & set(access.rights):
            who = f"Policy '{principal.policy}'" if principal.policy else f"Entra ID principal '{principal.entra}'"
            raise unauthorized(f"{who} has {', '.join(principal.rights)}; this operation needs "
                               f"{' or '.join(access.rights)}.")
        return
    own = params.get("id") == principal.device_id and params.get("mid") == principal.module_id
    if not (access.device and own):
        raise unauthorized("A device or module token reaches only that device's or module's own twin.")


def admit(call: Call, route: Route) -> None:
    """What every request to a hub passes before its handler: the hub is up, the token is good
    and may do this, and the api-version is one IoT Hub serves."""
    hub = call.sandbox.store.get(call.host_key)
    if hub is None or hub["properties"].get("state") != "Active":
        raise SandboxError(404, "IotHubNotFound", "The IoT hub does not exist or is not active.")
    header = call.headers.get("Authorization")
    try:
        principal = authenticate(call.sandbox, hub, header, call.request.path)
        authorize(principal, getattr(route.handler, "access", None), call.params)
    except SandboxError:
        journal.record(call, journal.scheme_of(header), admitted=False)
        raise
    journal.record(call, principal.scheme, admitted=True, principal=principal.name)
    if call.api_version not in API_VERSIONS:
        given = f"The api-version '{call.api_version}' is not supported" if call.api_version else \
            "The api-version query parameter is required"
        raise SandboxError(400, "InvalidProtocolVersion", f"{given}; use one of {', '.join(API_VERSIONS)}.")
    call.state.update(hub=hub, principal=principal)
