"""The edge device: its identity in the hub, its provisioning, and whether its modules run.

The identity is an IoT Edge device with hub-generated SAS keys; for a nested device its parent
scope is the parent edge device's scope. Provisioning hands the device its connection string
(`iotedge config mp` + `apply`) through the target profile's provisioner, and is skipped once the
device is connected and its `$edgeAgent` reports. Readiness is read from the `$edgeAgent` twin.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ..azure import names, readers
from ..azure.devices import device_address, device_connection_string, parent_device_endpoint
from ..azure.errors import map_exceptions
from ..context import RunContext
from ..errors import PreconditionFailed
from ..hosts import not_on_arc
from ..plans import Action, FieldChange, StepPlan, skipped_plan
from ..results import Status, StepResult

EDGE_AGENT = "$edgeAgent"
AGENT_NO_DEPLOYMENT = 417  # $edgeAgent's code while the device has no deployment


def _parent_scopes(ctx: RunContext, manager: Any) -> list[str]:
    """A nested device's parent scope: the parent edge device's own scope."""
    parent_id = ctx.site.device.parent_device
    if not parent_id:
        return []
    parent = readers.device_identity(manager, parent_id)
    if parent is None or not parent.capabilities.iot_edge:
        problem = "does not exist" if parent is None else "is not an IoT Edge device"
        raise PreconditionFailed("device.parent_device", f"parent device '{parent_id}' {problem} in hub "
                                                         f"'{ctx.site.hub.name}'")
    return [parent.device_scope]


def _check_usable(ctx: RunContext, device: Any) -> None:
    if not device.capabilities.iot_edge:
        raise PreconditionFailed("device.id", f"device '{device.device_id}' exists in hub '{ctx.site.hub.name}' "
                                              "but is not an IoT Edge device; delete it or choose another device.id")
    if device.authentication.type != "sas":
        raise PreconditionFailed("device.id", f"device '{device.device_id}' authenticates with "
                                              f"{device.authentication.type}; the runbook provisions SAS keys")


# -- the identity -------------------------------------------------------------------------------------
def _plan_create(ctx: RunContext, plan: StepPlan, manager: Any, parent_scopes: list[str], summary: str) -> None:
    device_id = ctx.site.device.id

    def create() -> None:
        with map_exceptions("device", f"creating device '{device_id}'"):
            # Empty keys: the hub generates them.
            plan.made["device"] = manager.create_device_with_sas(device_id, "", "", "enabled", iot_edge=True,
                                                                 parent_scopes=parent_scopes or None)

    plan.created = True
    plan.add(Action.CREATE, "device identity", device_id, summary, call=create,
             fields=[FieldChange("status", None, "enabled"), FieldChange("parent_scopes", None, parent_scopes)])


def _plan_drift(ctx: RunContext, plan: StepPlan, manager: Any, device: Any, parent_scopes: list[str]) -> None:
    """Enable a disabled device and set its parent, keeping its keys."""
    device_id, parent_id = ctx.site.device.id, ctx.site.device.parent_device
    drift, fields = [], []
    if device.status != "enabled":
        drift.append(f"enable it (it is {device.status})")
        fields.append(FieldChange("status", device.status, "enabled"))
    if sorted(device.parent_scopes or []) != parent_scopes:
        drift.append(f"set its parent to '{parent_id}'" if parent_id else "remove its parent")
        fields.append(FieldChange("parent_scopes", sorted(device.parent_scopes or []), parent_scopes))
    if not drift:
        return
    keys = device.authentication.symmetric_key

    def update() -> None:
        with map_exceptions("device", f"updating device '{device_id}'"):
            plan.made["device"] = manager.update_device_with_sas(
                device_id, device.etag, keys.primary_key, keys.secondary_key, "enabled", iot_edge=True,
                device_scope=device.device_scope, parent_scopes=parent_scopes)

    plan.add(Action.UPDATE, "device identity", device_id, f"update device '{device_id}': {'; '.join(drift)}",
             fields=fields, call=update)


def plan_device(ctx: RunContext) -> StepPlan:
    """The edge-enabled device identity; its connection string as a secret. Skipped on an Arc host."""
    if reason := not_on_arc(ctx, "IoT Edge device identity"):
        return skipped_plan("device", reason)
    device_id, parent_id = ctx.site.device.id, ctx.site.device.parent_device
    create = f"create IoT Edge device identity '{device_id}' in hub '{ctx.site.hub.name}'" + (
        f" under parent device '{parent_id}'" if parent_id else "")
    plan = StepPlan("device")
    hub, plan.blocked_by = readers.or_blocker(lambda: readers.hub_access(ctx))
    if hub is None:  # the hub step has not run: the device will be created
        plan.add(Action.CREATE, "device identity", device_id, create)
        return plan
    manager = ctx.clients.registry_manager(hub)
    parent_scopes = _parent_scopes(ctx, manager)
    device = readers.device_identity(manager, device_id)
    plan.resource_ids.append(device_address(hub, device_id))
    plan.made["device"] = device
    plan.finish = partial(_device_result, ctx, hub)
    if device is None:
        _plan_create(ctx, plan, manager, parent_scopes, create)
        return plan
    _check_usable(ctx, device)
    plan.details |= {"device_scope": device.device_scope, "parent_device": parent_id}
    _plan_drift(ctx, plan, manager, device, parent_scopes)
    return plan


def _device_result(ctx: RunContext, hub: readers.HubAccess, plan: StepPlan) -> StepResult:
    """After the writes: the device's connection string into the secret store (unless it holds it)."""
    device = plan.made["device"]
    reference = ctx.keep_secret(names.DEVICE_SECRET, device_connection_string(hub, device))
    return StepResult("device", plan.applied_status(), list(plan.resource_ids), plan.summaries,
                      {names.DEVICE_SECRET: reference},
                      {"device_scope": device.device_scope, "parent_device": ctx.site.device.parent_device})


