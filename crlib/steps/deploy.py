"""Steps 'deploy' and 'rotate': run the deployment on the site's host and wait until the connected
registry runs; rotate its sync password end to end.

The deployment goes to a `DeploymentHost` (crlib.hosts: an IoT Edge device today); this module
knows nothing of the host's kind. The plan compares what the host already wants with the
deployment and applies only on a difference (one change), so a second run writes nothing. Then
`finish` waits for two things: the host's documented success rule (`status`) and the connected
registry, read from ARM, Active and Online (Syncing counts: a long first sync is still a connected
registry at work). When the apply starts a new connected registry instance, the connected registry
must also show activity newer than just before the apply, so a status left over from the
previous instance does not pass. On timeout the StepTimeout carries a diagnosis: the host's
findings (modules in backoff with their statusDescription, the device's connection) and the
connected registry's statusDetails.

Rotation checks everything the redeploy needs before the password changes, because from then on
the device's old password is refused: the host can be reached, the module pull credential works
(repaired first when it does not), and the deployment's record is valid. Then the sync password
is regenerated and the connection string rebuilt (crlib.azure.sync_credentials), the deployment
rebuilt with it and applied, and the wait is the deploy step's.
"""

from __future__ import annotations

import datetime as dt
import time
from functools import partial
from typing import Any

from .. import progress
from ..azure import readers
from ..azure.inputs import refusal
from ..azure.pull_access import plan_pull_access
from ..azure.sync_credentials import plan_sync_credentials
from ..context import RunContext
from ..errors import PreconditionFailed, StepTimeout
from ..hosts import DeploymentHost, host_for
from ..plans import Action, FieldChange, StepPlan, combine_plans
from ..results import Status, StepResult

STEP = "deploy"
ROTATE_STEP = "rotate"
ONLINE_STATES = ("Online", "Syncing")
DEFAULT_TIMEOUT = 900.0  # image pulls and the first activation can take minutes on a real device
_FIRST_DELAY, _MAX_DELAY = 0.2, 5.0
ACTIVE_AFTER = "active_after"  # StepPlan.made key: the connected registry's last activity before the apply

# Moved to crlib.azure.readers; kept for callers that import it from here.
fetch_connected_registry = readers.connected_registry


def deployment_host(ctx: RunContext, *, required: bool = True) -> DeploymentHost:
    """The site's host; with `required`, PreconditionFailed unless it can be reached."""
    return host_for(ctx, step=STEP, required=required)


# -- waiting ----------------------------------------------------------------------------------------
def _is_running(cr: Any, active_after: dt.datetime | None) -> bool:
    if cr is None or cr.connection_state not in ONLINE_STATES or cr.activation is None \
            or cr.activation.status != "Active":
        return False
    return active_after is None or (cr.last_activity_time is not None and cr.last_activity_time > active_after)


def _registry_findings(ctx: RunContext, cr: Any) -> list[str]:
    name = ctx.site.connected_registry.name
    if cr is None:
        return [f"connected registry '{name}' does not exist"]
    activation = readers.text(cr.activation.status) if cr.activation else "unknown"
    findings = [f"connected registry '{name}' is {readers.text(cr.connection_state)} and {activation}"]
    findings += [f"connected registry statusDetails {d.code}: {d.description}" for d in cr.status_details or []]
    return findings


def _waiting_reason(ctx: RunContext, host: DeploymentHost, status: Any, cr: Any) -> str:
    """What the deployment wait is waiting for now, in a line: the host's state (with its modules'
    states) until it runs the deployment, then the connected registry's."""
    if not status.ready:
        modules = ", ".join(f"{name}: {state}" for name, state in sorted(status.modules.items()))
        return f"waiting for {host.label}: {status.summary}" + (f" ({modules})" if modules else "")
    name = ctx.site.connected_registry.name
    if cr is None:
        return f"waiting for connected registry '{name}' to appear"
    activation = readers.text(cr.activation.status) if cr.activation else "unknown"
    return f"waiting for connected registry '{name}' to be Online and Active with new activity (now " \
           f"{readers.text(cr.connection_state)}, {activation})"


