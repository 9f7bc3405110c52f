"""Where a connected registry runs, behind one small protocol, so the deploy step never cares which.

A `DeploymentHost` can say what deployment it currently wants (`current`), take a new one
(`apply`), report whether what it runs matches that deployment (`status`), and explain what is
wrong when it does not (`diagnose`). The deploy step compares, applies only on a difference, and
waits on `status`; it reads the connected registry's Online state from ARM itself, since that is
the same for every host.

`IoTEdgeHost` (crlib.hosts.iotedge) is the implementation crlib ships: an IoT Edge device whose
deployment lives in its `$edgeAgent`/`$edgeHub` module twins, applied through IoT Hub.

Microsoft ended support for connected registries on IoT Edge on 2025-01-01; the supported host
is now an Azure Arc-enabled Kubernetes cluster, where the connected registry is the cluster
extension `Microsoft.ContainerRegistry.ConnectedRegistry`, its connection string a protected
configuration setting. An Arc host would implement the same four methods with
azure-mgmt-kubernetesconfiguration: `current` = the extension's configuration settings (in the
shape its `apply` takes), `apply` = create or update the extension, `status` = the extension's
provisioning state, `diagnose` = the extension's status messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class HostStatus:
    """Whether a host runs its current deployment: `ready` follows the host's documented rule."""

    ready: bool
    summary: str
    version: int | None = None
    modules: dict[str, str] = field(default_factory=dict)


class DeploymentHost(Protocol):
    label: str  # e.g. "IoT Edge device 'edge1' in hub 'hub1'", for messages
    resource_id: str  # what results name as the deployment's target, e.g. "<hub host>/devices/edge1"

    def current(self, parts: Iterable[str]) -> dict | None:
        """The deployment the host now wants, in the shape `apply` takes, limited to `parts`;
        None when it has none."""

    def apply(self, manifest: dict) -> None: ...

    def status(self) -> HostStatus: ...

    def diagnose(self) -> list[str]:
        """What stands between the host and a running deployment, one finding per line."""


def differences(current: dict | None, manifest: dict) -> list[str]:
    """Which parts (and, one level down, which modules or sections) differ, by name only: the
    values may be secrets."""
    if not current:
        return ["no deployment yet"]
    found = []
    for part, content in manifest.items():
        have = (current.get(part) or {}).get("properties.desired") or {}
        want = content.get("properties.desired") or {}
        if have == want:
            continue
        for key in sorted(set(have) | set(want)):
            if have.get(key) == want.get(key):
                continue
            inner_have, inner_want = have.get(key), want.get(key)
            if isinstance(inner_have, dict) and isinstance(inner_want, dict) and key in ("modules", "systemModules"):
                found += [f"{part} {key}.{name}" for name in sorted(set(inner_have) | set(inner_want))
                          if inner_have.get(name) != inner_want.get(name)]
            else:
                found.append(f"{part} {key}")
    return found
