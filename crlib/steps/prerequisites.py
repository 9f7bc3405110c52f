"""Prerequisites: who is signed in, to which subscription, with the resource providers registered,
and the image versions the parameters name present at their source.

Everything here is read before the first resource is written, so a wrong subscription, a
disabled one, an unregistered provider or a mistyped image tag stops the run at step one instead
of half-way. The only write is registering a provider, which the first create would otherwise
fail on (ARM answers MissingSubscriptionRegistration).
"""

from __future__ import annotations

import base64
import json

from ..context import RunContext
from ..errors import PreconditionFailed, StepFailed
from ..results import Status, StepResult
from .endpoint import get_registry
from .hub import arm_error
from .imports import Look, read_source, wanted_images

STEP = "prerequisites"
SUBSCRIPTION_API_VERSION = "2022-12-01"
PROVIDER_API_VERSION = "2024-03-01"
PROVIDERS = ("Microsoft.ContainerRegistry", "Microsoft.Devices")


def token_claims(token: str) -> dict:
    """The claims of an Entra access token, read without verifying it (only shown, never trusted)."""
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


def signed_in(ctx: RunContext) -> dict:
    """Tenant, subscription and the identity the credential signs in as."""
    claims = token_claims(ctx.profile.credential.get_token(*ctx.profile.credential_scopes).token)
    identity = claims.get("upn") or claims.get("unique_name") or claims.get("appid") or claims.get("oid")
    return {"tenant": claims.get("tid") or ctx.profile.tenant_id, "subscription": ctx.profile.subscription_id,
            "identity": identity, "target": ctx.profile.kind}


def _subscription(ctx: RunContext, session) -> dict:
    url = f"{ctx.profile.arm_endpoint}/subscriptions/{ctx.profile.subscription_id}"
    response = session.get(url, params={"api-version": SUBSCRIPTION_API_VERSION}, timeout=60)
    if response.status_code in (401, 403, 404):
        raise PreconditionFailed("subscription_id", f"subscription '{ctx.profile.subscription_id}' cannot be read "
                                                    f"with this sign-in: {arm_error(response)}")
    if not response.ok:
        raise StepFailed(STEP, f"reading the subscription failed: {arm_error(response)}")
    body = response.json()
    if body.get("state") not in ("Enabled", "PastDue"):
        raise PreconditionFailed("subscription_id", f"subscription '{body.get('displayName')}' is {body.get('state')}; "
                                                    "it must be Enabled")
    return body


def _providers(ctx: RunContext, session, *, plan: bool) -> tuple[dict[str, str], list[str]]:
    base = f"{ctx.profile.arm_endpoint}/subscriptions/{ctx.profile.subscription_id}/providers"
    query = {"api-version": PROVIDER_API_VERSION}
    states, changes = {}, []
    for namespace in PROVIDERS:
        response = session.get(f"{base}/{namespace}", params=query, timeout=60)
        if not response.ok:
            raise StepFailed(STEP, f"reading resource provider {namespace} failed: {arm_error(response)}")
        state = response.json().get("registrationState", "NotRegistered")
        if state not in ("Registered", "Registering"):
            changes.append(f"register resource provider {namespace}")
            if not plan:
                registered = session.post(f"{base}/{namespace}/register", params=query, timeout=60)
                if not registered.ok:
                    raise StepFailed(STEP, f"registering {namespace} failed: {arm_error(registered)}")
                state = registered.json().get("registrationState", "Registering")
        states[namespace] = state
    return states, changes


def _versions(ctx: RunContext) -> list[dict]:
    """Every image the runbook imports, looked up at its source: missing tags are refused here."""
    versions = []
    for image, field in wanted_images(ctx).items():
        look = Look(image, field)
        read_source(ctx, look)  # raises PreconditionFailed naming the field when the tag is missing
        versions.append({"parameter": field, "image": image, "source": ctx.site.images.source_registry,
                         "digest": look.source_digest or f"(not checked: {look.source_unknown})"})
    return versions


def check_prerequisites(ctx: RunContext, *, plan: bool = False) -> StepResult:
    """Sign-in, subscription, providers, the registry's SKU when it exists, and image versions."""
    session = ctx.clients.arm_session()
    who = signed_in(ctx)
    subscription = _subscription(ctx, session)
    providers, changes = _providers(ctx, session, plan=plan)
    registry = get_registry(ctx)
    if registry is not None:
        sku = str(getattr(registry.sku.name, "value", registry.sku.name))
        if sku != "Premium":
            raise PreconditionFailed("registry.sku", f"registry '{registry.name}' exists and is {sku}; connected "
                                                     "registries need Premium. Upgrade it, or choose another name")
    details = {**who, "subscription_name": subscription.get("displayName"), "providers": providers,
               "registry": "exists, Premium" if registry is not None else "will be created (Premium)",
               "versions": _versions(ctx)}
    status = (Status.PLANNED if plan else Status.UPDATED) if changes else Status.UNCHANGED
    ids = [subscription.get("id", f"/subscriptions/{ctx.profile.subscription_id}")]
    return StepResult(STEP, status, ids, changes=changes, details=details)
