"""Step 'access': the client scope maps and tokens that devices' clients sign in with, attached to
the connected registry.

Scope maps come from `client_access.scope_maps` (actions `repositories/<repo>/<action>`), tokens
from `client_access.tokens` (enabled, bound to their scope map). A token's password1 is generated
once, with the optional expiry, and kept in the secret store as "client-token-<name>"; re-runs use
the stored one. When a token already has a password1 but the store has no copy, the step stops
rather than break the clients using it: pass `regenerate=[name]` to replace it.

Attaching uses SET semantics: the connected registry's clientTokenIds becomes exactly this site's
tokens, so tokens attached by hand (or left over from an earlier parameter set) are detached. The
parameters are the one record of who may use the device endpoint. Child connected registries'
sync tokens are not client tokens and are not affected.

`plan_access` reads everything and makes every refusal (names that would take over the sync
credentials or someone else's token or scope map, a password the store lost) before the first
write. The teardown step (crlib.steps.teardown) undoes it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, cast

from azure.mgmt.containerregistry import models

from ..azure import inputs, names, readers, tokens
from ..azure.errors import map_exceptions
from ..azure.names import PASSWORD_SLOT, client_token_secret
from ..azure.readers import name_of, same_id
from ..context import RunContext
from ..errors import ParameterError, PreconditionFailed
from ..params import REPOSITORY, SCOPE_ACTIONS, ClientToken, Site
from ..plans import Action, FieldChange, StepPlan
from ..results import StepResult
from ..secrets import mask

STEP = "access"
CONNECTED = "connected registry"


# -- checks made before anything is written ---------------------------------------------------------
def desired_scope_maps(site: Site) -> dict[str, list[str]]:
    """Scope map name -> actions, checked again here because a wrong action is only refused by Azure
    after earlier writes, and a name shared with the sync scope map would take it over."""
    sync_name = site.connected_registry.name.lower()
    maps = {}
    for name, repositories in site.client_access.scope_maps.items():
        field = f"client_access.scope_maps.{name}"
        if name.lower() == sync_name:
            raise ParameterError(field, f"'{name}' is the connected registry's sync scope map; choose another name")
        actions: list[str] = []
        for repo, verbs in repositories.items():
            if repo != "*" and not REPOSITORY.match(repo.removesuffix("/*")):
                raise ParameterError(field, f"'{repo}' is not a repository name, '*' or '<prefix>/*'")
            bad = [v for v in verbs if v not in SCOPE_ACTIONS]
            if bad or not verbs:
                raise ParameterError(field, f"actions {bad or verbs} for '{repo}' must be some of "
                                            f"{', '.join(SCOPE_ACTIONS)}")
            actions += [a for a in (f"repositories/{repo}/{v}" for v in verbs) if a not in actions]
        maps[name] = actions
    return maps


def _check_tokens(site: Site, regenerate: Collection[str]) -> None:
    names = [t.name.lower() for t in site.client_access.tokens]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ParameterError("client_access.tokens", f"tokens {', '.join(twice)} are listed twice")
    if site.connected_registry.name.lower() in names:
        raise ParameterError("client_access.tokens", f"'{site.connected_registry.name}' is the connected registry's "
                                                     "sync token; choose another name")
    unknown = sorted(set(regenerate) - {t.name for t in site.client_access.tokens})
    if unknown:
        raise ParameterError("regenerate", f"{', '.join(unknown)} are not tokens in client_access.tokens")


def _refuse_takeover(ctx: RunContext, registry: Any, maps: dict[str, Any], found: dict[str, Any]) -> None:
    """Never rebind or rewrite what belongs to someone else (a sibling's sync token or scope map,
    the module pull token): an existing token must already use one of this site's scope maps, and
    an existing scope map may serve only this site's tokens."""
    own_maps = {m.id.lower() for m in maps.values() if m is not None}
    for name, token in found.items():
        if token is not None and (token.scope_map_id or "").lower() not in own_maps:
            raise PreconditionFailed(f"client_access.tokens.{name}",
                                     f"token '{name}' exists and uses scope map '{name_of(token.scope_map_id or '-')}',"
                                     " which this site does not define; choose another token name")
    if registry is None or not own_maps:
        return
    own_tokens = {n.lower() for n in found}
    for other in readers.tokens(ctx):
        if (other.scope_map_id or "").lower() in own_maps and other.name.lower() not in own_tokens:
            raise PreconditionFailed(f"client_access.scope_maps.{name_of(other.scope_map_id)}",
                                     f"scope map '{name_of(other.scope_map_id)}' already serves token '{other.name}', "
                                     "which this site does not define; choose another scope map name")


