"""IoT hubs as ARM resources: names, defaults, shared access policies and the views ARM returns.

A hub document keeps its ARM representation as stored, plus "_sandbox" with what Azure never
shows in a GET: the shared access policies with their keys, and the port its IoT Hub service
API listens on (the hub's hostName is 127.0.0.1:<port>).
"""

from __future__ import annotations

import base64
import re
import secrets
import struct
from http import HTTPStatus

from ..core.arm import without_nulls
from ..core.errors import SandboxError

HUB_TYPE = "microsoft.devices/iothubs"
API_VERSIONS = ["2023-06-30"]
NAMESPACE = "Microsoft.Devices"
# The Resource.name pattern of the spec: 3-50 letters, digits and hyphens, not all digits, no
# hyphen first or last.
_NAME = re.compile(r"^(?![0-9]+$)(?!-)[a-zA-Z0-9-]{2,49}[a-zA-Z0-9]$")
SKU_TIERS = {"F1": "Free", "S1": "Standard", "S2": "Standard", "S3": "Standard",
             "B1": "Basic", "B2": "Basic", "B3": "Basic"}
RIGHTS = ("RegistryRead", "RegistryWrite", "ServiceConnect", "DeviceConnect")
DEFAULT_POLICIES = (
    ("iothubowner", "RegistryWrite, ServiceConnect, DeviceConnect"),
    ("service", "ServiceConnect"),
    ("device", "DeviceConnect"),
    ("registryRead", "RegistryRead"),
    ("registryReadWrite", "RegistryWrite"),
)
# IotHubProperties a client may set. The read-only ones (state, hostName...) are the hub's own,
# and authorizationPolicies are kept private: Azure never returns them from a GET.
WRITABLE_PROPERTIES = (
    "disableLocalAuth", "disableDeviceSAS", "disableModuleSAS", "restrictOutboundNetworkAccess",
    "allowedFqdnList", "publicNetworkAccess", "ipFilterRules", "networkRuleSets", "minTlsVersion",
    "eventHubEndpoints", "routing", "storageEndpoints", "messagingEndpoints", "enableFileUploadNotifications",
    "cloudToDevice", "comments", "features", "enableDataResidency",
)
_OBJECT_PROPERTIES = ("networkRuleSets", "eventHubEndpoints", "routing", "storageEndpoints", "messagingEndpoints",
                      "cloudToDevice")
# disableLocalAuth: the hub refuses SAS tokens signed with its shared access policies' keys (the
# policies and listKeys stay; only their use on the service API is refused: iothub_service.auth).
_BOOLEAN_PROPERTIES = ("disableLocalAuth", "disableDeviceSAS", "disableModuleSAS", "restrictOutboundNetworkAccess",
                       "enableFileUploadNotifications", "enableDataResidency")
DEFAULT_PARTITIONS = 4


class RpError(SandboxError):
    """A refusal from the IoT Hub resource provider itself, which answers with a flat ErrorDetails
    body ({"code", "httpStatusCode", "message"}) rather than ARM's {"error": {...}} envelope."""

    def body(self) -> dict:
        return {"code": self.code, "httpStatusCode": HTTPStatus(self.status).phrase.replace(" ", ""),
                "message": self.message}


