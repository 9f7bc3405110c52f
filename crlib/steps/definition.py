"""Step 'definition': the connected registry with its sync scope map and sync token, made the way
Azure CLI 2.91 `az acr connected-registry create --repository ...` makes them, and kept converged.

The sync scope map and the sync token are both named after the connected registry. The scope map
carries the registry's four gateway actions and, per repository, the actions its mode needs; a
nested connected registry's gateway and repository actions are also added to the sync scope map
of its parent and of every ancestor above it, as the CLI does. Actions that descendants put into
this registry's own scope map are kept. With `sync_module_images` (the default for a nested child)
the module repositories' read actions join the registry's own, hence every ancestor's: a child
pulls its modules from `$upstream`, the parent connected registry, which must have synced them (the
nested tutorial: "make sure that it syncs all the required images locally"). Mode and parent
cannot change once created (Azure refuses both); other drift (schedule, window, TTL, log level,
notifications, garbage collection, repositories) is corrected. Attaching client tokens is the
access step's job: they are kept.

`plan_definition` reads everything and makes every refusal before the plan's first write; the
Azure helpers it uses live in crlib.azure (readers, names, family, tokens).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import isodate
from azure.mgmt.containerregistry import models

from ..azure import family, inputs, names, readers, tokens
from ..azure.errors import map_exceptions
from ..azure.pull_access import module_sync_actions
from ..azure.readers import name_of, same_id, text
from ..context import RunContext
from ..errors import ParameterError, PreconditionFailed
from ..plans import Action, FieldChange, StepPlan
from ..results import StepResult

STEP = "definition"
CONNECTED = "connected registry"
MAX_LAYERS = 5


@dataclass
class _Read:
    """What the step read, once, and what it wants from that."""

    registry: Any
    parent: Any
    existing: Any
    scope_map: Any
    token: Any
    ancestor_maps: list[tuple[Any, Any]]
    own_actions: list[str]
    desired_actions: list[str]


# -- refusals, before anything is written -----------------------------------------------------------
def _find_parent(ctx: RunContext, registry: Any, members: list) -> Any:
    """The parent named in the parameters, checked against the CLI's mode rule."""
    cr = ctx.site.connected_registry
    if cr.parent is None:
        return None
    parent = next((c for c in members if c.name.lower() == cr.parent.lower()), None)
    if parent is None:
        where = f"registry '{ctx.site.registry.name}'" + ("" if registry else " (which does not exist yet)")
        raise ParameterError("connected_registry.parent", f"no connected registry named '{cr.parent}' in {where}; "
                                                          "create the parent first")
    if text(parent.mode) == "ReadOnly" and cr.mode != "ReadOnly":
        raise ParameterError("connected_registry.mode",
                             f"{cr.mode} is not allowed under the ReadOnly parent '{parent.name}': a ReadOnly "
                             "connected registry accepts only ReadOnly children")
    layer = 1 + len(list(family.lineage(parent, members)))
    if layer > MAX_LAYERS:
        # IoT Edge supports hierarchies of at most five layers (how-to-connect-downstream-iot-edge-device).
        raise ParameterError("connected_registry.parent", f"'{cr.name}' under '{parent.name}' would be layer {layer}; "
                                                          f"IoT Edge supports at most {MAX_LAYERS} layers")
    return parent


def _check_fixed(ctx: RunContext, existing: Any, parent: Any, token_id: str | None) -> None:
    """Mode, parent and sync token are fixed at creation."""
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
                                                       f"sync token '{name_of(token_id or '-')}': {recreate}")


def _ancestor_maps(ctx: RunContext, parent: Any, members: list) -> list[tuple[Any, Any]]:
    """Each ancestor (the parent first) with its sync scope map, which must exist to grant access."""
    found = []
    for ancestor in family.lineage(parent, members):
        scope_map = family.sync_scope_map(ctx, ancestor)
        if scope_map is None:
            raise PreconditionFailed("connected_registry.parent", f"ancestor '{ancestor.name}' has no sync token "
                                                                  "or sync scope map to grant this registry access")
        found.append((ancestor, scope_map))
    return found


def _keeping_descendants(ctx: RunContext, own_actions: list[str], existing: Any, members: list) -> list[str]:
    """This registry's actions plus those the CLI put here for its children (their gateways and
    repositories), which stay."""
    desired = list(own_actions)
    if existing is None:
        return desired
    for child in members:
        if child.parent is not None and same_id(child.parent.id, existing.id):
            child_map = family.sync_scope_map(ctx, child)
            desired += [a for a in (child_map.actions if child_map else []) if a not in desired]
    return desired


