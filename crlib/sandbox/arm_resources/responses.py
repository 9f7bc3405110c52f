"""HTTP layer for subscriptions, tenants, resource groups, providers and the generic resource list."""

from __future__ import annotations

from aiohttp import web

from ..core.arm import require_api_version, resource_group_id
from ..core.errors import SandboxError
from ..core.http import Call, json_response
from . import models, operations

# Versions the SDKs and the Azure CLI 2.91 send for these types. ARM accepts many more.
SUBSCRIPTION_VERSIONS = ["2016-06-01", "2019-11-01", "2020-01-01", "2021-01-01", "2022-12-01"]
RESOURCE_VERSIONS = ["2019-10-01", "2020-06-01", "2021-04-01", "2022-09-01", "2024-03-01", "2024-07-01",
                     "2024-11-01", "2025-03-01", "2025-04-01"]


def list_tenants(call: Call) -> web.Response:
    require_api_version(call, SUBSCRIPTION_VERSIONS, "tenants")
    tid = call.sandbox.identity.tenant_id
    return json_response({"value": [{"id": f"/tenants/{tid}", "tenantId": tid, "tenantCategory": "Home",
                                     "displayName": "crlib sandbox", "defaultDomain": "sandbox.crlib"}]})


def list_subscriptions(call: Call) -> web.Response:
    require_api_version(call, SUBSCRIPTION_VERSIONS, "subscriptions")
    return json_response({"value": [models.subscription(call.sandbox)]})


def get_subscription(call: Call) -> web.Response:
    require_api_version(call, SUBSCRIPTION_VERSIONS, "subscriptions")
    return json_response(models.subscription(call.sandbox))


def list_locations(call: Call) -> web.Response:
    require_api_version(call, SUBSCRIPTION_VERSIONS, "locations")
    sub = call.sandbox.identity.subscription_id
    return json_response({"value": [{"id": f"/subscriptions/{sub}/locations/westus", "name": "westus",
                                     "displayName": "West US", "regionalDisplayName": "(US) West US"}]})


def put_group(call: Call) -> web.Response:
    require_api_version(call, RESOURCE_VERSIONS, "resourceGroups")
    group, created = models.create_or_update_group(call.sandbox, call.params["subscriptionId"],
                                                   call.params["resourceGroupName"], call.json())
    return json_response(group, 201 if created else 200)


def get_group(call: Call) -> web.Response:
    require_api_version(call, RESOURCE_VERSIONS, "resourceGroups")
    name = call.params["resourceGroupName"]
    group = call.sandbox.store.get(resource_group_id(call.params["subscriptionId"], name))
    if group is None:
        raise SandboxError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")
    if call.method == "HEAD":
        return web.Response(status=204)
    return json_response(group)


def list_groups(call: Call) -> web.Response:
    require_api_version(call, RESOURCE_VERSIONS, "resourceGroups")
    sub = call.params["subscriptionId"]
    return json_response({"value": call.sandbox.store.children(f"/subscriptions/{sub}",
                                                               models.RESOURCE_GROUP_TYPE)})


def delete_group(call: Call) -> web.Response:
    require_api_version(call, RESOURCE_VERSIONS, "resourceGroups")
    rid = resource_group_id(call.params["subscriptionId"], call.params["resourceGroupName"])
    group = call.sandbox.store.get(rid)
    if group is None:
        raise SandboxError(404, "ResourceGroupNotFound",
                           f"Resource group '{call.params['resourceGroupName']}' could not be found.")
    group["properties"]["provisioningState"] = "Deleting"
    call.sandbox.store.put(rid, models.RESOURCE_GROUP_TYPE, group,
                           parent=f"/subscriptions/{call.params['subscriptionId']}")
    op = call.sandbox.operations.begin(operations.GROUP_DELETE, resource_id=rid, location=group["location"],
                                       namespace="Microsoft.Resources", api_version=call.api_version)
    return call.sandbox.operations.accepted_location(op)


def list_resources(call: Call) -> web.Response:
    require_api_version(call, RESOURCE_VERSIONS, "resources")
    sub = call.params["subscriptionId"]
    rg = call.params.get("resourceGroupName")
    under = resource_group_id(sub, rg) if rg else f"/subscriptions/{sub}"
    items = models.filter_resources(models.tracked_resources(call.sandbox, under=under),
                                    call.query.get("$filter"))
    return json_response({"value": [models.generic_view(r) for r in items]})


def list_group_resources(call: Call) -> web.Response:
    sub, rg = call.params["subscriptionId"], call.params["resourceGroupName"]
    if call.sandbox.store.get(resource_group_id(sub, rg)) is None:
        raise SandboxError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
    return list_resources(call)


def get_provider(call: Call) -> web.Response:
    require_api_version(call, RESOURCE_VERSIONS, "providers")
    found = models.provider(call.params["namespace"])
    if found is None:
        raise SandboxError(404, "InvalidResourceNamespace",
                           f"The resource namespace '{call.params['namespace']}' is invalid.")
    sub = call.params.get("subscriptionId")
    if sub:
        found = found | {"id": f"/subscriptions/{sub}{found['id']}"}
    return json_response(found)


def register_provider(call: Call) -> web.Response:
    # Every provider the sandbox emulates is always registered: registering again changes nothing.
    return get_provider(call)
