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
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from azure.mgmt.containerregistry import models

from ..context import RunContext
from ..errors import ParameterError, PreconditionFailed
from ..params import REPOSITORY, SCOPE_ACTIONS, Site
from ..results import Status, StepResult, combine
from ..secrets import mask
from .definition import (
    ensure_bound_token,
    get_or_none,
    get_usable,
    name_of,
    read_connected_registry,
    read_registry,
    text,
    token_password,
    writing,
)

STEP = "access"
PASSWORD_NAME = "password1"


def secret_purpose(token_name: str) -> str:
    return f"client-token-{token_name}"


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


def _refuse_takeover(ctx: RunContext, registry, maps: dict, tokens: dict) -> None:
    """Never rebind or rewrite what belongs to someone else (a sibling's sync token or scope map,
    the module pull token): an existing token must already use one of this site's scope maps, and
    an existing scope map may serve only this site's tokens."""
    own_maps = {m.id.lower() for m in maps.values() if m is not None}
    for name, token in tokens.items():
        if token is not None and (token.scope_map_id or "").lower() not in own_maps:
            raise PreconditionFailed(f"client_access.tokens.{name}",
                                     f"token '{name}' exists and uses scope map '{name_of(token.scope_map_id or '-')}',"
                                     " which this site does not define; choose another token name")
    if registry is None or not own_maps:
        return
    own_tokens = {n.lower() for n in tokens}
    for other in ctx.clients.acr.tokens.list(ctx.site.resource_group, ctx.site.registry.name):
        if (other.scope_map_id or "").lower() in own_maps and other.name.lower() not in own_tokens:
            raise PreconditionFailed(f"client_access.scope_maps.{name_of(other.scope_map_id)}",
                                     f"scope map '{name_of(other.scope_map_id)}' already serves token '{other.name}', "
                                     "which this site does not define; choose another scope map name")


# -- the step ---------------------------------------------------------------------------------------
def ensure_client_access(ctx: RunContext, *, plan: bool = False, regenerate: Collection[str] = ()) -> StepResult:
    """Get-or-create the client scope maps and tokens, their passwords, and attach exactly these
    tokens to the connected registry. `regenerate` names tokens whose password1 to replace."""
    site, acr = ctx.site, ctx.clients.acr
    rg, reg, cr_name = site.resource_group, site.registry.name, site.connected_registry.name
    maps_wanted = desired_scope_maps(site)
    _check_tokens(site, regenerate)
    registry = read_registry(ctx, plan=plan)
    connected = read_connected_registry(ctx, registry)
    if connected is None and not plan:
        raise PreconditionFailed("connected_registry", f"connected registry '{cr_name}' does not exist; run the "
                                                       "definition step first")
    maps = {n: get_usable(lambda n=n: acr.scope_maps.get(rg, reg, n)) if registry else None for n in maps_wanted}
    tokens = {t.name: get_usable(lambda t=t: acr.tokens.get(rg, reg, t.name)) if registry else None
              for t in site.client_access.tokens}
    _refuse_takeover(ctx, registry, maps, tokens)
    stored = {name: ctx.get_secret(secret_purpose(name)) for name in tokens}
    for name, token in tokens.items():
        if token is not None and token_password(token, PASSWORD_NAME) and stored[name] is None \
                and name not in regenerate:
            raise PreconditionFailed(
                f"client_access.tokens.{name}",
                f"token '{name}' already has a password1 and the secret store has no copy of it; clients using "
                f"it would be locked out by a new one. Pass regenerate=['{name}'] to replace it, or delete the token")

    parts = []
    for name, actions in maps_wanted.items():
        part, maps[name] = _ensure_scope_map(ctx, name, maps[name], actions, plan=plan)
        parts.append(part)
    secrets: dict[str, str] = {}
    refs: dict[str, str] = {}
    for spec in site.client_access.tokens:
        part, tokens[spec.name] = ensure_bound_token(ctx, STEP, "client", spec.name, spec.scope_map,
                                                     tokens[spec.name], maps[spec.scope_map], plan=plan)
        parts.append(part)
        password = stored[spec.name]
        # A new token, one without password1, or one asked for: the check above ruled out the rest.
        token = tokens[spec.name]
        if token is None or password is None or spec.name in regenerate or not token_password(token, PASSWORD_NAME):
            part, password = _ensure_password(ctx, spec, token, plan=plan)
            parts.append(part)
        refs[spec.name] = ctx.secret_reference(secret_purpose(spec.name))
        if password is not None:
            secrets[secret_purpose(spec.name)] = mask(password, refs[spec.name])
    parts.append(_attach(ctx, connected, tokens, plan=plan))
    result = combine(STEP, parts, plan=plan)
    result.secrets |= secrets
    result.details |= {"scope_maps": maps_wanted, "tokens": [t.name for t in site.client_access.tokens]}
    if not plan:
        ctx.state[STEP] = {"scope_map_ids": {n: m.id for n, m in maps.items()},
                           "token_ids": {n: t.id for n, t in tokens.items()}, "token_secrets": refs}
    return result


