"""HTTP layer of a hub's service API: devices, modules, twins, configurations and queries.

Every handler is marked with the access it needs (auth.requires); auth.admit has checked the
token, and put the hub and the caller in call.state, before the handler runs.
"""

from __future__ import annotations

import json

from aiohttp import web

from ..core.http import Call, json_response
from . import configurations, device_side, models, twins
from .auth import REGISTRY_READ, REGISTRY_WRITE, SERVICE_CONNECT, requires
from .errors import argument_invalid, precondition_failed
from .query import parse_query


def _hub_id(call: Call) -> str:
    return call.state["hub"]["id"]


def _body(call: Call) -> dict:
    try:
        body = json.loads(call.body or b"null")
    except ValueError as exc:
        raise argument_invalid(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise argument_invalid("The request body must be a JSON object")
    return body


def _top(call: Call) -> int | None:
    top = call.query.get("top")
    if top is None:
        return None
    if not top.isdigit() or int(top) < 1:
        raise argument_invalid(f"top must be a positive integer, not '{top}'")
    return int(top)


def _if_match(call: Call) -> str | None:
    return call.headers.get("If-Match")


# -- devices ----------------------------------------------------------------------------------
@requires(REGISTRY_READ)
def list_devices(call: Call) -> web.Response:
    docs = models.devices(call.sandbox.store, _hub_id(call))[: _top(call) or 1000]
    return json_response([models.device_view(d) for d in docs])


@requires(REGISTRY_READ)
def get_device(call: Call) -> web.Response:
    return json_response(models.device_view(models.get_device(call.sandbox.store, _hub_id(call), call.params["id"])))


@requires(REGISTRY_WRITE)
def put_device(call: Call) -> web.Response:
    doc, _ = models.put_device(call.sandbox, _hub_id(call), call.params["id"], _body(call), _if_match(call))
    configurations.reconcile(call.sandbox, _hub_id(call))
    return json_response(models.device_view(doc))


@requires(REGISTRY_WRITE)
def delete_device(call: Call) -> web.Response:
    models.delete_device(call.sandbox.store, _hub_id(call), call.params["id"], _if_match(call))
    return web.Response(status=204)


# -- modules ----------------------------------------------------------------------------------
@requires(REGISTRY_READ)
def list_modules(call: Call) -> web.Response:
    store, hub_id, device_id = call.sandbox.store, _hub_id(call), call.params["id"]
    models.get_device(store, hub_id, device_id)
    return json_response([models.module_view(m) for m in models.modules(store, hub_id, device_id)])


@requires(REGISTRY_READ)
def get_module(call: Call) -> web.Response:
    doc = models.get_module(call.sandbox.store, _hub_id(call), call.params["id"], call.params["mid"])
    return json_response(models.module_view(doc))


@requires(REGISTRY_WRITE)
def put_module(call: Call) -> web.Response:
    doc, created = models.put_module(call.sandbox, _hub_id(call), call.params["id"], call.params["mid"],
                                     _body(call), _if_match(call))
    configurations.reconcile(call.sandbox, _hub_id(call))
    return json_response(models.module_view(doc), 201 if created else 200)


@requires(REGISTRY_WRITE)
def delete_module(call: Call) -> web.Response:
    models.delete_module(call.sandbox.store, _hub_id(call), call.params["id"], call.params["mid"], _if_match(call))
    return web.Response(status=204)


# -- twins ------------------------------------------------------------------------------------
def _twin_doc(call: Call) -> dict:
    store, hub_id = call.sandbox.store, _hub_id(call)
    if "mid" in call.params:
        return models.get_module(store, hub_id, call.params["id"], call.params["mid"])
    return models.get_device(store, hub_id, call.params["id"])


def _save_twin(call: Call, doc: dict) -> web.Response:
    hub_id = _hub_id(call)
    if "moduleId" in doc:
        models.save_module(call.sandbox.store, hub_id, doc)
    else:
        models.save_device(call.sandbox.store, hub_id, doc)
    # Target conditions test tags and properties, so a twin change may change what applies.
    configurations.reconcile(call.sandbox, hub_id)
    return json_response(twins.view(_twin_doc(call)))


def _service_changes(call: Call, doc: dict) -> tuple[dict | None, dict | None]:
    """(tags, desired) from a service's twin body, after its If-Match is checked.

    A body may be a twin read earlier and edited: its read-only parts (reported properties, and
    desired $metadata and $version) are ignored, as IoT Hub ignores them.
    """
    if not models.matches_etag(_if_match(call), twins.etag(doc["twin"])):
        raise precondition_failed("the twin")
    body = _body(call)
    properties = body.get("properties") or {}
    if not isinstance(properties, dict):
        raise argument_invalid("properties must be an object")
    desired = properties.get("desired")
    if isinstance(desired, dict):
        desired = {k: v for k, v in desired.items() if k not in ("$metadata", "$version")}
    return body.get("tags"), desired


@requires(SERVICE_CONNECT, device=True)
def get_twin(call: Call) -> web.Response:
    return json_response(twins.view(_twin_doc(call)))


@requires(SERVICE_CONNECT, device=True)
def patch_twin(call: Call) -> web.Response:
    principal = call.state["principal"]
    if principal.policy is None:
        # The device or module itself: only reported properties, as over MQTT.
        body = _body(call)
        properties = body.get("properties")
        if set(body) != {"properties"} or not isinstance(properties, dict) or set(properties) != {"reported"}:
            raise argument_invalid('A device may only report properties: {"properties": {"reported": {...}}}')
        device_side.report(call.sandbox, _hub_id(call), principal.device_id, principal.module_id,
                           properties["reported"])
        return json_response(twins.view(_twin_doc(call)))
    doc = _twin_doc(call)
    tags, desired = _service_changes(call, doc)
    twins.update(doc["twin"], tags=tags, desired=desired, now=models.now(call.sandbox))
    return _save_twin(call, doc)


@requires(SERVICE_CONNECT)
def put_twin(call: Call) -> web.Response:
    doc = _twin_doc(call)
    tags, desired = _service_changes(call, doc)
    twins.replace(doc["twin"], tags=tags or {}, desired=desired or {}, now=models.now(call.sandbox))
    return _save_twin(call, doc)


# -- configurations ---------------------------------------------------------------------------
@requires(SERVICE_CONNECT)
def apply_configuration_content(call: Call) -> web.Response:
    configurations.apply_on_edge_device(call.sandbox, _hub_id(call), call.params["id"], _body(call))
    # The swagger says 204, and azure-iot-hub 2.7 accepts nothing else.
    return web.Response(status=204)


@requires(SERVICE_CONNECT)
def get_configuration(call: Call) -> web.Response:
    store, hub_id = call.sandbox.store, _hub_id(call)
    doc = configurations.get(store, hub_id, call.params["id"])
    return json_response(configurations.view(doc, configurations.twin_rows(store, hub_id)))


@requires(SERVICE_CONNECT)
def list_configurations(call: Call) -> web.Response:
    store, hub_id = call.sandbox.store, _hub_id(call)
    rows = configurations.twin_rows(store, hub_id)
    return json_response([configurations.view(d, rows) for d in configurations.listed(store, hub_id, _top(call))])


@requires(SERVICE_CONNECT)
def put_configuration(call: Call) -> web.Response:
    store, hub_id = call.sandbox.store, _hub_id(call)
    doc, created = configurations.put(call.sandbox, hub_id, call.params["id"], _body(call), _if_match(call))
    return json_response(configurations.view(doc, configurations.twin_rows(store, hub_id)), 201 if created else 200)


@requires(SERVICE_CONNECT)
def delete_configuration(call: Call) -> web.Response:
    configurations.delete(call.sandbox, _hub_id(call), call.params["id"], _if_match(call))
    return web.Response(status=204)


# -- query ------------------------------------------------------------------------------------
@requires(SERVICE_CONNECT)
def query_twins(call: Call) -> web.Response:
    text = _body(call).get("query")
    if not isinstance(text, str) or not text.strip():
        raise argument_invalid("The body must carry a query: {\"query\": \"SELECT ...\"}")
    query = parse_query(text)
    rows = query.run(*configurations.twin_rows(call.sandbox.store, _hub_id(call)))
    # Every result fits in one page, so there is no x-ms-continuation to send.
    return json_response(rows, headers={"x-ms-item-type": query.item_type})