def ensure_device(ctx: RunContext, *, plan: bool = False) -> StepResult:
    return plan_device(ctx).outcome(plan=plan)


# -- provisioning -------------------------------------------------------------------------------------
def _provision_summary(device_id: str) -> str:
    return f"provision device '{device_id}' with its connection string (iotedge config mp, config apply)"


def _agent_twin(manager: Any, device_id: str) -> Any:
    return manager.get_module_twin(device_id, EDGE_AGENT)


def _plan_provisioner(ctx: RunContext, plan: StepPlan, hub: readers.HubAccess, device: Any,
                      parent_hostname: str | None) -> None:
    """The provisioner's call; a nested device also gets its parent's host (by default the parent
    connected registry's endpoint, which may not be known before that registry is deployed)."""
    device_id = ctx.site.device.id
    if ctx.site.device.parent_device and parent_hostname is None:
        parent_hostname, plan.blocked_by = readers.or_blocker(lambda: parent_device_endpoint(ctx))
    connection_string = device_connection_string(hub, device)

    def provision() -> None:
        plan.made["provisioner"] = ctx.profile.provisioner.provision(connection_string,
                                                                     parent_hostname=parent_hostname)

    plan.add(Action.RUN, "device", device_id, _provision_summary(device_id),
             fields=[FieldChange("parent_hostname", None, parent_hostname)] if parent_hostname else [], call=provision)
    plan.finish = partial(_provision_result, parent_hostname)


def plan_provision(ctx: RunContext, *, parent_hostname: str | None = None) -> StepPlan:
    """Give the device its connection string, unless it is already connected and reporting.
    A nested device also gets its parent's host (default: the parent connected registry's endpoint).
    Skipped on an Arc host (the cluster is connected with az connectedk8s; prerequisites checks it)."""
    if reason := not_on_arc(ctx, "IoT Edge device to provision"):
        return skipped_plan("provision", reason)
    device_id = ctx.site.device.id
    plan = StepPlan("provision")
    hub, plan.blocked_by = readers.or_blocker(lambda: readers.hub_access(ctx))
    manager = ctx.clients.registry_manager(hub) if hub else None
    device = readers.device_identity(manager, device_id) if manager else None
    if hub is None or device is None:  # an earlier step has not run: the device will be provisioned
        plan.blocked_by = plan.blocked_by or PreconditionFailed(
            "device.id", f"device '{device_id}' does not exist in hub '{ctx.site.hub.name}'; run the device step first")
        plan.add(Action.RUN, "device", device_id, _provision_summary(device_id))
        return plan
    plan.resource_ids.append(device_address(hub, device_id))
    if device.connection_state == "Connected" and (_agent_twin(manager, device_id).properties.reported or {}).get(
            "lastDesiredStatus"):
        plan.details["connection_state"] = "Connected"
        return plan
    _plan_provisioner(ctx, plan, hub, device, parent_hostname)
    return plan


