"""The simulated devices of one sandbox (`sandbox.edge`): one running EdgeDevice per provisioned
record, kept in step with the records by a background task, which also removes the CA chains of
records that are gone."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..core.errors import SandboxError
from . import device_ca, models
from .connected import ConnectedRegistryModule
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
        device_ca.prune(self.sandbox.state_dir, {models.ca_directory(self.sandbox, r) for r in records.values()})

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

    def routed_registry(self, device_key: str) -> ConnectedRegistryModule:
        """The connected registry a device's API proxy routes to (SandboxError as the proxy answers)."""
        device = self.devices.get(device_key)
        if device is None:
            raise SandboxError(503, "UNAVAILABLE", "The device is not running.")
        if device.offline:  # a connection kept alive from before it went offline
            raise SandboxError(503, "UNAVAILABLE", "The device is offline.")
        return device.routed_registry()
