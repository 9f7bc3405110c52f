"""The edge device as IoT Hub knows it: its address, its connection string, and a nested device's
parent host. Shared by the device and provisioning steps and the host provisioning script."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ParameterError
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
    """A nested device's parent host: the parent device's address, which the operator knows because
    they provisioned it (`device.parent_address`; the sandbox knows its simulated parent). Azure
    reports no route to a device: a connected registry's loginServer names none."""
    if ctx.site.connected_registry.parent is None:
        raise ParameterError("connected_registry.parent", "device.parent_device makes this a nested device; name the "
                                                          "parent connected registry, whose device it reaches")
    address = ctx.profile.parent_address(ctx.site)
    if not address:
        raise ParameterError("device.parent_address", f"nested device '{ctx.site.device.id}' reaches its parent "
                                                      f"device '{ctx.site.device.parent_device}' there; give its "
                                                      "host[:port]")
    return address
