"""The simulated devices of one sandbox (`sandbox.edge`): one running EdgeDevice per provisioned
record, kept in step with the records by a background task."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from . import models
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
