"""HTTP layer for Microsoft.ContainerRegistry: registries and their actions, scope maps, tokens and
connected registries. Handlers check the api-version, find the resources the URL names, hand the
body to the model modules and answer in ARM's long-running-operation shapes."""

from __future__ import annotations

from aiohttp import web

from ..core.arm import require_resource_group, resource_group_id
from ..core.http import Call, empty, json_response
from ..core.service import OperationKind
from . import connected, imports, models, operations, scopemaps, tokens
from .common import (
    CONNECTED_REGISTRY_TYPE,
    NAMESPACE,
    REGISTRY_TYPE,
    SCOPE_MAP_TYPE,
    TOKEN_TYPE,
    begin_deletion,
    begin_provisioning,
    check_api_version,
    get_child,
    get_registry,
    public,
    registry_key,
)

_SCOPE_MAPS = "registries/scopeMaps"
_TOKENS = "registries/tokens"
_CONNECTED = "registries/connectedRegistries"


def _values(items: list[dict]) -> web.Response:
    return json_response({"value": items})


def _begin_operation(call: Call, kind: OperationKind, registry: dict, result: dict | None = None, *,
                     secret_result: bool = False) -> dict:
    return call.sandbox.operations.begin(kind, resource_id=registry["id"], location=registry["location"],
                                         namespace=NAMESPACE, api_version=call.api_version, result=result,
                                         secret_result=secret_result)


def _existing_child(call: Call, registry: dict, collection: str, name: str) -> dict | None:
    return call.sandbox.store.get(f"{registry['id']}/{collection}/{name}")


# -- registries ----------------------------------------------------------------------------------
def check_name_availability(call: Call) -> web.Response:
    check_api_version(call)
    return json_response(models.check_name_availability(call.sandbox, call.json()))


def list_registries(call: Call) -> web.Response:
    check_api_version(call)
    sub, group = call.params["subscriptionId"], call.params.get("resourceGroupName")
    if group:
        require_resource_group(call, sub, group)
    under = resource_group_id(sub, group) if group else f"/subscriptions/{sub}"
    return _values([public(d) for d in call.sandbox.store.by_type(REGISTRY_TYPE, under=under)])


def get_registry_handler(call: Call) -> web.Response:
    check_api_version(call)
    return json_response(public(get_registry(call)))


def put_registry(call: Call) -> web.Response:
    check_api_version(call)
    group = require_resource_group(call, call.params["subscriptionId"], call.params["resourceGroupName"])
    doc, created = models.put_registry(call.sandbox, group, call.params["registryName"], call.json())
    return begin_provisioning(call, operations.REGISTRY, REGISTRY_TYPE, doc, public(doc), created=created,
                              location=doc["location"])


def patch_registry(call: Call) -> web.Response:
    check_api_version(call)
    doc = models.patch_registry(call.sandbox, get_registry(call), call.json())
    return begin_provisioning(call, operations.REGISTRY, REGISTRY_TYPE, doc, public(doc), created=False,
                              location=doc["location"])


def delete_registry(call: Call) -> web.Response:
    check_api_version(call)
    require_resource_group(call, call.params["subscriptionId"], call.params["resourceGroupName"])
    doc = call.sandbox.store.get(registry_key(call))
    if doc is None:  # deleting what is already gone succeeds, as in ARM
        return empty(204)
    return begin_deletion(call, operations.REGISTRY, REGISTRY_TYPE, doc, location=doc["location"])


def import_image(call: Call) -> web.Response:
    check_api_version(call)
    registry = get_registry(call)
    request = imports.parse_request(call.sandbox, call.json())
    op = _begin_operation(call, operations.REGISTRY_IMPORT, registry)
    imports.record_job(call.sandbox, op, registry, request)
    return call.sandbox.operations.accepted_location(op)


def generate_credentials(call: Call) -> web.Response:
    check_api_version(call)
    registry = get_registry(call)
    result = tokens.generate_credentials(call.sandbox, registry, call.json())
    op = _begin_operation(call, operations.REGISTRY_GENERATE_CREDENTIALS, registry, result, secret_result=True)
    return call.sandbox.operations.accepted_location(op)


def list_credentials(call: Call) -> web.Response:
    check_api_version(call)
    return json_response(models.admin_credentials(get_registry(call)))


def regenerate_credential(call: Call) -> web.Response:
    check_api_version(call)
    return json_response(models.regenerate_admin_password(call.sandbox, get_registry(call), call.json()))


def list_usages(call: Call) -> web.Response:
    check_api_version(call)
    return json_response(models.usages(call.sandbox, get_registry(call)))


# -- scope maps ----------------------------------------------------------------------------------
def list_scope_maps(call: Call) -> web.Response:
    check_api_version(call, _SCOPE_MAPS)
    registry = get_registry(call)
    return _values([public(d) for d in call.sandbox.store.children(registry["id"], SCOPE_MAP_TYPE)])


def get_scope_map(call: Call) -> web.Response:
    check_api_version(call, _SCOPE_MAPS)
    return json_response(public(get_child(call, get_registry(call), "scopeMaps", call.params["scopeMapName"])))


def put_scope_map(call: Call) -> web.Response:
    check_api_version(call, _SCOPE_MAPS)
    registry = get_registry(call)
    doc, created = scopemaps.put_scope_map(call.sandbox, registry, call.params["scopeMapName"], call.json())
    return begin_provisioning(call, operations.SCOPE_MAP, SCOPE_MAP_TYPE, doc, public(doc), created=created,
                              location=registry["location"])


