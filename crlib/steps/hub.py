"""The resource group and the IoT hub, get-or-create, and the hub's service connection string.

The hub is created (or, with `hub.reuse`, must already exist) and scaled to the SKU and units the
parameters name, with local auth disabled or not as `hub.disable_local_auth` says (the hub's
`disableLocalAuth`). With local auth, its `iothubowner` policy is the one later steps need: device
identities (RegistryWrite) and twins and deployments (ServiceConnect). The connection string built
from it and the hub's `hostName` is kept in the secret store, never shown. Without local auth the
hub refuses its policies' keys: later steps reach it with the site's Entra ID credential (which
needs IoT Hub Data Contributor on the hub), crlib never lists its keys, and a connection string
kept from before is deleted from the secret store.
"""

from __future__ import annotations

import copy
from functools import partial
from typing import Any

from azure.mgmt.iothub import models as hub_models

from ..azure import names, readers
from ..azure.errors import arm_body, map_exceptions
from ..azure.removal import secret_deletions
from ..context import RunContext
from ..errors import ParameterError, PreconditionFailed
from ..hosts import not_on_arc
from ..params import Hub
from ..plans import Action, FieldChange, StepPlan, skipped_plan
from ..results import Status, StepResult

TIERS = {"F1": "Free", "S1": "Standard", "S2": "Standard", "S3": "Standard", "B1": "Basic", "B2": "Basic",
         "B3": "Basic"}
MAX_UNITS = {"F1": 1, "S3": 10}  # the others go up to 200, which the parameters already enforce


# -- resource group -------------------------------------------------------------------------------
def plan_resource_group(ctx: RunContext) -> StepPlan:
    """The resource group, created at `site.location` when missing. An existing group is used as it
    is: its location only says where its metadata lives, and ARM cannot change it."""
    name, location = ctx.site.resource_group, ctx.site.location
    with map_exceptions("group", f"reading resource group '{name}'"):
        group = readers.resource_group(ctx)
    plan = StepPlan("group", finish=_group_result, made={"group": group})
    if group is not None:
        plan.resource_ids.append(group["id"])
        plan.details["location"] = group["location"]
        return plan

    def create() -> None:
        what = f"creating resource group '{name}'"
        with map_exceptions("group", what):
            response = ctx.clients.arm_session().put(readers.resource_group_url(ctx), json={"location": location},
                                                     params={"api-version": readers.GROUP_API_VERSION}, timeout=60)
        plan.made["group"] = readers.remember(ctx, "group", arm_body("group", what, response))

    plan.created = True
    plan.add(Action.CREATE, "resource group", name, f"create resource group '{name}' in {location}",
             fields=[FieldChange("location", None, location)], call=create)
    return plan


def _group_result(plan: StepPlan) -> StepResult:
    group = plan.made["group"]
    return StepResult("group", plan.applied_status(), [group["id"]], plan.summaries,
                      details={"location": group["location"]})


def ensure_resource_group(ctx: RunContext, *, plan: bool = False) -> StepResult:
    return plan_resource_group(ctx).outcome(plan=plan)


# -- the hub --------------------------------------------------------------------------------------
def _check_sku_change(name: str, current: str, wanted: str) -> None:
    """Azure changes units and editions within a tier, and Basic to Standard; nothing else."""
    old, new = TIERS[current], TIERS[wanted]
    if old == new or (old, new) == ("Basic", "Standard"):
        return
    raise PreconditionFailed("hub.sku", f"IoT hub '{name}' is {current} ({old} tier); Azure cannot change it to "
                                        f"{wanted} ({new} tier). Set hub.sku to a {old} SKU, or use another hub.")


def _describe(sku: str, capacity: int) -> str:
    return f"{sku}, {capacity} unit{'s' if capacity != 1 else ''}"


def _check_parameters(wanted: Hub) -> None:
    if TIERS[wanted.sku] == "Basic":
        raise ParameterError("hub.sku", f"{wanted.sku} is a Basic tier SKU, and Basic IoT hubs do not support IoT "
                                        "Edge; use F1 or S1-S3")
    if wanted.capacity > MAX_UNITS.get(wanted.sku, wanted.capacity):
        raise ParameterError("hub.capacity", f"an {wanted.sku} IoT hub has at most {MAX_UNITS[wanted.sku]} "
                                             f"unit{'s' if MAX_UNITS[wanted.sku] > 1 else ''}")


def _flag(value: object) -> str:
    """A boolean as ARM shows it."""
    return "true" if value else "false"


def _sku_fields(old: Any, wanted: Hub) -> list[FieldChange]:
    """The SKU's fields that move (both, for a new hub)."""
    fields = [FieldChange("sku", old.name if old else None, wanted.sku),
              FieldChange("capacity", old.capacity if old else None, wanted.capacity)]
    return [f for f in fields if f.old != f.new]


def _written(ctx: RunContext, plan: StepPlan, hub: Any) -> None:
    """The hub a call wrote is the one later steps read; its owner key is read again from it."""
    plan.made["hub"] = readers.remember(ctx, "hub", hub)
    readers.forget(ctx, "hub_access")