def _read(ctx: RunContext, registry: Any) -> _Read:
    cr = ctx.site.connected_registry
    exists = registry is not None
    members = readers.connected_registries(ctx) if exists else []
    parent = _find_parent(ctx, registry, members)
    # The list holds every connected registry as a GET shows it: this site's is read from it.
    listed = next((m for m in members if str(m.name).lower() == cr.name.lower()), None)
    existing = readers.usable(listed) if exists else None  # a Failed one is PUT again
    if existing is not None:
        _check_fixed(ctx, existing, parent, _sync_token_id(ctx, registry))
    own_actions = names.sync_actions(cr.name, cr.mode, cr.repositories) + module_sync_actions(ctx)
    return _Read(
        registry, parent, existing,
        readers.usable(readers.scope_map(ctx, names.sync_scope_map_name(cr.name))) if exists else None,
        readers.usable(readers.token(ctx, names.sync_token_name(cr.name))) if exists else None,
        _ancestor_maps(ctx, parent, members), own_actions,
        _keeping_descendants(ctx, own_actions, existing, members))


def _sync_token_id(ctx: RunContext, registry: Any) -> str | None:
    name = names.sync_token_name(ctx.site.connected_registry.name)
    return tokens.token_id(registry, name) if registry is not None else None


# -- the connected registry's own settings --------------------------------------------------------
def _as_sent(duration: str | None) -> Any:
    """An ISO 8601 duration as the parameters hold it. The SDK types durations as timedeltas but sends
    a string unchanged; a timedelta would go out reformatted ('PT1H' as 'PT01H00M00S')."""
    return duration


def _desired(ctx: RunContext, parent: Any, token_id: str | None,
             client_token_ids: list[str] | None) -> models.ConnectedRegistry:
    cr = ctx.site.connected_registry
    return models.ConnectedRegistry(properties=models.ConnectedRegistryProperties(
        mode=cr.mode,
        parent=models.ParentProperties(
            id=parent.id if parent else None,
            # token_id is None only in a plan that cannot be applied (no registry yet); the SDK leaves it out.
            sync_properties=models.SyncProperties(token_id=cast(str, token_id), schedule=cr.sync_schedule,
                                                  sync_window=_as_sent(cr.sync_window),
                                                  message_ttl=_as_sent(cr.message_ttl))),
        client_token_ids=client_token_ids,
        logging=models.LoggingProperties(log_level=cr.log_level, audit_log_status="Disabled"),
        notifications_list=cr.notifications or None,
        garbage_collection=models.GarbageCollectionProperties(enabled=cr.garbage_collection.enabled,
                                                              schedule=cr.garbage_collection.schedule),
    ))


_DURATIONS = ("sync window", "message TTL")


def _wanted(ctx: RunContext) -> list[tuple[str, object]]:
    """The settings the parameters ask for, in the order drift is reported."""
    cr = ctx.site.connected_registry
    return [("sync schedule", cr.sync_schedule), ("sync window", cr.sync_window), ("message TTL", cr.message_ttl),
            ("log level", cr.log_level), ("notifications", sorted(cr.notifications)),
            ("garbage collection", cr.garbage_collection.enabled),
            ("garbage collection schedule", cr.garbage_collection.schedule)]


def _found(existing: Any) -> list[object]:
    """The same settings as Azure shows them."""
    sync = existing.parent.sync_properties
    logging = existing.logging or models.LoggingProperties()
    gc = existing.garbage_collection or models.GarbageCollectionProperties()
    return [" ".join((sync.schedule or "").split()), sync.sync_window, sync.message_ttl, text(logging.log_level),
            sorted(existing.notifications_list or []), bool(gc.enabled), gc.schedule]


def _duration(value: object) -> object:
    # The SDK reads ISO 8601 durations into timedeltas; parameters hold them as text.
    return isodate.parse_duration(value) if isinstance(value, str) else value


def _shown(value: object) -> object:
    return isodate.duration_isoformat(value) if isinstance(value, dt.timedelta) else value


