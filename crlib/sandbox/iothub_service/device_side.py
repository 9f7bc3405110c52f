"""What a device (or one of its modules) does to its hub, as plain functions over the store.

Real devices reach these over MQTT or AMQP; the sandbox's simulated device calls them directly,
or over HTTPS with its own SAS token (GET and PATCH /twins/<id>[/modules/<id>]). Each call is one
transaction, so it is safe outside a request handler too.
"""

from __future__ import annotations

from . import configurations, models, twins


def _load(sandbox, hub_id: str, device_id: str, module_id: str | None) -> dict:
    if module_id is None:
        return models.get_device(sandbox.store, hub_id, device_id)
    return models.get_module(sandbox.store, hub_id, device_id, module_id)


def _save(sandbox, hub_id: str, doc: dict) -> None:
    if "moduleId" in doc:
        models.save_module(sandbox.store, hub_id, doc)
    else:
        models.save_device(sandbox.store, hub_id, doc)


def twin(sandbox, hub_id: str, device_id: str, module_id: str | None = None) -> dict:
    """The twin as the service API shows it."""
    return twins.view(_load(sandbox, hub_id, device_id, module_id))


def desired(sandbox, hub_id: str, device_id: str, module_id: str | None = None) -> dict:
    """The desired properties, with their $version and $metadata, as a device receives them."""
    return twin(sandbox, hub_id, device_id, module_id)["properties"]["desired"]


def report(sandbox, hub_id: str, device_id: str, module_id: str | None, patch: dict) -> int:
    """Merge a patch into the reported properties (null deletes); returns their new $version."""
    with sandbox.store.transaction():
        doc = _load(sandbox, hub_id, device_id, module_id)
        now = models.now(sandbox)
        version = twins.report(doc["twin"], patch, now)
        doc["lastActivityTime"] = now
        _save(sandbox, hub_id, doc)
        # Target conditions may test reported properties.
        configurations.reconcile(sandbox, hub_id)
    return version


def set_connection_state(sandbox, hub_id: str, device_id: str, module_id: str | None, connected: bool) -> None:
    """A device or module connects or disconnects."""
    with sandbox.store.transaction():
        doc = _load(sandbox, hub_id, device_id, module_id)
        now = models.now(sandbox)
        state = "Connected" if connected else "Disconnected"
        if doc["connectionState"] != state:
            doc.update(connectionState=state, connectionStateUpdatedTime=now)
        doc["lastActivityTime"] = now
        _save(sandbox, hub_id, doc)
