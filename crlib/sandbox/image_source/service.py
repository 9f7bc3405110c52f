"""The image source's listener (role "source" on the registry data plane's router) and its seed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.service import Service
from ..registry_dataplane import responses as registry_responses
from ..registry_dataplane.urls import ROUTER as REGISTRY_HOST
from . import models

if TYPE_CHECKING:
    from ..core.http import Call
    from ..runtime import Sandbox


def resolve(call: Call) -> tuple[str, models.SourceAuthority]:
    models.ensure_seeded(call.sandbox)
    return models.NAMESPACE, models.SourceAuthority(models.host(call.sandbox))


def open_listener(sandbox: Sandbox) -> None:
    """Listen on the port of the last run where possible; no resource owns it, so reset keeps it."""
    if sandbox.listener_port(None, models.ROLE) is not None:
        return
    wanted = sandbox.settings.extra.get(models.PORT_SETTING, 0)
    port = sandbox.open_listener(REGISTRY_HOST, None, wanted, role=models.ROLE)
    if sandbox.settings.extra.get(models.PORT_SETTING) != port:
        sandbox.settings.extra[models.PORT_SETTING] = port
        sandbox.settings.save(sandbox.state_dir)


def register_resolver(sandbox: Sandbox) -> None:
    registry_responses.RESOLVERS[models.ROLE] = resolve


def start(sandbox: Sandbox) -> None:
    open_listener(sandbox)
    models.ensure_seeded(sandbox)


SERVICE = Service(name="image_source", on_init=register_resolver, on_start=start)
