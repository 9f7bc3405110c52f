"""Deploy the manifest to the device and wait until the connected registry runs; rotate its sync
password end to end.

The deployment goes to a `DeploymentHost` (crlib.hosts): an IoT Edge device today. The step
compares what the host already wants with the manifest and applies only on a difference, so a
second run writes nothing. Then it waits for two things: the host's documented success rule
(`$edgeAgent`: desired version applied, code 200, every module running its desired image) and
the connected registry, read from ARM, Active and Online (Syncing counts: a long first sync is
still a connected registry at work). When the apply starts a new connected registry module, the
connected registry must also show activity newer than before it, so a status left over from the
previous instance does not pass.
On timeout the StepTimeout carries a diagnosis: modules in backoff with their statusDescription,
the device's connection, the connected registry's statusDetails.
"""

from __future__ import annotations

import time

from msrest.exceptions import HttpOperationError

from ..context import RunContext
from ..errors import PreconditionFailed, StepFailed, StepTimeout
from ..hosts import DeploymentHost, differences
from ..hosts.iotedge import IoTEdgeHost
from ..results import Status, StepResult, combine
from .definition import get_or_none, text
from .hub import lookup_hub
from .manifest import CONNECTED_REGISTRY_MODULE, build_manifest, ensure_manifest, validate_manifest
from .settings import rotate_sync_password

STEP = "deploy"
ONLINE_STATES = ("Online", "Syncing")
DEFAULT_TIMEOUT = 900.0  # image pulls and the first activation can take minutes on a real device
_FIRST_DELAY, _MAX_DELAY = 0.2, 5.0


def deployment_host(ctx: RunContext, *, required: bool = True) -> DeploymentHost | None:
    """The site's host, reached through the hub's owner key read from Azure; None when the hub
    does not exist and `required` is false (plan mode)."""
    hub = lookup_hub(ctx, required=required)
    if hub is None:
        return None
    return IoTEdgeHost(ctx.clients, hub.connection_string, ctx.site.device.id, hub_name=hub.name)


def fetch_connected_registry(ctx: RunContext):
    """The site's connected registry as ARM shows it now, or None."""
    site = ctx.site
    return get_or_none(lambda: ctx.clients.acr.connected_registries.get(
        site.resource_group, site.registry.name, site.connected_registry.name))


def _is_running(cr, active_after) -> bool:
    if cr is None or cr.connection_state not in ONLINE_STATES or cr.activation is None \
            or cr.activation.status != "Active":
        return False
    return active_after is None or (cr.last_activity_time is not None and cr.last_activity_time > active_after)


def _registry_findings(ctx: RunContext, cr) -> list[str]:
    name = ctx.site.connected_registry.name
    if cr is None:
        return [f"connected registry '{name}' does not exist"]
    activation = text(cr.activation.status) if cr.activation else "unknown"
    findings = [f"connected registry '{name}' is {text(cr.connection_state)} and {activation}"]
    findings += [f"connected registry statusDetails {d.code}: {d.description}" for d in cr.status_details or []]
    return findings


def wait_for_deployment(ctx: RunContext, *, timeout: float = DEFAULT_TIMEOUT, host: DeploymentHost | None = None,
                        active_after=None) -> dict:
    """Wait until the host runs its deployment and the connected registry is Active and Online
    (with activity after `active_after`, when given); raise StepTimeout with a diagnosis."""
    host = host or deployment_host(ctx)
    started = time.monotonic()
    delay = _FIRST_DELAY
    while True:
        status = host.status()
        cr = fetch_connected_registry(ctx) if status.ready else None
        if status.ready and _is_running(cr, active_after):
            return {"desired_version": status.version, "modules": status.modules,
                    "connection_state": text(cr.connection_state),
                    "login_server_host": cr.login_server.host if cr.login_server else None,
                    "waited_s": round(time.monotonic() - started, 2)}
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            diagnosis = host.diagnose() + _registry_findings(ctx, cr or fetch_connected_registry(ctx))
            waiting_for = status.summary if not status.ready else "the connected registry to be Online and Active"
            raise StepTimeout(STEP, f"{host.label} did not settle within {timeout:g} s: waiting for {waiting_for}",
                              diagnosis=diagnosis)
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, _MAX_DELAY)


