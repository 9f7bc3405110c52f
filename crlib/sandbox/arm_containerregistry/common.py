"""What every Microsoft.ContainerRegistry resource shares: ids, store types, the private part of a
document, lookups that answer ARM's 404, and the long-running-operation pattern."""

from __future__ import annotations

import copy
import secrets
from typing import TYPE_CHECKING

from aiohttp import web

from ..core.arm import require_api_version, require_resource_group
from ..core.errors import SandboxError
from ..core.http import Call

if TYPE_CHECKING:
    from ..runtime import Sandbox
    from .operations import Lifecycle

NAMESPACE = "Microsoft.ContainerRegistry"
# What azure-mgmt-containerregistry 15 and the Azure CLI 2.91 send.
API_VERSIONS = ("2025-11-01", "2026-09-01-preview")

REGISTRY_TYPE = "microsoft.containerregistry/registries"  # resources.TRACKED_TYPES lists registries by this
SCOPE_MAP_TYPE = "microsoft.containerregistry/registries/scopemaps"
TOKEN_TYPE = "microsoft.containerregistry/registries/tokens"
CONNECTED_REGISTRY_TYPE = "microsoft.containerregistry/registries/connectedregistries"

# State the sandbox keeps beside a resource (ports, password hashes) and never sends.
PRIVATE = "_sandbox"


def new_secret() -> str:
    """A password shaped like ACR's: 52 URL-safe characters."""
    return secrets.token_urlsafe(39)


def check_api_version(call: Call, resource_type: str = "registries") -> str:
    return require_api_version(call, API_VERSIONS, f"{NAMESPACE}/{resource_type}")


def public(doc: dict) -> dict:
    """The document as ARM shows it: without the sandbox's private part."""
    return {k: copy.deepcopy(v) for k, v in doc.items() if k != PRIVATE}


def parent_key(doc_type: str, resource_id: str) -> str:
    """A registry belongs to its resource group; everything else to its registry."""
    if doc_type == REGISTRY_TYPE:
        return resource_id.split("/providers/", 1)[0]
    return resource_id.rsplit("/", 2)[0]


def save(sandbox: Sandbox, doc_type: str, doc: dict) -> None:
    sandbox.store.put(doc["id"], doc_type, doc, parent=parent_key(doc_type, doc["id"]))


def not_found(resource_type: str, name: str, group: str) -> SandboxError:
    return SandboxError(404, "ResourceNotFound",
                        f"The Resource '{NAMESPACE}/{resource_type}/{name}' under resource group '{group}' was not "
                        "found. For more details please go to https://aka.ms/ARMResourceNotFoundFix")


def registry_key(call: Call) -> str:
    p = call.params
    return (f"/subscriptions/{p['subscriptionId']}/resourceGroups/{p['resourceGroupName']}/providers/"
            f"{NAMESPACE}/registries/{p['registryName']}")


def get_registry(call: Call) -> dict:
    """The registry the URL names, or ARM's 404s for a missing group or registry."""
    p = call.params
    require_resource_group(call, p["subscriptionId"], p["resourceGroupName"])
    doc = call.sandbox.store.get(registry_key(call))
    if doc is None:
        raise not_found("registries", p["registryName"], p["resourceGroupName"])
    return doc


def get_child(call: Call, registry: dict, collection: str, name: str) -> dict:
    doc = call.sandbox.store.get(f"{registry['id']}/{collection}/{name}")
    if doc is None:
        raise not_found(f"registries/{registry['name']}/{collection}", name, call.params["resourceGroupName"])
    return doc


def find_child(sandbox: Sandbox, registry: dict, collection: str, resource_id: object) -> dict | None:
    """The resource an id in a request body refers to, if it is this registry's and exists."""
    prefix = f"{registry['id']}/{collection}/".lower()
    if not isinstance(resource_id, str) or not resource_id.lower().startswith(prefix):
        return None
    return sandbox.store.get(resource_id)


# -- long-running operations -------------------------------------------------------------------
def begin_provisioning(call: Call, kinds: Lifecycle, doc_type: str, doc: dict, body: dict, *, created: bool,
                       location: str) -> web.Response:
    """Save a created or updated resource as Creating/Updating and answer with Azure-AsyncOperation.

    `body` is the rendered resource; its provisioningState is set here too."""
    state = "Creating" if created else "Updating"
    doc["properties"]["provisioningState"] = body["properties"]["provisioningState"] = state
    save(call.sandbox, doc_type, doc)
    op = call.sandbox.operations.begin(kinds.create if created else kinds.update, resource_id=doc["id"],
                                       location=location, namespace=NAMESPACE, api_version=call.api_version)
    return call.sandbox.operations.accepted_async(op, body, 201 if created else 200)


def begin_deletion(call: Call, kinds: Lifecycle, doc_type: str, doc: dict, *, location: str) -> web.Response:
    doc["properties"]["provisioningState"] = "Deleting"
    save(call.sandbox, doc_type, doc)
    op = call.sandbox.operations.begin(kinds.delete, resource_id=doc["id"], location=location,
                                       namespace=NAMESPACE, api_version=call.api_version)
    return call.sandbox.operations.accepted_location(op)


def finish_provisioning(doc_type: str):
    """A finalizer that marks a created or updated resource Succeeded (unless it is being deleted)."""

    def finish(sandbox: Sandbox, op: dict) -> None:
        doc = sandbox.store.get(op["resourceId"])
        if doc is not None and doc["properties"].get("provisioningState") in ("Creating", "Updating"):
            doc["properties"]["provisioningState"] = "Succeeded"
            save(sandbox, doc_type, doc)

    return finish


def finish_deletion(sandbox: Sandbox, op: dict) -> None:
    """Delete the resource and everything under it; a registry's ports close with it."""
    sandbox.store.delete_tree(op["resourceId"])
    sandbox.prune_listeners()
