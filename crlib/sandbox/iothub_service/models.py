"""A hub's identity registry: devices and their modules, each with its twin.

Documents live under the hub's ARM id: <hub>/devices/<device> and <hub>/devices/<device>/modules/
<module>, so deleting a hub (or its resource group) deletes them too. Device and module ids are
case-sensitive in IoT Hub while store keys are not, so an id's upper-case letters are escaped in
its key with '^', a character ids may not contain.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets

from ..clock import iso
from ..core.errors import SandboxError
from . import twins
from .errors import argument_invalid, device_not_found, module_not_found, precondition_failed

DEVICE = "iothub.device"
MODULE = "iothub.module"
# IoT Hub's rule for device and module ids: up to 128 ASCII letters, digits and - : . + % _ # * ? ! ( ) , = @ ; $ '
_ID = re.compile(r"^[A-Za-z0-9\-:.+%_#*?!(),=@;$']{1,128}$")
EDGE_AGENT, EDGE_HUB = "$edgeAgent", "$edgeHub"
SYSTEM_MODULES = (EDGE_AGENT, EDGE_HUB)
AUTH_TYPES = ("sas", "selfSigned", "certificateAuthority", "none")
_TICKS_AT_EPOCH = 621355968000000000  # .NET ticks (100 ns since 0001-01-01) at 1970-01-01


def _segment(identifier: str) -> str:
    # '^' itself doubles, so that no id (valid or not, as a GET may name) maps onto another's key.
    return re.sub(r"[A-Z^]", lambda m: "^" + m.group(0).lower(), identifier)


def device_key(hub_id: str, device_id: str) -> str:
    return f"{hub_id}/devices/{_segment(device_id)}"


def module_key(hub_id: str, device_id: str, module_id: str) -> str:
    return f"{device_key(hub_id, device_id)}/modules/{_segment(module_id)}"


def check_id(kind: str, identifier: str) -> str:
    if not isinstance(identifier, str) or not _ID.match(identifier):
        raise argument_invalid(f"The {kind} id '{identifier}' is invalid: use up to 128 letters, digits and "
                               "- : . + % _ # * ? ! ( ) , = @ ; $ '")
    return identifier


def section(body: dict, key: str) -> dict:
    """body[key] when it is an object, {} when it is absent or null; anything else is refused."""
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise argument_invalid(f"{key} must be a JSON object")
    return value


def now(sandbox) -> str:
    """Device-side times follow the sandbox's simulated clock."""
    return iso(sandbox.clock.now())


def matches_etag(if_match: str | None, current: str) -> bool:
    """An If-Match of '*' or the current etag (quoted or not, weak or not) lets a write through."""
    if if_match is None:
        return True
    value = if_match.strip().removeprefix("W/").strip('"')
    return value == "*" or value == current


def _etag(revision: int) -> str:
    # IoT Hub's identity etags are base64 of a number, e.g. "MQ==".
    return base64.b64encode(str(revision).encode()).decode()


