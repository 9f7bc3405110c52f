"""Connected registries: on-premises registries that sync with the cloud registry or with another
connected registry, their parent.

Every rule is checked before anything is written: a Premium registry with its dedicated data
endpoint, a name that starts with a letter, a parent in the same registry whose mode allows
the child's, sync and client tokens that exist, and the documented limits (MAX_CONNECTED_REGISTRIES,
MAX_CLIENT_TOKENS). What the on-premises registry reports
(connection state, activation, last activity and sync) is set by the device simulator through
set_runtime_status; until then those fields show a registry that has never connected.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from ..clock import iso
from ..core.arm import eq_clauses
from ..core.errors import SandboxError
from .common import CONNECTED_REGISTRY_TYPE, NAMESPACE, find_child, parent_key, public, save
from .validation import (
    CONNECTED_REGISTRY_NAME,
    boolean,
    check_name,
    cron,
    duration,
    enum,
    invalid,
    obj,
    required,
    string,
    string_list,
)

if TYPE_CHECKING:
    from ..runtime import Sandbox

MODES = ("ReadWrite", "ReadOnly")
LOG_LEVELS = ("Debug", "Information", "Warning", "Error", "None")
AUDIT_LOG_STATUSES = ("Enabled", "Disabled")
CONNECTION_STATES = ("Online", "Offline", "Syncing", "Unhealthy")
ACTIVATION_STATUSES = ("Active", "Inactive")
NAME_RULE = ("Connected registry names must start with a letter, contain only alphanumeric characters and be "
             "5 to 50 characters long.")
DEFAULT_LOGGING = {"logLevel": "Information", "auditLogStatus": "Disabled"}
# The Azure CLI's documented defaults: garbage collection on, once a day.
DEFAULT_GARBAGE_COLLECTION = {"enabled": True, "schedule": "0 0 * * *"}
# The documented limits. "What is a connected registry?", Current limitations
# (https://learn.microsoft.com/azure/container-registry/intro-connected-registry,
# MicrosoftDocs/azure-management-docs articles/container-registry/intro-connected-registry.md, 05/20/2025):
# "The number of clients for the connected registry is limited to 50." and "The number of connected
# registries per container registry is limited to 50." (Versions before 2024 said 20 clients.)
# No document, spec or Azure CLI source says how Azure refuses more, so the sandbox refuses the
# request with a 400 before anything is written; the error codes below are the sandbox's own.
MAX_CONNECTED_REGISTRIES = 50  # per (cloud) container registry
MAX_CLIENT_TOKENS = 50  # clientTokenIds per connected registry
CONNECTED_REGISTRY_LIMIT_CODE = "ConnectedRegistryLimitExceeded"
CLIENT_TOKEN_LIMIT_CODE = "ClientTokenLimitExceeded"
LIMITS_SOURCE = "https://learn.microsoft.com/azure/container-registry/intro-connected-registry#current-limitations"
# Fields the on-premises registry reports; a PUT on an existing connected registry keeps them.
_RUNTIME_FIELDS = ("version", "connectionState", "lastActivityTime", "activation", "statusDetails", "loginServer")


def render_connected_registry(sandbox: Sandbox, doc: dict) -> dict:
    body = public(doc)
    gateway = _gateway_endpoint(sandbox, doc)
    if gateway:
        body["properties"]["parent"]["syncProperties"]["gatewayEndpoint"] = gateway
    return body


def _gateway_endpoint(sandbox: Sandbox, doc: dict) -> str | None:
    """Where this connected registry syncs from: the cloud registry's data endpoint. For a child
    of a connected registry ARM names none: Azure cannot know the parent device's address, and
    Microsoft's docs have the operator write it in (`ParentGatewayEndpoint=<parent gateway endpoint>`
    in `az acr connected-registry install` output; `$IOTEDGE_PARENTHOSTNAME:8000` in the nested
    IoT Edge tutorial)."""
    if doc["properties"]["parent"].get("id"):
        return None
    registry = sandbox.store.get(parent_key(CONNECTED_REGISTRY_TYPE, doc["id"]))
    hosts = registry["properties"]["dataEndpointHostNames"] if registry else []
    return hosts[0] if hosts else None


def _check_registry(registry: dict) -> None:
    sku = registry["sku"]["name"]
    if sku != "Premium":
        raise SandboxError(400, "RegistrySkuNotSupported",
                           f"Connected registries are only supported by Premium registries; registry "
                           f"'{registry['name']}' has SKU '{sku}'.")
    if not registry["properties"]["dataEndpointEnabled"]:
        raise SandboxError(400, "DataEndpointNotEnabled",
                           f"Connected registries need the dedicated data endpoint of registry '{registry['name']}', "
                           "which is disabled. Enable it first (dataEndpointEnabled: true).")


# -- property groups ---------------------------------------------------------------------------
def _sync_properties(sandbox: Sandbox, registry: dict, given: dict, current: dict | None) -> dict:
    """Sync settings for a create (current None: tokenId and messageTtl required) or an update."""
    field = "properties.parent.syncProperties" if current is None else "properties.syncProperties"
    sync = dict(current or {})
    if given.get("authType") is not None:
        auth_type = enum(given["authType"], ("SyncToken", "ManagedIdentity"), f"{field}.authType")
        if auth_type == "ManagedIdentity":
            raise invalid(f"{field}.authType", "the sandbox does not emulate managed identities; use SyncToken.")
        sync["authType"] = auth_type
    if current is None:
        if given.get("tokenId") is None:
            raise required(f"{field}.tokenId")
        token = find_child(sandbox, registry, "tokens", given["tokenId"])
        if token is None:
            raise invalid(f"{field}.tokenId", f"'{given['tokenId']}' is not a token of registry "
                                              f"'{registry['name']}'.")
        sync["tokenId"] = token["id"]
        if given.get("messageTtl") is None:
            raise required(f"{field}.messageTtl")
    for key, check in (("schedule", cron), ("syncWindow", duration), ("messageTtl", duration)):
        if given.get(key) is not None:
            sync[key] = check(given[key], f"{field}.{key}")
    return sync


def _check_connected_registry_count(sandbox: Sandbox, registry: dict) -> None:
    """A new connected registry must fit MAX_CONNECTED_REGISTRIES. Every connected registry the
    registry holds counts, a parent's children too (they are all the registry's resources), and
    one still being deleted until its deletion finishes."""
    count = len(sandbox.store.children(registry["id"], CONNECTED_REGISTRY_TYPE))
    if count >= MAX_CONNECTED_REGISTRIES:
        raise SandboxError(400, CONNECTED_REGISTRY_LIMIT_CODE,
                           f"Registry '{registry['name']}' already has {count} connected registries: the number of "
                           f"connected registries per container registry is limited to {MAX_CONNECTED_REGISTRIES} "
                           f"(see {LIMITS_SOURCE}). Delete a connected registry before creating another.")


def _client_token_ids(sandbox: Sandbox, registry: dict, value: object) -> list[str]:
    given = string_list(value, "properties.clientTokenIds")
    # Checked before the tokens are looked up, and counted as given (a repeated id counts twice).
    if len(given) > MAX_CLIENT_TOKENS:
        raise SandboxError(400, CLIENT_TOKEN_LIMIT_CODE,
                           f"The value of 'properties.clientTokenIds' names {len(given)} tokens: the number of "
                           f"clients for a connected registry is limited to {MAX_CLIENT_TOKENS} "
                           f"(see {LIMITS_SOURCE}).")
    ids = []
    for i, token_id in enumerate(given):
        token = find_child(sandbox, registry, "tokens", token_id)
        if token is None:
            raise invalid(f"properties.clientTokenIds[{i}]", f"'{token_id}' is not a token of registry "
                                                             f"'{registry['name']}'.")
        ids.append(token["id"])
    return ids


def _logging(value: object, current: dict) -> dict:
    given = obj(value, "properties.logging")
    logging = dict(current)
    if given.get("logLevel") is not None:
        logging["logLevel"] = enum(given["logLevel"], LOG_LEVELS, "properties.logging.logLevel")
    status = given.get("auditLogStatus")
    if status is not None:
        if isinstance(status, bool):  # the Azure CLI's --audit-logs-enabled flag arrives as a boolean
            status = "Enabled" if status else "Disabled"
        logging["auditLogStatus"] = enum(status, AUDIT_LOG_STATUSES, "properties.logging.auditLogStatus")
    return logging


def _garbage_collection(value: object, current: dict) -> dict:
    given = obj(value, "properties.garbageCollection")
    gc = dict(current)
    if given.get("enabled") is not None:
        gc["enabled"] = boolean(given["enabled"], "properties.garbageCollection.enabled")
    if given.get("schedule") is not None:
        gc["schedule"] = cron(given["schedule"], "properties.garbageCollection.schedule")
    return gc


def _set_optional_list(props: dict, key: str, values: list[str]) -> None:
    # Azure leaves empty lists out of a connected registry.
    if values:
        props[key] = values
    else:
        props.pop(key, None)


# -- create and update -------------------------------------------------------------------------
def put_connected_registry(sandbox: Sandbox, registry: dict, name: str, body: object) -> tuple[dict, bool]:
    check_name("connected registry", name, CONNECTED_REGISTRY_NAME, NAME_RULE)
    _check_registry(registry)
    rid = f"{registry['id']}/connectedRegistries/{name}"
    existing = sandbox.store.get(rid)
    if existing is None:
        _check_connected_registry_count(sandbox, registry)
    given = obj(obj(body, "body").get("properties"), "properties")
    if given.get("mode") is None:
        raise required("properties.mode")
    mode = enum(given["mode"], MODES, "properties.mode")
    if given.get("parent") is None:
        raise required("properties.parent")
    parent_given = obj(given["parent"], "properties.parent")
    parent = _parent(sandbox, registry, parent_given.get("id"), mode)
    if existing is not None:
        _check_unchanged(existing, mode, parent)
    if parent_given.get("syncProperties") is None:
        raise required("properties.parent.syncProperties")
    sync = _sync_properties(sandbox, registry, obj(parent_given["syncProperties"], "properties.parent.syncProperties"),
                            None)
    props = {
        "provisioningState": "Creating",
        "mode": mode,
        "connectionState": "Offline",
        "activation": {"status": "Inactive"},
        "parent": ({"id": parent["id"]} if parent else {}) | {"syncProperties": sync},
        # Microsoft's samples show no host here, and the simulated device reports none (docs/sandbox.md).
        "loginServer": {"tls": {"certificate": {}}},
        "logging": _logging(given.get("logging"), DEFAULT_LOGGING),
        "statusDetails": [],
        "garbageCollection": _garbage_collection(given.get("garbageCollection"), DEFAULT_GARBAGE_COLLECTION),
    }
    if given.get("clientTokenIds") is not None:
        _set_optional_list(props, "clientTokenIds", _client_token_ids(sandbox, registry, given["clientTokenIds"]))
    if given.get("notificationsList") is not None:
        _set_optional_list(props, "notificationsList",
                           string_list(given["notificationsList"], "properties.notificationsList"))
    if existing is not None:
        old = existing["properties"]
        props |= {k: old[k] for k in _RUNTIME_FIELDS if k in old}
        if "lastSyncTime" in old["parent"]["syncProperties"]:
            sync["lastSyncTime"] = old["parent"]["syncProperties"]["lastSyncTime"]
    doc = {"id": existing["id"] if existing else rid, "name": existing["name"] if existing else name,
           "type": f"{NAMESPACE}/registries/connectedRegistries", "properties": props}
    return doc, existing is None


def _parent(sandbox: Sandbox, registry: dict, parent_id: object, mode: str) -> dict | None:
    if parent_id is None:
        return None
    parent = find_child(sandbox, registry, "connectedRegistries", string(parent_id, "properties.parent.id"))
    if parent is None:
        raise invalid("properties.parent.id", f"'{parent_id}' is not a connected registry of registry "
                                              f"'{registry['name']}'.")
    if parent["properties"]["mode"] == "ReadOnly" and mode == "ReadWrite":
        raise SandboxError(400, "InvalidConnectedRegistryMode",
                           f"A ReadWrite connected registry cannot have the ReadOnly parent '{parent['name']}': "
                           "a ReadOnly connected registry only accepts ReadOnly children.")
    return parent


def _check_unchanged(existing: dict, mode: str, parent: dict | None) -> None:
    old = existing["properties"]
    if old["mode"] != mode:
        raise invalid("properties.mode", f"the mode of connected registry '{existing['name']}' is {old['mode']} "
                                         "and cannot be changed.")
    if (old["parent"].get("id") or "").lower() != (parent["id"] if parent else "").lower():
        raise invalid("properties.parent.id", f"the parent of connected registry '{existing['name']}' cannot be "
                                              "changed.")


def patch_connected_registry(sandbox: Sandbox, registry: dict, doc: dict, body: object) -> dict:
    given = obj(obj(body, "body").get("properties"), "properties")
    props = doc["properties"]
    if given.get("syncProperties") is not None:
        props["parent"]["syncProperties"] = _sync_properties(
            sandbox, registry, obj(given["syncProperties"], "properties.syncProperties"),
            props["parent"]["syncProperties"])
    if given.get("logging") is not None:
        props["logging"] = _logging(given["logging"], props["logging"])
    if given.get("garbageCollection") is not None:
        props["garbageCollection"] = _garbage_collection(given["garbageCollection"], props["garbageCollection"])
    if given.get("clientTokenIds") is not None:
        _set_optional_list(props, "clientTokenIds", _client_token_ids(sandbox, registry, given["clientTokenIds"]))
    if given.get("notificationsList") is not None:
        _set_optional_list(props, "notificationsList",
                           string_list(given["notificationsList"], "properties.notificationsList"))
    return doc


def filter_connected_registries(docs: list[dict], odata: str | None) -> list[dict]:
    """The spec's $filter: parent.id, mode and connectionState with eq, joined by and."""
    if not odata:
        return docs
    for field, value in eq_clauses(odata, ("parent.id", "mode", "connectionState")):
        if field == "parent.id":
            docs = [d for d in docs if (d["properties"]["parent"].get("id") or "").lower() == value]
        else:
            docs = [d for d in docs if d["properties"][field].lower() == value]
    return docs


