"""The resource group and the IoT hub, get-or-create, and the hub's service connection string.

The hub is created (or, with `hub.reuse`, must already exist) and scaled to the SKU and units the
parameters name. Its `iothubowner` policy is the one later steps need: device identities
(RegistryWrite) and twins and deployments (ServiceConnect). The connection string built from it
and the hub's `hostName` is kept in the secret store, never shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.iothub import models as hub_models

from ..context import RunContext
from ..errors import ParameterError, PreconditionFailed, StepFailed
from ..results import Status, StepResult
from ..secrets import MASKER
from .definition import failed

GROUP_API_VERSION = "2024-03-01"
OWNER_POLICY = "iothubowner"  # RegistryWrite + ServiceConnect (+ DeviceConnect)
HUB_SECRET = "hub-connection-string"
TIERS = {"F1": "Free", "S1": "Standard", "S2": "Standard", "S3": "Standard", "B1": "Basic", "B2": "Basic",
         "B3": "Basic"}
MAX_UNITS = {"F1": 1, "S3": 10}  # the others go up to 200, which the parameters already enforce


def arm_error(response) -> str:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    return f"{response.status_code} {error.get('code', response.reason)}: {error.get('message', response.text[:200])}"


# -- resource group -------------------------------------------------------------------------------
def ensure_resource_group(ctx: RunContext, *, plan: bool = False) -> StepResult:
    """The resource group, created at `site.location` when missing. An existing group is used as it
    is: its location only says where its metadata lives, and ARM cannot change it."""
    site = ctx.site
    session = ctx.clients.arm_session()
    url = (f"{ctx.profile.arm_endpoint}/subscriptions/{ctx.profile.subscription_id}"
           f"/resourcegroups/{site.resource_group}")
    query = {"api-version": GROUP_API_VERSION}
    response = session.get(url, params=query, timeout=60)
    if response.status_code == 200:
        group = response.json()
        ctx.state["group"] = {"id": group["id"], "name": group["name"], "location": group["location"]}
        return StepResult("group", Status.UNCHANGED, [group["id"]], details={"location": group["location"]})
    if response.status_code != 404:
        raise StepFailed("group", f"reading resource group '{site.resource_group}' failed: {arm_error(response)}")
    change = f"create resource group '{site.resource_group}' in {site.location}"
    if plan:
        return StepResult("group", Status.PLANNED, changes=[change])
    response = session.put(url, params=query, json={"location": site.location}, timeout=60)
    if not response.ok:
        raise StepFailed("group", f"creating resource group '{site.resource_group}' failed: {arm_error(response)}")
    group = response.json()
    ctx.state["group"] = {"id": group["id"], "name": group["name"], "location": group["location"]}
    return StepResult("group", Status.CREATED, [group["id"]], changes=[change],
                      details={"location": group["location"]})


# -- the hub --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HubAccess:
    """What later steps need from the hub: its id, name and host, and the owner connection string."""

    id: str
    name: str
    host_name: str
    connection_string: str = field(repr=False)

    def state(self) -> dict:
        return {"id": self.id, "name": self.name, "host_name": self.host_name}


def _get_hub(ctx: RunContext):
    try:
        return ctx.clients.hubs.iot_hub_resource.get(ctx.site.resource_group, ctx.site.hub.name)
    except ResourceNotFoundError:
        return None


def _access(ctx: RunContext, hub) -> HubAccess:
    key = ctx.clients.hubs.iot_hub_resource.get_keys_for_key_name(ctx.site.resource_group, hub.name, OWNER_POLICY)
    host = hub.properties.host_name
    connection_string = f"HostName={host};SharedAccessKeyName={key.key_name};SharedAccessKey={key.primary_key}"
    MASKER.register(key.primary_key)
    MASKER.register(connection_string)
    return HubAccess(hub.id, hub.name, host, connection_string)


def lookup_hub(ctx: RunContext, *, required: bool = True) -> HubAccess | None:
    """Read the hub and its owner key from Azure (so a step works after ensure_hub ran in another
    process). Missing: PreconditionFailed, or None when not `required` (plan mode)."""
    hub = _get_hub(ctx)
    if hub is None:
        if required:
            raise PreconditionFailed("hub.name", f"IoT hub '{ctx.site.hub.name}' does not exist in resource group "
                                                 f"'{ctx.site.resource_group}'; run ensure_hub first")
        return None
    access = _access(ctx, hub)
    ctx.state["hub"] = access.state()
    return access


def _check_sku_change(name: str, current: str, wanted: str) -> None:
    """Azure changes units and editions within a tier, and Basic to Standard; nothing else."""
    old, new = TIERS[current], TIERS[wanted]
    if old == new or (old, new) == ("Basic", "Standard"):
        return
    raise PreconditionFailed("hub.sku", f"IoT hub '{name}' is {current} ({old} tier); Azure cannot change it to "
                                        f"{wanted} ({new} tier). Set hub.sku to a {old} SKU, or use another hub.")


def _describe(sku: str, capacity: int) -> str:
    return f"{sku}, {capacity} unit{'s' if capacity != 1 else ''}"


def _check_parameters(wanted) -> None:
    if TIERS[wanted.sku] == "Basic":
        raise ParameterError("hub.sku", f"{wanted.sku} is a Basic tier SKU, and Basic IoT hubs do not support IoT "
                                        "Edge; use F1 or S1-S3")
    if wanted.capacity > MAX_UNITS.get(wanted.sku, wanted.capacity):
        raise ParameterError("hub.capacity", f"an {wanted.sku} IoT hub has at most {MAX_UNITS[wanted.sku]} "
                                             f"unit{'s' if MAX_UNITS[wanted.sku] > 1 else ''}")


def ensure_hub(ctx: RunContext, *, plan: bool = False) -> StepResult:
    """The IoT hub at the parameters' SKU and units; its owner connection string as a secret."""
    site, wanted = ctx.site, ctx.site.hub
    _check_parameters(wanted)
    hubs = ctx.clients.hubs.iot_hub_resource
    hub = _get_hub(ctx)
    target = hub_models.IotHubSkuInfo(name=wanted.sku, capacity=wanted.capacity)
    repair = hub is not None and failed(hub)
    if repair:
        hub = None  # its create failed: PUT it again (ARM repairs it; the name is already ours)
    if hub is None:
        if wanted.reuse and not repair:
            raise PreconditionFailed("hub.name", f"IoT hub '{wanted.name}' does not exist in resource group "
                                                 f"'{site.resource_group}', and hub.reuse is true")
        available = None if repair else hubs.check_name_availability(hub_models.OperationInputs(name=wanted.name))
        if available is not None and not available.name_available:
            raise PreconditionFailed("hub.name", f"IoT hub name '{wanted.name}' cannot be used: {available.message}")
        change = f"create IoT hub '{wanted.name}' ({_describe(wanted.sku, wanted.capacity)}) in {site.location}"
        if plan:
            return StepResult("hub", Status.PLANNED, changes=[change])
        try:
            hub = hubs.begin_create_or_update(site.resource_group, wanted.name, hub_models.IotHubDescription(
                location=site.location, sku=target)).result()
        except HttpResponseError as exc:
            raise StepFailed("hub", f"creating IoT hub '{wanted.name}' failed: {exc.message}", error=exc) from exc
        status, changes = Status.CREATED, [change]
    elif (hub.sku.name, hub.sku.capacity) != (wanted.sku, wanted.capacity):
        _check_sku_change(hub.name, hub.sku.name, wanted.sku)
        change = (f"update IoT hub '{hub.name}' from {_describe(hub.sku.name, hub.sku.capacity)} to "
                  f"{_describe(wanted.sku, wanted.capacity)}")
        if plan:
            return StepResult("hub", Status.PLANNED, [hub.id], changes=[change])
        # A read-modify-write PUT: the GET's description (which never carries the access policies,
        # so the hub keeps them) with the new SKU, guarded by its etag.
        hub.sku = target
        try:
            hub = hubs.begin_create_or_update(site.resource_group, hub.name, hub, if_match=hub.etag).result()
        except HttpResponseError as exc:
            raise StepFailed("hub", f"updating IoT hub '{hub.name}' failed: {exc.message}", error=exc) from exc
        status, changes = Status.UPDATED, [change]
    else:
        status, changes = Status.UNCHANGED, []
    access = _access(ctx, hub)
    ctx.state["hub"] = access.state()
    details = {"host_name": access.host_name, "sku": _describe(hub.sku.name, hub.sku.capacity)}
    if plan:  # nothing to plan; the secret store is not written in plan mode
        return StepResult("hub", Status.UNCHANGED, [hub.id], details=details)
    reference = keep_secret(ctx, HUB_SECRET, access.connection_string)
    return StepResult("hub", status, [hub.id], changes=changes, secrets={HUB_SECRET: reference}, details=details)


def keep_secret(ctx: RunContext, purpose: str, value: str) -> str:
    """Store a secret unless the store already holds that value; return its reference."""
    if ctx.get_secret(purpose) == value:
        return ctx.secret_reference(purpose)
    return ctx.set_secret(purpose, value)
