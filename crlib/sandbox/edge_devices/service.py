"""Simulated IoT Edge devices: their admin routes on the main port, their device endpoints on the
registry data plane's router, and the background task that runs them. They start last, once hubs
and registries listen again."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.arm import OPEN
from ..core.service import Routes, Service
from ..registry_dataplane import responses as registry_responses
from . import responses, urls
from .fleet import EdgeRuntime
from .models import ENDPOINT_ROLE

if TYPE_CHECKING:
    from ..runtime import Sandbox


def init(sandbox: Sandbox) -> None:
    sandbox.edge = EdgeRuntime(sandbox)
    registry_responses.RESOLVERS[ENDPOINT_ROLE] = responses.device_endpoint


def start(sandbox: Sandbox) -> None:
    sandbox.edge.start()


async def stop(sandbox: Sandbox) -> None:
    await sandbox.edge.stop()


SERVICE = Service(name="edge_devices", routes=[Routes(OPEN, urls.URLS)], on_init=init, on_start=start,
                  on_stop=stop)