def wait_for_deployment(ctx: RunContext, *, timeout: float = DEFAULT_TIMEOUT, host: DeploymentHost | None = None,
                        active_after: dt.datetime | None = None, step: str = STEP) -> dict:
    """Wait until the host runs its deployment and the connected registry is Active and Online
    (with activity after `active_after`, when given); raise StepTimeout with a diagnosis."""
    host = host or host_for(ctx, step=step)
    started = time.monotonic()
    delay = _FIRST_DELAY
    was_ready: bool | None = None  # None: the first look
    while True:
        status = host.status()
        # A connected registry cannot be Online the moment its host turns ready: it has not synced yet.
        # Its first read (one of ARM's reads, which a fleet runs short of) then waits a poll; a host
        # ready at the first look (a re-run) is read at once.
        cr = readers.connected_registry(ctx) if status.ready and was_ready is not False else None
        was_ready = status.ready
        if cr is not None and _is_running(cr, active_after):
            progress.done_waiting(step)
            return {"desired_version": status.version, "modules": status.modules,
                    "connection_state": readers.text(cr.connection_state),
                    "login_server_host": cr.login_server.host if cr.login_server else None,
                    "waited_s": round(time.monotonic() - started, 2)}
        remaining = timeout - (time.monotonic() - started)
        progress.note(step, _waiting_reason(ctx, host, status, cr))
        if remaining <= 0:
            progress.done_waiting(step)
            diagnosis = host.diagnose() + _registry_findings(ctx, cr or readers.connected_registry(ctx))
            waiting_for = status.summary if not status.ready else "the connected registry to be Online and Active"
            raise StepTimeout(step, f"{host.label} did not settle within {timeout:g} s: waiting for {waiting_for}",
                              diagnosis=diagnosis)
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, _MAX_DELAY)


# -- applying ---------------------------------------------------------------------------------------
def _apply(ctx: RunContext, host: DeploymentHost, deployment: dict, differences: list[str], plan: StepPlan) -> None:
    """Apply; when that starts a new connected registry instance, note its last activity just before."""
    if host.starts_new_registry(differences):
        before = readers.connected_registry(ctx)
        plan.made[ACTIVE_AFTER] = before.last_activity_time if before is not None else None
    host.apply(deployment)


def _waiting_for_inputs(ctx: RunContext, host: DeploymentHost, missing: PreconditionFailed) -> StepPlan:
    """Before the host, the registry or a secret exists: what will happen, blocked until it can."""
    plan = StepPlan(STEP, blocked_by=missing)
    plan.add(Action.CREATE, "deployment", host.name,
             f"apply the deployment manifest to {host.name} once its inputs exist")
    plan.add(Action.RUN, "connected registry", ctx.site.connected_registry.name,
             f"wait until connected registry '{ctx.site.connected_registry.name}' is Online")
    return plan


def _deployment(host: DeploymentHost, manifest: dict | None, *,
                record: bool = False) -> tuple[dict | None, PreconditionFailed | None]:
    """The deployment to run (the one given, or the host's own), and what an earlier step has not
    made yet (the host's place, the registry, a secret)."""
    missing = refusal(host.check)
    if manifest is not None or missing is not None:
        return manifest, missing
    try:
        return host.desired(record=record), None
    except PreconditionFailed as exc:
        return None, exc


def plan_deployment(ctx: RunContext, *, timeout: float = DEFAULT_TIMEOUT, manifest: dict | None = None) -> StepPlan:
    """Apply the deployment (by default the one the host composes from the parameters) when the
    host wants something else; `finish` waits until it runs. A given manifest is validated the same way."""
    host = host_for(ctx, step=STEP, required=False)
    deployment, missing = _deployment(host, manifest)
    if deployment is not None:
        host.validate(deployment)
    if missing is not None:
        return _waiting_for_inputs(ctx, host, missing)
    assert deployment is not None  # given, or composed: _deployment names what is missing otherwise
    current = host.current(deployment)
    differences = host.differences(current, deployment)
    modules = host.modules(deployment)
    plan = StepPlan(STEP, resource_ids=[host.resource_id], details={"modules": modules}, created=current is None)
    plan.finish = partial(_deployed, ctx, host, timeout, modules)
    if differences:
        plan.add(Action.CREATE if current is None else Action.UPDATE, "deployment", host.name,
                 f"apply the deployment manifest to {host.label} ({', '.join(differences)})",
                 fields=[FieldChange(d, None if current is None else "deployed", "desired") for d in differences],
                 call=partial(_apply, ctx, host, deployment, differences, plan))
    return plan


