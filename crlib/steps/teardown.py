"""Step 'teardown': remove what the runbook built for one site, in dependency order.

`plan_teardown(ctx, delete_hub=False, delete_registry=False)` reads once and combines, in order:

1. `plan_client_access_removal`: detach this site's client tokens from the connected registry
   (tokens attached by others stay), delete them and their scope maps;
2. `plan_connected_registry_removal`: deactivate and delete it, take the child's actions out of
   its ancestors' sync scope maps (below), then delete its sync token and sync scope map;
3. `plan_pull_access_removal`: token and scope map `<connected registry>-pull`;
4. `plan_host_removal`: the host's identity, through the host (crlib.hosts: for IoT Edge the
   device identity, whose module twins, hence its deployment, go with it; for Arc the cluster
   extension, which comes first, before step 1, as the Arc quickstart orders it);
5. `plan_hub_removal` and `plan_registry_removal`, only when asked, and never while another site
   still uses them.

Every refusal (children left, a scope map someone else's token uses, a reused hub, another site's
device or connected registry) is raised while planning, before the first write. Each delete
succeeds when its resource is already gone, and a scope map another token still uses is kept.
Secrets that only served the deleted resources are deleted from the store with them. The result
is "deleted" when anything was removed.

**Ancestors.** Creating a child adds its gateway actions and its repository actions to every
ancestor's sync scope map. The Azure CLI's `delete --cleanup` removes only `gateway/<child>/*`.
crlib also removes the child's repository actions an ancestor no longer needs: an action stays
while another remaining descendant's sync scope map grants it, or while the ancestor holds the
repository with its own mode's full action set (it may sync that repository for itself; after the
union crlib cannot tell). So a ReadOnly child's repositories leave a ReadWrite ancestor, while a
repository the ancestor holds with every action of its mode stays. Ancestors are updated before
the child's sync scope map is deleted: their cleanup is computed from it, so a re-run after a
failure there still finds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from azure.mgmt.containerregistry import models

from ..azure import family, names, readers, tokens
from ..azure.errors import map_exceptions
from ..azure.removal import deletion, secret_deletions, token_users
from ..context import RunContext
from ..errors import ParameterError, PreconditionFailed
from ..hosts import host_for
from ..plans import Action, FieldChange, StepPlan, combine_plans
from ..results import Status, StepResult

STEP = "teardown"
_REPOSITORY_ACTION = re.compile(r"^repositories/(?P<repo>.+)/(?P<verb>(content|metadata)/(read|write|delete))$")


@dataclass(frozen=True)
class _Found:
    """The registry side as teardown reads it once: the registry, its tokens, its connected registries."""

    registry: Any
    tokens: list = field(default_factory=list)
    family: list = field(default_factory=list)

    def token(self, name: str) -> Any:
        return next((t for t in self.tokens if t.name.lower() == name.lower()), None)

    def connected(self, name: str) -> Any:
        return next((c for c in self.family if c.name.lower() == name.lower()), None)


def _read(ctx: RunContext) -> _Found:
    registry = readers.registry(ctx, fresh=True)
    if registry is None:
        return _Found(None)
    return _Found(registry, readers.tokens(ctx), readers.connected_registries(ctx))


def _deleted(plan: StepPlan) -> StepResult:
    """Teardown's result: "deleted" when anything was removed (an ancestor's update included)."""
    return StepResult(STEP, Status.DELETED if plan.changes else Status.UNCHANGED, list(plan.resource_ids),
                      plan.summaries, dict(plan.secrets), dict(plan.details))


def _removal() -> StepPlan:
    return StepPlan(STEP, finish=_deleted)


def _plan_delete(ctx: RunContext, plan: StepPlan, operations: Any, kind: str, label: str, resource: Any) -> None:
    """Delete a token or scope map (`operations`: the SDK's tokens or scope_maps) when it exists."""
    if resource is None:
        return
    site, name = ctx.site, resource.name
    plan.resource_ids.append(resource.id)
    plan.changes.append(deletion(STEP, kind, name, f"delete {label} '{name}'", lambda: operations.begin_delete(
        site.resource_group, site.registry.name, name).result()))


def _plan_credential_delete(ctx: RunContext, plan: StepPlan, token: Any, scope_map: Any, users: list[str], *,
                            prefix: str) -> None:
    """A token and its scope map; the scope map stays while other tokens (`users`) use it."""
    acr = ctx.clients.acr
    _plan_delete(ctx, plan, acr.tokens, tokens.TOKEN, f"{prefix}token", token)
    if users:
        plan.resource_ids.append(scope_map.id)
        plan.details["scope_map_kept_for"] = users
    else:
        _plan_delete(ctx, plan, acr.scope_maps, tokens.SCOPE_MAP, f"{prefix}scope map", scope_map)


# -- 1. client access ------------------------------------------------------------------------------
def _plan_detach(ctx: RunContext, plan: StepPlan, connected: Any, token_names: list[str], *,
                 owner: str | None = None) -> None:
    """Take this site's client tokens out of clientTokenIds (of the site's connected registry, or
    `owner`); tokens attached by others stay."""
    lowered = {n.lower() for n in token_names}
    attached = list(connected.client_token_ids or []) if connected else []
    keep = [i for i in attached if readers.name_of(i).lower() not in lowered]
    if len(keep) == len(attached):
        return
    site, cr_name = ctx.site, owner or ctx.site.connected_registry.name

    def detach() -> None:
        with map_exceptions(STEP, f"detaching client tokens from '{cr_name}'", missing_ok=True):
            ctx.clients.acr.connected_registries.begin_update(site.resource_group, site.registry.name, cr_name,
                                                              models.ConnectedRegistryUpdateParameters(
                                                                  properties=models.ConnectedRegistryUpdateProperties(
                                                                      client_token_ids=keep))).result()

    plan.resource_ids.append(connected.id)
    detached = [readers.name_of(i) for i in attached if i not in keep]
    plan.add(Action.UPDATE, "connected registry", cr_name, f"detach client tokens {', '.join(detached)} from "
             f"'{cr_name}'", fields=[FieldChange("client tokens", [readers.name_of(i) for i in attached],
                                                 [readers.name_of(i) for i in keep])], call=detach)


def plan_client_access_removal(ctx: RunContext, found: _Found | None = None) -> StepPlan:
    """Detach this site's client tokens, delete them and their scope maps, then their secrets.
    Refused while a token outside these parameters uses one of the scope maps."""
    found = found or _read(ctx)
    site, acr = ctx.site, ctx.clients.acr
    token_names = [t.name for t in site.client_access.tokens]
    map_names = list(site.client_access.scope_maps)
    plan = _removal()
    if found.registry is not None:
        users = [t.name for t in found.tokens if t.name not in token_names and t.scope_map_id
                 and readers.name_of(t.scope_map_id) in map_names]
        if users:
            raise PreconditionFailed("client_access.scope_maps", f"tokens {', '.join(users)} outside these parameters "
                                                                 "use this site's scope maps; delete them first")
        _plan_detach(ctx, plan, found.connected(site.connected_registry.name), token_names)
        for name in token_names:
            _plan_delete(ctx, plan, acr.tokens, tokens.TOKEN, "client token", found.token(name))
        for name in map_names:
            _plan_delete(ctx, plan, acr.scope_maps, tokens.SCOPE_MAP, "scope map", readers.scope_map(ctx, name))
    plan.changes += secret_deletions(ctx, [names.client_token_secret(n) for n in token_names])
    return plan


# -- 2. the connected registry and its family ---------------------------------------------------------
def _verbs(actions: list[str], repository: str) -> set[str]:
    return {m["verb"] for a in actions if (m := _REPOSITORY_ACTION.match(a)) and m["repo"] == repository}


def _still_needed(action: str, actions: list[str], child_actions: set[str], needed: set[str], mode: str) -> bool:
    """Whether an ancestor keeps a repository action: not the child's, another descendant's, or
    (with its mode's full action set) possibly the ancestor's own repository."""
    match = _REPOSITORY_ACTION.match(action)
    if not match or action not in child_actions or action in needed:
        return True
    return _verbs(actions, match["repo"]) >= set(names.REPOSITORY_ACTIONS[mode])


def _ancestor_updates(ctx: RunContext, members: list, name: str,
                      child_actions: set[str]) -> list[tuple[str, Any, list[str]]]:
    """(ancestor name, its sync scope map, actions to remove) for each ancestor that holds any
    of the child's gateway actions or repository actions no one else needs."""
    gateway = f"gateway/{name.lower()}/"
    others = [c for c in members if c.name.lower() != name.lower()]
    scope_maps = {c.id: family.sync_scope_map(ctx, c) for c in others}
    actions_of = {c.id: list(getattr(scope_maps[c.id], "actions", None) or []) for c in others}
    updates = []
    for member in others:
        actions = actions_of[member.id]
        if not any(a.lower().startswith(gateway) for a in actions):
            continue  # not an ancestor of the child: ancestors hold the child's gateway actions
        needed = {a for c in others if member in family.ancestors(c, members) for a in actions_of[c.id]}
        mode = readers.text(member.mode)
        removal = [a for a in actions if a.lower().startswith(gateway)]
        removal += [a for a in actions if not a.lower().startswith(gateway)
                    and not _still_needed(a, actions, child_actions, needed, mode)]
        updates.append((member.name, scope_maps[member.id], removal))
    return updates


def _plan_ancestor(ctx: RunContext, plan: StepPlan, ancestor: str, scope_map: Any, removal: list[str]) -> None:
    kept = [a for a in scope_map.actions if a not in removal]
    plan.add(Action.UPDATE, tokens.SCOPE_MAP, scope_map.name,
             f"remove {', '.join(removal)} from sync scope map '{scope_map.name}' of ancestor '{ancestor}'",
             fields=[FieldChange("actions", list(scope_map.actions), kept)],
             call=tokens.update_scope_map(ctx, plan, STEP, scope_map.name, kept,
                                          f"update sync scope map '{scope_map.name}' of ancestor '{ancestor}'"))


def _plan_connected_delete(ctx: RunContext, plan: StepPlan, cr: Any) -> None:
    """Deactivate (when Active), then delete, the connected registry."""
    site, acr, name = ctx.site, ctx.clients.acr, ctx.site.connected_registry.name
    plan.resource_ids.append(cr.id)
    if cr.activation and readers.text(cr.activation.status) == "Active":
        def deactivate() -> None:
            with map_exceptions(STEP, f"deactivating connected registry '{name}'", missing_ok=True):
                acr.connected_registries.begin_deactivate(site.resource_group, site.registry.name, name).result()

        plan.add(Action.UPDATE, "connected registry", name, f"deactivate connected registry '{name}'",
                 fields=[FieldChange("activation", "Active", "Inactive")], call=deactivate)
    plan.changes.append(deletion(STEP, "connected registry", name, f"delete connected registry '{name}'",
                                 lambda: acr.connected_registries.begin_delete(site.resource_group, site.registry.name,
                                                                               name).result()))


def _sync_credentials(ctx: RunContext, found: _Found, cr: Any) -> tuple[str, Any, Any]:
    """The sync token's name, the token and its scope map (found through the token, as the CLI does;
    by the connected registry's name once it is gone)."""
    name = ctx.site.connected_registry.name
    token_id = family.sync_token_id(cr) if cr is not None else None
    token_name = readers.name_of(token_id) if token_id else names.sync_token_name(name)
    token = found.token(token_name)
    map_name = readers.name_of(token.scope_map_id) if token and token.scope_map_id else names.sync_scope_map_name(name)
    return token_name, token, readers.scope_map(ctx, map_name)


def plan_connected_registry_removal(ctx: RunContext, found: _Found | None = None) -> StepPlan:
    """Deactivate and delete the connected registry, take its actions out of its ancestors' sync
    scope maps, delete its sync token and scope map. Refused while it has children."""
    found = found or _read(ctx)
    plan = _removal()
    if found.registry is None:
        plan.details["registry"] = "already gone"
        plan.changes += secret_deletions(ctx, names.SYNC_SECRETS)
        return plan
    name = ctx.site.connected_registry.name
    cr = found.connected(name)
    children = [c.name for c in found.family if cr is not None and readers.same_id(c.parent.id, cr.id)]
    if children:
        raise PreconditionFailed(f"connected registry '{name}'", f"has children {', '.join(children)}; "
                                                                 "tear them down first")
    token_name, token, scope_map = _sync_credentials(ctx, found, cr)
    users = token_users(found.tokens, scope_map, besides=[token_name])
    updates = _ancestor_updates(ctx, found.family, name, set(getattr(scope_map, "actions", None) or []))
    if cr is not None:
        _plan_connected_delete(ctx, plan, cr)
    for ancestor, ancestor_map, removal in updates:
        if removal:
            _plan_ancestor(ctx, plan, ancestor, ancestor_map, removal)
    _plan_credential_delete(ctx, plan, token, scope_map, users, prefix="sync ")
    plan.changes += secret_deletions(ctx, names.SYNC_SECRETS)
    return plan


# -- 3. the module pull credential, 4. the host --------------------------------------------------------
def plan_pull_access_removal(ctx: RunContext, found: _Found | None = None) -> StepPlan:
    """The token and scope map `<connected registry>-pull` and the stored password; a nested child's
    token is first detached from the parent connected registry it pulled its modules from."""
    found = found or _read(ctx)
    plan = _removal()
    if found.registry is not None:
        name = names.pull_token_name(ctx.site.connected_registry.name)
        parent = ctx.site.connected_registry.parent
        if parent is not None:
            _plan_detach(ctx, plan, found.connected(parent), [name], owner=parent)
        scope_map = readers.scope_map(ctx, name)
        _plan_credential_delete(ctx, plan, found.token(name), scope_map,
                                token_users(found.tokens, scope_map, besides=[name]), prefix="")
    plan.changes += secret_deletions(ctx, [names.PULL_SECRET])
    return plan


def plan_host_removal(ctx: RunContext) -> StepPlan:
    """The host's identity and its secrets, as the host removes them."""
    plan = _removal()
    plan.changes += host_for(ctx, step=STEP, required=False).removal()
    return plan


# -- 5. the hub and the registry, only when asked ------------------------------------------------------
def plan_hub_removal(ctx: RunContext) -> StepPlan:
    """The IoT hub this site created; refused for a reused hub or one with other devices."""
    if ctx.site.hub.reuse:
        raise ParameterError("hub.reuse", "the hub is reused, not created by this site; teardown does not delete it")
    plan = _removal()
    hub = readers.hub_access(ctx, required=False)
    if hub is not None:
        others = [d for d in readers.device_ids(ctx, hub) if d != ctx.site.device.id]
        if others:
            raise PreconditionFailed(f"hub '{hub.name}'", f"still has devices of others: {', '.join(sorted(others))}")

        def delete() -> None:
            for key in ("hub", "hub_access"):  # later reads in this process must find it gone
                readers.forget(ctx, key)
            ctx.clients.hubs.iot_hub_resource.begin_delete(ctx.site.resource_group, hub.name).result()

        plan.resource_ids.append(hub.id)
        plan.changes.append(deletion(STEP, "IoT hub", hub.name, f"delete IoT hub '{hub.name}'", delete))
    plan.changes += secret_deletions(ctx, [names.HUB_SECRET])
    return plan


def plan_registry_removal(ctx: RunContext, found: _Found | None = None) -> StepPlan:
    """The cloud registry; refused while connected registries of others remain in it."""
    found = found or _read(ctx)
    plan = _removal()
    registry = found.registry
    if registry is None:
        return plan
    mine = ctx.site.connected_registry.name.lower()
    others = [c.name for c in found.family if c.name.lower() != mine]
    if others:
        raise PreconditionFailed(f"registry '{registry.name}'", f"still has connected registries of others: "
                                                                f"{', '.join(sorted(others))}")

    def delete() -> None:
        readers.forget(ctx, "registry")  # later reads in this process must find it gone
        ctx.clients.acr.registries.begin_delete(ctx.site.resource_group, registry.name).result()

    plan.resource_ids.append(registry.id)
    plan.changes.append(deletion(STEP, "registry", registry.name, f"delete registry '{registry.name}'", delete))
    return plan


# -- the step ---------------------------------------------------------------------------------------------
def plan_teardown(ctx: RunContext, *, delete_hub: bool = False, delete_registry: bool = False) -> StepPlan:
    """Everything the site built, removed in order; the hub and registry only when asked. On an Arc
    host the extension goes first: the quickstart deletes it before the connected registry, whose
    pod would otherwise keep running against a deleted registry."""
    if delete_hub and ctx.site.host.kind == "arc":
        raise ParameterError("delete_hub", "host.kind arc uses no IoT hub; leave delete_hub false")
    found = _read(ctx)
    registry_side = [plan_client_access_removal(ctx, found), plan_connected_registry_removal(ctx, found),
                     plan_pull_access_removal(ctx, found)]
    host = plan_host_removal(ctx)
    parts = [host, *registry_side] if ctx.site.host.kind == "arc" else [*registry_side, host]
    parts += [plan_hub_removal(ctx)] if delete_hub else []
    parts += [plan_registry_removal(ctx, found)] if delete_registry else []
    plan = combine_plans(STEP, parts)
    plan.finish = _deleted
    return plan


# One-call forms (plan=True previews) kept for tests and callers; the other parts: plan_*_removal(ctx).outcome(...).
def teardown(ctx: RunContext, *, plan: bool = False, delete_hub: bool = False,
             delete_registry: bool = False) -> StepResult:
    return plan_teardown(ctx, delete_hub=delete_hub, delete_registry=delete_registry).outcome(plan=plan)


def detach_and_delete_client_access(ctx: RunContext, *, plan: bool = False) -> StepResult:
    return plan_client_access_removal(ctx).outcome(plan=plan)


def delete_connected_registry(ctx: RunContext, *, plan: bool = False) -> StepResult:
    return plan_connected_registry_removal(ctx).outcome(plan=plan)
