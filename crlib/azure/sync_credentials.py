"""The sync token's password and the connected registry's connection string, as `az acr
connected-registry get-settings --generate-password 1 --parent-protocol https` makes them: planned
for the settings step (generated once, never replaced unasked) and the rotate step (regenerated).

The password is generated once and kept in the secret store (`names.SYNC_PASSWORD_SECRET`),
together with the creation time Azure gave it (`names.SYNC_PASSWORD_CREATED_SECRET`), because
Azure never shows a password again. A plan keeps the stored one while the token's password1 still
has that creation time. A deployed device holds the password, so without `rotate` a token that
already has a password1 the store has no copy of (or a different one) is refused: a rotation
replaces it, after which the device is redeployed.

The connection string's ParentGatewayEndpoint is the connected registry's own
`parent.syncProperties.gatewayEndpoint` from Azure: the cloud registry's data endpoint, or, for a
nested registry, its parent's device endpoint once that parent is online (until then the plan
says so and its apply is refused).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from ..errors import PreconditionFailed
from ..plans import Action, FieldChange, StepPlan
from ..results import StepResult
from ..secrets import mask
from . import inputs, names, readers, tokens

if TYPE_CHECKING:
    from ..context import RunContext

# The sandbox and Azure both serve the parent gateway over TLS; the CLI forces https for a cloud parent.
PROTOCOL = "https"
PASSWORD = "password"  # StepPlan.made key: the password the connection string carries


def connection_string(name: str, token: str, password: str, gateway_endpoint: str) -> str:
    return (f"ConnectedRegistryName={name};SyncTokenName={token};SyncTokenPassword={password};"
            f"ParentGatewayEndpoint={gateway_endpoint};ParentEndpointProtocol={PROTOCOL}")


def _parts(value: str | None) -> dict[str, str]:
    return dict(part.split("=", 1) for part in (value or "").split(";") if "=" in part)


def _stored_creation(ctx: RunContext) -> dt.datetime | None:
    stored = ctx.get_secret(names.SYNC_PASSWORD_CREATED_SECRET)
    return dt.datetime.fromisoformat(stored) if stored else None


def _unknown(ctx: RunContext, step: str, blocked_by: PreconditionFailed | None) -> StepPlan:
    """Before the connected registry exists: what will happen, and why it cannot yet."""
    plan = StepPlan(step, blocked_by=blocked_by, created=True)
    token = names.sync_token_name(ctx.site.connected_registry.name)
    plan.add(Action.RUN, "token password", token, f"generate {names.PASSWORD_SLOT} of sync token '{token}' and store "
             f"it as secret '{ctx.secret_name(names.SYNC_PASSWORD_SECRET)}'")
    plan.add(Action.CREATE, "secret", ctx.secret_name(names.CONNECTION_STRING_SECRET),
             f"store the connection string as secret '{ctx.secret_name(names.CONNECTION_STRING_SECRET)}'")
    return plan


def _refuse_replacing(ctx: RunContext, token: Any, current: Any) -> None:
    why = ("the secret store has no copy of it" if ctx.get_secret(names.SYNC_PASSWORD_SECRET) is None else
           "it was regenerated since the stored copy was made")
    raise PreconditionFailed(
        "settings", f"sync token '{token.name}' already has a password1 (created {current.creation_time}) and "
                    f"{why}; this step will not replace a deployed device's password on its own. Rotate it, "
                    "which redeploys the device with the new one: crlib run PARAMS --only 90 (notebook "
                    "90-rotate-credentials)")


def _no_gateway(ctx: RunContext) -> PreconditionFailed:
    cr = ctx.site.connected_registry
    if cr.parent is None:
        return PreconditionFailed("connected_registry", f"'{cr.name}' has no parent gateway endpoint in Azure yet")
    return PreconditionFailed("device.parent_address",
                              f"'{cr.name}' syncs from its parent connected registry '{cr.parent}' through the parent "
                              "device: give the parent device's address (host[:port] of its API proxy)")


def _gateway(ctx: RunContext, sync: Any) -> tuple[str | None, PreconditionFailed | None]:
    """Azure's gateway endpoint, or for a nested registry its parent device's address."""
    if sync.gateway_endpoint:
        return str(sync.gateway_endpoint), None
    if ctx.site.connected_registry.parent is None:
        return None, _no_gateway(ctx)
    try:
        parent = ctx.profile.parent_address(ctx.site)
    except PreconditionFailed as exc:
        return None, exc
    return (parent, None) if parent else (None, _no_gateway(ctx))


def _plan_password(ctx: RunContext, plan: StepPlan, token: Any, current: Any) -> None:
    """Generate password1 (the CLI's --generate-password 1) and store it with its creation time."""
    def generate() -> None:
        made = tokens.generate_password(ctx, plan.step, kind="sync", token_name=token.name, token=token.id)
        ctx.set_secret(names.SYNC_PASSWORD_SECRET, made.value)
        ctx.set_secret(names.SYNC_PASSWORD_CREATED_SECRET, made.creation_time.isoformat())
        plan.made[PASSWORD] = made.value

    secret = ctx.secret_name(names.SYNC_PASSWORD_SECRET)
    plan.add(Action.RUN, "token password", token.name,
             f"{'regenerate' if current is not None else 'generate'} {names.PASSWORD_SLOT} of sync token "
             f"'{token.name}' and store it as secret '{secret}'"
             + (" (redeploy the device afterwards)" if current is not None else ""),
             fields=[FieldChange(names.PASSWORD_SLOT, f"created {current.creation_time}" if current else None,
                                 f"secret '{secret}'")], call=generate)


def _plan_connection_string(ctx: RunContext, plan: StepPlan, token: Any, gateway: str | None, *, keep: bool) -> None:
    """Store the connection string unless the store holds it already with the kept password."""
    name = ctx.site.connected_registry.name
    stored = ctx.get_secret(names.CONNECTION_STRING_SECRET)
    if keep and gateway is not None and connection_string(name, token.name, plan.made[PASSWORD], gateway) == stored:
        return

    def store() -> None:
        assert gateway is not None  # a plan without one is blocked and never applied
        ctx.set_secret(names.CONNECTION_STRING_SECRET, connection_string(name, token.name, plan.made[PASSWORD], gateway))

    secret = ctx.secret_name(names.CONNECTION_STRING_SECRET)
    old = _parts(stored)
    plan.add(Action.UPDATE if stored else Action.CREATE, "secret", secret,
             f"store the connection string (parent gateway {gateway or 'not known yet'}, {PROTOCOL}) as secret "
             f"'{secret}'",
             fields=[FieldChange("ParentGatewayEndpoint", old.get("ParentGatewayEndpoint"), gateway),
                     FieldChange("ParentEndpointProtocol", old.get("ParentEndpointProtocol"), PROTOCOL)], call=store)


def _secrets(ctx: RunContext, plan: StepPlan, token: Any, gateway: str | None) -> dict[str, str]:
    """The password and connection string, masked, once both are known."""
    password = plan.made.get(PASSWORD)
    if password is None or gateway is None:
        return {}
    value = connection_string(ctx.site.connected_registry.name, token.name, password, gateway)
    return {names.SYNC_PASSWORD_SECRET: mask(password, ctx.secret_reference(names.SYNC_PASSWORD_SECRET)),
            names.CONNECTION_STRING_SECRET: mask(value, ctx.secret_reference(names.CONNECTION_STRING_SECRET))}


def plan_sync_credentials(ctx: RunContext, step: str, *, rotate: bool) -> StepPlan:
    """The sync password (kept, generated, or with `rotate` regenerated) and the connection string,
    as the `step` ("settings", "rotate") that plans them. Refusals are raised here."""
    cr = ctx.site.connected_registry
    registry, blocked_by = inputs.registry(ctx)
    connected, missing = inputs.connected_registry(ctx, registry)
    if connected is None:
        return _unknown(ctx, step, blocked_by or missing)
    sync = connected.parent.sync_properties
    token = readers.token(ctx, readers.name_of(sync.token_id))
    if token is None:
        raise PreconditionFailed("connected_registry", f"sync token '{readers.name_of(sync.token_id)}' of "
                                                       f"'{cr.name}' does not exist; run the definition step")
    gateway, no_gateway = _gateway(ctx, sync)
    current = readers.token_password(token)
    stored = ctx.get_secret(names.SYNC_PASSWORD_SECRET)
    keep = not rotate and current is not None and stored is not None and _stored_creation(ctx) == current.creation_time
    if not rotate and current is not None and not keep:
        _refuse_replacing(ctx, token, current)

    plan = StepPlan(step, resource_ids=[token.id], created=current is None,
                    blocked_by=blocked_by or no_gateway,
                    details={"sync_token": token.name, "gateway_endpoint": gateway, "protocol": PROTOCOL,
                             "sync_token_id": token.id,
                             "password_secret": ctx.secret_reference(names.SYNC_PASSWORD_SECRET),
                             "connection_string_secret": ctx.secret_reference(names.CONNECTION_STRING_SECRET)})
    if keep:
        plan.made[PASSWORD] = stored
    else:
        _plan_password(ctx, plan, token, current)
    _plan_connection_string(ctx, plan, token, gateway, keep=keep)
    plan.secrets = _secrets(ctx, plan, token, gateway)

    def finish(done: StepPlan) -> StepResult:
        return StepResult(done.step, done.applied_status(), list(done.resource_ids), done.summaries,
                          _secrets(ctx, done, token, gateway), dict(done.details))

    plan.finish = finish
    return plan
