"""Step 'settings': the sync token's password and the connected registry's connection string, as
`az acr connected-registry get-settings --generate-password 1 --parent-protocol https` makes them.

The password is generated once and kept in the secret store ("sync-password"), together with the
creation time Azure gave it ("sync-password-created"), because Azure never shows a password again.
A re-run uses the stored one while the token's password1 still has that creation time. A deployed
device holds the password, so this step never replaces it on its own: when the token already has a
password1 that the store has no copy of (or a different one), it stops and asks for a rotation
(`rotate_sync_password`, or `ensure_settings(rotate=True)`), after which the device is redeployed.

The connection string's ParentGatewayEndpoint is the connected registry's own
`parent.syncProperties.gatewayEndpoint` from Azure: the cloud registry's data endpoint, or, for a
nested registry, its parent's device endpoint once that parent is online.
"""

from __future__ import annotations

import datetime as dt

from azure.mgmt.containerregistry import models

from ..context import RunContext
from ..errors import PreconditionFailed
from ..results import Status, StepResult
from ..secrets import mask
from .definition import get_or_none, name_of, read_connected_registry, read_registry, text, token_password, writing

STEP = "settings"
ROTATE_STEP = "rotate"
PASSWORD_NAME = "password1"
PASSWORD_SECRET = "sync-password"
CREATED_SECRET = "sync-password-created"
CONNECTION_SECRET = "connected-registry-connection-string"
# The sandbox and Azure both serve the parent gateway over TLS; the CLI forces https for a cloud parent.
PROTOCOL = "https"


def connection_string(name: str, token: str, password: str, gateway_endpoint: str) -> str:
    return (f"ConnectedRegistryName={name};SyncTokenName={token};SyncTokenPassword={password};"
            f"ParentGatewayEndpoint={gateway_endpoint};ParentEndpointProtocol={PROTOCOL}")


def ensure_settings(ctx: RunContext, *, plan: bool = False, rotate: bool = False) -> StepResult:
    """Generate the sync password once, store it and the connection string; never rotate unasked.

    rotate=True regenerates password1 (the deployed device must then be redeployed)."""
    return _converge(ctx, STEP, plan=plan, rotate=rotate)


def rotate_sync_password(ctx: RunContext, *, plan: bool = False) -> StepResult:
    """Regenerate the sync token's password1, store it and rebuild the connection string. The old
    password stops working at once: redeploy the device afterwards."""
    return _converge(ctx, ROTATE_STEP, plan=plan, rotate=True)


def _stored_creation(ctx: RunContext) -> dt.datetime | None:
    stored = ctx.get_secret(CREATED_SECRET)
    return dt.datetime.fromisoformat(stored) if stored else None


def _converge(ctx: RunContext, step: str, *, plan: bool, rotate: bool) -> StepResult:
    acr, cr = ctx.clients.acr, ctx.site.connected_registry
    rg, reg = ctx.site.resource_group, ctx.site.registry.name
    registry = read_registry(ctx, plan=plan)
    connected = read_connected_registry(ctx, registry)
    if connected is None:
        if not plan:
            raise PreconditionFailed("connected_registry", f"connected registry '{cr.name}' does not exist; run "
                                                           "the definition step first")
        return StepResult(step, Status.PLANNED, changes=[
            f"generate password1 of sync token '{cr.name}' and store it as secret "
            f"'{ctx.secret_name(PASSWORD_SECRET)}'",
            f"store the connection string as secret '{ctx.secret_name(CONNECTION_SECRET)}'"])

    sync = connected.parent.sync_properties
    token = get_or_none(lambda: acr.tokens.get(rg, reg, name_of(sync.token_id)))
    if token is None:
        raise PreconditionFailed("connected_registry", f"sync token '{name_of(sync.token_id)}' of '{cr.name}' does "
                                                       "not exist; run the definition step")
    gateway = sync.gateway_endpoint
    if gateway is None and not plan:
        raise PreconditionFailed("connected_registry.parent",
                                 f"'{cr.name}' has no parent gateway endpoint yet: its parent connected registry "
                                 f"'{cr.parent}' reports one once it is online; deploy the parent first")
    current = token_password(token, PASSWORD_NAME)
    stored = ctx.get_secret(PASSWORD_SECRET)
    stored_created = _stored_creation(ctx)
    keep = (not rotate and current is not None and stored is not None
            and stored_created == current.creation_time)
    if not rotate and current is not None and not keep:
        why = ("the secret store has no copy of it" if stored is None else
               "it was regenerated since the stored copy was made")
        raise PreconditionFailed(
            "settings", f"sync token '{token.name}' already has a password1 (created {current.creation_time}) and "
                        f"{why}; this step will not replace a deployed device's password on its own. Rotate it with "
                        "rotate_sync_password (or ensure_settings(rotate=True)), then redeploy the device")

    changes: list[str] = []
    password = stored if keep else None
    if not keep:
        verb = "regenerate" if current is not None else "generate"
        changes.append(f"{verb} password1 of sync token '{token.name}' and store it as secret "
                       f"'{ctx.secret_name(PASSWORD_SECRET)}'" + (" (redeploy the device afterwards)"
                                                                  if current is not None else ""))
        if not plan:
            password = _generate(ctx, step, token)
    password_ref = ctx.secret_reference(PASSWORD_SECRET)
    connection_ref = ctx.secret_reference(CONNECTION_SECRET)
    secrets = {}
    if password is not None and gateway is not None:
        value = connection_string(cr.name, token.name, password, gateway)
        if value != ctx.get_secret(CONNECTION_SECRET):
            changes.append(f"store the connection string (parent gateway {gateway}, {PROTOCOL}) as secret "
                           f"'{ctx.secret_name(CONNECTION_SECRET)}'")
            if not plan:
                ctx.set_secret(CONNECTION_SECRET, value)
        secrets = {PASSWORD_SECRET: mask(password, password_ref), CONNECTION_SECRET: mask(value, connection_ref)}
    else:
        changes.append(f"store the connection string (parent gateway {gateway or 'not known yet'}, {PROTOCOL}) as "
                       f"secret '{ctx.secret_name(CONNECTION_SECRET)}'")

    if plan:
        status = Status.PLANNED if changes else Status.UNCHANGED
    elif not changes:
        status = Status.UNCHANGED
    else:
        status = Status.CREATED if current is None else Status.UPDATED
    if not plan or keep:
        ctx.state[STEP] = {"sync_token_id": token.id, "sync_token_name": token.name, "gateway_endpoint": gateway,
                           "protocol": PROTOCOL, "password_secret": password_ref, "connection_string_secret":
                           connection_ref}
    return StepResult(step, status, [token.id], changes, secrets,
                      {"sync_token": token.name, "gateway_endpoint": gateway, "protocol": PROTOCOL})


def _generate(ctx: RunContext, step: str, token: models.Token) -> str:
    """Generate password1 (the CLI's --generate-password 1) and store it with its creation time."""
    site = ctx.site
    with writing(step, f"generating password1 of sync token '{token.name}'"):
        result = ctx.clients.acr.registries.begin_generate_credentials(
            site.resource_group, site.registry.name,
            models.GenerateCredentialsParameters(token_id=token.id, name=PASSWORD_NAME)).result()
    generated = next(p for p in result.passwords if text(p.name) == PASSWORD_NAME)
    ctx.set_secret(PASSWORD_SECRET, generated.value)
    ctx.set_secret(CREATED_SECRET, generated.creation_time.isoformat())
    return generated.value
