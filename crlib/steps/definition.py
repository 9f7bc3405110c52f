"""Step 'definition': the connected registry with its sync scope map and sync token, made the way
Azure CLI 2.91 `az acr connected-registry create --repository ...` makes them, and kept converged.

The sync scope map and the sync token are both named after the connected registry. The scope map
carries the registry's four gateway actions and, per repository, the actions its mode needs; a
nested connected registry's gateway and repository actions are also added to the sync scope map
of its parent and of every ancestor above it, as the CLI does. Actions that descendants put into
this registry's own scope map are kept. Mode and parent cannot change once created (Azure refuses
both); other drift (schedule, window, TTL, log level, notifications, garbage collection,
repositories) is corrected. Attaching client tokens is the access step's job: they are kept.

The small Azure helpers at the top are shared by the settings and access steps.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from typing import TypeVar

import isodate
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.containerregistry import models

from ..context import RunContext
from ..errors import ParameterError, PreconditionFailed, StepFailed
from ..results import Status, StepResult, combine

STEP = "definition"
GATEWAY_ACTIONS = ("config/read", "config/write", "message/read", "message/write")
REPOSITORY_ACTIONS = {
    "ReadOnly": ("content/read", "metadata/read"),
    "ReadWrite": ("content/read", "content/write", "content/delete", "metadata/read", "metadata/write"),
}
T = TypeVar("T")


# -- helpers shared by the definition, settings and access steps --------------------------------
def text(value: object) -> str | None:
    """An SDK enum or a plain string, as the string Azure sent."""
    return getattr(value, "value", value)


def name_of(resource_id: str) -> str:
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


def same_id(a: str | None, b: str | None) -> bool:
    # ARM ids are case-insensitive.
    return (a or "").lower() == (b or "").lower()


def get_or_none(read: Callable[[], T]) -> T | None:
    try:
        return read()
    except ResourceNotFoundError:
        return None


def failed(resource) -> bool:
    """Azure keeps a resource whose last operation failed with provisioningState Failed."""
    state = getattr(resource, "provisioning_state", None) or getattr(getattr(resource, "properties", None),
                                                                   "provisioning_state", None)
    return str(getattr(state, "value", state)) == "Failed"


def get_usable(read: Callable[[], T]) -> T | None:
    """Like get_or_none, for get-or-create: a resource whose last operation failed counts as
    missing, so the step PUTs it again (ARM's PUT repairs it; nothing is duplicated)."""
    resource = get_or_none(read)
    return None if resource is not None and failed(resource) else resource


@contextlib.contextmanager
def writing(step: str, what: str) -> Iterator[None]:
    """Turn Azure's refusal of a write into StepFailed, naming what was being written."""
    try:
        yield
    except HttpResponseError as exc:
        raise StepFailed(step, f"{what} failed: {exc.message}", error=exc) from exc


def token_password(token: models.Token, name: str) -> models.TokenPassword | None:
    """A token's password entry by name (creation time and expiry; Azure never shows the value again)."""
    passwords = (token.credentials.passwords if token.credentials else None) or []
    return next((p for p in passwords if text(p.name) == name), None)


def read_registry(ctx: RunContext, *, plan: bool):
    """The cloud registry. In plan mode it may not exist yet (the endpoint step would create it);
    otherwise it must exist, be Premium and have its dedicated data endpoint."""
    rg, name = ctx.site.resource_group, ctx.site.registry.name
    registry = get_or_none(lambda: ctx.clients.acr.registries.get(rg, name))
    if plan:
        return registry
    if registry is None:
        raise PreconditionFailed("registry", f"registry '{name}' does not exist in resource group '{rg}'; "
                                             "run the endpoint step first")
    if text(registry.sku.name) != "Premium" or not registry.data_endpoint_enabled:
        raise PreconditionFailed("registry", f"registry '{name}' must be Premium with its dedicated data endpoint "
                                             "enabled; run the endpoint step first")
    return registry


def read_connected_registry(ctx: RunContext, registry) -> models.ConnectedRegistry | None:
    if registry is None:
        return None
    site = ctx.site
    return get_or_none(lambda: ctx.clients.acr.connected_registries.get(
        site.resource_group, site.registry.name, site.connected_registry.name))


def sync_actions(name: str, mode: str, repositories: list[str]) -> list[str]:
    """The CLI's sync scope map actions: gateway actions for the (lowercased) name, then each
    repository's actions for the mode."""
    gateway = [f"gateway/{name.lower()}/{action}" for action in GATEWAY_ACTIONS]
    return gateway + [f"repositories/{repo.lower()}/{action}"
                      for repo in repositories for action in REPOSITORY_ACTIONS[mode]]


# -- reading the family ---------------------------------------------------------------------------
def _sync_scope_map(ctx: RunContext, connected: models.ConnectedRegistry) -> models.ScopeMap | None:
    """A connected registry's sync scope map, found through its sync token as the CLI does."""
    token_id = connected.parent.sync_properties.token_id
    if not token_id:
        return None
    acr, rg, reg = ctx.clients.acr, ctx.site.resource_group, ctx.site.registry.name
    token = get_or_none(lambda: acr.tokens.get(rg, reg, name_of(token_id)))
    if token is None or not token.scope_map_id:
        return None
    return get_or_none(lambda: acr.scope_maps.get(rg, reg, name_of(token.scope_map_id)))


def _ancestors(parent: models.ConnectedRegistry | None, family: dict[str, models.ConnectedRegistry]):
    seen = set()
    while parent is not None and parent.id.lower() not in seen:
        seen.add(parent.id.lower())
        yield parent
        parent_id = parent.parent.id
        parent = family.get(parent_id.lower()) if parent_id else None


def _find_parent(ctx: RunContext, registry, family: dict[str, models.ConnectedRegistry]):
    """The parent named in the parameters, checked against the CLI's mode rule (nothing written yet)."""
    cr = ctx.site.connected_registry
    if cr.parent is None:
        return None
    parent = next((c for c in family.values() if c.name.lower() == cr.parent.lower()), None)
    if parent is None:
        where = f"registry '{ctx.site.registry.name}'" + ("" if registry else " (which does not exist yet)")
        raise ParameterError("connected_registry.parent", f"no connected registry named '{cr.parent}' in {where}; "
                                                          "create the parent first")
    if text(parent.mode) == "ReadOnly" and cr.mode != "ReadOnly":
        raise ParameterError("connected_registry.mode",
                             f"{cr.mode} is not allowed under the ReadOnly parent '{parent.name}': a ReadOnly "
                             "connected registry accepts only ReadOnly children")
    return parent


def _check_fixed(ctx: RunContext, existing: models.ConnectedRegistry, parent, token_id: str) -> None:
    """Mode, parent and sync token are fixed at creation: refuse before writing anything."""
    cr = ctx.site.connected_registry
    recreate = (f"delete connected registry '{cr.name}' (deactivate it first) and run this step again to "
                "recreate it")
    if text(existing.mode) != cr.mode:
        raise PreconditionFailed("connected_registry.mode", f"'{cr.name}' exists as {text(existing.mode)}; Azure "
                                                            f"cannot change it to {cr.mode}: {recreate}")
    if not same_id(existing.parent.id, parent.id if parent else None):
        now = name_of(existing.parent.id) if existing.parent.id else "the cloud registry"
        raise PreconditionFailed("connected_registry.parent", f"'{cr.name}' exists with parent {now}; Azure cannot "
                                                              f"change its parent: {recreate}")
    if not same_id(existing.parent.sync_properties.token_id, token_id):
        raise PreconditionFailed("connected_registry", f"'{cr.name}' syncs with token "
                                                       f"'{existing.parent.sync_properties.token_id}', not its own "
                                                       f"sync token '{name_of(token_id)}': {recreate}")


# -- the connected registry's own settings --------------------------------------------------------
def _desired(ctx: RunContext, parent, token_id: str, client_token_ids: list[str] | None) -> models.ConnectedRegistry:
    cr = ctx.site.connected_registry
    return models.ConnectedRegistry(
        mode=cr.mode,
        parent=models.ParentProperties(
            id=parent.id if parent else None,
            sync_properties=models.SyncProperties(token_id=token_id, schedule=cr.sync_schedule,
                                                  sync_window=cr.sync_window, message_ttl=cr.message_ttl)),
        client_token_ids=client_token_ids,
        logging=models.LoggingProperties(log_level=cr.log_level, audit_log_status="Disabled"),
        notifications_list=cr.notifications or None,
        garbage_collection=models.GarbageCollectionProperties(enabled=cr.garbage_collection.enabled,
                                                              schedule=cr.garbage_collection.schedule),
    )


def _duration(value: object) -> object:
    # The SDK reads ISO 8601 durations into timedeltas; parameters hold them as text.
    return isodate.parse_duration(value) if isinstance(value, str) else value


def _same_duration(a: object, b: object) -> bool:
    return _duration(a) == _duration(b)


def _drift(ctx: RunContext, existing: models.ConnectedRegistry) -> list[str]:
    """What differs from the parameters, one phrase per setting ("log level Debug -> Information")."""
    cr = ctx.site.connected_registry
    sync = existing.parent.sync_properties
    logging = existing.logging or models.LoggingProperties()
    gc = existing.garbage_collection or models.GarbageCollectionProperties()
    pairs = [
        ("sync schedule", " ".join((sync.schedule or "").split()), cr.sync_schedule, None),
        ("sync window", sync.sync_window, cr.sync_window, _same_duration),
        ("message TTL", sync.message_ttl, cr.message_ttl, _same_duration),
        ("log level", text(logging.log_level), cr.log_level, None),
        ("notifications", sorted(existing.notifications_list or []), sorted(cr.notifications), None),
        ("garbage collection", bool(gc.enabled), cr.garbage_collection.enabled, None),
        ("garbage collection schedule", gc.schedule, cr.garbage_collection.schedule, None),
    ]
    return [f"{label} {_shown(now)} -> {_shown(want)}" for label, now, want, same in pairs
            if not (same(now, want) if same else now == want)]


def _shown(value: object) -> object:
    return isodate.duration_isoformat(value) if isinstance(value, dt.timedelta) else value


def _update(ctx: RunContext, existing: models.ConnectedRegistry, parent, token_id: str):
    cr, rg, reg = ctx.site.connected_registry, ctx.site.resource_group, ctx.site.registry.name
    acr = ctx.clients.acr
    if cr.sync_window is None and existing.parent.sync_properties.sync_window:
        # A PATCH cannot remove a field; a PUT with the same mode, parent and token replaces the
        # settings, carrying over the attached client tokens.
        return acr.connected_registries.begin_create(
            rg, reg, cr.name, _desired(ctx, parent, token_id, existing.client_token_ids)).result()
    update = models.ConnectedRegistryUpdateParameters(
        sync_properties=models.SyncUpdateProperties(schedule=cr.sync_schedule, sync_window=cr.sync_window,
                                                    message_ttl=cr.message_ttl),
        logging=models.LoggingProperties(log_level=cr.log_level),
        notifications_list=list(cr.notifications),
        garbage_collection=models.GarbageCollectionProperties(enabled=cr.garbage_collection.enabled,
                                                              schedule=cr.garbage_collection.schedule),
    )
    return acr.connected_registries.begin_update(rg, reg, cr.name, update).result()


# -- the step ---------------------------------------------------------------------------------------
def ensure_connected_registry(ctx: RunContext, *, plan: bool = False) -> StepResult:
    """Get-or-create the connected registry, its sync scope map and sync token, and the ancestors'
    permissions for it; correct drift. Everything is read and checked before the first write."""
    site, acr = ctx.site, ctx.clients.acr
    cr, rg, reg = site.connected_registry, site.resource_group, site.registry.name
    registry = read_registry(ctx, plan=plan)
    family = {c.id.lower(): c for c in acr.connected_registries.list(rg, reg)} if registry else {}
    parent = _find_parent(ctx, registry, family)
    existing = read_connected_registry(ctx, registry)
    if existing is not None and failed(existing):
        existing = None  # created again by PUT
    token_id = f"{registry.id}/tokens/{cr.name}" if registry else None
    if existing is not None:
        _check_fixed(ctx, existing, parent, token_id)

    own_actions = sync_actions(cr.name, cr.mode, cr.repositories)
    # Actions the CLI put here for descendants (their gateways and repositories) stay.
    desired_actions = list(own_actions)
    for child in family.values():
        if existing is not None and same_id(child.parent.id, existing.id):
            child_map = _sync_scope_map(ctx, child)
            desired_actions += [a for a in (child_map.actions if child_map else []) if a not in desired_actions]
    ancestor_maps = []
    for ancestor in _ancestors(parent, family):
        scope_map = _sync_scope_map(ctx, ancestor)
        if scope_map is None:
            raise PreconditionFailed("connected_registry.parent", f"ancestor '{ancestor.name}' has no sync token "
                                                                  "or sync scope map to grant this registry access")
        ancestor_maps.append((ancestor, scope_map))
    scope_map = get_usable(lambda: acr.scope_maps.get(rg, reg, cr.name)) if registry else None
    token = get_usable(lambda: acr.tokens.get(rg, reg, cr.name)) if registry else None

    parts = [_ensure_ancestor(ctx, a, m, own_actions, plan=plan) for a, m in ancestor_maps]
    scope_map_part, scope_map = _ensure_scope_map(ctx, scope_map, desired_actions, plan=plan)
    cr_name = ctx.site.connected_registry.name
    token_part, token = ensure_bound_token(ctx, STEP, "sync", cr_name, cr_name, token, scope_map, plan=plan)
    connected_part, connected = _ensure_connected(ctx, existing, parent, token, plan=plan)
    result = combine(STEP, [*parts, scope_map_part, token_part, connected_part], plan=plan)
    if connected is not None:
        sync = connected.parent.sync_properties
        online = text(connected.connection_state) in ("Online", "Syncing")
        ctx.state[STEP] = {
            "id": connected.id, "name": connected.name, "mode": text(connected.mode),
            "gateway_endpoint": sync.gateway_endpoint, "sync_token_id": sync.token_id,
            "sync_scope_map_id": scope_map.id if scope_map else None,
            "login_server_host": connected.login_server.host if online and connected.login_server else None,
        }
        result.details |= {"connection_state": text(connected.connection_state),
                           "gateway_endpoint": sync.gateway_endpoint}
    result.details |= {"mode": cr.mode, "parent": cr.parent, "sync_actions": desired_actions}
    return result


def _ensure_ancestor(ctx: RunContext, ancestor, scope_map, own_actions: list[str], *, plan: bool) -> StepResult:
    """Grant this registry's gateway and repository actions in an ancestor's sync scope map."""
    cr = ctx.site.connected_registry
    missing = [a for a in own_actions if a not in scope_map.actions]
    if not missing:
        return StepResult(STEP, Status.UNCHANGED, [scope_map.id])
    change = (f"add gateway '{cr.name.lower()}' and repositories {', '.join(cr.repositories)} ({cr.mode}) to "
              f"ancestor '{ancestor.name}' sync scope map '{scope_map.name}' ({len(missing)} actions)")
    if not plan:
        with writing(STEP, f"updating sync scope map '{scope_map.name}' of ancestor '{ancestor.name}'"):
            ctx.clients.acr.scope_maps.begin_update(
                ctx.site.resource_group, ctx.site.registry.name, scope_map.name,
                models.ScopeMapUpdateParameters(actions=list(scope_map.actions) + missing)).result()
    return StepResult(STEP, Status.UPDATED, [scope_map.id], [change])


def _ensure_scope_map(ctx: RunContext, scope_map, actions: list[str], *, plan: bool):
    cr, rg, reg = ctx.site.connected_registry, ctx.site.resource_group, ctx.site.registry.name
    acr = ctx.clients.acr
    if scope_map is None:
        change = (f"create sync scope map '{cr.name}' (gateway '{cr.name.lower()}', repositories "
                  f"{', '.join(cr.repositories)} {cr.mode})")
        if plan:
            return StepResult(STEP, Status.CREATED, changes=[change]), None
        with writing(STEP, f"creating sync scope map '{cr.name}'"):
            scope_map = acr.scope_maps.begin_create(rg, reg, cr.name, models.ScopeMap(
                description=f"Created by connected registry sync token: {cr.name}", actions=actions)).result()
        return StepResult(STEP, Status.CREATED, [scope_map.id], [change]), scope_map
    added = [a for a in actions if a not in scope_map.actions]
    removed = [a for a in scope_map.actions if a not in actions]
    if not added and not removed:
        return StepResult(STEP, Status.UNCHANGED, [scope_map.id]), scope_map
    change = f"update sync scope map '{scope_map.name}': " + "; ".join(
        part for part in (f"add {', '.join(added)}" if added else "",
                          f"remove {', '.join(removed)}" if removed else "") if part)
    if not plan:
        with writing(STEP, f"updating sync scope map '{scope_map.name}'"):
            scope_map = acr.scope_maps.begin_update(rg, reg, scope_map.name,
                                                    models.ScopeMapUpdateParameters(actions=actions)).result()
    return StepResult(STEP, Status.UPDATED, [scope_map.id], [change]), scope_map


def ensure_bound_token(ctx: RunContext, step: str, kind: str, name: str, map_name: str, token, scope_map, *,
                       plan: bool):
    """Get-or-create an enabled token bound to its scope map (a sync token or a client token)."""
    rg, reg, acr = ctx.site.resource_group, ctx.site.registry.name, ctx.clients.acr
    if token is None:
        change = f"create {kind} token '{name}' (enabled, scope map '{map_name}')"
        if plan:
            return StepResult(step, Status.CREATED, changes=[change]), None
        with writing(step, f"creating {kind} token '{name}'"):
            token = acr.tokens.begin_create(rg, reg, name,
                                            models.Token(scope_map_id=scope_map.id, status="enabled")).result()
        return StepResult(step, Status.CREATED, [token.id], [change]), token
    bound = scope_map is not None and same_id(token.scope_map_id, scope_map.id)
    if bound and text(token.status) == "enabled":
        return StepResult(step, Status.UNCHANGED, [token.id]), token
    change = (f"update {kind} token '{token.name}': status {text(token.status)} -> enabled, scope map "
              f"'{name_of(token.scope_map_id or '-')}' -> '{map_name}'")
    if not plan:
        with writing(step, f"updating {kind} token '{token.name}'"):
            token = acr.tokens.begin_update(rg, reg, token.name, models.TokenUpdateParameters(
                scope_map_id=scope_map.id, status="enabled")).result()
    return StepResult(step, Status.UPDATED, [token.id], [change]), token


def _ensure_connected(ctx: RunContext, existing, parent, token, *, plan: bool):
    cr, rg, reg = ctx.site.connected_registry, ctx.site.resource_group, ctx.site.registry.name
    if existing is None:
        upstream = f"parent '{parent.name}'" if parent else f"parent the cloud registry '{reg}'"
        change = (f"create connected registry '{cr.name}' ({cr.mode}, repositories {', '.join(cr.repositories)}, "
                  f"{upstream}, schedule '{cr.sync_schedule}', log level {cr.log_level})")
        if plan:
            return StepResult(STEP, Status.CREATED, changes=[change]), None
        with writing(STEP, f"creating connected registry '{cr.name}'"):
            connected = ctx.clients.acr.connected_registries.begin_create(
                rg, reg, cr.name, _desired(ctx, parent, token.id, None)).result()
        return StepResult(STEP, Status.CREATED, [connected.id], [change]), connected
    drift = _drift(ctx, existing)
    if not drift:
        return StepResult(STEP, Status.UNCHANGED, [existing.id]), existing
    change = f"update connected registry '{cr.name}': " + "; ".join(drift)
    if plan:
        return StepResult(STEP, Status.UPDATED, [existing.id], [change]), existing
    with writing(STEP, f"updating connected registry '{cr.name}'"):
        connected = _update(ctx, existing, parent, existing.parent.sync_properties.token_id)
    return StepResult(STEP, Status.UPDATED, [connected.id], [change]), connected