def _ensure_scope_map(ctx: RunContext, name: str, scope_map, actions: list[str], *, plan: bool):
    rg, reg, acr = ctx.site.resource_group, ctx.site.registry.name, ctx.clients.acr
    if scope_map is None:
        change = f"create scope map '{name}' ({', '.join(actions)})"
        if plan:
            return StepResult(STEP, Status.CREATED, changes=[change]), None
        with writing(STEP, f"creating scope map '{name}'"):
            scope_map = acr.scope_maps.begin_create(rg, reg, name, models.ScopeMap(
                description=f"Client access for site {ctx.site.site}", actions=actions)).result()
        return StepResult(STEP, Status.CREATED, [scope_map.id], [change]), scope_map
    if set(scope_map.actions) == set(actions):
        return StepResult(STEP, Status.UNCHANGED, [scope_map.id]), scope_map
    change = f"update scope map '{name}' actions to {', '.join(actions)}"
    if not plan:
        with writing(STEP, f"updating scope map '{name}'"):
            scope_map = acr.scope_maps.begin_update(rg, reg, name,
                                                    models.ScopeMapUpdateParameters(actions=actions)).result()
    return StepResult(STEP, Status.UPDATED, [scope_map.id], [change]), scope_map


def _ensure_password(ctx: RunContext, spec, token, *, plan: bool) -> tuple[StepResult, str | None]:
    """Generate password1 (with the expiry the parameters ask for) and store it."""
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(days=spec.expiry_days) if spec.expiry_days else None
    replacing = token is not None and token_password(token, PASSWORD_NAME) is not None
    change = (f"{'regenerate' if replacing else 'generate'} password1 of client token '{spec.name}'"
              f"{f' expiring in {spec.expiry_days} days' if expiry else ''} and store it as secret "
              f"'{ctx.secret_name(secret_purpose(spec.name))}'")
    if plan:
        return StepResult(STEP, Status.UPDATED, changes=[change]), None
    site = ctx.site
    with writing(STEP, f"generating password1 of client token '{spec.name}'"):
        result = ctx.clients.acr.registries.begin_generate_credentials(
            site.resource_group, site.registry.name,
            models.GenerateCredentialsParameters(token_id=token.id, name=PASSWORD_NAME, expiry=expiry)).result()
    password = next(p.value for p in result.passwords if text(p.name) == PASSWORD_NAME)
    ctx.set_secret(secret_purpose(spec.name), password)
    return StepResult(STEP, Status.UPDATED, [token.id], [change]), password