# -- runtime state ---------------------------------------------------------------------------
def set_runtime_status(sandbox: Sandbox, connected_registry_id: str, *, connection_state: str | None = None,
                       activation_status: str | None = None, status_details: list[dict] | None = None,
                       last_activity_time: dt.datetime | float | None = None,
                       last_sync_time: dt.datetime | float | None = None, version: str | None = None,
                       login_server: dict | None = None) -> dict:
    """Record what the on-premises registry reports; returns the connected registry as ARM shows it.

    `status_details` items follow StatusDetailProperties; `login_server` follows
    LoginServerProperties ({"host": ..., "tls": {...}})."""
    doc = sandbox.store.get(connected_registry_id)
    if doc is None:
        raise SandboxError(404, "ResourceNotFound", f"The connected registry '{connected_registry_id}' was not found.")
    props = doc["properties"]
    if connection_state is not None:
        props["connectionState"] = enum(connection_state, CONNECTION_STATES, "connectionState")
    if activation_status is not None:
        props["activation"] = {"status": enum(activation_status, ACTIVATION_STATUSES, "activation.status")}
    if status_details is not None:
        props["statusDetails"] = [obj(d, "statusDetails") for d in status_details]
    if last_activity_time is not None:
        props["lastActivityTime"] = iso(last_activity_time)
    if last_sync_time is not None:
        props["parent"]["syncProperties"]["lastSyncTime"] = iso(last_sync_time)
    if version is not None:
        props["version"] = version
    if login_server is not None:
        props["loginServer"] = obj(login_server, "loginServer")
    save(sandbox, CONNECTED_REGISTRY_TYPE, doc)
    return render_connected_registry(sandbox, doc)


def finish_deactivation(sandbox: Sandbox, op: dict) -> None:
    """Deactivating returns the connected registry to never-activated: Inactive and Offline."""
    set_runtime_status(sandbox, op["resourceId"], connection_state="Offline", activation_status="Inactive")