def _drift(ctx: RunContext, existing: Any) -> list[FieldChange]:
    """What differs from the parameters, one field per setting."""
    return [FieldChange(label, _shown(now), _shown(want))
            for (label, want), now in zip(_wanted(ctx), _found(existing), strict=True)
            if not (_duration(now) == _duration(want) if label in _DURATIONS else now == want)]


def _put(ctx: RunContext, plan: StepPlan, what: str, parent: Any, token_id: str | None,
         client_token_ids: list[str] | None) -> Callable[[], Any]:
    def call() -> Any:
        site = ctx.site
        with map_exceptions(STEP, what):
            made = ctx.clients.acr.connected_registries.begin_create(
                site.resource_group, site.registry.name, site.connected_registry.name,
                _desired(ctx, parent, token_id, client_token_ids)).result()
            plan.made[CONNECTED] = readers.written(ctx, "connected_registry", made)
        return plan.made[CONNECTED]

    return call


def _patch(ctx: RunContext, plan: StepPlan, what: str) -> Callable[[], Any]:
    def call() -> Any:
        site, cr = ctx.site, ctx.site.connected_registry
        update = models.ConnectedRegistryUpdateParameters(properties=models.ConnectedRegistryUpdateProperties(
            sync_properties=models.SyncUpdateProperties(schedule=cr.sync_schedule, sync_window=_as_sent(cr.sync_window),
                                                        message_ttl=_as_sent(cr.message_ttl)),
            logging=models.LoggingProperties(log_level=cr.log_level),
            notifications_list=list(cr.notifications),
            garbage_collection=models.GarbageCollectionProperties(enabled=cr.garbage_collection.enabled,
                                                                  schedule=cr.garbage_collection.schedule),
        ))
        with map_exceptions(STEP, what):
            made = ctx.clients.acr.connected_registries.begin_update(
                site.resource_group, site.registry.name, cr.name, update).result()
            plan.made[CONNECTED] = readers.written(ctx, "connected_registry", made)
        return plan.made[CONNECTED]

    return call


def _plan_connected(ctx: RunContext, plan: StepPlan, read: _Read) -> None:
    cr, existing = ctx.site.connected_registry, read.existing
    if existing is None:
        upstream = (f"parent '{read.parent.name}'" if read.parent
                    else f"parent the cloud registry '{ctx.site.registry.name}'")
        fields = [FieldChange("mode", None, cr.mode), FieldChange("repositories", None, cr.repositories),
                  FieldChange("parent", None, read.parent.name if read.parent else ctx.site.registry.name),
                  *(FieldChange(label, None, want) for label, want in _wanted(ctx) if want is not None)]
        plan.add(Action.CREATE, CONNECTED, cr.name,
                 f"create connected registry '{cr.name}' ({cr.mode}, repositories {', '.join(cr.repositories)}, "
                 f"{upstream}, schedule '{cr.sync_schedule}', log level {cr.log_level})", fields=fields,
                 call=_put(ctx, plan, f"creating connected registry '{cr.name}'", read.parent,
                           _sync_token_id(ctx, read.registry), None))
        return
    drift = _drift(ctx, existing)
    if not drift:
        return
    what = f"updating connected registry '{cr.name}'"
    sync = existing.parent.sync_properties
    # A PATCH cannot remove a field; a PUT with the same mode, parent and token replaces the
    # settings, carrying over the attached client tokens.
    call = (_put(ctx, plan, what, read.parent, sync.token_id, existing.client_token_ids)
            if cr.sync_window is None and sync.sync_window else _patch(ctx, plan, what))
    plan.add(Action.UPDATE, CONNECTED, cr.name, f"update connected registry '{cr.name}': "
             + "; ".join(f"{f.name} {f.old} -> {f.new}" for f in drift), fields=drift, call=call)


# -- the sync scope maps and the sync token ---------------------------------------------------------
def _plan_ancestor(ctx: RunContext, plan: StepPlan, ancestor: Any, scope_map: Any, own_actions: list[str]) -> None:
    """Grant this registry's gateway and repository actions in an ancestor's sync scope map."""
    cr = ctx.site.connected_registry
    now = list(scope_map.actions or [])
    missing = [a for a in own_actions if a not in now]
    if not missing:
        return
    plan.add(Action.UPDATE, tokens.SCOPE_MAP, scope_map.name,
             f"add gateway '{cr.name.lower()}' and repositories {', '.join(cr.repositories)} ({cr.mode}) to "
             f"ancestor '{ancestor.name}' sync scope map '{scope_map.name}' ({len(missing)} actions)",
             fields=[FieldChange("actions", now, now + missing)],
             call=tokens.update_scope_map(ctx, plan, STEP, scope_map.name, now + missing,
                                          f"updating sync scope map '{scope_map.name}' of ancestor '{ancestor.name}'"))