def patch_scope_map(call: Call) -> web.Response:
    check_api_version(call, _SCOPE_MAPS)
    registry = get_registry(call)
    doc = scopemaps.patch_scope_map(get_child(call, registry, "scopeMaps", call.params["scopeMapName"]), call.json())
    return begin_provisioning(call, operations.SCOPE_MAP, SCOPE_MAP_TYPE, doc, public(doc), created=False,
                              location=registry["location"])


def delete_scope_map(call: Call) -> web.Response:
    check_api_version(call, _SCOPE_MAPS)
    registry = get_registry(call)
    doc = _existing_child(call, registry, "scopeMaps", call.params["scopeMapName"])
    if doc is None:
        return empty(204)
    scopemaps.check_deletable(call.sandbox, registry, doc)
    return begin_deletion(call, operations.SCOPE_MAP, SCOPE_MAP_TYPE, doc, location=registry["location"])


# -- tokens -----------------------------------------------------------------------------------------
def list_tokens(call: Call) -> web.Response:
    check_api_version(call, _TOKENS)
    registry = get_registry(call)
    return _values([tokens.render_token(d) for d in call.sandbox.store.children(registry["id"], TOKEN_TYPE)])


def get_token(call: Call) -> web.Response:
    check_api_version(call, _TOKENS)
    return json_response(tokens.render_token(get_child(call, get_registry(call), "tokens", call.params["tokenName"])))


def put_token(call: Call) -> web.Response:
    check_api_version(call, _TOKENS)
    registry = get_registry(call)
    doc, created = tokens.put_token(call.sandbox, registry, call.params["tokenName"], call.json())
    return begin_provisioning(call, operations.TOKEN, TOKEN_TYPE, doc, tokens.render_token(doc), created=created,
                              location=registry["location"])


def patch_token(call: Call) -> web.Response:
    check_api_version(call, _TOKENS)
    registry = get_registry(call)
    doc = get_child(call, registry, "tokens", call.params["tokenName"])
    tokens.patch_token(call.sandbox, registry, doc, call.json())
    return begin_provisioning(call, operations.TOKEN, TOKEN_TYPE, doc, tokens.render_token(doc), created=False,
                              location=registry["location"])


def delete_token(call: Call) -> web.Response:
    check_api_version(call, _TOKENS)
    registry = get_registry(call)
    doc = _existing_child(call, registry, "tokens", call.params["tokenName"])
    if doc is None:
        return empty(204)
    return begin_deletion(call, operations.TOKEN, TOKEN_TYPE, doc, location=registry["location"])


# -- connected registries -------------------------------------------------------------------------
def list_connected_registries(call: Call) -> web.Response:
    check_api_version(call, _CONNECTED)
    registry = get_registry(call)
    docs = connected.filter_connected_registries(
        call.sandbox.store.children(registry["id"], CONNECTED_REGISTRY_TYPE), call.query.get("$filter"))
    return _values([connected.render_connected_registry(call.sandbox, d) for d in docs])


def get_connected_registry(call: Call) -> web.Response:
    check_api_version(call, _CONNECTED)
    doc = get_child(call, get_registry(call), "connectedRegistries", call.params["connectedRegistryName"])
    return json_response(connected.render_connected_registry(call.sandbox, doc))


def put_connected_registry(call: Call) -> web.Response:
    check_api_version(call, _CONNECTED)
    registry = get_registry(call)
    doc, created = connected.put_connected_registry(call.sandbox, registry, call.params["connectedRegistryName"],
                                                    call.json())
    return begin_provisioning(call, operations.CONNECTED_REGISTRY, CONNECTED_REGISTRY_TYPE, doc,
                              connected.render_connected_registry(call.sandbox, doc), created=created,
                              location=registry["location"])


def patch_connected_registry(call: Call) -> web.Response:
    check_api_version(call, _CONNECTED)
    registry = get_registry(call)
    doc = get_child(call, registry, "connectedRegistries", call.params["connectedRegistryName"])
    connected.patch_connected_registry(call.sandbox, registry, doc, call.json())
    return begin_provisioning(call, operations.CONNECTED_REGISTRY, CONNECTED_REGISTRY_TYPE, doc,
                              connected.render_connected_registry(call.sandbox, doc), created=False,
                              location=registry["location"])


def delete_connected_registry(call: Call) -> web.Response:
    check_api_version(call, _CONNECTED)
    registry = get_registry(call)
    doc = _existing_child(call, registry, "connectedRegistries", call.params["connectedRegistryName"])
    if doc is None:
        return empty(204)
    return begin_deletion(call, operations.CONNECTED_REGISTRY, CONNECTED_REGISTRY_TYPE, doc, location=registry["location"])


def deactivate_connected_registry(call: Call) -> web.Response:
    check_api_version(call, _CONNECTED)
    registry = get_registry(call)
    doc = get_child(call, registry, "connectedRegistries", call.params["connectedRegistryName"])
    op = call.sandbox.operations.begin(operations.CONNECTED_REGISTRY_DEACTIVATE, resource_id=doc["id"],
                                       location=registry["location"], namespace=NAMESPACE,
                                       api_version=call.api_version)
    return call.sandbox.operations.accepted_location(op)