def _refuse_lost_passwords(found: dict[str, Any], stored: dict[str, str | None], regenerate: Collection[str]) -> None:
    for name, token in found.items():
        if token is not None and readers.token_password(token) and stored[name] is None and name not in regenerate:
            raise PreconditionFailed(
                f"client_access.tokens.{name}",
                f"token '{name}' already has a password1 and the secret store has no copy of it; clients using "
                f"it would be locked out by a new one. Pass regenerate=['{name}'] to replace it, or delete the token")


# -- what the step reads, once ----------------------------------------------------------------------
@dataclass
class _Read:
    registry: Any
    connected: Any
    maps_wanted: dict[str, list[str]]
    maps: dict[str, Any]  # scope map name -> as read (None: missing or Failed)
    found: dict[str, Any]  # token name -> as read
    stored: dict[str, str | None]  # token name -> the password the store holds

    def map_id(self, plan: StepPlan, name: str) -> str | None:
        made = tokens.current(plan, tokens.SCOPE_MAP, name, self.maps.get(name))
        if made is not None:
            return made.id
        return tokens.scope_map_id(self.registry, name) if self.registry is not None else None

    def token_id(self, plan: StepPlan, name: str) -> str | None:
        made = tokens.current(plan, tokens.TOKEN, name, self.found.get(name))
        if made is not None:
            return made.id
        return tokens.token_id(self.registry, name) if self.registry is not None else None


def _read(ctx: RunContext, registry: Any, connected: Any, maps_wanted: dict[str, list[str]],
          regenerate: Collection[str]) -> _Read:
    exists = registry is not None
    maps = {n: readers.usable(readers.scope_map(ctx, n)) if exists else None for n in maps_wanted}
    found = {t.name: readers.usable(readers.token(ctx, t.name)) if exists else None
             for t in ctx.site.client_access.tokens}
    _refuse_takeover(ctx, registry, maps, found)
    stored = {name: ctx.get_secret(client_token_secret(name)) for name in found}
    _refuse_lost_passwords(found, stored, regenerate)
    return _Read(registry, connected, maps_wanted, maps, found, stored)


# -- the writes -------------------------------------------------------------------------------------
def _plan_scope_map(ctx: RunContext, plan: StepPlan, name: str, found: Any, actions: list[str]) -> None:
    tokens.plan_scope_map(ctx, plan, STEP, kind="scope map", name=name, found=found, actions=actions,
                          description=f"Client access for site {ctx.site.site}",
                          created=f"create scope map '{name}' ({', '.join(actions)})",
                          updated=lambda _added, _removed: f"update scope map '{name}' actions to {', '.join(actions)}")


def _password_key(name: str) -> str:
    return f"password {name}"


def _plan_password(ctx: RunContext, plan: StepPlan, read: _Read, spec: ClientToken) -> None:
    """Generate password1 (with the expiry the parameters ask for) and store it."""
    def generate() -> None:
        # By the service's clock: the sandbox's runs faster than the wall clock and checks expiries by it.
        expiry = ctx.profile.now() + dt.timedelta(days=spec.expiry_days) if spec.expiry_days else None
        made = tokens.generate_password(ctx, STEP, kind="client", token_name=spec.name,
                                        token=read.token_id(plan, spec.name), expiry=expiry)
        ctx.set_secret(client_token_secret(spec.name), made.value)
        plan.made[_password_key(spec.name)] = made.value

    found = read.found[spec.name]
    replacing = found is not None and readers.token_password(found) is not None
    secret = ctx.secret_name(client_token_secret(spec.name))
    expiring = f" expiring in {spec.expiry_days} days" if spec.expiry_days else ""
    plan.add(Action.RUN, "token password", spec.name,
             f"{'regenerate' if replacing else 'generate'} {PASSWORD_SLOT} of client token '{spec.name}'{expiring} "
             f"and store it as secret '{secret}'",
             fields=[FieldChange(PASSWORD_SLOT, "set" if replacing else None, f"secret '{secret}'"),
                     FieldChange("expiry days", None, spec.expiry_days)], call=generate)


def _plan_token(ctx: RunContext, plan: StepPlan, read: _Read, spec: ClientToken, regenerate: Collection[str]) -> None:
    found, stored = read.found[spec.name], read.stored[spec.name]
    tokens.plan_bound_token(ctx, plan, STEP, kind="client", name=spec.name, map_name=spec.scope_map, found=found,
                            map_id=read.map_id(plan, spec.scope_map))
    # A new token, one without password1, or one asked for: _refuse_lost_passwords ruled out the rest.
    if found is None or stored is None or spec.name in regenerate or not readers.token_password(found):
        _plan_password(ctx, plan, read, spec)
    else:
        plan.made[_password_key(spec.name)] = stored


def _children_pull_tokens(ctx: RunContext, connected: Any) -> dict[str, str]:
    """The module pull tokens of this registry's nested children attached to it (name -> id)."""
    if connected is None:
        return {}
    children = {names.pull_token_name(c.name).lower() for c in readers.connected_registries(ctx)
                if c.parent is not None and c.parent.id and same_id(c.parent.id, connected.id)}
    return {name_of(i).lower(): i for i in connected.client_token_ids or [] if name_of(i).lower() in children}


