"""HTTP layer for Microsoft.Kubernetes/connectedClusters, and the admin routes that connect a
cluster as `az connectedk8s connect` would and take one offline."""

from __future__ import annotations

import ipaddress
import time

from aiohttp import web

from ..arm_resources.models import create_or_update_group
from ..clock import iso
from ..core.arm import json_object_body, list_page, require_api_version, require_resource_group, resource_group_id
from ..core.errors import SandboxError
from ..core.http import Call, json_response
from . import models, operations


def _cluster(call: Call) -> dict:
    require_api_version(call, models.API_VERSIONS, "connectedClusters")
    sub, rg, name = call.params["subscriptionId"], call.params["resourceGroupName"], call.params["clusterName"]
    group = require_resource_group(call, sub, rg)
    doc = call.sandbox.store.get(models.cluster_id(sub, group["name"], name))
    if doc is None:
        raise models.not_found(name)
    return doc


def _view(call: Call, doc: dict) -> dict:
    return models.view(doc, call.sandbox.clock.time(), call.api_version)


def _begin(call: Call, kind, doc: dict) -> dict:
    return call.sandbox.operations.begin(kind, resource_id=doc["id"],
                                         location=doc["location"].replace(" ", "").lower(),
                                         namespace=models.NAMESPACE, api_version=call.api_version)


def put_cluster(call: Call) -> web.Response:
    version = require_api_version(call, models.API_VERSIONS, "connectedClusters")
    sub, rg, name = call.params["subscriptionId"], call.params["resourceGroupName"], call.params["clusterName"]
    group = require_resource_group(call, sub, rg)
    store = call.sandbox.store
    rid = models.cluster_id(sub, group["name"], name)
    existing = store.get(rid)
    if existing is not None and models.busy(existing):
        raise SandboxError(409, "Conflict", f"The connected cluster '{name}' is "
                           f"{existing['properties']['provisioningState']}: wait for its operation to finish.")
    doc = models.new_cluster(rid, name, json_object_body(call), api_version=version,
                             tenant_id=call.sandbox.identity.tenant_id, now=time.time(), current=existing)
    models.save(store, doc)
    op = _begin(call, operations.CLUSTER_PUT, doc)
    return call.sandbox.operations.accepted_async(op, _view(call, doc), 200 if existing else 201)


def get_cluster(call: Call) -> web.Response:
    return json_response(_view(call, _cluster(call)))


def patch_cluster(call: Call) -> web.Response:
    """Tags and the patchable properties, applied at once (200, as both api-versions allow)."""
    doc = _cluster(call)
    models.patch_cluster(doc, json_object_body(call), now=time.time())
    models.save(call.sandbox.store, doc)
    return json_response(_view(call, doc))


def delete_cluster(call: Call) -> web.Response:
    doc = _cluster(call)
    if doc["properties"].get("provisioningState") == "Deleting":
        raise SandboxError(409, "Conflict", f"The connected cluster '{doc['name']}' is being deleted.")
    doc["properties"]["provisioningState"] = "Deleting"
    models.save(call.sandbox.store, doc)
    op = _begin(call, operations.CLUSTER_DELETE, doc)
    return call.sandbox.operations.accepted_location(op)


def list_clusters(call: Call) -> web.Response:
    require_api_version(call, models.API_VERSIONS, "connectedClusters")
    sub, rg = call.params["subscriptionId"], call.params.get("resourceGroupName")
    if rg:
        rg = require_resource_group(call, sub, rg)["name"]
    under = resource_group_id(sub, rg) if rg else f"/subscriptions/{sub}"
    docs = call.sandbox.store.by_type(models.CLUSTER_TYPE, under=under)
    return json_response(list_page([_view(call, d) for d in docs]))


def list_operations(call: Call) -> web.Response:
    require_api_version(call, models.API_VERSIONS, "operations")
    return json_response(models.operations_list())


