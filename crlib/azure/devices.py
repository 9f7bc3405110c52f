"""The edge device as IoT Hub knows it: its address, its connection string, and a nested device's
parent host. Shared by the device and provisioning steps and the host provisioning script."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ParameterError, PreconditionFailed
from . import readers

if TYPE_CHECKING:
    from ..context import RunContext


def device_address(hub: readers.HubAccess, device_id: str) -> str:
    """What results name a device by (IoT Hub device identities have no ARM id)."""
    return f"{hub.host_name}/devices/{device_id}"


def device_connection_string(hub: readers.HubAccess, device: Any) -> str:
    return (f"HostName={hub.host_name};DeviceId={device.device_id};"
            f"SharedAccessKey={device.authentication.symmetric_key.primary_key}")


def parent_device_endpoint(ctx: RunContext) -> str:
    """A nested device's parent host: the device endpoint its parent connected registry reports."""
    parent = ctx.site.connected_registry.parent
    if parent is None:
        raise ParameterError("connected_registry.parent", "device.parent_device makes this a nested device; name the "
                                                          "parent connected registry, whose device it reaches")
    registry = ctx.site.registry.name
    connected = readers.connected_registry(ctx, parent)
    if connected is None:
        raise PreconditionFailed("connected_registry.parent", f"connected registry '{parent}' does not exist in "
                                                              f"registry '{registry}'")
    host = connected.login_server.host if connected.login_server else None
    if not host:
        raise PreconditionFailed("connected_registry.parent", f"connected registry '{parent}' has not reported its "
                                                              "device endpoint yet; deploy it and wait until it is "
                                                              "Online")
    return str(host)