def _provision_result(parent_hostname: str | None, plan: StepPlan) -> StepResult:
    outcome = plan.made.get("provisioner")
    if outcome is None:
        # Real hardware: nothing was written; the engineer runs the provisioning script.
        return StepResult("provision", Status.UNCHANGED, list(plan.resource_ids), details={
            "action_required": "run the host provisioning script (crlib.steps.provisioning) on the device",
            "parent_hostname": parent_hostname})
    return StepResult("provision", Status.UPDATED, list(plan.resource_ids), plan.summaries,
                      details={"provisioner": outcome, "parent_hostname": parent_hostname})


def provision_device(ctx: RunContext, *, plan: bool = False, parent_hostname: str | None = None) -> StepResult:
    return plan_provision(ctx, parent_hostname=parent_hostname).outcome(plan=plan)


# -- readiness ------------------------------------------------------------------------------------------
def _module_problems(reported: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    modules = {**(reported.get("systemModules") or {}), **(reported.get("modules") or {})}
    statuses = {name: m.get("runtimeStatus", "unknown") for name, m in modules.items() if m}
    problems = [f"{name}: {m.get('runtimeStatus')}" + (f" ({m['statusDescription']})" if m.get("statusDescription")
                                                       else "")
                for name, m in modules.items() if m and m.get("runtimeStatus") != "running"]
    return statuses, problems


def device_readiness(ctx: RunContext) -> dict[str, Any]:
    """Where the device stands, from its identity and `$edgeAgent` twin: `state` is one of
    missing, not provisioned, waiting for modules, ready, not ready; `diagnosis` says why."""
    device_id = ctx.site.device.id
    hub = readers.hub_access(ctx)
    assert hub is not None  # required: PreconditionFailed when the hub is missing
    manager = ctx.clients.registry_manager(hub)
    device = readers.device_identity(manager, device_id)
    if device is None:
        return {"state": "missing", "connection_state": None, "code": None, "modules": {},
                "diagnosis": [f"device '{device_id}' does not exist in hub '{hub.name}'"]}
    twin = _agent_twin(manager, device_id)
    reported, desired = twin.properties.reported or {}, twin.properties.desired or {}
    status = reported.get("lastDesiredStatus") or {}
    code = status.get("code")
    modules, problems = _module_problems(reported)
    view = {"connection_state": device.connection_state, "code": code, "modules": modules}
    diagnosis = [] if device.connection_state == "Connected" else [f"the device is {device.connection_state}"]
    if code is None:
        diagnosis.append("$edgeAgent has not reported: provision the device (provision_device, or the host "
                         "provisioning script) and check `iotedge system status` on it")
        return view | {"state": "not provisioned", "diagnosis": diagnosis}
    if code == AGENT_NO_DEPLOYMENT:
        return view | {"state": "waiting for modules", "diagnosis": [*diagnosis, "the device has no deployment yet"]}
    applied, wanted = reported.get("lastDesiredVersion"), desired.get("$version")
    if applied != wanted:
        diagnosis.append(f"$edgeAgent has applied deployment version {applied}, not yet {wanted}")
    if code != 200:
        diagnosis.append(f"$edgeAgent reports {code}: {status.get('description') or 'no description'}")
    diagnosis += problems
    if not modules:
        diagnosis.append("no module reports yet")
    return view | {"state": "not ready" if diagnosis else "ready", "diagnosis": diagnosis}
