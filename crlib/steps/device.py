"""The edge device: its identity in the hub, its provisioning, and whether its modules run.

The identity is an IoT Edge device with hub-generated SAS keys; for a nested device its parent
scope is the parent edge device's scope. Provisioning hands the device its connection string
(`iotedge config mp` + `apply`) through the target profile's provisioner, and is skipped once the
device is connected and its `$edgeAgent` reports. Readiness is read from the `$edgeAgent` twin.
"""

from __future__ import annotations

from azure.core.exceptions import ResourceNotFoundError
from msrest.exceptions import HttpOperationError

from ..context import RunContext
from ..errors import ParameterError, PreconditionFailed, StepFailed
from ..results import Status, StepResult
from .hub import HubAccess, keep_secret, lookup_hub

DEVICE_SECRET = "device-connection-string"
EDGE_AGENT = "$edgeAgent"
AGENT_NO_DEPLOYMENT = 417  # $edgeAgent's code while the device has no deployment


def _get_device(manager, device_id: str):
    try:
        return manager.get_device(device_id)
    except HttpOperationError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            return None
        raise


def _device_address(hub: HubAccess, device_id: str) -> str:
    return f"{hub.host_name}/devices/{device_id}"


def _connection_string(hub: HubAccess, device) -> str:
    return (f"HostName={hub.host_name};DeviceId={device.device_id};"
            f"SharedAccessKey={device.authentication.symmetric_key.primary_key}")


def _parent_scopes(ctx: RunContext, manager) -> list[str]:
    """A nested device's parent scope: the parent edge device's own scope."""
    parent_id = ctx.site.device.parent_device
    if not parent_id:
        return []
    parent = _get_device(manager, parent_id)
    if parent is None or not parent.capabilities.iot_edge:
        problem = "does not exist" if parent is None else "is not an IoT Edge device"
        raise PreconditionFailed("device.parent_device", f"parent device '{parent_id}' {problem} in hub "
                                                         f"'{ctx.site.hub.name}'")
    return [parent.device_scope]


def _check_usable(ctx: RunContext, device) -> None:
    if not device.capabilities.iot_edge:
        raise PreconditionFailed("device.id", f"device '{device.device_id}' exists in hub '{ctx.site.hub.name}' "
                                              "but is not an IoT Edge device; delete it or choose another device.id")
    if device.authentication.type != "sas":
        raise PreconditionFailed("device.id", f"device '{device.device_id}' authenticates with "
                                              f"{device.authentication.type}; the runbook provisions SAS keys")


def ensure_device(ctx: RunContext, *, plan: bool = False) -> StepResult:
    """The edge-enabled device identity; its connection string as a secret."""
    device_id, parent_id = ctx.site.device.id, ctx.site.device.parent_device
    create = f"create IoT Edge device identity '{device_id}' in hub '{ctx.site.hub.name}'" + (
        f" under parent device '{parent_id}'" if parent_id else "")
    hub = lookup_hub(ctx, required=not plan)
    if hub is None:
        return StepResult("device", Status.PLANNED, changes=[create])
    manager = ctx.clients.registry_manager(hub.connection_string)
    parent_scopes = _parent_scopes(ctx, manager)
    device = _get_device(manager, device_id)
    if device is None:
        if plan:
            return StepResult("device", Status.PLANNED, changes=[create])
        try:
            # Empty keys: the hub generates them.
            device = manager.create_device_with_sas(device_id, "", "", "enabled", iot_edge=True,
                                                    parent_scopes=parent_scopes or None)
        except HttpOperationError as exc:
            raise StepFailed("device", f"creating device '{device_id}' failed: {exc}", error=exc) from exc
        status, changes = Status.CREATED, [create]
    else:
        _check_usable(ctx, device)
        drift = []
        if device.status != "enabled":
            drift.append(f"enable it (it is {device.status})")
        if sorted(device.parent_scopes or []) != parent_scopes:
            drift.append(f"set its parent to '{parent_id}'" if parent_id else "remove its parent")
        status, changes = Status.UNCHANGED, []
        if drift:
            changes = [f"update device '{device_id}': {'; '.join(drift)}"]
            if plan:
                return StepResult("device", Status.PLANNED, [_device_address(hub, device_id)], changes=changes)
            keys = device.authentication.symmetric_key
            try:
                device = manager.update_device_with_sas(
                    device_id, device.etag, keys.primary_key, keys.secondary_key, "enabled", iot_edge=True,
                    device_scope=device.device_scope, parent_scopes=parent_scopes)
            except HttpOperationError as exc:
                raise StepFailed("device", f"updating device '{device_id}' failed: {exc}", error=exc) from exc
            status = Status.UPDATED
    ctx.state["device"] = {"id": device.device_id, "hub_host_name": hub.host_name, "device_scope": device.device_scope}
    result = StepResult("device", status, [_device_address(hub, device_id)], changes=changes,
                        details={"device_scope": device.device_scope, "parent_device": parent_id})
    if not plan:  # plan mode never writes the secret store
        result.secrets[DEVICE_SECRET] = keep_secret(ctx, DEVICE_SECRET, _connection_string(hub, device))
    return result