def _deployed(ctx: RunContext, host: DeploymentHost, timeout: float, modules: list[str], plan: StepPlan) -> StepResult:
    outcome = wait_for_deployment(ctx, timeout=timeout, host=host, active_after=plan.made.get(ACTIVE_AFTER))
    return StepResult(STEP, plan.applied_status(), list(plan.resource_ids), plan.summaries,
                      details=outcome | {"manifest_modules": modules})


def ensure_deployment(ctx: RunContext, *, plan: bool = False, timeout: float = DEFAULT_TIMEOUT,
                      manifest: dict | None = None) -> StepResult:
    return plan_deployment(ctx, timeout=timeout, manifest=manifest).outcome(plan=plan)


# -- rotation ---------------------------------------------------------------------------------------
def _unready(host: DeploymentHost) -> PreconditionFailed | None:
    """What the redeploy after a rotation would lack: the host, or the registry its record needs.
    An invalid record is refused (ManifestInvalid) here, before the password changes."""
    record, missing = _deployment(host, None, record=True)
    if record is not None:
        host.validate(record)
    return missing


def _redeploy(ctx: RunContext, host: DeploymentHost, plan: StepPlan) -> None:
    """The deployment rebuilt with the new password (read from the store), validated, applied."""
    deployment = host.desired()
    host.validate(deployment)
    differences = host.differences(host.current(deployment), deployment)
    if differences:
        _apply(ctx, host, deployment, differences, plan)


def _plan_redeploy(ctx: RunContext, host: DeploymentHost, timeout: float) -> StepPlan:
    plan = StepPlan(ROTATE_STEP)
    name = ctx.site.connected_registry.name
    plan.add(Action.UPDATE, "deployment", host.name, f"rebuild the deployment manifest with the new sync password "
             f"and apply it to {host.name}", call=partial(_redeploy, ctx, host, plan))

    def wait() -> None:
        plan.made["outcome"] = wait_for_deployment(ctx, timeout=timeout, host=host, step=ROTATE_STEP,
                                                   active_after=plan.made.get(ACTIVE_AFTER))

    plan.add(Action.RUN, "connected registry", name, f"wait until connected registry '{name}' is Online with it",
             call=wait)
    return plan


def plan_rotation(ctx: RunContext, *, timeout: float = DEFAULT_TIMEOUT) -> StepPlan:
    """A new sync password, a deployment that carries it, applied, and the wait until the connected
    registry is Online with it. The pull credential's repairs come first, before the password changes."""
    host = host_for(ctx, step=ROTATE_STEP, required=False)
    unready = _unready(host)
    pull = plan_pull_access(ctx, ROTATE_STEP, readers.registry(ctx)) if ctx.site.host.kind == "iotedge" \
        else StepPlan(ROTATE_STEP)
    sync = plan_sync_credentials(ctx, ROTATE_STEP, rotate=True)
    redeploy = _plan_redeploy(ctx, host, timeout)
    plan = combine_plans(ROTATE_STEP, [pull, sync, redeploy])
    plan.blocked_by = unready or plan.blocked_by
    plan.created = False

    def finish(done: StepPlan) -> StepResult:
        rotated = sync.finish(sync) if sync.finish else sync.preview()
        return StepResult(ROTATE_STEP, Status.UPDATED, [*done.resource_ids, host.resource_id], done.summaries,
                          done.secrets | rotated.secrets, done.details | redeploy.made.get("outcome", {}))

    plan.finish = finish
    return plan


def rotate_credentials(ctx: RunContext, *, plan: bool = False, timeout: float = DEFAULT_TIMEOUT) -> StepResult:
    return plan_rotation(ctx, timeout=timeout).outcome(plan=plan)
