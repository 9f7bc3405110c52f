"""The cluster agents: register the connected registry extension's installer on the extension seam
and the forward's resolver on the registry router, and run the agents in the background. After
the registries, hubs and Arc providers (whose state they use)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..arm_kubernetesconfiguration import models as extensions
from ..core.arm import OPEN
from ..core.service import Routes, Service
from ..registry_dataplane import responses as registry_responses
from . import install, releases, responses, urls
from .agent import agents

if TYPE_CHECKING:
    from ..runtime import Sandbox


def _running(sandbox: Sandbox, ext_id: str) -> bool:
    return agents(sandbox).running(ext_id)


def init(sandbox: Sandbox) -> None:
    if install.install not in extensions.INSTALLERS:
        extensions.INSTALLERS.append(install.install)
    if _running not in extensions.RUNNING:
        extensions.RUNNING.append(_running)
    registry_responses.RESOLVERS[releases.FORWARD_ROLE] = responses.forward_endpoint


def start(sandbox: Sandbox) -> None:
    agents(sandbox).start()


async def stop(sandbox: Sandbox) -> None:
    await agents(sandbox).stop()


SERVICE = Service(name="arc_clusters", routes=[Routes(OPEN, urls.URLS)], on_init=init, on_start=start, on_stop=stop)
