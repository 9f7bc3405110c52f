"""The cloud registry: Premium, with its dedicated data endpoint enabled.

Connected registries need both. The registry is created when missing (already with the data
endpoint on, one write instead of the CLI's create-then-update); an existing registry of another
SKU is refused rather than upgraded, since its SKU is the owner's choice and costs money.
"""

from __future__ import annotations

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.containerregistry import models as acr

from ..context import RunContext
from ..errors import PreconditionFailed, StepFailed
from ..results import Status, StepResult
from .definition import failed

REGISTRY_TYPE = "Microsoft.ContainerRegistry/registries"


def get_registry(ctx: RunContext):
    """The registry as Azure describes it, or None when it does not exist."""
    try:
        return ctx.clients.acr.registries.get(ctx.site.resource_group, ctx.site.registry.name)
    except ResourceNotFoundError:
        return None


def registry_state(registry) -> dict:
    hosts = registry.data_endpoint_host_names or []
    return {"id": registry.id, "name": registry.name, "login_server": registry.login_server,
            "data_endpoint": hosts[0] if hosts else None}


def _check_premium(registry) -> None:
    sku = str(getattr(registry.sku.name, "value", registry.sku.name))
    if sku != "Premium":
        raise PreconditionFailed("registry.sku", f"'{registry.name}' is {sku}; connected registries need Premium. "
                                                 "Upgrade it, or choose another registry.name")


def ensure_endpoint(ctx: RunContext, *, plan: bool = False) -> StepResult:
    """The Premium registry with its dedicated data endpoint; state["registry"] names its hosts."""
    site, registries = ctx.site, ctx.clients.acr.registries
    name = site.registry.name
    registry = get_registry(ctx)
    repair = registry is not None and failed(registry)
    if repair:
        registry = None  # its create failed: PUT it again (ARM repairs it; the name is already ours)
    if registry is None and not repair:
        available = registries.check_name_availability(acr.RegistryNameCheckRequest(name=name, type=REGISTRY_TYPE))
        if not available.name_available:
            raise PreconditionFailed("registry.name", f"registry name '{name}' cannot be used: {available.message}")
    if registry is None:
        change = f"create Premium registry '{name}' in {site.location} with its dedicated data endpoint"
        if plan:
            return StepResult("endpoint", Status.PLANNED, changes=[change])
        try:
            registry = registries.begin_create(site.resource_group, name, acr.Registry(
                location=site.location, sku=acr.Sku(name="Premium"), admin_user_enabled=False,
                data_endpoint_enabled=True)).result()
        except HttpResponseError as exc:
            raise StepFailed("endpoint", f"creating registry '{name}' failed: {exc.message}", error=exc) from exc
        status, changes = Status.CREATED, [change]
    else:
        _check_premium(registry)
        status, changes = Status.UNCHANGED, []
        if not registry.data_endpoint_enabled:
            changes = [f"enable the dedicated data endpoint of registry '{name}'"]
            if plan:
                return StepResult("endpoint", Status.PLANNED, [registry.id], changes=changes)
            try:
                registry = registries.begin_update(site.resource_group, name, acr.RegistryUpdateParameters(
                    data_endpoint_enabled=True)).result()
            except HttpResponseError as exc:
                raise StepFailed("endpoint", f"enabling the data endpoint of '{name}' failed: {exc.message}",
                                 error=exc) from exc
            status = Status.UPDATED
    state = registry_state(registry)
    ctx.state["registry"] = state
    return StepResult("endpoint", status, [registry.id], changes=changes,
                      details={"login_server": state["login_server"], "data_endpoint": state["data_endpoint"]})
