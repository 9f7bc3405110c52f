"""The module pull credential: what an IoT Edge agent pulls the module images from the cloud
registry with. Planned by the manifest step, which keeps it, and by rotation, which repairs it
before the sync password changes.

The module images come from the cloud registry (the imports step puts them there). The sync token
cannot serve: its scope is the synced repositories only. crlib keeps a dedicated token
`<connected registry>-pull`, bound to a scope map of the same name with content/read on the five
module repositories (edge agent, edge hub, connected registry, API proxy, diagnostics); its
password is the secret "module-pull-password", generated only when the stored one does not work
(checked at the registry's token endpoint, a read). The hyphen keeps it apart from sync tokens,
which are named after connected registries (letters and digits only). An existing token bound to
another scope map is refused, never rebound: crlib may not own it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import requests
from azure.mgmt.containerregistry import models
from dxf import exceptions as dxf_errors

from ..errors import PreconditionFailed
from ..plans import Action, FieldChange, StepPlan
from . import names, readers, tokens
from .errors import map_exceptions, status_code

if TYPE_CHECKING:
    from ..context import RunContext

REFUSED = "the registry refuses the stored password"


def pull_token_name(ctx: RunContext) -> str:
    return names.pull_token_name(ctx.site.connected_registry.name)


def module_repositories(ctx: RunContext) -> list[str]:
    """The repositories of the five module images, each once."""
    return sorted({ref.rsplit(":", 1)[0] for ref in ctx.site.images.all().values()})


def deployed_module_repositories(ctx: RunContext) -> list[str]:
    """The repositories a deployment runs from: the ones a child pulls through its parent (the nested
    tutorial: acr/connected-registry, azureiotedge-agent, azureiotedge-hub, azureiotedge-api-proxy)."""
    images = ctx.site.images
    return sorted({ref.rsplit(":", 1)[0] for ref in (images.connected_registry, images.edge_agent, images.edge_hub,
                                                     images.api_proxy)})


def syncs_module_images(ctx: RunContext) -> bool:
    """connected_registry.sync_module_images, by default on for a nested child (so its ancestors hold
    what it pulls from $upstream) and off otherwise."""
    cr = ctx.site.connected_registry
    return cr.sync_module_images if cr.sync_module_images is not None else cr.parent is not None


def module_sync_actions(ctx: RunContext) -> list[str]:
    """Read actions on the module repositories the connected registry does not list itself, when it
    syncs module images (az acr connected-registry permissions update --add, for every ancestor)."""
    if not syncs_module_images(ctx):
        return []
    listed = {r.lower() for r in ctx.site.connected_registry.repositories}
    return [f"repositories/{repo}/{action}" for repo in deployed_module_repositories(ctx) if repo not in listed
            for action in names.REPOSITORY_ACTIONS["ReadOnly"]]


def password_refusal(ctx: RunContext, registry: Any, token: Any) -> str | None:
    """Why the stored pull password cannot be used (None when it works)."""
    password = ctx.get_secret(names.PULL_SECRET)
    if password is None:
        return "no password is stored"
    if readers.token_password(token) is None:
        return f"the token has no {names.PASSWORD_SLOT}"
    client = ctx.clients.oci(registry.login_server, module_repositories(ctx)[0], username=token.name,
                             password=password)
    try:
        client.authenticate(token.name, password, actions=["pull"])
    except dxf_errors.DXFUnauthorizedError:
        return REFUSED
    except requests.HTTPError as exc:
        if status_code(exc) in (401, 403):
            return REFUSED
        raise
    return None


def _plan_token(ctx: RunContext, plan: StepPlan, step: str, registry: Any, name: str, token: Any) -> None:
    """Create the token bound to its scope map, or enable it."""
    site, acr = ctx.site, ctx.clients.acr
    if token is None:
        body: models.Token | models.TokenUpdateParameters = models.Token(properties=models.TokenProperties(
            scope_map_id=tokens.scope_map_id(registry, name) if registry else None, status="enabled"))
        summary, fields = f"create token '{name}' bound to scope map '{name}'", [
            FieldChange("status", None, "enabled"), FieldChange("scope map", None, name)]
        write: Callable[..., Any] = acr.tokens.begin_create
    elif readers.text(token.status) != "enabled":
        body = models.TokenUpdateParameters(properties=models.TokenUpdateProperties(status="enabled"))
        summary, fields = f"enable token '{name}'", [FieldChange("status", readers.text(token.status), "enabled")]
        write = acr.tokens.begin_update
    else:
        return

    def call() -> None:
        with map_exceptions(step, f"writing the module pull token '{name}'"):
            write(site.resource_group, site.registry.name, name, body).result()

    plan.add(Action.CREATE if token is None else Action.UPDATE, tokens.TOKEN, name, summary, fields=fields,
             call=call)


def _plan_parent_attachment(ctx: RunContext, plan: StepPlan, step: str, registry: Any, name: str) -> None:
    """A nested child pulls its modules from its parent connected registry, whose API proxy accepts
    that registry's client tokens only: attach the pull token to the parent (kept besides the
    parent's own client tokens by the parent site's access step)."""
    parent_name = ctx.site.connected_registry.parent
    assert parent_name is not None
    parent = readers.connected_registry(ctx, parent_name)
    token_id = tokens.token_id(registry, name)
    attached = list(parent.client_token_ids or []) if parent is not None else []
    if parent is None or any(readers.same_id(i, token_id) for i in attached):
        return  # a missing parent is the definition step's refusal

    def attach() -> None:
        with map_exceptions(step, f"attaching token '{name}' to parent connected registry '{parent_name}'"):
            ctx.clients.acr.connected_registries.begin_update(
                ctx.site.resource_group, ctx.site.registry.name, parent_name, models.ConnectedRegistryUpdateParameters(
                    properties=models.ConnectedRegistryUpdateProperties(client_token_ids=[*attached, token_id]))).result()

    plan.add(Action.UPDATE, "connected registry", parent_name,
             f"attach token '{name}' to parent connected registry '{parent_name}' (the device pulls its modules "
             "through it from $upstream)", fields=[FieldChange("client tokens", [readers.name_of(i) for i in attached],
                                                              [*(readers.name_of(i) for i in attached), name])],
             call=attach)


def plan_pull_access(ctx: RunContext, step: str, registry: Any) -> StepPlan:
    """Scope map and token `<cr>-pull` with content/read on the module repositories, and a working
    password in the secret store. `registry` None (a plan before the endpoint step): every write
    is foreseen, and the caller blocks the plan."""
    name = pull_token_name(ctx)
    repositories = module_repositories(ctx)
    listed = ", ".join(repositories)
    scope_map = readers.usable(readers.scope_map(ctx, name)) if registry else None
    token = readers.usable(readers.token(ctx, name)) if registry else None
    if token is not None and readers.name_of(token.scope_map_id or "").lower() != name.lower():
        raise PreconditionFailed(f"token '{name}'", f"is bound to scope map '{token.scope_map_id}', not to "
                                                    f"'{name}'; crlib does not rebind a token it may not own")
    plan = StepPlan(step, created=token is None, details={"pull_token": name},
                    secrets={names.PULL_SECRET: ctx.secret_reference(names.PULL_SECRET)})
    if registry is not None:
        plan.resource_ids += [tokens.scope_map_id(registry, name), tokens.token_id(registry, name)]
    tokens.plan_scope_map(
        ctx, plan, step, kind="module pull scope map", name=name, found=scope_map,
        actions=[f"repositories/{r}/content/read" for r in repositories],
        description=f"crlib: IoT Edge module image pulls for connected registry {ctx.site.connected_registry.name}",
        created=f"create scope map '{name}' (content/read on {listed})",
        updated=lambda added, removed: f"update scope map '{name}' to content/read on {listed}")
    _plan_token(ctx, plan, step, registry, name, token)
    if ctx.site.connected_registry.parent is not None and registry is not None:
        _plan_parent_attachment(ctx, plan, step, registry, name)
    refusal = password_refusal(ctx, registry, token) if token is not None else "the token is new"
    if refusal:
        secret = ctx.secret_name(names.PULL_SECRET)

        def generate() -> None:
            generated = tokens.generate_password(ctx, step, kind="module pull", token_name=name,
                                                 token=tokens.token_id(registry, name))
            ctx.set_secret(names.PULL_SECRET, generated.value)

        plan.add(Action.RUN, "token password", name, f"generate {names.PASSWORD_SLOT} of token '{name}' and store "
                 f"it as secret '{secret}' ({refusal})", fields=[FieldChange(names.PASSWORD_SLOT, None,
                                                                             f"secret '{secret}'")], call=generate)
    return plan
