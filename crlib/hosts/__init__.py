"""Where a connected registry runs, behind one protocol, so the deploy, rotate and teardown steps
never care which.

A `DeploymentHost` composes the deployment it should run from the parameters and the secret store
(`desired`, with `record=True` the copy results carry, secrets as references) and validates one
(`validate`). It reads what it now wants (`current`), names the `differences` from a deployment by
part only (values may be secrets), says whether they start a new connected registry instance
(`starts_new_registry`, so a status left from the old one does not count), takes a deployment
(`apply`), reports whether it runs it (`status`) and explains what is wrong when it does not
(`diagnose`). For teardown it gives the changes that remove its identity (`removal`). Its reads and
writes raise crlib's errors: an SDK's refusal is `StepFailed` naming the step that called it.

`host_for(ctx, step=...)` gives the site's host. It reads nothing: `check()` raises
PreconditionFailed while the place the host lives in does not exist yet (an IoT hub), which
`host_for(..., required=True)` calls. The deploy step reads the connected registry's Online state
from ARM itself, since that is the same for every host.

`IoTEdgeHost` (crlib.hosts.iotedge) is the implementation crlib ships: an IoT Edge device whose
deployment lives in its `$edgeAgent`/`$edgeHub` module twins, applied through IoT Hub, with the
manifest of crlib.hosts.iotedge_manifest.

`ArcHost` (crlib.hosts.arc) is the supported host: an Azure Arc-enabled Kubernetes cluster, where
the connected registry is the cluster extension `Microsoft.ContainerRegistry.ConnectedRegistry`
and its connection string a protected setting. Its deployment is the extension's properties;
`apply` creates or updates the extension, `status` follows its provisioning state and statuses,
`removal` deletes it. Microsoft ended support for connected registries on IoT Edge; that host
stays for the sites that run it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..context import RunContext
    from ..plans import Change


@dataclass
class HostStatus:
    """Whether a host runs its current deployment: `ready` follows the host's documented rule."""

    ready: bool
    summary: str
    version: int | None = None
    modules: dict[str, str] = field(default_factory=dict)


class DeploymentHost(Protocol):
    name: str  # e.g. "IoT Edge device 'edge1'": known from the parameters alone
    label: str  # e.g. "IoT Edge device 'edge1' in IoT hub 'hub1'", for messages

    @property
    def resource_id(self) -> str:
        """What results name as the deployment's target, e.g. "<hub host>/devices/edge1"."""
        ...

    def check(self) -> None:
        """Raise PreconditionFailed while the host cannot be reached (where it lives is missing)."""

    def desired(self, *, record: bool = False) -> dict:
        """The deployment this site's parameters and stored secrets make; PreconditionFailed while
        an input is missing. With `record`, every secret is a reference to its store entry."""
        ...

    def validate(self, deployment: dict) -> None:
        """Raise ManifestInvalid (a PreconditionFailed) listing every problem."""

    def modules(self, deployment: dict) -> list[str]:
        """The modules a deployment runs besides the host's own."""
        ...

    def images(self, deployment: dict) -> dict[str, str | None]:
        """Module name -> image, for every module the deployment names."""
        ...

    def current(self, parts: Iterable[str] | None = None) -> dict | None:
        """The deployment the host now wants, in the shape `apply` takes (limited to `parts`, e.g.
        a deployment's keys); None when it has none."""
        ...

    def differences(self, current: dict | None, desired: dict) -> list[str]:
        """What differs between two deployments, by name only; empty when they are the same."""
        ...

    def starts_new_registry(self, differences: list[str]) -> bool:
        """Whether applying a deployment with these differences starts a new connected registry."""
        ...

    def apply(self, deployment: dict) -> None: ...

    def status(self) -> HostStatus: ...

    def diagnose(self) -> list[str]:
        """What stands between the host and a running deployment, one finding per line."""
        ...

    def removal(self) -> list[Change]:
        """The deletes that remove the host's identity and the secrets that only served it
        (already gone: none); each change's call makes its delete."""
        ...


def host_for(ctx: RunContext, *, step: str, required: bool = True) -> DeploymentHost:
    """The site's host (`host.kind`: an IoT Edge device or an Arc cluster), raising crlib errors
    as `step`. With `required`, PreconditionFailed unless it can be reached now."""
    from .arc import ArcHost
    from .iotedge import IoTEdgeHost

    host: DeploymentHost = ArcHost(ctx, step=step) if ctx.site.host.kind == "arc" else IoTEdgeHost(ctx, step=step)
    if required:
        host.check()
    return host


def not_on_arc(ctx: RunContext, what: str) -> str | None:
    """Why a step is skipped on an Arc host (`what` it would make), or None on IoT Edge."""
    arc = ctx.site.host.arc
    if ctx.site.host.kind != "arc" or arc is None:
        return None
    return (f"host.kind arc: the connected registry runs as an extension on Arc cluster '{arc.cluster}'; "
            f"no {what} is used")


def digest(deployment: dict) -> str:
    """A deployment's sha256 (of its record, which carries no secret), as results name it."""
    return "sha256:" + hashlib.sha256(json.dumps(deployment, sort_keys=True).encode()).hexdigest()
