"""Scope maps, tokens and token passwords, planned the same way by every step that makes them.

- `plan_scope_map`: a scope map with exactly some actions (created, or its actions replaced when
  they differ as a set); `update_scope_map` is the write alone (an ancestor's sync scope map).
- `plan_bound_token`: get-or-create an enabled token bound to its scope map (a connected
  registry's sync token, a client token).
- `generate_password`: a token's password1 generated (az acr token credential generate
  --password1), returned once: the caller stores it.

ARM ids are deterministic (`scope_map_id`, `token_id`), so a token's change names the scope map
that an earlier change of the same plan creates. What a call returns is kept in `StepPlan.made`
under `made_key(kind, name)`; `current` gives it, or what was read before.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from azure.mgmt.containerregistry import models

from ..plans import Action, Change, FieldChange, StepPlan
from ..secrets import MASKER
from . import names, readers
from .errors import map_exceptions

if TYPE_CHECKING:
    from ..context import RunContext

SCOPE_MAP = "scope map"
TOKEN = "token"


def scope_map_id(registry: Any, name: str) -> str:
    return f"{registry.id}/scopeMaps/{name}"


def token_id(registry: Any, name: str) -> str:
    return f"{registry.id}/tokens/{name}"


def made_key(kind: str, name: str) -> str:
    return f"{kind} {name}"


def current(plan: StepPlan, kind: str, name: str, found: Any) -> Any:
    """What this plan's calls made of a resource, else what was read before them (or None)."""
    return plan.made.get(made_key(kind, name), found)


# -- scope maps -----------------------------------------------------------------------------------------
def update_scope_map(ctx: RunContext, plan: StepPlan, step: str, name: str, actions: list[str],
                     what: str) -> Callable[[], Any]:
    """The call that replaces scope map `name`'s actions (`what` names it in a refusal)."""
    def call() -> Any:
        site = ctx.site
        with map_exceptions(step, what):
            body = models.ScopeMapUpdateParameters(properties=models.ScopeMapPropertiesUpdateParameters(actions=actions))
            made = ctx.clients.acr.scope_maps.begin_update(site.resource_group, site.registry.name, name,
                                                           body).result()
        plan.made[made_key(SCOPE_MAP, name)] = made
        return made

    return call


def _create_scope_map(ctx: RunContext, plan: StepPlan, step: str, kind: str, name: str, actions: list[str],
                      description: str) -> Callable[[], Any]:
    def call() -> Any:
        site = ctx.site
        with map_exceptions(step, f"creating {kind} '{name}'"):
            made = ctx.clients.acr.scope_maps.begin_create(site.resource_group, site.registry.name, name, models.ScopeMap(
                properties=models.ScopeMapProperties(actions=actions, description=description))).result()
        plan.made[made_key(SCOPE_MAP, name)] = made
        return made

    return call


def plan_scope_map(ctx: RunContext, plan: StepPlan, step: str, *, kind: str, name: str, found: Any,
                   actions: list[str], description: str, created: str,
                   updated: Callable[[list[str], list[str]], str]) -> Change | None:
    """Create scope map `name` with `actions` (`created` says so), or replace its actions when they
    differ as a set (`updated(added, removed)` says so). `kind` names it in a refusal ("sync scope map")."""
    if found is None:
        return plan.add(Action.CREATE, SCOPE_MAP, name, created, fields=[FieldChange("actions", None, actions)],
                        call=_create_scope_map(ctx, plan, step, kind, name, actions, description))
    now = list(found.actions or [])
    added = [a for a in actions if a not in now]
    removed = [a for a in now if a not in actions]
    if not added and not removed:
        return None
    return plan.add(Action.UPDATE, SCOPE_MAP, found.name, updated(added, removed),
                    fields=[FieldChange("actions", now, actions)],
                    call=update_scope_map(ctx, plan, step, found.name, actions, f"updating {kind} '{found.name}'"))


# -- tokens ------------------------------------------------------------------------------------------------
def plan_bound_token(ctx: RunContext, plan: StepPlan, step: str, *, kind: str, name: str, map_name: str,
                     found: Any, map_id: str | None) -> Change | None:
    """Get-or-create an enabled `kind` token ("sync", "client") bound to scope map `map_name`, whose id
    is `map_id` (None only in a plan that cannot be applied: the registry does not exist yet)."""
    site, acr = ctx.site, ctx.clients.acr
    if found is None:
        def create() -> Any:
            with map_exceptions(step, f"creating {kind} token '{name}'"):
                made = acr.tokens.begin_create(site.resource_group, site.registry.name, name,
                                               models.Token(properties=models.TokenProperties(
                                                   scope_map_id=map_id, status="enabled"))).result()
            plan.made[made_key(TOKEN, name)] = readers.written(ctx, "token", made)
            return made

        return plan.add(Action.CREATE, TOKEN, name, f"create {kind} token '{name}' (enabled, scope map '{map_name}')",
                        fields=[FieldChange("status", None, "enabled"), FieldChange("scope map", None, map_name)],
                        call=create)
    status, bound_to = readers.text(found.status), readers.name_of(found.scope_map_id or "-")
    if readers.same_id(found.scope_map_id, map_id) and status == "enabled":
        return None

    def update() -> Any:
        with map_exceptions(step, f"updating {kind} token '{found.name}'"):
            made = acr.tokens.begin_update(site.resource_group, site.registry.name, found.name,
                                           models.TokenUpdateParameters(properties=models.TokenUpdateProperties(
                                               scope_map_id=map_id, status="enabled"))).result()
        plan.made[made_key(TOKEN, name)] = readers.written(ctx, "token", made)
        return made

    return plan.add(Action.UPDATE, TOKEN, found.name,
                    f"update {kind} token '{found.name}': status {status} -> enabled, scope map '{bound_to}' -> "
                    f"'{map_name}'",
                    fields=[FieldChange("status", status, "enabled"), FieldChange("scope map", bound_to, map_name)],
                    call=update)


# -- passwords ---------------------------------------------------------------------------------------------
def generate_password(ctx: RunContext, step: str, *, kind: str, token_name: str, token: str | None,
                      expiry: dt.datetime | None = None) -> Any:
    """Generate password1 of the token whose id is `token` (None only in a plan that cannot be
    applied); the SDK's password entry (value, creation time), its value registered with the
    masker. Azure never shows it again."""
    site = ctx.site
    readers.changed_since_written(ctx, "token", token_name)  # its passwords change: the next read asks ARM
    with map_exceptions(step, f"generating {names.PASSWORD_SLOT} of {kind} token '{token_name}'"):
        result = ctx.clients.acr.registries.begin_generate_credentials(
            site.resource_group, site.registry.name,
            models.GenerateCredentialsParameters(token_id=token, name=names.PASSWORD_SLOT, expiry=expiry)).result()
    generated = next(p for p in result.passwords or [] if readers.text(p.name) == names.PASSWORD_SLOT)
    MASKER.register(generated.value)
    return generated