def _attach(ctx: RunContext, connected, tokens: dict, *, plan: bool) -> StepResult:
    """Make clientTokenIds exactly this site's tokens (SET semantics: others are detached)."""
    cr_name = ctx.site.connected_registry.name
    current = {name_of(i).lower(): i for i in (connected.client_token_ids or [])} if connected else {}
    wanted = {name.lower(): name for name in tokens}
    if set(current) == set(wanted):
        return StepResult(STEP, Status.UNCHANGED, [connected.id] if connected else [])
    attach = [wanted[n] for n in wanted if n not in current]
    detach = [name_of(current[n]) for n in current if n not in wanted]
    change = f"set the client tokens of connected registry '{cr_name}' to {', '.join(tokens) or 'none'}" + "".join(
        f"; {verb} {', '.join(names)}" for verb, names in (("attach", attach), ("detach", detach)) if names)
    if plan:
        return StepResult(STEP, Status.UPDATED, [connected.id] if connected else [], [change])
    site = ctx.site
    with writing(STEP, f"setting the client tokens of connected registry '{cr_name}'"):
        updated = ctx.clients.acr.connected_registries.begin_update(
            site.resource_group, site.registry.name, cr_name,
            models.ConnectedRegistryUpdateParameters(client_token_ids=[t.id for t in tokens.values()])).result()
    return StepResult(STEP, Status.UPDATED, [updated.id], [change])


# -- teardown ---------------------------------------------------------------------------------------
def detach_and_delete_client_access(ctx: RunContext, *, plan: bool = False) -> StepResult:
    """Detach this site's client tokens, delete them and their scope maps, then their secrets.
    Whatever is already gone is skipped; tokens attached by others stay attached."""
    site, acr = ctx.site, ctx.clients.acr
    rg, reg, cr_name = site.resource_group, site.registry.name, site.connected_registry.name
    names = [t.name for t in site.client_access.tokens]
    map_names = list(site.client_access.scope_maps)
    registry = get_or_none(lambda: acr.registries.get(rg, reg))
    tokens = {n: get_or_none(lambda n=n: acr.tokens.get(rg, reg, n)) for n in names} if registry else {}
    maps = {n: get_or_none(lambda n=n: acr.scope_maps.get(rg, reg, n)) for n in map_names} if registry else {}
    connected = read_connected_registry(ctx, registry)
    if registry is not None:
        # A scope map still used by someone else's token cannot be deleted: stop before writing.
        users = [t.name for t in acr.tokens.list(rg, reg) if t.name not in names and t.scope_map_id
                 and name_of(t.scope_map_id) in map_names]
        if users:
            raise PreconditionFailed("client_access.scope_maps", f"tokens {', '.join(users)} outside these parameters "
                                                                 "use this site's scope maps; delete them first")
    parts = []
    lowered = {n.lower() for n in names}
    attached = list(connected.client_token_ids or []) if connected else []
    keep = [i for i in attached if name_of(i).lower() not in lowered]
    if len(keep) != len(attached):
        change = f"detach client tokens {', '.join(name_of(i) for i in attached if i not in keep)} from '{cr_name}'"
        if not plan:
            with writing(STEP, f"detaching client tokens from '{cr_name}'"):
                acr.connected_registries.begin_update(
                    rg, reg, cr_name, models.ConnectedRegistryUpdateParameters(client_token_ids=keep)).result()
        parts.append(StepResult(STEP, Status.UPDATED, [connected.id], [change]))
    for kind, found, delete in (("client token", tokens, acr.tokens.begin_delete),
                                ("scope map", maps, acr.scope_maps.begin_delete)):
        for name, resource in found.items():
            if resource is None:
                continue
            if not plan:
                with writing(STEP, f"deleting {kind} '{name}'"):
                    delete(rg, reg, name).result()
            parts.append(StepResult(STEP, Status.DELETED, [resource.id], [f"delete {kind} '{name}'"]))
    for name in names:
        if ctx.get_secret(secret_purpose(name)) is not None:
            if not plan:
                ctx.secrets.delete(ctx.secret_name(secret_purpose(name)))
            parts.append(StepResult(STEP, Status.DELETED, changes=[
                f"delete secret '{ctx.secret_name(secret_purpose(name))}'"]))
    if not plan:
        ctx.state.pop(STEP, None)
    return combine(STEP, parts, plan=plan)
