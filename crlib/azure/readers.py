"""One reader per resource kind. Each returns the resource as the SDK gives it, or None when it is
missing; none of them writes.

**The read cache.** A run reads some resources again and again: every step after the hub's needs
its owner key, every registry-side step the registry. Those do not move under a run except by
crlib's own writes, so their readers keep what they read in `RunContext.cache` (one process: one
notebook's kernel, or one `runbook.run`), and the steps that write them put the new version there
(`remember`). Connected registries, tokens, scope maps and device twins change on their own (sync,
activation, password generation) and are read fresh, with two exceptions that spare ARM's read budget
(a fleet runs out of reads first): the next read of a resource crlib has just written takes the
write's own final read instead (`written`, once), and a fleet's list of tokens and scope maps stands in
for each site's first read of its own (`listed`, once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import PreconditionFailed
from ..secrets import MASKER
from . import names
from .errors import get_or_none

if TYPE_CHECKING:
    from ..context import RunContext

GROUP_API_VERSION = "2024-03-01"
T = TypeVar("T")


# -- small facts about any resource ------------------------------------------------------------------
def text(value: object) -> Any:
    """An SDK enum or a plain string, as the string Azure sent."""
    return getattr(value, "value", value)


def name_of(resource_id: str) -> str:
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


def same_id(a: str | None, b: str | None) -> bool:
    # ARM ids are case-insensitive.
    return (a or "").lower() == (b or "").lower()


def failed(resource: object) -> bool:
    """Azure keeps a resource whose last operation failed with provisioningState Failed."""
    state = getattr(resource, "provisioning_state", None) or getattr(getattr(resource, "properties", None),
                                                                   "provisioning_state", None)
    return str(getattr(state, "value", state)) == "Failed"


def usable(resource: Any) -> Any:
    """For get-or-create: a resource whose last operation failed counts as missing, so the step
    PUTs it again (ARM's PUT repairs it; nothing is duplicated)."""
    return None if resource is not None and failed(resource) else resource


# -- the cache ----------------------------------------------------------------------------------------
def remember(ctx: RunContext, key: str, value: object) -> Any:
    ctx.cache[key] = value
    return value


def forget(ctx: RunContext, key: str) -> None:
    ctx.cache.pop(key, None)


# -- what this run just wrote ---------------------------------------------------------------------------
# A write's long-running operation ends with a read of the resource (azure-core's final GET). The next
# fresh read of that resource, moments later in the same run, takes that answer instead of asking ARM
# again, once: in a fleet every read counts against ARM's read budget. Anything that changes the resource
# without returning it (a password generated) drops the answer, so the next read goes to ARM, and so does
# the end of the run (`runbook.run` calls forget_written): the next run reads what others may have changed.
RUN_KEY = "run:current"  # set by runbook.run while it runs: a write's answer stands in only within its run


def written(ctx: RunContext, kind: str, resource: Any) -> Any:
    name, run = getattr(resource, "name", None), ctx.cache.get(RUN_KEY)
    if name and run is not None:
        ctx.cache[f"written:{kind}:{str(name).lower()}"] = (run, resource)
    return resource


def forget_written(ctx: RunContext) -> None:
    """The end of a run: what it wrote is read afresh by the next one (someone else may change it)."""
    for key in [k for k, v in ctx.cache.items() if k.startswith("written:") and isinstance(v, tuple)
                and v[0] is not LISTED]:
        del ctx.cache[key]


def changed_since_written(ctx: RunContext, kind: str, name: str) -> None:
    ctx.cache.pop(f"written:{kind}:{name.lower()}", None)


def _just_written(ctx: RunContext, kind: str, name: str) -> Any:
    entry = ctx.cache.pop(f"written:{kind}:{name.lower()}", None)
    if not isinstance(entry, tuple):
        return None
    run, resource = entry
    return resource if run is LISTED or run == ctx.cache.get(RUN_KEY) else None


LISTED = object()  # an entry `listed` made, good for any run of the context it was made for
ABSENT = object()  # listed, and not there


def listed(ctx: RunContext, kind: str, resources: Any, names: Any) -> None:
    """One list of a kind (a fleet reads tokens and scope maps once per registry) stands in for the
    next read of each of `names`, once: the resource as listed (a list shows what a GET does), or
    ABSENT. Only for names no one else writes in between: a site's own tokens and scope maps."""
    by_name = {str(r.name).lower(): r for r in resources}
    for name in names:  # a fleet's site contexts are made afresh for each apply
        ctx.cache[f"written:{kind}:{name.lower()}"] = (LISTED, by_name.get(name.lower(), ABSENT))


def _cached(ctx: RunContext, key: str, read: Callable[[], Any], *, fresh: bool) -> Any:
    if not fresh and ctx.cache.get(key) is not None:
        return ctx.cache[key]
    return remember(ctx, key, read())


# -- resource group -------------------------------------------------------------------------------------
def resource_group_url(ctx: RunContext) -> str:
    return (f"{ctx.profile.arm_endpoint}/subscriptions/{ctx.profile.subscription_id}"
            f"/resourcegroups/{ctx.site.resource_group}")


def resource_group(ctx: RunContext, *, fresh: bool = False) -> dict | None:
    """The resource group's ARM document, or None."""
    def read() -> dict | None:
        response = ctx.clients.arm_session().get(resource_group_url(ctx), params={"api-version": GROUP_API_VERSION},
                                                 timeout=60)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    return _cached(ctx, "group", read, fresh=fresh)


# -- the cloud registry and its parts --------------------------------------------------------------------
def registry(ctx: RunContext, *, fresh: bool = False) -> Any:
    """The cloud registry, or None."""
    site = ctx.site
    return _cached(ctx, "registry", lambda: get_or_none(lambda: ctx.clients.acr.registries.get(
        site.resource_group, site.registry.name)), fresh=fresh)


def ready_registry(ctx: RunContext, *, required: bool = True) -> Any:
    """The registry, which must be Premium with its dedicated data endpoint. Missing: None when not
    `required` (plan mode, before the endpoint step ran), else PreconditionFailed."""
    found = registry(ctx)
    name, rg = ctx.site.registry.name, ctx.site.resource_group
    if found is None:
        if not required:
            return None
        raise PreconditionFailed("registry", f"registry '{name}' does not exist in resource group '{rg}'; "
                                             "run the endpoint step first")
    if required and (text(found.sku.name) != "Premium" or not found.data_endpoint_enabled):
        raise PreconditionFailed("registry", f"registry '{name}' must be Premium with its dedicated data endpoint "
                                             "enabled; run the endpoint step first")
    return found


def connected_registry(ctx: RunContext, name: str | None = None) -> Any:
    """A connected registry of the site's registry (by default the site's own), read fresh (or as
    this run's write just left it: `written`)."""
    site = ctx.site
    wanted = name or site.connected_registry.name
    just = _just_written(ctx, "connected_registry", wanted)
    if just is not None:
        return None if just is ABSENT else just
    return get_or_none(lambda: ctx.clients.acr.connected_registries.get(
        site.resource_group, site.registry.name, wanted))


def connected_registries(ctx: RunContext) -> list:
    return list(ctx.clients.acr.connected_registries.list(ctx.site.resource_group, ctx.site.registry.name))


def token(ctx: RunContext, name: str) -> Any:
    just = _just_written(ctx, "token", name)
    if just is not None:
        return None if just is ABSENT else just
    return get_or_none(lambda: ctx.clients.acr.tokens.get(ctx.site.resource_group, ctx.site.registry.name, name))


def tokens(ctx: RunContext) -> list:
    return list(ctx.clients.acr.tokens.list(ctx.site.resource_group, ctx.site.registry.name))


def scope_map(ctx: RunContext, name: str) -> Any:
    just = _just_written(ctx, "scope_map", name)
    if just is not None:
        return None if just is ABSENT else just
    return get_or_none(lambda: ctx.clients.acr.scope_maps.get(ctx.site.resource_group, ctx.site.registry.name, name))


def token_password(found_token: Any, slot: str = names.PASSWORD_SLOT) -> Any:
    """A token's password entry by slot (creation time and expiry; Azure never shows the value again)."""
    passwords = (found_token.credentials.passwords if found_token.credentials else None) or []
    return next((p for p in passwords if text(p.name) == slot), None)


# -- the IoT hub ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HubAccess:
    """What later steps need from the hub: its id, name and host, and how to sign in to its service
    API. `connection_string` is the `iothubowner` policy's; None when the hub has local auth
    disabled (`disableLocalAuth`), where crlib signs in with the site's Entra ID credential instead
    (`Clients.registry_manager` and `configuration_manager` pick the way)."""

    id: str
    name: str
    host_name: str
    connection_string: str | None = field(default=None, repr=False)

    @property
    def entra(self) -> bool:
        """True: reach the service API with Entra ID tokens, not the owner key."""
        return self.connection_string is None


def hub(ctx: RunContext, *, fresh: bool = False) -> Any:
    """The IoT hub's ARM description, or None."""
    return _cached(ctx, "hub", lambda: get_or_none(lambda: ctx.clients.hubs.iot_hub_resource.get(
        ctx.site.resource_group, ctx.site.hub.name)), fresh=fresh)


def local_auth_disabled(found_hub: Any) -> bool:
    """Whether the hub (as ARM describes it) refuses its shared access policies."""
    return bool(getattr(found_hub.properties, "disable_local_auth", None)) if found_hub.properties else False


def hub_access(ctx: RunContext, *, required: bool = True) -> HubAccess | None:
    """The hub and how to reach its service API: with local auth disabled, Entra ID (listKeys is never
    called); otherwise its owner connection string (listKeys once per process). Missing: None when
    not `required` (plan mode), else PreconditionFailed."""
    cached = ctx.cache.get("hub_access")
    if isinstance(cached, HubAccess):
        return cached
    found = hub(ctx)
    if found is None:
        if required:
            raise PreconditionFailed("hub.name", f"IoT hub '{ctx.site.hub.name}' does not exist in resource group "
                                                 f"'{ctx.site.resource_group}'; run the hub step first")
        return None
    host = found.properties.host_name
    if local_auth_disabled(found):
        return remember(ctx, "hub_access", HubAccess(found.id, found.name, host))
    key = ctx.clients.hubs.iot_hub_resource.get_keys_for_key_name(ctx.site.resource_group, found.name,
                                                                 names.HUB_OWNER_POLICY)
    connection_string = f"HostName={host};SharedAccessKeyName={key.key_name};SharedAccessKey={key.primary_key}"
    MASKER.register(key.primary_key)
    MASKER.register(connection_string)
    return remember(ctx, "hub_access", HubAccess(found.id, found.name, host, connection_string))


def device_identity(manager: Any, device_id: str) -> Any:
    """An IoT Hub device identity through a registry manager, or None."""
    return get_or_none(lambda: manager.get_device(device_id))


# -- plans blocked on an earlier step ---------------------------------------------------------------------
def or_blocker(read: Callable[[], T]) -> tuple[T | None, PreconditionFailed | None]:
    """`read()` and None, or None and the PreconditionFailed it raised: a planner foresees what it can
    while an earlier step's resource is missing, and its plan is blocked by that error."""
    try:
        return read(), None
    except PreconditionFailed as exc:
        return None, exc


def device_ids(ctx: RunContext, hub: HubAccess) -> list[str]:
    """The ids of every device identity in the hub (teardown's check that no one else uses it)."""
    return [d.device_id for d in ctx.clients.registry_manager(hub).get_devices()]