def ensure_deployment(ctx: RunContext, *, plan: bool = False, timeout: float = DEFAULT_TIMEOUT,
                      manifest: dict | None = None) -> StepResult:
    """Apply the manifest (by default the one built from the parameters) when the device wants
    something else, then wait until it runs. A given manifest is validated the same way."""
    host = deployment_host(ctx, required=not plan)
    if manifest is None:
        try:
            manifest = build_manifest(ctx)
        except PreconditionFailed:
            if not plan:
                raise
            return StepResult(STEP, Status.PLANNED, changes=[
                f"apply the deployment manifest to IoT Edge device '{ctx.site.device.id}' once its inputs exist",
                f"wait until connected registry '{ctx.site.connected_registry.name}' is Online"])
    validate_manifest(manifest)
    try:
        current = host.current(manifest) if host else None
    except HttpOperationError as exc:
        if not plan:
            raise StepFailed(STEP, f"could not read the deployment of {host.label}: {exc}", error=exc) from exc
        current = None
    diffs = differences(current, manifest)
    label = host.label if host else f"IoT Edge device '{ctx.site.device.id}'"
    changes = [f"apply the deployment manifest to {label} ({', '.join(diffs)})"] if diffs else []
    modules = sorted(manifest["$edgeAgent"]["properties.desired"].get("modules") or {})
    if plan:
        return StepResult(STEP, Status.PLANNED if changes else Status.UNCHANGED, changes=changes,
                          details={"modules": modules})
    active_after = None
    if diffs:
        if {"no deployment yet", f"$edgeAgent modules.{CONNECTED_REGISTRY_MODULE}"} & set(diffs):
            # A new module instance must activate: a status from before the apply does not count.
            before = fetch_connected_registry(ctx)
            active_after = before.last_activity_time if before is not None else None
        try:
            host.apply(manifest)
        except HttpOperationError as exc:
            raise StepFailed(STEP, f"IoT Hub refused the deployment for {host.label}: {exc}", error=exc) from exc
    outcome = wait_for_deployment(ctx, timeout=timeout, host=host, active_after=active_after)
    ctx.state[STEP] = {"device_id": ctx.site.device.id, "desired_version": outcome["desired_version"],
                       "login_server_host": outcome["login_server_host"]}
    status = Status.UNCHANGED if not diffs else Status.CREATED if current is None else Status.UPDATED
    return StepResult(STEP, status, [host.resource_id], changes=changes,
                      details=outcome | {"manifest_modules": modules})


def rotate_credentials(ctx: RunContext, *, plan: bool = False, timeout: float = DEFAULT_TIMEOUT) -> StepResult:
    """A new sync password (the settings step generates and stores it), a manifest that carries it,
    a redeployment, and the wait until the connected registry is Online with it."""
    if not plan:
        # Once the password changes the device's old one is refused: check everything the
        # redeploy needs (host, pull access, a valid manifest) before rotating.
        deployment_host(ctx)
        if ensure_manifest(ctx, plan=True).changes:
            ensure_manifest(ctx)
        validate_manifest(build_manifest(ctx, record=True))
    rotated = rotate_sync_password(ctx, plan=plan)
    if plan:
        follow_up = StepResult("rotate", Status.PLANNED, changes=[
            f"rebuild the deployment manifest with the new sync password and apply it to IoT Edge device "
            f"'{ctx.site.device.id}'",
            f"wait until connected registry '{ctx.site.connected_registry.name}' is Online with it"])
        return combine("rotate", [rotated, follow_up], plan=True)
    rebuilt = ensure_manifest(ctx)
    deployed = ensure_deployment(ctx, timeout=timeout)
    return combine("rotate", [rotated, rebuilt, deployed], plan=False)