def hub_id(sub: str, rg: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Devices/IotHubs/{name}"


def group_of(resource_id: str) -> str:
    return resource_id.split("/providers/", 1)[0]


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def new_etag() -> str:
    # Azure's hub etags are base64 of an 8-byte sequence number; a random one serves as well.
    return base64.b64encode(struct.pack(">Q", secrets.randbits(40))).decode()


def not_found(name: str) -> RpError:
    return RpError(404, "IotHubNotFound", f"IotHub '{name}' could not be found.")


def name_problem(name: str) -> str | None:
    if not _NAME.match(name):
        return (f"Invalid IotHub name '{name}': use 3 to 50 letters, digits and hyphens, not only digits, "
                "and no hyphen first or last.")
    return None


def find_by_name(store, name: str) -> dict | None:
    """Hub names are DNS labels in Azure, so they are unique across every subscription."""
    return next((h for h in store.by_type(HUB_TYPE) if h["name"].lower() == name.lower()), None)


def name_availability(store, name: str) -> dict:
    problem = name_problem(name)
    if problem:
        return {"nameAvailable": False, "reason": "Invalid", "message": problem}
    if find_by_name(store, name) is not None:
        return {"nameAvailable": False, "reason": "AlreadyExists",
                "message": f"IotHub name '{name}' is not available"}
    return {"nameAvailable": True}




def _sku(body: dict) -> dict:
    sku = body.get("sku")
    if not isinstance(sku, dict) or sku.get("name") not in SKU_TIERS:
        raise RpError(400, "InvalidSku", f"The sku must name one of {', '.join(SKU_TIERS)}.")
    capacity = sku.get("capacity", 1)
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
        raise RpError(400, "InvalidSkuCapacity", "The sku capacity must be a positive integer.")
    if sku["name"] == "F1" and capacity != 1:
        raise RpError(400, "InvalidSkuCapacity", "A free (F1) IoT hub has exactly one unit.")
    return {"name": sku["name"], "tier": SKU_TIERS[sku["name"]], "capacity": capacity}


def _event_hub_endpoints(given: dict | None, name: str) -> dict:
    events = (given or {}).get("events") or {}
    if not isinstance(events, dict):
        raise RpError(400, "InvalidProperties", "properties.eventHubEndpoints.events must be an object.")
    events = dict(events)
    count = events.get("partitionCount") or DEFAULT_PARTITIONS
    if not isinstance(count, int) or not 2 <= count <= 128:
        raise RpError(400, "InvalidPartitionCount", "partitionCount must be between 2 and 128.")
    events.update(retentionTimeInDays=events.get("retentionTimeInDays", 1), partitionCount=count,
                  partitionIds=[str(i) for i in range(count)], path=name.lower())
    # No "endpoint": the sandbox has no Event Hub-compatible endpoint to point at.
    events.pop("endpoint", None)
    return {"events": events}


def _properties(body: dict, name: str, current: dict | None = None) -> dict:
    """Writable properties from a PUT, with Azure's defaults for the ones it leaves out."""
    given = without_nulls(body.get("properties") or {})
    if not isinstance(given, dict):
        raise RpError(400, "InvalidProperties", "properties must be an object.")
    props = {k: given[k] for k in WRITABLE_PROPERTIES if k in given}
    for key in _OBJECT_PROPERTIES:
        if not isinstance(props.get(key, {}), dict):
            raise RpError(400, "InvalidProperties", f"properties.{key} must be an object.")
    for key in _BOOLEAN_PROPERTIES:
        if not isinstance(props.get(key, False), bool):
            raise RpError(400, "InvalidProperties", f"properties.{key} must be true or false.")
    # A PUT replaces the properties: one that leaves disableLocalAuth out turns local auth back on.
    # Azure shows it on every hub ("disableLocalAuth": false when it was never set).
    props.setdefault("disableLocalAuth", False)
    # The partition count is fixed at creation: an update that leaves it out keeps it.
    endpoints = given.get("eventHubEndpoints") or (current or {}).get("eventHubEndpoints")
    props["eventHubEndpoints"] = _event_hub_endpoints(endpoints, name)
    props.setdefault("routing", {})
    props["routing"].setdefault("endpoints", {"serviceBusQueues": [], "serviceBusTopics": [], "eventHubs": [],
                                              "storageContainers": []})
    props["routing"].setdefault("routes", [])
    props["routing"].setdefault("fallbackRoute", {"name": "$fallback", "source": "DeviceMessages",
                                                  "condition": "true", "endpointNames": ["events"],
                                                  "isEnabled": True})
    props.setdefault("storageEndpoints", {"$default": {"sasTtlAsIso8601": "PT1H", "connectionString": "",
                                                       "containerName": ""}})
    props.setdefault("messagingEndpoints", {"fileNotifications": {
        "lockDurationAsIso8601": "PT1M", "ttlAsIso8601": "PT1H", "maxDeliveryCount": 10}})
    props.setdefault("enableFileUploadNotifications", False)
    props.setdefault("cloudToDevice", {"maxDeliveryCount": 10, "defaultTtlAsIso8601": "PT1H", "feedback": {
        "lockDurationAsIso8601": "PT1M", "ttlAsIso8601": "PT1H", "maxDeliveryCount": 10}})
    props.setdefault("features", "None")
    return props


def _policies(given: list | None, current: list[dict]) -> list[dict]:
    """The hub's shared access policies: the defaults at creation, or the list a PUT sends.

    A GET never shows the policies, so a read-modify-write PUT without them keeps the current ones.
    """
    if given is None:
        return current or [{"keyName": n, "primaryKey": new_key(), "secondaryKey": new_key(), "rights": r}
                           for n, r in DEFAULT_POLICIES]
    if not isinstance(given, list):
        raise RpError(400, "InvalidAuthorizationPolicy", "authorizationPolicies must be a list.")
    policies = []
    for rule in given:
        rights = [r.strip() for r in str(rule.get("rights", "")).split(",") if r.strip()] \
            if isinstance(rule, dict) else []
        if not rights or not rule.get("keyName") or any(r not in RIGHTS for r in rights):
            raise RpError(400, "InvalidAuthorizationPolicy",
                          f"Each authorization policy needs a keyName and rights from {', '.join(RIGHTS)}.")
        policies.append({"keyName": rule["keyName"], "primaryKey": rule.get("primaryKey") or new_key(),
                         "secondaryKey": rule.get("secondaryKey") or new_key(),
                         "rights": ", ".join(r for r in RIGHTS if r in rights)})
    return policies


def new_hub(resource_id: str, name: str, body: dict, *, created_at: str) -> dict:
    """A hub whose creation has just been accepted: provisioning, not yet active, and without a
    host until attach_port() gives it one."""
    if not body.get("location"):
        raise RpError(400, "LocationRequired", "The location property is required for this definition.")
    props = _properties(body, name)
    props.update(provisioningState="Accepted", state="Activating",
                 locations=[{"location": body["location"], "role": "primary"}])
    policies = _policies((body.get("properties") or {}).get("authorizationPolicies"), [])
    return {
        "id": resource_id, "name": name, "type": "Microsoft.Devices/IotHubs", "location": body["location"],
        "tags": without_nulls(body.get("tags") or {}), "etag": new_etag(), "sku": _sku(body),
        "properties": props, "systemData": {"createdAt": created_at},
        "_sandbox": {"policies": policies},
    }


def attach_port(doc: dict, port: int) -> dict:
    """The hub's IoT Hub service API answers on this local port, which its hostName names."""
    doc["_sandbox"]["port"] = port
    doc["properties"]["hostName"] = f"127.0.0.1:{port}"
    return doc


def save(store, doc: dict) -> None:
    store.put(doc["id"], HUB_TYPE, doc, parent=group_of(doc["id"]))


def update_hub(doc: dict, body: dict) -> dict:
    """Apply a PUT to an existing hub: its writable properties are replaced, the rest is kept."""
    if body.get("location") and body["location"].replace(" ", "").lower() != doc["location"].replace(" ", "").lower():
        raise RpError(400, "IotHubLocationCannotBeChanged",
                      f"The location of IotHub '{doc['name']}' is '{doc['location']}' and cannot be changed.")
    props = _properties(body, doc["name"], doc["properties"])
    props.update({k: doc["properties"][k] for k in ("hostName", "state", "locations")})
    props["provisioningState"] = "Accepted"
    doc["_sandbox"]["policies"] = _policies((body.get("properties") or {}).get("authorizationPolicies"),
                                            doc["_sandbox"]["policies"])
    doc.update(properties=props, sku=_sku(body), etag=new_etag())
    if "tags" in body:
        doc["tags"] = without_nulls(body["tags"] or {})
    return doc


def set_tags(doc: dict, body: dict) -> dict:
    tags = body.get("tags")
    if tags is not None and (not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values())):
        raise RpError(400, "InvalidTags", "tags must be an object of strings.")
    doc["tags"] = tags or {}
    doc["etag"] = new_etag()
    doc["properties"]["provisioningState"] = "Accepted"
    return doc


def view(doc: dict) -> dict:
    """What ARM shows: everything but the private part."""
    return {k: v for k, v in doc.items() if k != "_sandbox"}


def policy(doc: dict, key_name: str) -> dict:
    for rule in doc["_sandbox"]["policies"]:
        if rule["keyName"].lower() == key_name.lower():
            return rule
    raise RpError(404, "KeyNameNotFound", f"The shared access policy '{key_name}' does not exist on IotHub "
                  f"'{doc['name']}'.")


def busy(doc: dict) -> bool:
    return doc["properties"]["provisioningState"] not in ("Succeeded", "Failed")