def _plan_create(ctx: RunContext, plan: StepPlan, *, repair: bool) -> None:
    """Create the hub; a hub whose create failed is PUT again (ARM repairs it; the name is already ours)."""
    site, wanted = ctx.site, ctx.site.hub
    hubs = ctx.clients.hubs.iot_hub_resource
    if wanted.reuse and not repair:
        raise PreconditionFailed("hub.name", f"IoT hub '{wanted.name}' does not exist in resource group "
                                             f"'{site.resource_group}', and hub.reuse is true")
    available = None if repair else hubs.check_name_availability(hub_models.OperationInputs(name=wanted.name))
    if available is not None and not available.name_available:
        raise PreconditionFailed("hub.name", f"IoT hub name '{wanted.name}' cannot be used: {available.message}")
    description = hub_models.IotHubDescription(
        location=site.location, sku=hub_models.IotHubSkuInfo(name=wanted.sku, capacity=wanted.capacity),
        properties=hub_models.IotHubProperties(disable_local_auth=wanted.disable_local_auth))

    def create() -> None:
        with map_exceptions("hub", f"creating IoT hub '{wanted.name}'"):
            _written(ctx, plan, hubs.begin_create_or_update(site.resource_group, wanted.name, description).result())

    local_auth = [FieldChange("disableLocalAuth", None, _flag(True))] if wanted.disable_local_auth else []
    plan.created = True
    plan.add(Action.CREATE, "IoT hub", wanted.name, f"create IoT hub '{wanted.name}' "
             f"({_describe(wanted.sku, wanted.capacity)}) in {site.location}"
             + (" with local auth disabled (Entra ID only)" if wanted.disable_local_auth else ""),
             fields=[*_sku_fields(None, wanted), FieldChange("location", None, site.location), *local_auth],
             call=create)


def _plan_update(ctx: RunContext, plan: StepPlan, hub: Any) -> None:
    """One PUT for whatever moves: the SKU and units, and disableLocalAuth."""
    wanted = ctx.site.hub
    scale = (hub.sku.name, hub.sku.capacity) != (wanted.sku, wanted.capacity)
    current_auth = readers.local_auth_disabled(hub)
    if not scale and current_auth == wanted.disable_local_auth:
        return
    if scale:
        _check_sku_change(hub.name, hub.sku.name, wanted.sku)
    # A read-modify-write PUT: the GET's description (which never carries the access policies, so
    # the hub keeps them) with the new values, guarded by its etag. Copies: the read stays as read.
    desired = copy.copy(hub)
    desired.sku = hub_models.IotHubSkuInfo(name=wanted.sku, capacity=wanted.capacity)
    desired.properties = copy.copy(hub.properties)
    desired.properties.disable_local_auth = wanted.disable_local_auth

    def update() -> None:
        with map_exceptions("hub", f"updating IoT hub '{hub.name}'"):
            _written(ctx, plan, ctx.clients.hubs.iot_hub_resource.begin_create_or_update(
                ctx.site.resource_group, hub.name, desired, if_match=hub.etag).result())

    moves, fields = [], []
    if scale:
        moves.append(f"from {_describe(hub.sku.name, hub.sku.capacity)} to {_describe(wanted.sku, wanted.capacity)}")
        fields += _sku_fields(hub.sku, wanted)
    if current_auth != wanted.disable_local_auth:
        moves.append("disabling local auth (Entra ID only)" if wanted.disable_local_auth else
                     "enabling local auth (shared access policies)")
        fields.append(FieldChange("disableLocalAuth", _flag(current_auth), _flag(wanted.disable_local_auth)))
    plan.add(Action.UPDATE, "IoT hub", hub.name, f"update IoT hub '{hub.name}' " + ", ".join(moves),
             fields=fields, call=update)


def plan_hub(ctx: RunContext) -> StepPlan:
    """The IoT hub at the parameters' SKU and units; its owner connection string as a secret.
    Skipped on an Arc host."""
    if reason := not_on_arc(ctx, "IoT hub"):
        return skipped_plan("hub", reason)
    wanted = ctx.site.hub
    _check_parameters(wanted)
    found = readers.hub(ctx)
    hub = readers.usable(found)
    plan = StepPlan("hub", finish=partial(_hub_result, ctx), made={"hub": hub})
    if hub is None:
        _plan_create(ctx, plan, repair=found is not None)
    else:
        plan.resource_ids.append(hub.id)
        plan.details |= {"host_name": hub.properties.host_name, "sku": _describe(hub.sku.name, hub.sku.capacity),
                         "auth": _auth(readers.local_auth_disabled(hub))}
        _plan_update(ctx, plan, hub)
    if wanted.disable_local_auth:
        # The owner key cannot reach this hub: a connection string kept from before goes.
        plan.changes += secret_deletions(ctx, [names.HUB_SECRET])
    return plan


def _auth(local_auth_disabled: bool) -> str:
    return "Entra ID (local auth disabled)" if local_auth_disabled else "owner connection string"


def _hub_result(ctx: RunContext, plan: StepPlan) -> StepResult:
    """After the writes: the owner connection string into the secret store (unless it holds it), or,
    for a hub with local auth disabled, nothing (crlib reaches it with Entra ID)."""
    hub = plan.made["hub"]
    access = readers.hub_access(ctx)
    assert access is not None  # required: the hub exists now
    details: dict[str, object] = {"host_name": access.host_name, "sku": _describe(hub.sku.name, hub.sku.capacity),
                                  "auth": _auth(access.entra)}
    # Deleting a stale connection string alone changes the hub's secrets, not the hub: "updated".
    status = Status.UPDATED if plan.applied_status() == Status.DELETED else plan.applied_status()
    if access.connection_string is None:
        return StepResult("hub", status, [hub.id], plan.summaries, {}, details)
    reference = ctx.keep_secret(names.HUB_SECRET, access.connection_string)
    return StepResult("hub", status, [hub.id], plan.summaries, {names.HUB_SECRET: reference}, details)


def ensure_hub(ctx: RunContext, *, plan: bool = False) -> StepResult:
    return plan_hub(ctx).outcome(plan=plan)
