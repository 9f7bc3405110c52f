"""Teardown: remove what the runbook built for one site, in dependency order.

`teardown(ctx, delete_hub=False, delete_registry=False)` runs, in order:

1. the access step's `detach_and_delete_client_access` (client tokens and scope maps);
2. `delete_connected_registry`: deactivate it, delete it, its sync token and its sync scope map,
   then take the child's actions out of its ancestors' sync scope maps (below);
3. `delete_module_pull_access`: token and scope map `<connected registry>-pull`;
4. `delete_device`: the device identity (its module twins, hence its deployment, go with it);
5. `delete_iot_hub` and `delete_cloud_registry`, only when asked, and never while another site
   still uses them.

Each `delete_*` succeeds when its resources are already gone, and in plan mode only reads.
`teardown` first runs the whole sequence as a plan, so every refusal comes before the first write.
Secrets that only served the deleted resources are removed from the store with them.

**Ancestors.** Creating a child adds its gateway actions and its repository actions to every
ancestor's sync scope map. The Azure CLI's `delete --cleanup` removes only `gateway/<child>/*`.
crlib also removes the child's repository actions an ancestor no longer needs: an action stays
while another remaining descendant's sync scope map grants it, or while the ancestor holds the
repository with its own mode's full action set (it may sync that repository for itself; after the
union crlib cannot tell). So a ReadOnly child's repositories leave a ReadWrite ancestor, while a
repository the ancestor holds with every action of its mode stays.
"""

from __future__ import annotations

import re

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.containerregistry import models as acr
from msrest.exceptions import HttpOperationError

from ..context import RunContext
from ..errors import ParameterError, PreconditionFailed, StepFailed
from ..results import Status, StepResult, combine
from .access import detach_and_delete_client_access
from .definition import get_or_none, name_of
from .endpoint import get_registry
from .hub import HUB_SECRET, lookup_hub
from .manifest import PULL_SECRET, pull_token_name

STEP = "teardown"
SYNC_SECRETS = ("sync-password", "sync-password-created", "connected-registry-connection-string")
DEVICE_SECRET = "device-connection-string"
MODE_ACTIONS = {
    "ReadOnly": {"content/read", "metadata/read"},
    "ReadWrite": {"content/read", "content/write", "content/delete", "metadata/read", "metadata/write"},
}
_REPOSITORY_ACTION = re.compile(r"^repositories/(?P<repo>.+)/(?P<verb>(content|metadata)/(read|write|delete))$")


def _write(what: str, call):
    """Run one write; a refusal becomes StepFailed, an already-missing resource is fine."""
    try:
        return call()
    except ResourceNotFoundError:
        return None
    except HttpResponseError as exc:
        raise StepFailed(STEP, f"{what}: {exc.message}", error=exc) from exc


def _result(changes: list[str], *, plan: bool, resource_ids: list[str] | None = None,
            details: dict | None = None) -> StepResult:
    status = (Status.PLANNED if plan else Status.DELETED) if changes else Status.UNCHANGED
    return StepResult(STEP, status, resource_ids=resource_ids or [], changes=changes, details=details or {})


def _forget(ctx: RunContext, *purposes: str) -> None:
    for purpose in purposes:
        ctx.secrets.delete(ctx.secret_name(purpose))


# -- the connected registry and its family ---------------------------------------------------------
def _sync_scope_map(ctx: RunContext, registry_name: str, cr):
    """The scope map of a connected registry's sync token, or None."""
    rg = ctx.site.resource_group
    token_id = cr.parent.sync_properties.token_id if cr.parent and cr.parent.sync_properties else None
    token = get_or_none(lambda: ctx.clients.acr.tokens.get(rg, registry_name, name_of(token_id))) if token_id else None
    if token is None or not token.scope_map_id:
        return None
    return get_or_none(lambda: ctx.clients.acr.scope_maps.get(rg, registry_name, name_of(token.scope_map_id)))


def _ancestry(family: list, member) -> list:
    """The ancestors of one connected registry, nearest first."""
    by_id = {c.id.lower(): c for c in family}
    chain, parent_id = [], member.parent.id
    while parent_id and parent_id.lower() in by_id:
        chain.append(by_id[parent_id.lower()])
        parent_id = chain[-1].parent.id
    return chain


def _verbs(actions: list[str], repository: str) -> set[str]:
    return {m["verb"] for a in actions if (m := _REPOSITORY_ACTION.match(a)) and m["repo"] == repository}


