"""Registries: creation and update rules, their reachable endpoints, admin credentials, usages
and name availability.

A registry's login server and its dedicated data endpoint are real HTTPS ports on 127.0.0.1,
opened through the sandbox's listeners. Their port numbers live in the private part of the
document, so a restart reopens them where clients expect them and re-enabling the data
endpoint gets its old port back when it is free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..clock import iso
from ..core.errors import SandboxError
from ..registry_dataplane.urls import ROUTER as REGISTRY_HOST
from . import scopemaps
from .common import (
    CONNECTED_REGISTRY_TYPE,
    NAMESPACE,
    PRIVATE,
    REGISTRY_TYPE,
    SCOPE_MAP_TYPE,
    TOKEN_TYPE,
    new_secret,
    save,
)
from .validation import REGISTRY_NAME, boolean, check_name, enum, invalid, obj, required, string

if TYPE_CHECKING:
    from ..runtime import Sandbox

SKUS = ("Basic", "Standard", "Premium")
NAME_RULE = "Registry names may contain only alphanumeric characters and must be 5 to 50 characters long."
ADMIN_PASSWORD_NAMES = ("password", "password2")

_BOOLEAN_PROPERTIES = ("adminUserEnabled", "dataEndpointEnabled", "anonymousPullEnabled",
                       "networkRuleBypassAllowedForTasks")
_ENUM_PROPERTIES = {
    "publicNetworkAccess": ("Enabled", "Disabled"),
    "networkRuleBypassOptions": ("AzureServices", "None"),
    "roleAssignmentMode": ("AbacRepositoryPermissions", "LegacyRegistryPermissions"),
}
_POLICIES = ("quarantinePolicy", "trustPolicy", "retentionPolicy", "exportPolicy", "azureADAuthenticationAsArmPolicy")
_GIB = 1024**3
# Storage bytes, webhooks, scope maps and tokens each SKU includes.
_LIMITS = {"Basic": (10 * _GIB, 2, 100, 100), "Standard": (100 * _GIB, 10, 100, 100),
           "Premium": (500 * _GIB, 500, 50000, 50000)}
_TAGS_MAX = 50


def _default_properties(now: str) -> dict:
    return {
        "adminUserEnabled": False,
        "networkRuleSet": {"defaultAction": "Allow", "ipRules": []},
        "policies": {
            "quarantinePolicy": {"status": "disabled"},
            "trustPolicy": {"type": "Notary", "status": "disabled"},
            "retentionPolicy": {"days": 7, "lastUpdatedTime": now, "status": "disabled"},
            "exportPolicy": {"status": "enabled"},
            "azureADAuthenticationAsArmPolicy": {"status": "enabled"},
        },
        "encryption": {"status": "disabled"},
        "dataEndpointEnabled": False,
        "dataEndpointHostNames": [],
        "privateEndpointConnections": [],
        "publicNetworkAccess": "Enabled",
        "networkRuleBypassOptions": "AzureServices",
        "networkRuleBypassAllowedForTasks": False,
        "zoneRedundancy": "Disabled",
        "anonymousPullEnabled": False,
        "roleAssignmentMode": "LegacyRegistryPermissions",
    }


# -- create and update ---------------------------------------------------------------------------
def put_registry(sandbox: Sandbox, group: dict, name: str, body: object) -> tuple[dict, bool]:
    """Create a registry, or replace an existing one's settings (PUT semantics). Returns (doc, created)."""
    check_name("registry", name, REGISTRY_NAME, NAME_RULE)
    rid = f"{group['id']}/providers/{NAMESPACE}/registries/{name}"
    existing = sandbox.store.get(rid)
    if existing is None:
        _check_name_free(sandbox, name)
    body = obj(body, "body")
    location = _location(body.get("location"), existing)
    sku = _sku(body.get("sku"))
    now = iso(sandbox.clock.now())
    props = {"loginServer": "", "creationDate": now, "provisioningState": "Creating"} | _default_properties(now)
    private: dict = {"adminPasswords": {n: new_secret() for n in ADMIN_PASSWORD_NAMES}}
    if existing is not None:
        for kept in ("loginServer", "creationDate", "zoneRedundancy"):
            props[kept] = existing["properties"][kept]
        private = existing[PRIVATE]
    _apply_properties(props, obj(body.get("properties"), "properties"), creating=existing is None)
    _check_sku_features(sandbox, rid, props, sku)
    doc = {
        "id": existing["id"] if existing else rid,
        "name": existing["name"] if existing else name,
        "type": f"{NAMESPACE}/registries",
        "location": location,
        "tags": _tags(body.get("tags")),
        "sku": {"name": sku, "tier": sku},
        "properties": props,
        PRIVATE: private,
    }
    open_endpoints(sandbox, doc)
    if existing is None:
        scopemaps.create_system_scope_maps(sandbox, doc)
    return doc, existing is None