def _generation_id(sandbox) -> str:
    # IoT Hub's generation ids are .NET ticks of when the identity was created.
    return str(_TICKS_AT_EPOCH + int(sandbox.clock.time() * 10**7))


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _authentication(given: dict, current: dict | None) -> dict:
    """Validate the authentication a client sent; generate SAS keys it leaves empty.

    An update that sends empty SAS keys keeps the current ones rather than rotating them.
    """
    kind = given.get("type") or "sas"
    if kind not in AUTH_TYPES:
        raise argument_invalid(f"authentication.type must be one of {', '.join(AUTH_TYPES)}")
    if kind == "sas":
        sent = section(given, "symmetricKey")
        kept = (current or {}).get("symmetricKey", {}) if (current or {}).get("type") == "sas" else {}
        keys = {}
        for name in ("primaryKey", "secondaryKey"):
            key = sent.get(name) or kept.get(name) or new_key()
            try:
                raw = base64.b64decode(key, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise argument_invalid(f"authentication.symmetricKey.{name} is not base64") from exc
            if not 16 <= len(raw) <= 64:
                raise argument_invalid("The length of a symmetric key must be between 16 and 64 bytes")
            keys[name] = key
        return {"symmetricKey": keys, "type": "sas"}
    if kind == "selfSigned":
        thumbprints = {k: v for k, v in section(given, "x509Thumbprint").items() if v}
        if not thumbprints.get("primaryThumbprint"):
            raise argument_invalid("A selfSigned identity needs authentication.x509Thumbprint.primaryThumbprint")
        return {"x509Thumbprint": thumbprints, "type": kind}
    return {"type": kind}


def _new_identity(sandbox, fields: dict, authentication: dict) -> dict:
    # A random first revision, so that a deleted and re-created identity does not take its
    # predecessor's etag (which a stale client might still hold).
    revision = secrets.randbelow(10**9)
    return fields | {
        "generationId": _generation_id(sandbox), "etag": _etag(revision), "connectionState": "Disconnected",
        "connectionStateUpdatedTime": twins.NEVER, "lastActivityTime": twins.NEVER,
        "cloudToDeviceMessageCount": 0, "authentication": _authentication(authentication, None),
        "twin": twins.new_twin(now(sandbox)), "_sandbox": {"revision": revision},
    }


def _touch(doc: dict) -> None:
    doc["_sandbox"]["revision"] += 1
    doc["etag"] = _etag(doc["_sandbox"]["revision"])


# -- devices ----------------------------------------------------------------------------------
DEVICE_FIELDS = ("deviceId", "generationId", "etag", "connectionState", "status", "statusReason",
                 "connectionStateUpdatedTime", "statusUpdatedTime", "lastActivityTime", "cloudToDeviceMessageCount",
                 "authentication", "capabilities", "deviceScope", "parentScopes")
MODULE_FIELDS = ("moduleId", "managedBy", "deviceId", "generationId", "etag", "connectionState",
                 "connectionStateUpdatedTime", "lastActivityTime", "cloudToDeviceMessageCount", "authentication")


def device_view(doc: dict) -> dict:
    return {k: doc[k] for k in DEVICE_FIELDS if k in doc}


def module_view(doc: dict) -> dict:
    return {k: doc[k] for k in MODULE_FIELDS if k in doc}


def get_device(store, hub_id: str, device_id: str) -> dict:
    doc = store.get(device_key(hub_id, device_id))
    if doc is None:
        raise device_not_found(device_id)
    return doc


def save_device(store, hub_id: str, doc: dict) -> None:
    store.put(device_key(hub_id, doc["deviceId"]), DEVICE, doc, parent=hub_id)


def devices(store, hub_id: str) -> list[dict]:
    return store.children(hub_id, DEVICE)


def _status(body: dict) -> str:
    status = body.get("status") or "enabled"
    if status not in ("enabled", "disabled"):
        raise argument_invalid("status must be 'enabled' or 'disabled'")
    return status


def put_device(sandbox, hub_id: str, device_id: str, body: dict, if_match: str | None) -> tuple[dict, bool]:
    """Create a device, or update it when If-Match allows; returns (document, created)."""
    check_id("device", device_id)
    if body.get("deviceId") not in (None, device_id):
        raise argument_invalid(f"The deviceId in the body ('{body['deviceId']}') does not match the URL "
                               f"('{device_id}')")
    store = sandbox.store
    doc = store.get(device_key(hub_id, device_id))
    edge = bool(section(body, "capabilities").get("iotEdge"))
    status = _status(body)
    if doc is None:
        if if_match is not None:
            raise device_not_found(device_id)
        doc = _new_identity(sandbox, {"deviceId": device_id, "status": status, "statusUpdatedTime": twins.NEVER,
                                      "capabilities": {"iotEdge": edge}}, section(body, "authentication"))
        created = True
    else:
        if if_match is None:
            raise SandboxError(409, "DeviceAlreadyExists", f"A device with ID '{device_id}' is already registered.")
        if not matches_etag(if_match, doc["etag"]):
            raise precondition_failed(f"device {device_id}")
        if status != doc["status"]:
            doc["statusUpdatedTime"] = now(sandbox)
        doc.update(status=status, capabilities={"iotEdge": edge},
                   authentication=_authentication(section(body, "authentication"), doc["authentication"]))
        _touch(doc)
        created = False
    doc.pop("statusReason", None)
    if body.get("statusReason"):
        doc["statusReason"] = body["statusReason"]
    _scopes(doc, body)
    save_device(store, hub_id, doc)
    if edge:
        for module_id in SYSTEM_MODULES:
            if store.get(module_key(hub_id, device_id, module_id)) is None:
                save_module(store, hub_id, _new_module(sandbox, device_id, module_id, None, {}))
    return doc, created


def _scopes(doc: dict, body: dict) -> None:
    """An edge device's scope is its own, generated and fixed; a leaf device takes its parent's,
    and the hub copies that into parentScopes when the client leaves them out."""
    doc["parentScopes"] = [s for s in body.get("parentScopes") or [] if s]
    if doc["capabilities"]["iotEdge"]:
        doc["deviceScope"] = f"ms-azure-iot-edge://{doc['deviceId']}-{doc['generationId']}"
    elif body.get("deviceScope"):
        doc["deviceScope"] = body["deviceScope"]
        doc["parentScopes"] = doc["parentScopes"] or [body["deviceScope"]]
    else:
        doc.pop("deviceScope", None)


def delete_device(store, hub_id: str, device_id: str, if_match: str | None) -> None:
    doc = get_device(store, hub_id, device_id)
    if not matches_etag(if_match, doc["etag"]):
        raise precondition_failed(f"device {device_id}")
    store.delete_tree(device_key(hub_id, device_id))


# -- modules ----------------------------------------------------------------------------------
def _new_module(sandbox, device_id: str, module_id: str, managed_by: str | None, authentication: dict) -> dict:
    fields = {"moduleId": module_id, "deviceId": device_id}
    if managed_by:
        fields["managedBy"] = managed_by
    return _new_identity(sandbox, fields, authentication)


def get_module(store, hub_id: str, device_id: str, module_id: str) -> dict:
    get_device(store, hub_id, device_id)
    doc = store.get(module_key(hub_id, device_id, module_id))
    if doc is None:
        raise module_not_found(device_id, module_id)
    return doc


def save_module(store, hub_id: str, doc: dict) -> None:
    store.put(module_key(hub_id, doc["deviceId"], doc["moduleId"]), MODULE, doc,
              parent=device_key(hub_id, doc["deviceId"]))


def modules(store, hub_id: str, device_id: str | None = None) -> list[dict]:
    if device_id is None:
        return store.by_type(MODULE, under=hub_id)
    return store.children(device_key(hub_id, device_id), MODULE)


def ensure_module(sandbox, hub_id: str, device_id: str, module_id: str) -> dict:
    """A module the hub itself creates (a deployment names it): managed by IoT Edge."""
    doc = sandbox.store.get(module_key(hub_id, device_id, module_id))
    if doc is None:
        check_id("module", module_id)
        doc = _new_module(sandbox, device_id, module_id, "IotEdge", {})
        save_module(sandbox.store, hub_id, doc)
    return doc


def put_module(sandbox, hub_id: str, device_id: str, module_id: str, body: dict,
               if_match: str | None) -> tuple[dict, bool]:
    check_id("module", module_id)
    if body.get("moduleId") not in (None, module_id) or body.get("deviceId") not in (None, device_id):
        raise argument_invalid("The deviceId and moduleId in the body must match the URL")
    store = sandbox.store
    get_device(store, hub_id, device_id)
    doc = store.get(module_key(hub_id, device_id, module_id))
    if doc is None:
        if if_match is not None:
            raise module_not_found(device_id, module_id)
        if module_id.startswith("$"):
            raise argument_invalid(f"Module ids starting with '$' are reserved for IoT Edge: '{module_id}'")
        doc = _new_module(sandbox, device_id, module_id, body.get("managedBy"), section(body, "authentication"))
        created = True
    else:
        if if_match is None:
            raise SandboxError(409, "ModuleAlreadyExistsOnDevice",
                               f"A module with ID '{module_id}' already exists on device '{device_id}'.")
        if not matches_etag(if_match, doc["etag"]):
            raise precondition_failed(f"module {module_id}")
        doc["authentication"] = _authentication(section(body, "authentication"), doc["authentication"])
        doc.pop("managedBy", None)
        if body.get("managedBy"):
            doc["managedBy"] = body["managedBy"]
        _touch(doc)
        created = False
    save_module(store, hub_id, doc)
    return doc, created


def delete_module(store, hub_id: str, device_id: str, module_id: str, if_match: str | None) -> None:
    doc = get_module(store, hub_id, device_id, module_id)
    device = get_device(store, hub_id, device_id)
    if module_id in SYSTEM_MODULES and device["capabilities"].get("iotEdge"):
        raise argument_invalid(f"{module_id} is part of IoT Edge device {device_id} and cannot be deleted")
    if not matches_etag(if_match, doc["etag"]):
        raise precondition_failed(f"module {module_id}")
    store.delete(module_key(hub_id, device_id, module_id))
