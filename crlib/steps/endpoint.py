"""The cloud registry: Premium, with its dedicated data endpoint enabled.

Connected registries need both. The registry is created when missing (already with the data
endpoint on, one write instead of the CLI's create-then-update); an existing registry of another
SKU is refused rather than upgraded, since its SKU is the owner's choice and costs money.
"""

from __future__ import annotations

from typing import Any

from azure.mgmt.containerregistry import models as acr

from ..azure import readers
from ..azure.errors import map_exceptions
from ..context import RunContext
from ..errors import PreconditionFailed
from ..plans import Action, FieldChange, StepPlan
from ..results import StepResult

STEP = "endpoint"
REGISTRY_TYPE = "Microsoft.ContainerRegistry/registries"


def _check_premium(registry: Any) -> None:
    sku = readers.text(registry.sku.name)
    if sku != "Premium":
        raise PreconditionFailed("registry.sku", f"'{registry.name}' is {sku}; connected registries need Premium. "
                                                 "Upgrade it, or choose another registry.name")


def _written(ctx: RunContext, plan: StepPlan, registry: Any) -> None:
    plan.made["registry"] = readers.remember(ctx, "registry", registry)


def _plan_create(ctx: RunContext, plan: StepPlan, *, repair: bool) -> None:
    """Create the registry; one whose create failed is PUT again (ARM repairs it; the name is ours)."""
    site, registries = ctx.site, ctx.clients.acr.registries
    name = site.registry.name
    if not repair:
        available = registries.check_name_availability(acr.RegistryNameCheckRequest(name=name, type=REGISTRY_TYPE))
        if not available.name_available:
            raise PreconditionFailed("registry.name", f"registry name '{name}' cannot be used: {available.message}")
    wanted = acr.Registry(location=site.location, sku=acr.Sku(name="Premium"), properties=acr.RegistryProperties(
        admin_user_enabled=False, data_endpoint_enabled=True))

    def create() -> None:
        with map_exceptions(STEP, f"creating registry '{name}'"):
            _written(ctx, plan, registries.begin_create(site.resource_group, name, wanted).result())

    plan.created = True
    plan.add(Action.CREATE, "registry", name,
             f"create Premium registry '{name}' in {site.location} with its dedicated data endpoint",
             fields=[FieldChange("sku", None, "Premium"), FieldChange("location", None, site.location),
                     FieldChange("dataEndpointEnabled", None, True)], call=create)


def _plan_data_endpoint(ctx: RunContext, plan: StepPlan) -> None:
    site = ctx.site
    name = site.registry.name

    update = acr.RegistryUpdateParameters(properties=acr.RegistryPropertiesUpdateParameters(data_endpoint_enabled=True))

    def enable() -> None:
        with map_exceptions(STEP, f"enabling the data endpoint of '{name}'"):
            _written(ctx, plan, ctx.clients.acr.registries.begin_update(site.resource_group, name, update).result())

    plan.add(Action.UPDATE, "registry", name, f"enable the dedicated data endpoint of registry '{name}'",
             fields=[FieldChange("dataEndpointEnabled", False, True)], call=enable)


def _endpoint_details(registry: Any) -> dict[str, object]:
    hosts = registry.data_endpoint_host_names or []
    return {"login_server": registry.login_server, "data_endpoint": hosts[0] if hosts else None}


def plan_endpoint(ctx: RunContext) -> StepPlan:
    """The Premium registry with its dedicated data endpoint; the details name its hosts."""
    found = readers.registry(ctx)
    registry = readers.usable(found)
    plan = StepPlan(STEP, finish=_endpoint_result, made={"registry": registry})
    if registry is None:
        _plan_create(ctx, plan, repair=found is not None)
        return plan
    _check_premium(registry)
    plan.resource_ids.append(registry.id)
    if registry.data_endpoint_enabled:
        plan.details |= _endpoint_details(registry)
    else:
        _plan_data_endpoint(ctx, plan)
    return plan


def _endpoint_result(plan: StepPlan) -> StepResult:
    registry = plan.made["registry"]
    return StepResult(STEP, plan.applied_status(), [registry.id], plan.summaries,
                      details=_endpoint_details(registry))


def ensure_endpoint(ctx: RunContext, *, plan: bool = False) -> StepResult:
    return plan_endpoint(ctx).outcome(plan=plan)
