"""Wiring for simulated devices: the admin routes that provision them, the device endpoint's
resolver, and the background task that keeps one EdgeDevice running per provisioned record."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from ..core.errors import SandboxError
from ..core.http import Call, json_response
from ..registry import responses as registry_responses
from . import models
from .connected import ConnectedRegistryModule, DeviceEndpointAuthority
from .device import EdgeDevice

if TYPE_CHECKING:
    from ..runtime import Sandbox

RECONCILE_SECONDS = 0.2


class EdgeRuntime:
    """Every simulated device of one sandbox."""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.devices: dict[str, EdgeDevice] = {}
        self._task: asyncio.Task | None = None

    def reconcile(self) -> None:
        records = {r["key"]: r for r in models.records(self.sandbox)}
        for key in [k for k in self.devices if k not in records]:
            asyncio.get_running_loop().create_task(self.devices.pop(key).stop())
        for key, record in records.items():
            if key in self.devices:
                self.devices[key].record = record
            else:
                self.devices[key] = device = EdgeDevice(self.sandbox, record)
                device.start()

    async def _run(self) -> None:
        while True:
            self.reconcile()
            await asyncio.sleep(RECONCILE_SECONDS)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        for device in self.devices.values():
            await device.stop()

    def connected_registry_on(self, device_key: str) -> ConnectedRegistryModule | None:
        device = self.devices.get(device_key)
        return device.connected_registry() if device else None


# -- admin API ------------------------------------------------------------------------------------
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
    return json_response(models.public_view(record, None), 201)


def list_devices(call: Call) -> web.Response:
    edge = call.sandbox.edge
    views = [models.public_view(r, edge.devices[r["key"]].view() if r["key"] in edge.devices else None)
             for r in models.records(call.sandbox)]
    return json_response({"devices": views})


URLS = [
    ("POST", "/_sandbox/edge/devices", provision),
    ("GET", "/_sandbox/edge/devices", list_devices),
]


def _device_endpoint(call: Call):
    module = call.sandbox.edge.connected_registry_on(call.host.key)
    if module is None:
        raise SandboxError(503, "UNAVAILABLE", "The connected registry on this device is not running or not active.")
    return module.cr_id, DeviceEndpointAuthority(call.sandbox, module, call.request.host)


def register(sandbox: Sandbox) -> None:
    sandbox.edge = EdgeRuntime(sandbox)
    registry_responses.RESOLVERS["device"] = _device_endpoint


def restore(sandbox: Sandbox) -> None:
    sandbox.edge.start()


async def shutdown(sandbox: Sandbox) -> None:
    await sandbox.edge.stop()
