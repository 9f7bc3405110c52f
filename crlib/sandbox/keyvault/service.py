"""The key vault, on a port of its own. The port is kept in the settings, so `key_vault_url` stays the
same across restarts (and resets: no resource owns it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.service import Routes, Service
from . import models, urls

if TYPE_CHECKING:
    from ..runtime import Sandbox


def open_listener(sandbox: Sandbox) -> None:
    """Listen on the port of the last run where possible."""
    if sandbox.listener_port(None, urls.ROLE) is not None:
        return
    wanted = sandbox.settings.extra.get(models.PORT_SETTING, 0)
    port = sandbox.open_listener(urls.ROUTER, None, wanted, role=urls.ROLE)
    if sandbox.settings.extra.get(models.PORT_SETTING) != port:
        sandbox.settings.extra[models.PORT_SETTING] = port
        sandbox.settings.save(sandbox.state_dir)


SERVICE = Service(name="keyvault", routes=[Routes(urls.ROUTER, urls.URLS)], on_start=open_listener)
