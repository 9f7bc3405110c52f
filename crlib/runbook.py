"""The runbook's order of steps, and running them: all, some, or as a plan.

A `Step` is its planner function with its name and title; the list below refers to the functions
themselves, so a rename breaks at import (and tools find every use), not at run time. Each planner
reads the current state once and returns a `crlib.plans.StepPlan`; `run` previews it (plan mode)
or applies it. Plans made earlier in the same process (a notebook's plan cell) are passed in as
`plans` and applied as they were shown, unless they were provisional or an earlier step of this
run changed something, in which case the step plans again first. A failure stops the run at that
step; the results so far are returned with it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .azure import readers
from .context import RunContext
from .errors import ParameterError, RunFailed
from .plans import StepPlan
from .results import StepResult
from .secrets import install_log_redaction
from .steps import (
    access,
    checks,
    definition,
    deploy,
    device,
    endpoint,
    hub,
    imports,
    manifest,
    prerequisites,
    settings,
    teardown,
)

log = logging.getLogger("crlib.runbook")


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    planner: Callable[..., StepPlan]


STEPS = [
    Step("prerequisites", "Sign-in, subscription, providers, image versions", prerequisites.plan_prerequisites),
    Step("group", "Resource group", hub.plan_resource_group),
    Step("hub", "IoT Hub and its service connection string", hub.plan_hub),
    Step("device", "Edge device identity and its connection string", device.plan_device),
    Step("provision", "Device provisioning (iotedge config mp + apply)", device.plan_provision),
    Step("endpoint", "Premium registry with its dedicated data endpoint", endpoint.plan_endpoint),
    Step("imports", "Image imports", imports.plan_imports),
    Step("definition", "Connected registry, sync scope map and token", definition.plan_definition),
    Step("settings", "Sync password and connection string", settings.plan_settings),
    Step("manifest", "IoT Edge deployment manifest", manifest.plan_manifest),
    Step("deploy", "Deployment, until modules run and the registry is Online", deploy.plan_deployment),
    Step("access", "Client scope maps and tokens", access.plan_access),
    Step("checks", "Pull and push through the device endpoint", checks.plan_checks),
]
STEP_NAMES = [s.name for s in STEPS]
# Run only when named: they change or remove what the runbook built.
MAINTENANCE = [
    Step("rotate", "New sync password, redeployed, until Online with it", deploy.plan_rotation),
    Step("teardown", "Deactivate and delete the connected registry, remove the device", teardown.plan_teardown),
]


@dataclass(frozen=True)
class Phase:
    """One notebook: the steps it runs, the parameters its form offers, and the notebook's own
    parameters that become step options (e.g. teardown's delete_hub)."""

    notebook: str
    steps: tuple[str, ...]
    fields: tuple[str, ...]
    options: dict[str, dict[str, str]] = field(default_factory=dict)  # step -> option -> help

    @property
    def option_names(self) -> list[str]:
        return [name for per_step in self.options.values() for name in per_step]


_IMAGE_FIELDS = ("images.source_registry", "images.connected_registry", "images.edge_agent", "images.edge_hub",
                 "images.api_proxy", "images.diagnostics")
PHASES = [
    Phase("00-prerequisites", ("prerequisites", "group"),
          ("site", "subscription_id", "resource_group", "location", "registry.name", *_IMAGE_FIELDS)),
    Phase("01-iot-hub-and-device", ("hub", "device", "provision"),
          ("hub.name", "hub.sku", "hub.reuse", "device.id", "device.host_os", "device.parent_device")),
    Phase("02-registry", ("endpoint", "imports"), ("registry.name", *_IMAGE_FIELDS)),
    Phase("03-connected-registry", ("definition", "settings"),
          ("connected_registry.name", "connected_registry.mode", "connected_registry.repositories",
           "connected_registry.sync_schedule", "connected_registry.sync_window", "connected_registry.message_ttl",
           "connected_registry.log_level", "connected_registry.notifications", "connected_registry.parent")),
    Phase("04-deploy", ("manifest", "deploy"), ("device.id", "connected_registry.name")),
    Phase("05-client-access", ("access",), ("client_access.scope_maps", "client_access.tokens")),
    Phase("06-checks", ("checks",), ("checks.pull_image", "checks.push_repository", "checks.client_token")),
    Phase("90-rotate-credentials", ("rotate",), ("connected_registry.name", "device.id")),
    Phase("99-teardown", ("teardown",), ("connected_registry.name", "device.id"),
          {"teardown": {"delete_hub": "also delete the IoT hub (never while another site uses it)",
                        "delete_registry": "also delete the cloud registry (never while another site uses it)"}}),
]
PHASE_NAMES = [p.notebook for p in PHASES]
DEFAULT_PHASES = [p for p in PHASES if p.notebook < "90"]  # rotation and teardown run only when named
# Notebooks beside the phases, which `crlib run` never runs: the fleet's (crlib/fleet_page.py) and the
# day-2 status view (crlib/status.py, which reads and never writes).
OTHER_NOTEBOOKS = ("10-fleet", "11-status")


def phase(name: str) -> Phase:
    """A phase by notebook name, or by its number alone ("03")."""
    for candidate in PHASES:
        if name in (candidate.notebook, candidate.notebook.split("-")[0], f"{candidate.notebook}.ipynb"):
            return candidate
    raise ParameterError("only", f"unknown notebook '{name}'; notebooks are {', '.join(PHASE_NAMES)}")


def select(only: Iterable[str] | None = None) -> list[Step]:
    if not only:
        return list(STEPS)
    wanted = set(only)
    every = STEPS + MAINTENANCE
    unknown = wanted - {s.name for s in every}
    if unknown:
        names = ", ".join(s.name for s in every)
        raise ParameterError("only", f"unknown steps {sorted(unknown)}; steps are {names}")
    return [s for s in every if s.name in wanted]


def run(ctx: RunContext, *, plan: bool = False, only: Iterable[str] | None = None,
        options: dict[str, dict[str, Any]] | None = None, plans: dict[str, StepPlan] | None = None,
        on_start: Callable[[str], None] | None = None,
        on_result: Callable[[StepResult], None] | None = None) -> list[StepResult]:
    """Run the steps in order; raise RunFailed naming the step that failed.

    `options` holds keyword options per step name, e.g. {"teardown": {"delete_hub": True}}.
    `plans` maps step names to plans already made in this process: apply uses them instead of
    reading again; every plan this call makes is put there.
    """
    install_log_redaction()
    outer = ctx.cache.get(readers.RUN_KEY)
    ctx.cache[readers.RUN_KEY] = outer or object()
    try:
        return _run(ctx, plan=plan, only=only, options=options, plans=plans, on_start=on_start, on_result=on_result)
    finally:
        if outer is None:
            ctx.cache.pop(readers.RUN_KEY, None)
            readers.forget_written(ctx)


def _run(ctx: RunContext, *, plan: bool, only: Iterable[str] | None, options: dict[str, dict[str, Any]] | None,
         plans: dict[str, StepPlan] | None, on_start: Callable[[str], None] | None,
         on_result: Callable[[StepResult], None] | None) -> list[StepResult]:
    results: list[StepResult] = []
    kept = plans if plans is not None else {}
    earlier_changes = False
    for step in select(only):
        if on_start:
            on_start(step.name)
        started = time.monotonic()
        try:
            step_plan = kept.get(step.name)
            if step_plan is None or step_plan.provisional or (earlier_changes and not plan):
                step_plan = kept[step.name] = step.planner(ctx, **(options or {}).get(step.name, {}))
            result = step_plan.preview() if plan else step_plan.apply()
        except Exception as exc:
            raise RunFailed(step.name, exc, results) from exc
        if not plan:
            kept.pop(step.name, None)  # applied: a later run plans again
            earlier_changes = earlier_changes or bool(result.changes)
        result.duration_s = round(time.monotonic() - started, 3)
        log.info("%s: %s (%.1f s)", step.name, result.status, result.duration_s)
        results.append(result)
        if on_result:
            on_result(result)
    return results