def list_user_credential(call: Call) -> web.Response:
    """Cluster Connect needs the Arc relay (hybridConnectionConfig) and a kubeconfig reaching the
    cluster's API server through it. The sandbox has no relay, so it refuses rather than hand out
    a kubeconfig that leads nowhere."""
    doc = _cluster(call)
    raise SandboxError(400, "NotSupported", f"listClusterUserCredential: the sandbox emulates no Cluster Connect "
                       f"relay for connected cluster '{doc['name']}'.")


# -- admin routes (OPEN router: no ARM token) ---------------------------------------------------

def _text(body: dict, key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or not value:
        raise SandboxError(400, "InvalidParameter", f"{key} is required and must be a string")
    return value


def admin_connect(call: Call) -> web.Response:
    """Make a cluster as `az connectedk8s connect -n NAME -g RG` would: the resource, Connected,
    with its agents reporting, plus the facts about the cluster ARM does not carry."""
    body = json_object_body(call)
    sandbox = call.sandbox
    name, rg = _text(body, "name"), _text(body, "resource_group")
    cidr = _text(body, "service_cidr", "10.0.0.0/16")
    try:
        network = ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        raise SandboxError(400, "InvalidParameter", f"service_cidr: {exc}") from exc
    arch = _text(body, "arch", "amd64")
    if arch not in models.ARCHITECTURES:
        raise SandboxError(400, "InvalidParameter", f"arch must be one of {', '.join(models.ARCHITECTURES)}")
    k8s = _text(body, "kubernetes_version", "1.30.4")
    storage_class = _text(body, "storage_class", "standard")
    sub = sandbox.identity.subscription_id
    group = sandbox.store.get(resource_group_id(sub, rg))
    if group is None and body.get("create_group") is True:
        # What the operator's `az group create -n RG -l LOCATION` does first.
        group, _ = create_or_update_group(sandbox, sub, rg, {"location": _text(body, "location", "westus")})
    if group is None:
        raise SandboxError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
    rid = models.cluster_id(sub, group["name"], name)
    if sandbox.store.get(rid) is not None:
        raise SandboxError(409, "Conflict", f"The connected cluster '{name}' already exists in resource group "
                           f"'{group['name']}'.")
    doc = models.connected_cluster(rid, name, _text(body, "location", group["location"]),
                                   tenant_id=sandbox.identity.tenant_id, now=time.time(), kubernetes_version=k8s,
                                   service_cidr=str(network), storage_classes=[storage_class],
                                   architectures=[arch])
    models.save(sandbox.store, doc)
    return json_response(admin_view(sandbox, doc), 201)


def admin_view(sandbox, doc: dict) -> dict:
    private = doc["_sandbox"]
    shown = {"id": doc["id"], "name": doc["name"], "serviceCidr": private.get("serviceCidr"),
             "storageClasses": private.get("storageClasses"), "nodeArchitectures": private.get("nodeArchitectures"),
             "connectivityStatus": models.connectivity(doc, sandbox.clock.time())}
    if private.get("offlineUntil") is not None:
        shown["offlineUntil"] = iso(private["offlineUntil"])
    return shown


def admin_offline(call: Call) -> web.Response:
    """Cut a connected cluster's agents off for `seconds` of simulated time; it comes back by itself."""
    body = json_object_body(call)
    sandbox = call.sandbox
    name, seconds = _text(body, "name"), body.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise SandboxError(400, "InvalidParameter", "seconds must be a number of simulated seconds, at least 0")
    found = [d for d in sandbox.store.by_type(models.CLUSTER_TYPE) if d["name"].lower() == name.lower()
             and (not body.get("resource_group") or d["id"].split("/")[4].lower() == body["resource_group"].lower())]
    if not found:
        raise SandboxError(404, "NotFound", f"No connected cluster '{name}'.")
    if len(found) > 1:
        raise SandboxError(400, "InvalidParameter", f"Several connected clusters are called '{name}': name the group.")
    doc = found[0]
    if not doc["_sandbox"].get("agents"):
        raise SandboxError(400, "InvalidParameter", f"Connected cluster '{name}' has no agents to take offline.")
    now = sandbox.clock.time()
    doc["_sandbox"].update(offlineUntil=now + seconds, offlineSince=now)
    models.save(sandbox.store, doc)
    return json_response(admin_view(sandbox, doc))