def patch_registry(sandbox: Sandbox, doc: dict, body: object) -> dict:
    """Apply the fields a PATCH names. The Azure CLI sends the whole registry back: read-only
    fields in it are ignored, as Azure does."""
    body = obj(body, "body")
    sku = _sku(body["sku"]) if body.get("sku") is not None else doc["sku"]["name"]
    props = dict(doc["properties"])
    _apply_properties(props, obj(body.get("properties"), "properties"), creating=False)
    _check_sku_features(sandbox, doc["id"], props, sku)
    if body.get("tags") is not None:
        doc["tags"] = _tags(body["tags"])
    doc["sku"] = {"name": sku, "tier": sku}
    doc["properties"] = props
    open_endpoints(sandbox, doc)
    return doc


def _check_name_free(sandbox: Sandbox, name: str) -> None:
    # Registry names are global in Azure: they are the first label of <name>.azurecr.io.
    if any(r["name"].lower() == name.lower() for r in sandbox.store.by_type(REGISTRY_TYPE)):
        raise SandboxError(409, "AlreadyInUse",
                           f"The registry DNS name {name.lower()}.azurecr.io is already in use. You can check if "
                           "the name is already claimed using the checkNameAvailability API.")


def _location(value: object, existing: dict | None) -> str:
    if not value:
        if existing is not None:
            return existing["location"]
        raise SandboxError(400, "LocationRequired", "The location property is required for this definition.")
    location = string(value, "location").replace(" ", "").lower()
    if existing is not None and existing["location"] != location:
        raise SandboxError(400, "InvalidResourceLocation",
                           f"The resource '{existing['name']}' already exists in location '{existing['location']}'. "
                           f"A resource with the same name cannot be created in location '{location}'.")
    return location


def _sku(value: object) -> str:
    name = obj(value, "sku").get("name")
    if name is None:
        raise required("sku.name")
    if not isinstance(name, str) or name.lower() not in {s.lower() for s in SKUS}:
        raise SandboxError(400, "InvalidSku", f"The SKU '{name}' is not valid. Valid SKUs are Basic, Standard "
                                              "and Premium.")
    return enum(name, SKUS, "sku.name")


def _tags(value: object) -> dict:
    tags = obj(value, "tags")
    if len(tags) > _TAGS_MAX or not all(isinstance(v, str) for v in tags.values()):
        raise invalid("tags", f"expected at most {_TAGS_MAX} tags with string values.")
    return tags


def _apply_properties(props: dict, given: dict, *, creating: bool) -> None:
    for key in _BOOLEAN_PROPERTIES:
        if given.get(key) is not None:
            props[key] = boolean(given[key], f"properties.{key}")
    for key, allowed in _ENUM_PROPERTIES.items():
        if given.get(key) is not None:
            props[key] = enum(given[key], allowed, f"properties.{key}")
    if given.get("zoneRedundancy") is not None:
        zone = enum(given["zoneRedundancy"], ("Enabled", "Disabled"), "properties.zoneRedundancy")
        if not creating and zone != props["zoneRedundancy"]:
            raise invalid("properties.zoneRedundancy", "zone redundancy can only be chosen when the registry "
                                                       "is created.")
        props["zoneRedundancy"] = zone
    if given.get("networkRuleSet") is not None:
        props["networkRuleSet"] = _network_rule_set(given["networkRuleSet"])
    if given.get("policies") is not None:
        props["policies"] = _policies(props["policies"], obj(given["policies"], "properties.policies"))


def _network_rule_set(value: object) -> dict:
    field = "properties.networkRuleSet"
    rules = obj(value, field)
    ip_rules = []
    for i, rule in enumerate(rules.get("ipRules") or []):
        rule = obj(rule, f"{field}.ipRules[{i}]")
        ip_rules.append({"action": enum(rule.get("action", "Allow"), ("Allow",), f"{field}.ipRules[{i}].action"),
                         "value": string(rule.get("value"), f"{field}.ipRules[{i}].value")})
    return {"defaultAction": enum(rules.get("defaultAction", "Allow"), ("Allow", "Deny"), f"{field}.defaultAction"),
            "ipRules": ip_rules}


def _policies(current: dict, given: dict) -> dict:
    policies = {name: dict(current[name]) for name in _POLICIES}
    for name in _POLICIES:
        if given.get(name) is None:
            continue
        policy = obj(given[name], f"properties.policies.{name}")
        if policy.get("status") is not None:
            policies[name]["status"] = enum(policy["status"], ("enabled", "disabled"),
                                            f"properties.policies.{name}.status")
        if name == "retentionPolicy" and policy.get("days") is not None:
            days = policy["days"]
            if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= 365:
                raise invalid("properties.policies.retentionPolicy.days", "expected a whole number from 0 to 365.")
            policies[name]["days"] = days
    return policies


