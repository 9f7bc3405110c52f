"""State for subscriptions, resource groups and the generic view of tracked resources."""

from __future__ import annotations

import re

from ..core.arm import eq_clauses, resource_group_id
from ..core.errors import SandboxError

RESOURCE_GROUP_TYPE = "microsoft.resources/resourcegroups"
# Tracked (top-level) resource types that GET /subscriptions/{id}/resources lists.
TRACKED_TYPES = {
    "microsoft.containerregistry/registries": "Microsoft.ContainerRegistry/registries",
    "microsoft.devices/iothubs": "Microsoft.Devices/IotHubs",
}
PROVIDERS = {
    "Microsoft.ContainerRegistry": {
        "registries": ["2025-11-01", "2026-09-01-preview"],
        "registries/connectedRegistries": ["2025-11-01", "2026-09-01-preview"],
        "registries/scopeMaps": ["2025-11-01", "2026-09-01-preview"],
        "registries/tokens": ["2025-11-01", "2026-09-01-preview"],
        "locations/operationResults": ["2025-11-01", "2026-09-01-preview"],
    },
    "Microsoft.Devices": {
        "IotHubs": ["2023-06-30"],
        "locations/operationResults": ["2023-06-30"],
    },
    "Microsoft.Kubernetes": {
        "connectedClusters": ["2024-01-01", "2026-05-01"],
        "operations": ["2024-01-01", "2026-05-01"],
        "locations/operationStatuses": ["2024-01-01", "2026-05-01"],
        "locations/operationResults": ["2024-01-01", "2026-05-01"],
    },
    "Microsoft.KubernetesConfiguration": {
        "extensions": ["2025-03-01"],
        "locations/operationStatuses": ["2025-03-01"],
    },
    # Custom locations: registered by the Arc quickstarts; no resource type is emulated yet.
    "Microsoft.ExtendedLocation": {
        "operations": ["2021-08-15"],
    },
}
_RG_NAME = re.compile(r"^[-\w._()]{1,90}$")


def subscription(sandbox) -> dict:
    ident = sandbox.identity
    return {
        "id": f"/subscriptions/{ident.subscription_id}",
        "subscriptionId": ident.subscription_id,
        "tenantId": ident.tenant_id,
        "displayName": "crlib sandbox",
        "state": "Enabled",
        "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "Sandbox",
                                 "spendingLimit": "Off"},
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
    }


def create_or_update_group(sandbox, sub: str, name: str, body: dict) -> tuple[dict, bool]:
    if not _RG_NAME.match(name) or name.endswith("."):
        raise SandboxError(400, "InvalidResourceGroup", f"The provided resource group name '{name}' has "
                           "these invalid characters or is too long.")
    location = body.get("location")
    if not location:
        raise SandboxError(400, "LocationRequired", "The location property is required for this definition.")
    rid = resource_group_id(sub, name)
    existing = sandbox.store.get(rid)
    group = existing or {
        "id": rid, "name": name, "type": "Microsoft.Resources/resourceGroups", "location": location,
        "properties": {"provisioningState": "Succeeded"},
    }
    if existing and existing["location"].lower() != location.lower():
        raise SandboxError(409, "InvalidResourceGroupLocation",
                           f"Invalid resource group location '{location}'. The Resource group already exists "
                           f"in location '{existing['location']}'.")
    if "tags" in body:
        group["tags"] = body["tags"] or {}
    sandbox.store.put(rid, RESOURCE_GROUP_TYPE, group, parent=f"/subscriptions/{sub}")
    return group, existing is None


def generic_view(doc: dict) -> dict:
    view = {k: doc[k] for k in ("id", "name", "type", "location", "tags", "sku", "kind") if k in doc}
    view.setdefault("tags", {})
    return view


def tracked_resources(sandbox, *, under: str | None = None) -> list[dict]:
    items = []
    for doc_type in TRACKED_TYPES:
        items += sandbox.store.by_type(doc_type, under=under)
    return items


def filter_resources(items: list[dict], odata: str | None) -> list[dict]:
    """The $filter the Azure CLI sends: resourceType, name, resourceGroup or location eq '...'."""
    if not odata:
        return items
    for field, value in eq_clauses(odata, ("resourceType", "name", "resourceGroup", "location")):
        if field == "resourceType":
            items = [r for r in items if r["type"].lower() == value]
        elif field == "name":
            items = [r for r in items if r["name"].lower() == value]
        elif field == "location":
            items = [r for r in items if r.get("location", "").lower() == value]
        else:
            items = [r for r in items if f"/resourcegroups/{value}/" in r["id"].lower()]
    return items


def provider(namespace: str) -> dict | None:
    for name, types in PROVIDERS.items():
        if name.lower() == namespace.lower():
            return {
                "id": f"/providers/{name}", "namespace": name, "registrationState": "Registered",
                "registrationPolicy": "RegistrationRequired",
                "resourceTypes": [{"resourceType": t, "locations": ["West US"], "apiVersions": v}
                                  for t, v in types.items()],
            }
    return None