def _ancestor_updates(ctx: RunContext, registry_name: str, family: list, name: str,
                      child_actions: set[str]) -> list[tuple[str, object, list[str]]]:
    """(ancestor name, its sync scope map, actions to remove) for each ancestor that holds any
    of the child's gateway actions or repository actions no one else needs."""
    gateway = f"gateway/{name.lower()}/"
    others = [c for c in family if c.name.lower() != name.lower()]
    scope_maps = {c.id: _sync_scope_map(ctx, registry_name, c) for c in others}
    updates = []
    for member in others:
        actions = list((scope_maps[member.id] or acr.ScopeMap()).actions or [])
        if not any(a.lower().startswith(gateway) for a in actions):
            continue  # not an ancestor of the child: ancestors hold the child's gateway actions
        needed = {a for c in others if member in _ancestry(family, c)
                  for a in (scope_maps[c.id] or acr.ScopeMap()).actions or []}
        removal = [a for a in actions if a.lower().startswith(gateway)]
        for action in actions:
            match = _REPOSITORY_ACTION.match(action)
            if not match or action not in child_actions or action in needed:
                continue
            if _verbs(actions, match["repo"]) >= MODE_ACTIONS[member.mode]:
                continue  # possibly the ancestor's own repository
            removal.append(action)
        updates.append((member.name, scope_maps[member.id], removal))
    return updates


def delete_connected_registry(ctx: RunContext, *, plan: bool = False) -> StepResult:
    """Deactivate and delete the connected registry, its sync token and scope map, and its
    actions in its ancestors' sync scope maps. Refuses while it has children."""
    site, ops = ctx.site, ctx.clients.acr
    rg, name = site.resource_group, site.connected_registry.name
    registry = get_registry(ctx)
    if registry is None:
        return _result([], plan=plan, details={"registry": "already gone"})
    family = list(ops.connected_registries.list(rg, registry.name))
    cr = next((c for c in family if c.name.lower() == name.lower()), None)
    if cr is not None:
        children = [c.name for c in family if (c.parent.id or "").lower() == cr.id.lower()]
        if children:
            raise PreconditionFailed(f"connected registry '{name}'", f"has children {', '.join(children)}; "
                                                                     "tear them down first")
    sync_token_id = cr.parent.sync_properties.token_id if cr and cr.parent and cr.parent.sync_properties else None
    token_name = name_of(sync_token_id) if sync_token_id else name
    token = get_or_none(lambda: ops.tokens.get(rg, registry.name, token_name))
    scope_map_name = name_of(token.scope_map_id) if token and token.scope_map_id else name
    scope_map = get_or_none(lambda: ops.scope_maps.get(rg, registry.name, scope_map_name))
    shared_with = [t.name for t in ops.tokens.list(rg, registry.name) if scope_map is not None
                   and t.name != token_name and (t.scope_map_id or "").lower() == scope_map.id.lower()]
    updates = _ancestor_updates(ctx, registry.name, family, name, set(scope_map.actions or []) if scope_map else set())
    changes = []
    if cr is not None and cr.activation and cr.activation.status == "Active":
        changes.append(f"deactivate connected registry '{name}'")
    if cr is not None:
        changes.append(f"delete connected registry '{name}'")
    if token is not None:
        changes.append(f"delete sync token '{token_name}'")
    if scope_map is not None and not shared_with:
        changes.append(f"delete sync scope map '{scope_map_name}'")
    changes += [f"remove {', '.join(removal)} from sync scope map '{sm.name}' of ancestor '{ancestor}'"
                for ancestor, sm, removal in updates if removal]
    ids = [r.id for r in (cr, token, scope_map) if r is not None]
    details = {"scope_map_kept_for": shared_with} if shared_with else {}
    if plan:
        return _result(changes, plan=True, resource_ids=ids, details=details)
    if cr is not None and cr.activation and cr.activation.status == "Active":
        _write(f"deactivate connected registry '{name}'",
               lambda: ops.connected_registries.begin_deactivate(rg, registry.name, name).result())
    if cr is not None:
        _write(f"delete connected registry '{name}'",
               lambda: ops.connected_registries.begin_delete(rg, registry.name, name).result())
    # Ancestors first: their cleanup is computed from the child's sync scope map, so a re-run after
    # a failure here must still find that map.
    for ancestor, sm, removal in updates:
        if removal:
            kept = [a for a in sm.actions if a not in removal]
            _write(f"update sync scope map '{sm.name}' of ancestor '{ancestor}'",
                   lambda sm=sm, kept=kept: ops.scope_maps.begin_update(
                       rg, registry.name, sm.name, acr.ScopeMapUpdateParameters(actions=kept)).result())
    if token is not None:
        _write(f"delete sync token '{token_name}'", lambda: ops.tokens.begin_delete(rg, registry.name, token_name).result())
    if scope_map is not None and not shared_with:
        _write(f"delete sync scope map '{scope_map_name}'",
               lambda: ops.scope_maps.begin_delete(rg, registry.name, scope_map_name).result())
    _forget(ctx, *SYNC_SECRETS)
    return _result(changes, plan=False, resource_ids=ids, details=details)