def _plan_attach(ctx: RunContext, plan: StepPlan, read: _Read) -> None:
    """Make clientTokenIds exactly this site's tokens (SET semantics: others are detached), besides
    the module pull tokens of nested children, which their own sites attach here."""
    cr_name = ctx.site.connected_registry.name
    attached = {name_of(i).lower(): i for i in (read.connected.client_token_ids or [])} if read.connected else {}
    children = _children_pull_tokens(ctx, read.connected)
    attached = {n: i for n, i in attached.items() if n not in children}
    wanted = {name.lower(): name for name in read.found}
    if set(attached) == set(wanted):
        return
    attach = [wanted[n] for n in wanted if n not in attached]
    detach = [name_of(attached[n]) for n in attached if n not in wanted]
    kept = list(children.values())

    def call() -> None:
        site = ctx.site
        with map_exceptions(STEP, f"setting the client tokens of connected registry '{cr_name}'"):
            # Applied only once the registry exists: every token then has an id.
            ids = cast("list[str]", [read.token_id(plan, name) for name in read.found]) + kept
            made = ctx.clients.acr.connected_registries.begin_update(
                site.resource_group, site.registry.name, cr_name, models.ConnectedRegistryUpdateParameters(
                    properties=models.ConnectedRegistryUpdateProperties(client_token_ids=ids))).result()
            plan.made[CONNECTED] = readers.written(ctx, "connected_registry", made)

    plan.add(Action.UPDATE, CONNECTED, cr_name,
             f"set the client tokens of connected registry '{cr_name}' to {', '.join(read.found) or 'none'}" + "".join(
                 f"; {verb} {', '.join(names)}" for verb, names in (("attach", attach), ("detach", detach)) if names),
             fields=[FieldChange("client tokens", sorted(name_of(i) for i in attached.values()), list(read.found))],
             call=call)


# -- what the step reports ------------------------------------------------------------------------------
def _describe(ctx: RunContext, plan: StepPlan, read: _Read, *, applied: bool) -> None:
    """Resource ids, details and masked secrets from what was read, or what the calls made."""
    site = ctx.site
    maps = {n: tokens.current(plan, tokens.SCOPE_MAP, n, read.maps[n]) for n in read.maps_wanted}
    found = {n: tokens.current(plan, tokens.TOKEN, n, read.found[n]) for n in read.found}
    connected = plan.made.get(CONNECTED, read.connected)
    plan.resource_ids = [r.id for r in (*maps.values(), *found.values(), connected) if r is not None]
    refs = {n: ctx.secret_reference(client_token_secret(n)) for n in read.found}
    plan.secrets = {client_token_secret(n): mask(plan.made[_password_key(n)], refs[n])
                    for n in read.found if plan.made.get(_password_key(n)) is not None}
    plan.details = {"scope_maps": read.maps_wanted, "tokens": [t.name for t in site.client_access.tokens]}
    if applied:
        plan.details |= {"scope_map_ids": {n: m.id for n, m in maps.items()},
                         "token_ids": {n: t.id for n, t in found.items()}, "token_secrets": refs}


# -- the step ---------------------------------------------------------------------------------------
def plan_access(ctx: RunContext, *, regenerate: Collection[str] = ()) -> StepPlan:
    """Get-or-create the client scope maps and tokens, their passwords, and attach exactly these
    tokens to the connected registry. `regenerate` names tokens whose password1 to replace. Every
    refusal is raised here; a missing registry or connected registry blocks the apply."""
    maps_wanted = desired_scope_maps(ctx.site)
    _check_tokens(ctx.site, regenerate)
    registry, blocked_by = inputs.registry(ctx)
    connected, missing = inputs.connected_registry(ctx, registry)
    read = _read(ctx, registry, connected, maps_wanted, regenerate)
    plan = StepPlan(STEP, blocked_by=blocked_by or missing)
    for name, actions in maps_wanted.items():
        _plan_scope_map(ctx, plan, name, read.maps[name], actions)
    for spec in ctx.site.client_access.tokens:
        _plan_token(ctx, plan, read, spec, regenerate)
    _plan_attach(ctx, plan, read)
    plan.created = any(c.action == Action.CREATE for c in plan.changes)
    _describe(ctx, plan, read, applied=False)

    def finish(done: StepPlan) -> StepResult:
        _describe(ctx, done, read, applied=True)
        return StepResult(STEP, done.applied_status(), list(done.resource_ids), done.summaries, dict(done.secrets),
                          dict(done.details))

    plan.finish = finish
    return plan


def ensure_client_access(ctx: RunContext, *, plan: bool = False, regenerate: Collection[str] = ()) -> StepResult:
    return plan_access(ctx, regenerate=regenerate).outcome(plan=plan)