# -- provisioning -------------------------------------------------------------------------------------
def parent_device_endpoint(ctx: RunContext) -> str:
    """A nested device's parent host: the device endpoint its parent connected registry reports."""
    parent = ctx.site.connected_registry.parent
    if parent is None:
        raise ParameterError("connected_registry.parent", "device.parent_device makes this a nested device; name the "
                                                          "parent connected registry, whose device it reaches")
    registry = ctx.site.registry.name
    try:
        connected = ctx.clients.acr.connected_registries.get(ctx.site.resource_group, registry, parent)
    except ResourceNotFoundError as exc:
        raise PreconditionFailed("connected_registry.parent", f"connected registry '{parent}' does not exist in "
                                                              f"registry '{registry}'") from exc
    host = connected.login_server.host if connected.login_server else None
    if not host:
        raise PreconditionFailed("connected_registry.parent", f"connected registry '{parent}' has not reported its "
                                                              "device endpoint yet; deploy it and wait until it is "
                                                              "Online")
    return host


def _agent_reported(manager, device_id: str) -> dict:
    return manager.get_module_twin(device_id, EDGE_AGENT).properties.reported or {}


def provision_device(ctx: RunContext, *, plan: bool = False, parent_hostname: str | None = None) -> StepResult:
    """Give the device its connection string, unless it is already connected and reporting.
    A nested device also gets its parent's host (default: the parent connected registry's endpoint)."""
    device_id, nested = ctx.site.device.id, bool(ctx.site.device.parent_device)
    change = f"provision device '{device_id}' with its connection string (iotedge config mp, config apply)"
    hub = lookup_hub(ctx, required=not plan)
    manager = ctx.clients.registry_manager(hub.connection_string) if hub else None
    device = _get_device(manager, device_id) if manager else None
    if device is None:
        if plan:
            return StepResult("provision", Status.PLANNED, changes=[change])
        raise PreconditionFailed("device.id", f"device '{device_id}' does not exist in hub '{ctx.site.hub.name}'; "
                                              "run ensure_device first")
    address = [_device_address(hub, device_id)]
    if device.connection_state == "Connected" and _agent_reported(manager, device_id).get("lastDesiredStatus"):
        return StepResult("provision", Status.UNCHANGED, address, details={"connection_state": "Connected"})
    if plan:
        return StepResult("provision", Status.PLANNED, address, changes=[change])
    if nested and parent_hostname is None:
        parent_hostname = parent_device_endpoint(ctx)
    outcome = ctx.profile.provisioner.provision(_connection_string(hub, device), parent_hostname=parent_hostname)
    if outcome is None:
        # Real hardware: nothing was written; the engineer runs the provisioning script.
        return StepResult("provision", Status.UNCHANGED, address, details={
            "action_required": "run the host provisioning script (crlib.steps.provisioning) on the device",
            "parent_hostname": parent_hostname})
    return StepResult("provision", Status.UPDATED, address, changes=[change],
                      details={"provisioner": outcome, "parent_hostname": parent_hostname})


# -- readiness ------------------------------------------------------------------------------------------
def _module_problems(reported: dict) -> tuple[dict[str, str], list[str]]:
    modules = {**(reported.get("systemModules") or {}), **(reported.get("modules") or {})}
    statuses = {name: m.get("runtimeStatus", "unknown") for name, m in modules.items() if m}
    problems = [f"{name}: {m.get('runtimeStatus')}" + (f" ({m['statusDescription']})" if m.get("statusDescription")
                                                       else "")
                for name, m in modules.items() if m and m.get("runtimeStatus") != "running"]
    return statuses, problems


def device_readiness(ctx: RunContext) -> dict:
    """Where the device stands, from its identity and `$edgeAgent` twin: `state` is one of
    missing, not provisioned, waiting for modules, ready, not ready; `diagnosis` says why."""
    device_id = ctx.site.device.id
    hub = lookup_hub(ctx)
    manager = ctx.clients.registry_manager(hub.connection_string)
    device = _get_device(manager, device_id)
    if device is None:
        return {"state": "missing", "connection_state": None, "code": None, "modules": {},
                "diagnosis": [f"device '{device_id}' does not exist in hub '{hub.name}'"]}
    twin = manager.get_module_twin(device_id, EDGE_AGENT)
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