def _update_text(name: str) -> Callable[[list[str], list[str]], str]:
    def said(added: list[str], removed: list[str]) -> str:
        return f"update sync scope map '{name}': " + "; ".join(
            part for part in (f"add {', '.join(added)}" if added else "",
                              f"remove {', '.join(removed)}" if removed else "") if part)

    return said


def _plan_sync_credentials(ctx: RunContext, plan: StepPlan, read: _Read) -> None:
    """The sync scope map (own actions plus descendants') and the sync token bound to it."""
    cr = ctx.site.connected_registry
    map_name, token_name = names.sync_scope_map_name(cr.name), names.sync_token_name(cr.name)
    tokens.plan_scope_map(
        ctx, plan, STEP, kind="sync scope map", name=map_name, found=read.scope_map, actions=read.desired_actions,
        description=f"Created by connected registry sync token: {cr.name}",
        created=(f"create sync scope map '{map_name}' (gateway '{cr.name.lower()}', repositories "
                 f"{', '.join(cr.repositories)} {cr.mode})"),
        updated=_update_text(read.scope_map.name if read.scope_map is not None else map_name))
    tokens.plan_bound_token(ctx, plan, STEP, kind="sync", name=token_name, map_name=map_name, found=read.token,
                            map_id=tokens.scope_map_id(read.registry, map_name) if read.registry is not None else None)


# -- what the step reports ------------------------------------------------------------------------------
def _describe(ctx: RunContext, plan: StepPlan, read: _Read) -> None:
    """Resource ids and details from what was read, or what the calls made."""
    cr = ctx.site.connected_registry
    scope_map = tokens.current(plan, tokens.SCOPE_MAP, names.sync_scope_map_name(cr.name), read.scope_map)
    token = tokens.current(plan, tokens.TOKEN, names.sync_token_name(cr.name), read.token)
    connected = plan.made.get(CONNECTED, read.existing)
    ancestor_maps = [tokens.current(plan, tokens.SCOPE_MAP, m.name, m) for _, m in read.ancestor_maps]
    plan.resource_ids = [r.id for r in (*ancestor_maps, scope_map, token, connected) if r is not None]
    plan.details = {"mode": cr.mode, "parent": cr.parent, "sync_actions": read.desired_actions}
    if connected is None:
        return
    sync = connected.parent.sync_properties
    online = text(connected.connection_state) in ("Online", "Syncing")
    plan.details |= {
        "connection_state": text(connected.connection_state), "gateway_endpoint": sync.gateway_endpoint,
        "id": connected.id, "name": connected.name, "sync_token_id": sync.token_id,
        "sync_scope_map_id": scope_map.id if scope_map is not None else None,
        "login_server_host": connected.login_server.host if online and connected.login_server else None,
    }


# -- the step ---------------------------------------------------------------------------------------
def plan_definition(ctx: RunContext) -> StepPlan:
    """Get-or-create the connected registry, its sync scope map and sync token, and the ancestors'
    permissions for it; correct drift. Every refusal is raised here, before the first write; a
    registry the endpoint step has not made ready yet blocks the apply."""
    registry, blocked_by = inputs.registry(ctx)
    read = _read(ctx, registry)
    plan = StepPlan(STEP, blocked_by=blocked_by)
    for ancestor, scope_map in read.ancestor_maps:
        _plan_ancestor(ctx, plan, ancestor, scope_map, read.own_actions)
    _plan_sync_credentials(ctx, plan, read)
    _plan_connected(ctx, plan, read)
    plan.created = any(c.action == Action.CREATE for c in plan.changes)
    _describe(ctx, plan, read)

    def finish(done: StepPlan) -> StepResult:
        _describe(ctx, done, read)
        return StepResult(STEP, done.applied_status(), list(done.resource_ids), done.summaries, dict(done.secrets),
                          dict(done.details))

    plan.finish = finish
    return plan


def ensure_connected_registry(ctx: RunContext, *, plan: bool = False) -> StepResult:
    return plan_definition(ctx).outcome(plan=plan)
