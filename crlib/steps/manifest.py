"""Step 'manifest': the credential the host pulls the module images with, and the deployment it will
run, composed and validated before anything uses it.

The pull credential (crlib.azure.pull_access) is token and scope map `<connected registry>-pull`
with content/read on the module repositories, and its password in the secret store as
"module-pull-password", generated only when the stored one does not work. The deployment comes
from the site's host (crlib.hosts: an IoT Edge manifest today, crlib.hosts.iotedge_manifest): its
record, with `secret:<secret name>` in place of every secret value, is validated while planning,
so an invalid one is refused before any write; the real one again once the pull password exists.
The result carries the record, its sha256, the modules and images and the pull token's name.

While the registry (endpoint step) or the connection string (settings step) is missing, the plan
still lists the pull credential's writes, and is blocked until they exist.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ..azure import names, readers
from ..azure.pull_access import plan_pull_access
from ..context import RunContext
from ..errors import PreconditionFailed
from ..hosts import DeploymentHost, digest, host_for
from ..plans import Action, StepPlan
from ..results import StepResult

STEP = "manifest"



def _inputs_missing(ctx: RunContext, registry: Any) -> PreconditionFailed | None:
    """What an earlier step has not made yet: the registry, or the connection string."""
    if registry is None:
        return PreconditionFailed("registry", f"'{ctx.site.registry.name}' does not exist in resource group "
                                              f"'{ctx.site.resource_group}'; run the endpoint step first")
    if ctx.get_secret(names.CONNECTION_STRING_SECRET) is None:
        return PreconditionFailed("settings", f"no value is stored as secret "
                                              f"'{ctx.secret_name(names.CONNECTION_STRING_SECRET)}'; run the "
                                              "settings step")
    return None


def _record_details(host: DeploymentHost, record: dict) -> dict[str, object]:
    return {"sha256": digest(record), "modules": host.modules(record), "images": host.images(record),
            "record": record}


def plan_manifest(ctx: RunContext) -> StepPlan:
    """The pull credential's writes, and the deployment's record, validated."""
    registry = readers.registry(ctx)
    host = host_for(ctx, step=STEP, required=False)
    missing = _inputs_missing(ctx, registry)
    record = host.desired(record=True) if registry is not None else None
    if record is not None:
        host.validate(record)  # an invalid manifest is refused before the pull credential is written
    # Only IoT Edge pulls module images from the cloud registry; the Arc extension's chart brings its own.
    plan = plan_pull_access(ctx, STEP, registry) if ctx.site.host.kind == "iotedge" else StepPlan(STEP)
    plan.finish = partial(_validated, host)
    if missing is not None:
        plan.blocked_by = missing
        plan.add(Action.RUN, "deployment manifest", host.name,
                 "build and validate the deployment manifest once its inputs exist")
    elif record is not None:
        plan.details |= _record_details(host, record)
    return plan


def _validated(host: DeploymentHost, plan: StepPlan) -> StepResult:
    """After the pull credential's writes: the real deployment (with the secrets) validates too."""
    host.validate(host.desired())
    return StepResult(STEP, plan.applied_status(), list(plan.resource_ids), plan.summaries, dict(plan.secrets),
                      dict(plan.details))


def ensure_manifest(ctx: RunContext, *, plan: bool = False) -> StepResult:
    return plan_manifest(ctx).outcome(plan=plan)