# -- the module pull credential, the device ------------------------------------------------------
def delete_module_pull_access(ctx: RunContext, *, plan: bool = False) -> StepResult:
    """The token and scope map `<connected registry>-pull` and the stored password."""
    ops, rg, name = ctx.clients.acr, ctx.site.resource_group, pull_token_name(ctx)
    registry = get_registry(ctx)
    token = get_or_none(lambda: ops.tokens.get(rg, registry.name, name)) if registry else None
    scope_map = get_or_none(lambda: ops.scope_maps.get(rg, registry.name, name)) if registry else None
    users = [t.name for t in ops.tokens.list(rg, registry.name) if t.name != name and scope_map is not None
             and (t.scope_map_id or "").lower() == scope_map.id.lower()] if registry else []
    changes = [f"delete token '{name}'"] if token else []
    changes += [f"delete scope map '{name}'"] if scope_map and not users else []
    if not plan:
        if token:
            _write(f"delete token '{name}'", lambda: ops.tokens.begin_delete(rg, registry.name, name).result())
        if scope_map and not users:
            _write(f"delete scope map '{name}'", lambda: ops.scope_maps.begin_delete(rg, registry.name, name).result())
        _forget(ctx, PULL_SECRET)
    return _result(changes, plan=plan, resource_ids=[r.id for r in (token, scope_map) if r],
                   details={"scope_map_kept_for": users} if users else {})


def _registry_manager(ctx: RunContext):
    """The hub's registry manager, or None when the hub is gone (and its devices with it)."""
    hub = lookup_hub(ctx, required=False)
    return ctx.clients.registry_manager(hub.connection_string) if hub else None


def delete_device(ctx: RunContext, *, plan: bool = False) -> StepResult:
    """The edge device identity; its module twins and deployment go with it."""
    device_id = ctx.site.device.id
    manager = _registry_manager(ctx)
    device = None
    if manager is not None:
        try:
            device = manager.get_device(device_id)
        except HttpOperationError as exc:
            if exc.response is None or exc.response.status_code != 404:
                raise
    changes = [f"delete device identity '{device_id}' from IoT hub '{ctx.site.hub.name}'"] if device else []
    if not plan:
        if device:
            try:
                manager.delete_device(device_id)
            except HttpOperationError as exc:
                raise StepFailed(STEP, f"delete device identity '{device_id}': {exc}", error=exc) from exc
        _forget(ctx, DEVICE_SECRET)
    return _result(changes, plan=plan)


# -- the hub and the registry, only when asked ------------------------------------------------------
def delete_iot_hub(ctx: RunContext, *, plan: bool = False) -> StepResult:
    """The IoT hub this site created; refused for a reused hub or one with other devices."""
    if ctx.site.hub.reuse:
        raise ParameterError("hub.reuse", "the hub is reused, not created by this site; teardown does not delete it")
    hub = lookup_hub(ctx, required=False)
    if hub is None:
        return _result([], plan=plan)
    manager = ctx.clients.registry_manager(hub.connection_string)
    others = [d.device_id for d in manager.get_devices() if d.device_id != ctx.site.device.id]
    if others:
        raise PreconditionFailed(f"hub '{hub.name}'", f"still has devices of others: {', '.join(sorted(others))}")
    changes = [f"delete IoT hub '{hub.name}'"]
    if not plan:
        _write(f"delete IoT hub '{hub.name}'", lambda: ctx.clients.hubs.iot_hub_resource.begin_delete(
            ctx.site.resource_group, hub.name).result())
        _forget(ctx, HUB_SECRET)
    return _result(changes, plan=plan, resource_ids=[hub.id])


def delete_cloud_registry(ctx: RunContext, *, plan: bool = False) -> StepResult:
    """The cloud registry; refused while connected registries of others remain in it."""
    registry = get_registry(ctx)
    if registry is None:
        return _result([], plan=plan)
    mine = ctx.site.connected_registry.name.lower()
    others = [c.name for c in ctx.clients.acr.connected_registries.list(ctx.site.resource_group, registry.name)
              if c.name.lower() != mine]
    if others:
        raise PreconditionFailed(f"registry '{registry.name}'", f"still has connected registries of others: "
                                                                f"{', '.join(sorted(others))}")
    changes = [f"delete registry '{registry.name}'"]
    if not plan:
        _write(f"delete registry '{registry.name}'", lambda: ctx.clients.acr.registries.begin_delete(
            ctx.site.resource_group, registry.name).result())
    return _result(changes, plan=plan, resource_ids=[registry.id])


def teardown(ctx: RunContext, *, plan: bool = False, delete_hub: bool = False,
             delete_registry: bool = False) -> StepResult:
    """Everything the site built, removed in order; the hub and registry only when asked."""
    steps = [detach_and_delete_client_access, delete_connected_registry, delete_module_pull_access, delete_device]
    steps += [delete_iot_hub] if delete_hub else []
    steps += [delete_cloud_registry] if delete_registry else []
    if not plan:
        for step in steps:  # every refusal before the first write
            step(ctx, plan=True)
    return combine(STEP, [step(ctx, plan=plan) for step in steps], plan=plan)
