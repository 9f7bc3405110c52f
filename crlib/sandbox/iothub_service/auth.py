"""Who may call a hub's service API: shared access signatures, checked as IoT Hub checks them.

A token reads `SharedAccessSignature sr=<resource>&sig=<signature>&se=<expiry>[&skn=<policy>]`,
where the signature is base64(HMAC-SHA256(base64decode(key), <sr as sent> + "\\n" + <se>)) and
sr is URL-encoded.

- With skn, one of the hub's shared access policies signs it (primary or secondary key). Its sr
  must be the hub's host name, or a prefix of the resource requested, and the policy's rights
  must cover the operation: RegistryRead or RegistryWrite to read the identity registry,
  RegistryWrite to change it, ServiceConnect for twins, configurations and queries.
- Without skn, a device's own key signs it (sr = <host>/devices/<id>), or a module's
  (<host>/devices/<id>/modules/<id>). Such a token reaches that device's or module's own twin
  and nothing else: it is how the simulated device reads desired properties and reports.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import unquote

from ..core.errors import SandboxError
from ..core.http import Call, Route
from . import models
from .errors import unauthorized

API_VERSIONS = ("2020-03-13", "2021-04-12", "2024-03-31")
REGISTRY_READ = ("RegistryRead", "RegistryWrite")  # a policy that may write the registry may read it
REGISTRY_WRITE = ("RegistryWrite",)
SERVICE_CONNECT = ("ServiceConnect",)


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
    """Who a valid token speaks for: a shared access policy, or one device or module."""

    policy: str | None = None
    rights: tuple[str, ...] = ()
    device_id: str | None = None
    module_id: str | None = None


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


def authenticate(store, hub: dict, header: str | None, path: str) -> Principal:
    """Check a request's token against the hub: signature, expiry, resource. Refuse with 401."""
    fields = _parse(header)
    host = hub["properties"]["hostName"]
    resource = unquote(fields["sr"]).rstrip("/")
    if resource.lower() != host.lower() and not resource.lower().startswith(host.lower() + "/"):
        raise unauthorized(f"The token is for '{resource}', not for this hub ({host}).")
    if "skn" in fields:
        return _policy_principal(hub, fields, resource, f"{host}{path}")
    return _identity_principal(store, hub, fields, resource[len(host):].strip("/").split("/"))


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
    if principal.policy is not None:
        if not set(principal.rights) & set(access.rights):
            raise unauthorized(f"Policy '{principal.policy}' has {', '.join(principal.rights)}; this operation "
                               f"needs {' or '.join(access.rights)}.")
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
    principal = authenticate(call.sandbox.store, hub, call.headers.get("Authorization"), call.request.path)
    authorize(principal, getattr(route.handler, "access", None), call.params)
    if call.api_version not in API_VERSIONS:
        given = f"The api-version '{call.api_version}' is not supported" if call.api_version else \
            "The api-version query parameter is required"
        raise SandboxError(400, "InvalidProtocolVersion", f"{given}; use one of {', '.join(API_VERSIONS)}.")
    call.state.update(hub=hub, principal=principal)
