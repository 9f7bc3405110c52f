"""HTTP layer for Microsoft.Devices/IotHubs: create/update and delete as long-running operations,
reads, tags, shared access keys and name availability."""

from __future__ import annotations

import time

from aiohttp import web

from ..clock import iso
from ..core.arm import list_page, require_api_version, require_resource_group, resource_group_id
from ..core.http import Call, json_response
from ..core.service import OperationKind
from ..iothub_service.urls import ROUTER as HUB_SERVICE_API
from . import models, operations
from .models import RpError


def _body(call: Call) -> dict:
    body = call.json()
    if not isinstance(body, dict):
        raise RpError(400, "InvalidRequestContent", "The request content must be a JSON object.")
    return body


def _with_etag(response: web.Response, doc: dict) -> web.Response:
    # The spec: an etag in the body must also be sent as the ETag header.
    response.headers["ETag"] = doc["etag"]
    return response


def _hub(call: Call) -> dict:
    """The hub the path names, after the checks ARM makes before the resource provider sees it."""
    require_api_version(call, models.API_VERSIONS, "IotHubs")
    sub, rg, name = call.params["subscriptionId"], call.params["resourceGroupName"], call.params["resourceName"]
    require_resource_group(call, sub, rg)
    doc = call.sandbox.store.get(models.hub_id(sub, rg, name))
    if doc is None:
        raise models.not_found(name)
    return doc


def _begin(call: Call, kind: OperationKind, doc: dict) -> dict:
    # The location goes into the operation's URL, so it must not carry the spaces "West US" has.
    location = doc["location"].replace(" ", "").lower()
    return call.sandbox.operations.begin(kind, resource_id=doc["id"], location=location,
                                         namespace=models.NAMESPACE, api_version=call.api_version)


def put_hub(call: Call) -> web.Response:
    require_api_version(call, models.API_VERSIONS, "IotHubs")
    sub, rg, name = call.params["subscriptionId"], call.params["resourceGroupName"], call.params["resourceName"]
    group = require_resource_group(call, sub, rg)
    body = _body(call)
    store, sandbox = call.sandbox.store, call.sandbox
    existing = store.get(models.hub_id(sub, rg, name))
    if existing is None:
        problem = models.name_problem(name)
        if problem:
            raise RpError(400, "InvalidIotHubName", problem)
        if models.find_by_name(store, name) is not None:
            raise RpError(409, "IotHubNameNotAvailable", f"IotHub name '{name}' is not available")
        doc = models.new_hub(models.hub_id(sub, group["name"], name), name, body, created_at=iso(time.time()))
        models.attach_port(doc, sandbox.open_listener(HUB_SERVICE_API, key=doc["id"]))
        kind, status = operations.HUB_CREATE, 201
    else:
        if_match = call.headers.get("If-Match")
        if if_match not in (None, "*") and if_match.strip('"') != existing["etag"]:
            raise RpError(412, "PreconditionFailed",
                          f"The etag '{if_match}' does not match IotHub '{existing['name']}'s current etag.")
        if models.busy(existing):
            raise RpError(409, "IotHubOperationInProgress",
                          f"IotHub '{existing['name']}' is {existing['properties']['provisioningState']}: "
                          "wait for its current operation to finish.")
        doc = models.update_hub(existing, body)
        kind, status = operations.HUB_UPDATE, 200
    models.save(store, doc)
    op = _begin(call, kind, doc)
    return _with_etag(sandbox.operations.accepted_async(op, models.view(doc), status), doc)


def get_hub(call: Call) -> web.Response:
    doc = _hub(call)
    return _with_etag(json_response(models.view(doc)), doc)


def patch_hub(call: Call) -> web.Response:
    doc = _hub(call)
    if models.busy(doc):
        raise RpError(409, "IotHubOperationInProgress",
                      f"IotHub '{doc['name']}' is {doc['properties']['provisioningState']}: "
                      "wait for its current operation to finish.")
    models.set_tags(doc, _body(call))
    models.save(call.sandbox.store, doc)
    op = _begin(call, operations.HUB_UPDATE, doc)
    return _with_etag(call.sandbox.operations.accepted_async(op, models.view(doc), 200), doc)


def delete_hub(call: Call) -> web.Response:
    doc = _hub(call)
    doc["properties"].update(provisioningState="Deleting", state="Deleting")
    models.save(call.sandbox.store, doc)
    ops = call.sandbox.operations
    op = _begin(call, operations.HUB_DELETE, doc)
    # The spec's 202 carries the hub in its transitional state and both polling headers.
    headers = {"Azure-AsyncOperation": op["statusUrl"], "Location": op["resultUrl"]} | ops.retry_after(op)
    return json_response(models.view(doc), 202, headers)


def list_hubs(call: Call) -> web.Response:
    require_api_version(call, models.API_VERSIONS, "IotHubs")
    sub, rg = call.params["subscriptionId"], call.params.get("resourceGroupName")
    if rg:
        require_resource_group(call, sub, rg)
    under = resource_group_id(sub, rg) if rg else f"/subscriptions/{sub}"
    hubs = call.sandbox.store.by_type(models.HUB_TYPE, under=under)
    return json_response(list_page([models.view(h) for h in hubs]))


def list_keys(call: Call) -> web.Response:
    return json_response({"value": _hub(call)["_sandbox"]["policies"]})


def get_key(call: Call) -> web.Response:
    return json_response(models.policy(_hub(call), call.params["keyName"]))


def check_name(call: Call) -> web.Response:
    require_api_version(call, models.API_VERSIONS, "checkNameAvailability")
    name = _body(call).get("name")
    if not isinstance(name, str) or not name:
        raise RpError(400, "InvalidRequestContent", "The name to check is required.")
    return json_response(models.name_availability(call.sandbox.store, name))

