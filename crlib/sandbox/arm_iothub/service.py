"""Microsoft.Devices/IotHubs on the main port's ARM router. Each hub's service API is served by
..iothub_service on a port of the hub's own, which this service opens and reopens."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.arm import ARM
from ..core.service import Routes, Service
from ..iothub_service.urls import ROUTER as HUB_SERVICE_API
from . import models, operations, urls

if TYPE_CHECKING:
    from ..runtime import Sandbox


def reopen_listeners(sandbox: Sandbox) -> None:
    """At startup, give every hub its port back; one that was taken meanwhile moves the hub."""
    for doc in sandbox.store.by_type(models.HUB_TYPE):
        wanted = doc["_sandbox"]["port"]
        port = sandbox.open_listener(HUB_SERVICE_API, key=doc["id"], port=wanted)
        if port != wanted:
            models.save(sandbox.store, models.attach_port(doc, port))


SERVICE = Service(name="arm_iothub", routes=[Routes(ARM, urls.URLS)], operation_kinds=operations.KINDS,
                  on_start=reopen_listeners)