def _check_sku_features(sandbox: Sandbox, rid: str, props: dict, sku: str) -> None:
    """Refuse Premium features on a Basic or Standard registry, as ACR does."""
    if sku == "Premium":
        return
    if props["dataEndpointEnabled"]:
        feature = "Dedicated data endpoints"
    elif props["networkRuleSet"]["defaultAction"] == "Deny" or props["networkRuleSet"]["ipRules"]:
        feature = "Network rules"
    elif sandbox.store.children(rid, CONNECTED_REGISTRY_TYPE):
        feature = "Connected registries"
    else:
        return
    raise SandboxError(400, "RegistrySkuNotSupported",
                       f"{feature} are only supported by Premium registries; the requested SKU is '{sku}'.")


# -- endpoints -----------------------------------------------------------------------------------
def open_endpoints(sandbox: Sandbox, doc: dict) -> None:
    """Make the login server and, when enabled, the data endpoint listen, and name them in the doc."""
    key = doc["id"].lower()
    private, props = doc[PRIVATE], doc["properties"]
    if sandbox.listener_port(key, "login") is None:
        private["loginPort"] = sandbox.open_listener(REGISTRY_HOST, key, private.get("loginPort", 0), role="login")
    props["loginServer"] = f"127.0.0.1:{private['loginPort']}"
    data_port = sandbox.listener_port(key, "data")
    if props["dataEndpointEnabled"]:
        if data_port is None:
            data_port = sandbox.open_listener(REGISTRY_HOST, key, private.get("dataPort", 0), role="data")
        private["dataPort"] = data_port
        props["dataEndpointHostNames"] = [f"127.0.0.1:{data_port}"]
    else:
        if data_port is not None:
            sandbox.close_listener(data_port)
        props["dataEndpointHostNames"] = []


def restore_endpoints(sandbox: Sandbox) -> None:
    """At startup: reopen every registry's ports, on the numbers they had where possible."""
    for doc in sandbox.store.by_type(REGISTRY_TYPE):
        open_endpoints(sandbox, doc)
        save(sandbox, REGISTRY_TYPE, doc)


# -- admin user, usages, names ----------------------------------------------------------------
def admin_credentials(doc: dict) -> dict:
    if not doc["properties"]["adminUserEnabled"]:
        raise SandboxError(400, "AdminUserDisabled", f"The admin user is disabled for registry '{doc['name']}'. "
                                                     "Enable it with adminUserEnabled=true first.")
    passwords = doc[PRIVATE]["adminPasswords"]
    return {"username": doc["name"], "passwords": [{"name": n, "value": passwords[n]} for n in ADMIN_PASSWORD_NAMES]}


def regenerate_admin_password(sandbox: Sandbox, doc: dict, body: object) -> dict:
    name = enum(obj(body, "body").get("name"), ADMIN_PASSWORD_NAMES, "name")
    admin_credentials(doc)  # refuses while the admin user is disabled
    doc[PRIVATE]["adminPasswords"][name] = new_secret()
    save(sandbox, REGISTRY_TYPE, doc)
    return admin_credentials(doc)


def usages(sandbox: Sandbox, doc: dict) -> dict:
    size, webhooks, scope_maps, tokens = _LIMITS[doc["sku"]["name"]]
    user_scope_maps = [m for m in sandbox.store.children(doc["id"], SCOPE_MAP_TYPE)
                       if m["properties"]["type"] == scopemaps.USER_DEFINED]
    counts = [("Size", size, 0, "Bytes"), ("Webhooks", webhooks, 0, "Count"),
              ("ScopeMaps", scope_maps, len(user_scope_maps), "Count"),
              ("Tokens", tokens, len(sandbox.store.children(doc["id"], TOKEN_TYPE)), "Count")]
    return {"value": [{"name": n, "limit": lim, "currentValue": cur, "unit": unit} for n, lim, cur, unit in counts]}


def check_name_availability(sandbox: Sandbox, body: object) -> dict:
    body = obj(body, "body")
    enum(body.get("type"), (f"{NAMESPACE}/registries",), "type")
    name = body.get("name")
    if not isinstance(name, str):
        raise required("name")
    if not REGISTRY_NAME.match(name):
        return {"nameAvailable": False, "reason": "Invalid", "message": NAME_RULE}
    if any(r["name"].lower() == name.lower() for r in sandbox.store.by_type(REGISTRY_TYPE)):
        return {"nameAvailable": False, "reason": "AlreadyExists",
                "message": f"The registry {name} is already in use."}
    return {"nameAvailable": True}
