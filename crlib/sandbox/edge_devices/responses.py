"""HTTP layer of the simulated devices: the admin routes that provision, show and take them offline,
and the resolver of each device endpoint (role "device" on the registry data plane's router)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ..arm_iothub import models as hub_resources
from ..clock import iso
from ..core.errors import SandboxError
from ..core.http import Call, json_response
from . import models
from .connected import DeviceEndpointAuthority

if TYPE_CHECKING:
    from ..registry_dataplane.auth import Authority
    from ..runtime import Sandbox


def provision(call: Call) -> web.Response:
    body = call.json()
    connection_string = body.get("connection_string")
    if not isinstance(connection_string, str):
        raise SandboxError(400, "InvalidParameter", "connection_string is required")
    record = models.provision(call.sandbox, connection_string)
    if body.get("parent_hostname"):
        record["parentHostname"] = body["parent_hostname"]
        call.sandbox.store.put(record["key"], models.EDGE_DEVICE, record, parent=record.get("hubId"))
    call.sandbox.edge.reconcile()
    return json_response(models.public_view(call.sandbox, record, None), 201)


def _view(sandbox: Sandbox, record: dict) -> dict:
    device = sandbox.edge.devices.get(record["key"])
    return models.public_view(sandbox, record, device.view() if device else None)


def list_devices(call: Call) -> web.Response:
    return json_response({"devices": [_view(call.sandbox, r) for r in models.records(call.sandbox)]})


def show_device(call: Call) -> web.Response:
    """One device: its address, the root CA it is trusted with, and what it runs."""
    record = _find_record(call.sandbox, call.query.get("hub"), call.params["device_id"])
    return json_response(_view(call.sandbox, record))


def _find_record(sandbox: Sandbox, hub: object, device_id: str) -> dict:
    """The device record for a hub (host name or hub name; optional when the id is unambiguous)."""
    if hub is not None:
        if not isinstance(hub, str) or not hub:
            raise SandboxError(400, "InvalidParameter", "hub must be a hub's host name or name")
        hub_id = models.hub_for_host(sandbox, hub)
        if hub_id is None:
            doc = hub_resources.find_by_name(sandbox.store, hub)
            hub_id = doc["id"] if doc else None
        if hub_id is None:
            raise SandboxError(404, "NotFound", f"No IoT hub answers to '{hub}'.")
        found = [r for r in models.records(sandbox) if r.get("hubId") and r["hubId"].lower() == hub_id.lower()
                 and r["deviceId"] == device_id]
    else:
        found = [r for r in models.records(sandbox) if r["deviceId"] == device_id]
    if not found:
        raise SandboxError(404, "NotFound", f"No simulated device '{device_id}' has been provisioned"
                                            + (f" for hub '{hub}'." if hub else "."))
    if len(found) > 1:
        raise SandboxError(400, "InvalidParameter", f"Devices of several hubs are called '{device_id}': name the hub.")
    return found[0]


def device_offline(call: Call) -> web.Response:
    """Cut a simulated device off for `seconds` of simulated time; it comes back by itself."""
    body = call.json()
    device_id, seconds = body.get("device_id"), body.get("seconds")
    if not isinstance(device_id, str) or not device_id:
        raise SandboxError(400, "InvalidParameter", "device_id is required")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise SandboxError(400, "InvalidParameter", "seconds must be a number of simulated seconds, at least 0")
    sandbox = call.sandbox
    record = _find_record(sandbox, body.get("hub"), device_id)
    record["offlineUntil"] = sandbox.clock.time() + seconds
    sandbox.store.put(record["key"], models.EDGE_DEVICE, record, parent=record.get("hubId"))
    sandbox.edge.reconcile()
    device = sandbox.edge.devices[record["key"]]
    device.check_offline()  # at once, so the caller sees the device gone when this returns
    return json_response(models.public_view(sandbox, record, device.view())
                         | {"offlineUntil": iso(record["offlineUntil"])})


def device_endpoint(call: Call) -> tuple[str, Authority]:
    """The connected registry behind the API proxy, through its route (502 when it leads nowhere)."""
    module = call.sandbox.edge.routed_registry(call.host_key)
    authority = DeviceEndpointAuthority(call.sandbox, module, call.request.host)
    return authority.namespace, authority
