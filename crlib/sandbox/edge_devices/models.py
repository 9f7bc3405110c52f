"""Provisioned edge devices, as the sandbox keeps them.

A record holds what a real device keeps in /etc/aziot/config.toml (its connection string), the
port that stands for its host's API proxy port (reserved at provisioning, so its address is known
before anything runs and stays the same across restarts), where its own CA chain lives, and what
it last applied. It is keyed under its hub, so deleting the hub deletes it.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import SandboxError
from ..core.http import free_loopback_port
from ..iothub_service.urls import ROUTER as HUB_SERVICE_API
from . import device_ca

if TYPE_CHECKING:
    from ..runtime import Sandbox

EDGE_DEVICE = "edge.device"
# The role of a device endpoint's listener on the registry data plane's router.
ENDPOINT_ROLE = "device"


def parse_connection_string(text: str, *, required: tuple[str, ...]) -> dict[str, str]:
    """'A=1;B=2' -> {'A': '1', 'B': '2'}; values may contain '=' (base64 keys do)."""
    parts = {}
    for item in text.strip().split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise SandboxError(400, "InvalidConnectionString", f"'{key}' is not a Key=Value pair")
        parts[key.strip()] = value.strip()
    missing = [k for k in required if not parts.get(k)]
    if missing:
        raise SandboxError(400, "InvalidConnectionString", f"the connection string lacks {', '.join(missing)}")
    return parts


def hub_for_host(sandbox: Sandbox, host_name: str) -> str | None:
    """The hub id whose service API answers at host_name (127.0.0.1:<port>)."""
    host, _, port = host_name.rpartition(":")
    if host not in ("127.0.0.1", "localhost") or not port.isdigit():
        return None
    listener = sandbox.hosts.get(int(port))
    return listener.key if listener and listener.router.spec is HUB_SERVICE_API else None


def device_record_key(hub_id: str, device_id: str) -> str:
    return f"{hub_id}/edge/{device_id}".lower()


def provision(sandbox: Sandbox, connection_string: str) -> dict:
    """Configure a simulated device with its connection string, as `iotedge config mp` does.

    Only the string's shape is checked here; whether the hub accepts it is found out when the
    device connects, as on a real device.
    """
    parts = parse_connection_string(connection_string, required=("HostName", "DeviceId", "SharedAccessKey"))
    try:
        base64.b64decode(parts["SharedAccessKey"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SandboxError(400, "InvalidConnectionString", "SharedAccessKey is not base64") from exc
    hub_id = hub_for_host(sandbox, parts["HostName"])
    key = device_record_key(hub_id or parts["HostName"], parts["DeviceId"])
    record = sandbox.store.get(key) or {"deviceId": parts["DeviceId"], "endpointPort": None}
    record.update(hostName=parts["HostName"], hubId=hub_id, connectionString=connection_string, key=key)
    if not record.get("endpointPort"):
        record["endpointPort"] = reserve_port(sandbox)
    device_ca.ensure(ca_directory(sandbox, record), record["deviceId"])
    sandbox.store.put(key, EDGE_DEVICE, record, parent=hub_id)
    return record


def reserve_port(sandbox: Sandbox) -> int:
    """A free loopback port for the device's address (the port is bound only while the API proxy
    publishes it; until then nothing answers there)."""
    return free_loopback_port(set(sandbox.hosts) | {r.get("endpointPort") for r in records(sandbox)})


def ca_directory(sandbox: Sandbox, record: dict) -> Path:
    return device_ca.directory_for(sandbox.state_dir, record["key"], record["deviceId"])


def address(record: dict) -> str:
    """The device's address as its operator knows it: host and the API proxy's published port."""
    return f"127.0.0.1:{record['endpointPort']}"


def find_by_port(sandbox: Sandbox, port: int) -> dict | None:
    return next((r for r in records(sandbox) if r.get("endpointPort") == port), None)


def records(sandbox: Sandbox) -> list[dict]:
    return sandbox.store.by_type(EDGE_DEVICE)


def public_view(sandbox: Sandbox, record: dict, runtime_state: dict | None) -> dict:
    """What the admin API shows of a device: never its connection string. `address` is where the
    API proxy answers once it runs with the documented port settings; `listening` says whether it
    does now."""
    root = device_ca.DeviceCA(ca_directory(sandbox, record)).root_cert
    view = {"deviceId": record["deviceId"], "hub": record["hostName"], "hostName": record["hostName"],
            "address": address(record), "ca_cert": str(root.resolve()),
            "parentHostname": record.get("parentHostname"),
            "listening": sandbox.listener_port(record["key"], ENDPOINT_ROLE) is not None}
    return view | (runtime_state or {})
