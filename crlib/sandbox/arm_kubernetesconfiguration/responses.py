"""HTTP layer for Microsoft.KubernetesConfiguration/extensions: create, update and delete as
long-running operations polled through the extension's own `operations/{operationId}` URL
(Azure-AsyncOperation), reads and lists. No response carries configurationProtectedSettings.
A create or update operation follows the extension until its provisioningState is terminal
(operations.py)."""

from __future__ import annotations

import time

from aiohttp import web

from ..clock import iso
from ..core.arm import json_object_body, list_page, require_api_version, require_resource_group
from ..core.errors import SandboxError
from ..core.http import Call, json_response
from ..core.service import OperationKind
from . import models, operations


def _cluster(call: Call) -> dict:
    """The parent cluster, after the checks ARM makes: api-version, group, then the parent itself."""
    require_api_version(call, models.API_VERSIONS, "extensions")
    p = call.params
    group = require_resource_group(call, p["subscriptionId"], p["resourceGroupName"])
    rp, kind, name = p["clusterRp"], p["clusterResourceName"], p["clusterName"]
    parent = f"{rp}/{kind}/{name}"
    if (rp.lower(), kind.lower()) in models.SUPPORTED_PARENTS:
        from ..arm_kubernetes import models as clusters

        doc = call.sandbox.store.get(clusters.cluster_id(p["subscriptionId"], group["name"], name))
        if doc is not None:
            return doc
    raise SandboxError(404, "ParentResourceNotFound", "Can not perform requested operation on nested resource. "
                       f"Parent resource '{parent}' not found.")


def _extension(call: Call) -> tuple[dict, dict]:
    cluster = _cluster(call)
    doc = call.sandbox.store.get(models.extension_id(cluster["id"], call.params["extensionName"]))
    if doc is None:
        raise SandboxError(404, "ResourceNotFound", f"The Resource 'Microsoft.KubernetesConfiguration/extensions/"
                           f"{call.params['extensionName']}' under resource group "
                           f"'{call.params['resourceGroupName']}' was not found.")
    return cluster, doc


def _status_url(call: Call, doc: dict, op: dict) -> str:
    return f"{call.sandbox.arm_endpoint}{doc['id']}/operations/{op['id']}?api-version={call.api_version}"


def _begin(call: Call, kind: OperationKind, cluster: dict, doc: dict) -> tuple[dict, dict[str, str]]:
    ops = call.sandbox.operations
    op = ops.begin(kind, resource_id=doc["id"], location=cluster["location"].replace(" ", "").lower(),
                   namespace=models.NAMESPACE, api_version=call.api_version)
    return op, {"Azure-AsyncOperation": _status_url(call, doc, op)} | ops.retry_after(op)


def _busy(doc: dict) -> None:
    if models.busy(doc):
        raise SandboxError(409, "Conflict", f"The extension '{doc['name']}' is "
                           f"{doc['properties']['provisioningState']}: wait for its operation to finish.")


def put_extension(call: Call) -> web.Response:
    cluster = _cluster(call)
    name = call.params["extensionName"]
    store = call.sandbox.store
    ext_id = models.extension_id(cluster["id"], name)
    existing = store.get(ext_id)
    if existing is not None:
        _busy(existing)
        call.sandbox.operations.follow_resource(ext_id)  # the last operation ends with the state it followed
    doc, protected = models.new_extension(ext_id, name, json_object_body(call), now=time.time(),
                                          tenant_id=call.sandbox.identity.tenant_id, current=existing)
    models.save(store, doc, cluster["id"])
    models.save_protected(store, ext_id, protected)
    kind = operations.EXTENSION_UPDATE if existing else operations.EXTENSION_CREATE
    _, headers = _begin(call, kind, cluster, doc)
    return json_response(doc, 200 if existing else 201, headers)


def get_extension(call: Call) -> web.Response:
    return json_response(_extension(call)[1])


def patch_extension(call: Call) -> web.Response:
    cluster, doc = _extension(call)
    _busy(doc)
    call.sandbox.operations.follow_resource(doc["id"])
    protected = models.patch_extension(doc, json_object_body(call), now=time.time())
    models.save(call.sandbox.store, doc, cluster["id"])
    models.save_protected(call.sandbox.store, doc["id"], protected)
    _, headers = _begin(call, operations.EXTENSION_UPDATE, cluster, doc)
    return json_response(doc, 202, headers)


def delete_extension(call: Call) -> web.Response:
    force = call.query.get("forceDelete", "false").lower()
    if force not in ("true", "false"):
        raise SandboxError(400, "InvalidParameter", "forceDelete must be true or false.")
    try:
        cluster, doc = _extension(call)
    except SandboxError as err:
        if err.code == "ResourceNotFound":
            return web.Response(status=204)  # ARM: deleting what is not there succeeds
        raise
    if doc["properties"].get("provisioningState") == "Deleting":
        raise SandboxError(409, "Conflict", f"The extension '{doc['name']}' is being deleted.")
    doc["properties"]["provisioningState"] = "Deleting"
    models.save(call.sandbox.store, doc, cluster["id"])
    call.sandbox.operations.follow_resource(doc["id"])  # a create or update still running is Canceled
    _, headers = _begin(call, operations.EXTENSION_DELETE, cluster, doc)
    return web.Response(status=202, headers=headers)


def list_extensions(call: Call) -> web.Response:
    cluster = _cluster(call)
    docs = call.sandbox.store.by_type(models.EXTENSION_TYPE, under=cluster["id"])
    return json_response(list_page(docs))


def operation_status(call: Call) -> web.Response:
    cluster = _cluster(call)
    ext_id = models.extension_id(cluster["id"], call.params["extensionName"])
    op = call.sandbox.store.get(f"operation:{call.params['operationId']}")
    if op is not None:
        op = call.sandbox.operations.follow(op)
    if op is None or op["resourceId"].lower() != ext_id.lower():
        raise SandboxError(404, "ResourceNotFound", f"The operation '{call.params['operationId']}' could not be "
                           f"found for extension '{call.params['extensionName']}'.")
    body: dict = {"id": f"{ext_id}/operations/{op['id']}", "name": op["id"], "status": op["status"],
                  "properties": {"startTime": iso(op["startTime"])}}
    if op.get("endTime"):
        body["properties"]["endTime"] = iso(op["endTime"])
    if op.get("error"):
        body["error"] = op["error"]
    headers = call.sandbox.operations.retry_after(op) if op["status"] == "InProgress" else None
    return json_response(body, 200, headers)
