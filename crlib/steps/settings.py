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

The planning is `crlib.azure.sync_credentials`, shared with the rotate step.
"""

from __future__ import annotations

from ..azure.sync_credentials import plan_sync_credentials
from ..context import RunContext
from ..plans import StepPlan
from ..results import StepResult

STEP = "settings"
ROTATE_STEP = "rotate"


def plan_settings(ctx: RunContext, *, rotate: bool = False) -> StepPlan:
    """Generate the sync password once, store it and the connection string; never rotate unasked.

    rotate=True regenerates password1 (the deployed device must then be redeployed)."""
    return plan_sync_credentials(ctx, STEP, rotate=rotate)


def ensure_settings(ctx: RunContext, *, plan: bool = False, rotate: bool = False) -> StepResult:
    return plan_settings(ctx, rotate=rotate).outcome(plan=plan)


def rotate_sync_password(ctx: RunContext, *, plan: bool = False) -> StepResult:
    """Regenerate the sync token's password1, store it and rebuild the connection string. The old
    password stops working at once: redeploy the device afterwards."""
    return plan_sync_credentials(ctx, ROTATE_STEP, rotate=True).outcome(plan=plan)
