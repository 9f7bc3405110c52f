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
from functools import partial
from typing import Any, cast

from azure.core.credentials import TokenCredential

from ..azure import readers
from ..azure.errors import arm_body, arm_error, map_exceptions
from ..azure.images import Look, read_source, wanted_images
from ..context import RunContext
from ..errors import PreconditionFailed
from ..plans import Action, FieldChange, StepPlan
from ..profiles import sign_in_errors
from ..results import StepResult

STEP = "prerequisites"
SUBSCRIPTION_API_VERSION = "2022-12-01"
PROVIDER_API_VERSION = "2024-03-01"
PROVIDERS = ("Microsoft.ContainerRegistry", "Microsoft.Devices")
# quickstart-connected-registry-arc-cli.md registers these for the cluster extension.
ARC_PROVIDERS = ("Microsoft.ContainerRegistry", "Microsoft.Kubernetes", "Microsoft.KubernetesConfiguration",
                 "Microsoft.ExtendedLocation")


def token_claims(token: str) -> dict[str, Any]:
    """The claims of an Entra access token, read without verifying it (only shown, never trusted)."""
    try:
        payload = token.split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
    except (IndexError, ValueError):
        return {}


def signed_in(ctx: RunContext) -> dict[str, Any]:
    """Tenant, subscription and the identity the credential signs in as."""
    credential = cast(TokenCredential, ctx.profile.credential)  # TargetProfile.credential is typed object
    with sign_in_errors(ctx.profile.kind):  # the first token: no credential is said in one line
        claims = token_claims(credential.get_token(*ctx.profile.credential_scopes).token)
    identity = claims.get("upn") or claims.get("unique_name") or claims.get("appid") or claims.get("oid")
    return {"tenant": claims.get("tid") or ctx.profile.tenant_id, "subscription": ctx.profile.subscription_id,
            "identity": identity, "target": ctx.profile.kind}


def _arm(session: Any, method: str, url: str, what: str, api_version: str) -> Any:
    """A raw ARM request; a transport failure is StepFailed naming `what`."""
    with map_exceptions(STEP, what):
        return session.request(method, url, params={"api-version": api_version}, timeout=60)


def _subscription(ctx: RunContext, session: Any) -> dict[str, Any]:
    url = f"{ctx.profile.arm_endpoint}/subscriptions/{ctx.profile.subscription_id}"
    response = _arm(session, "GET", url, "reading the subscription", SUBSCRIPTION_API_VERSION)
    if response.status_code in (401, 403, 404):
        raise PreconditionFailed("subscription_id", f"subscription '{ctx.profile.subscription_id}' cannot be read "
                                                    f"with this sign-in: {arm_error(response)}")
    body = dict(arm_body(STEP, "reading the subscription", response))
    if body.get("state") not in ("Enabled", "PastDue"):
        raise PreconditionFailed("subscription_id", f"subscription '{body.get('displayName')}' is {body.get('state')}; "
                                                    "it must be Enabled")
    return body


def _plan_providers(ctx: RunContext, session: Any, plan: StepPlan) -> dict[str, str]:
    """Each provider's registration state; registering one that is not is the step's only write."""
    base = f"{ctx.profile.arm_endpoint}/subscriptions/{ctx.profile.subscription_id}/providers"
    states: dict[str, str] = {}
    for namespace in ARC_PROVIDERS if ctx.site.host.kind == "arc" else PROVIDERS:
        read = f"reading resource provider {namespace}"
        state = arm_body(STEP, read, _arm(session, "GET", f"{base}/{namespace}", read, PROVIDER_API_VERSION)).get(
            "registrationState", "NotRegistered")
        states[namespace] = state
        if state not in ("Registered", "Registering"):
            plan.add(Action.UPDATE, "resource provider", namespace, f"register resource provider {namespace}",
                     fields=[FieldChange("registrationState", state, "Registered")],
                     call=partial(_register, ctx, plan, f"{base}/{namespace}", namespace))
    return states


def _register(ctx: RunContext, plan: StepPlan, url: str, namespace: str) -> None:
    # A session of its own: a plan may be applied after the reading session's token expired.
    what = f"registering {namespace}"
    registered = arm_body(STEP, what, _arm(ctx.clients.arm_session(), "POST", f"{url}/register", what, PROVIDER_API_VERSION))
    plan.made["providers"][namespace] = registered.get("registrationState", "Registering")


def _check_registry(ctx: RunContext) -> str:
    """An existing registry must be Premium (the endpoint step refuses to upgrade it)."""
    registry = readers.registry(ctx)
    if registry is None:
        return "will be created (Premium)"
    sku = readers.text(registry.sku.name)
    if sku != "Premium":
        raise PreconditionFailed("registry.sku", f"registry '{registry.name}' exists and is {sku}; connected "
                                                 "registries need Premium. Upgrade it, or choose another name")
    return "exists, Premium"


def _versions(ctx: RunContext) -> list[dict[str, Any]]:
    """Every image the runbook imports, looked up at its source: missing tags are refused here."""
    versions = []
    for image, field in wanted_images(ctx).items():
        look = Look(image, field)
        read_source(ctx, look)  # raises PreconditionFailed naming the field when the tag is missing
        versions.append({"parameter": field, "image": image, "source": ctx.site.images.source_registry,
                         "digest": look.source_digest or f"(not checked: {look.source_unknown})"})
    return versions


def _check_cluster(ctx: RunContext) -> dict[str, Any] | None:
    """An Arc host's cluster: it exists and is Connected. ARM does not show node architectures, so
    "a linux/amd64 node" is checked when the extension installs (the deploy step names it then)."""
    if ctx.site.host.kind != "arc":
        return None
    from ..hosts.arc import ArcHost

    host = ArcHost(ctx, step=STEP)
    cluster = host.cluster()
    problems = host.cluster_findings(cluster)
    if problems:
        raise PreconditionFailed("host.arc.cluster", problems[0].removeprefix("host.arc.cluster: ")
                                 + ("" if cluster is not None else "; connect it with az connectedk8s connect first"))
    return {"name": cluster.name, "connectivity_status": readers.text(cluster.connectivity_status),
            "kubernetes_version": cluster.kubernetes_version, "distribution": cluster.distribution,
            "total_node_count": cluster.total_node_count, "agent_version": cluster.agent_version}


def plan_prerequisites(ctx: RunContext) -> StepPlan:
    """Sign-in, subscription, providers, the registry's SKU when it exists, and image versions."""
    plan = StepPlan(STEP, finish=_prerequisites_result)
    session = ctx.clients.arm_session()
    who = signed_in(ctx)
    subscription = _subscription(ctx, session)
    providers = _plan_providers(ctx, session, plan)
    plan.made["providers"] = dict(providers)  # registration updates this copy; the plan's details stay as read
    plan.details = {**who, "subscription_name": subscription.get("displayName"), "providers": providers,
                    "registry": _check_registry(ctx), "versions": _versions(ctx)}
    if (cluster := _check_cluster(ctx)) is not None:
        plan.details["cluster"] = cluster
    plan.resource_ids = [subscription.get("id", f"/subscriptions/{ctx.profile.subscription_id}")]
    return plan


def _prerequisites_result(plan: StepPlan) -> StepResult:
    """The providers as registration left them."""
    return StepResult(STEP, plan.applied_status(), list(plan.resource_ids), plan.summaries,
                      details=plan.details | {"providers": plan.made["providers"]})


def check_prerequisites(ctx: RunContext, *, plan: bool = False) -> StepResult:
    return plan_prerequisites(ctx).outcome(plan=plan)
