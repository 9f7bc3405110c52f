"""The runbook's order of steps, and running them: all, some, or as a plan.

Each entry names a step and the function that ensures it. `run` gives every step the same
RunContext, so later steps read what earlier ones found (host names, ids) instead of anything
typed by hand. A failure stops the run at that step; the results so far are returned with it.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .context import RunContext
from .errors import CrlibError
from .results import StepResult
from .secrets import install_log_redaction

log = logging.getLogger("crlib.runbook")


@dataclass(frozen=True)
class Step:
    name: str
    target: str  # "module:function"
    title: str

    def function(self) -> Callable[..., StepResult]:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(f"crlib.steps.{module}"), attr)


STEPS = [
    Step("prerequisites", "prerequisites:check_prerequisites", "Sign-in, subscription, providers, image versions"),
    Step("group", "hub:ensure_resource_group", "Resource group"),
    Step("hub", "hub:ensure_hub", "IoT Hub and its service connection string"),
    Step("device", "device:ensure_device", "Edge device identity and its connection string"),
    Step("provision", "device:provision_device", "Device provisioning (iotedge config mp + apply)"),
    Step("endpoint", "endpoint:ensure_endpoint", "Premium registry with its dedicated data endpoint"),
    Step("imports", "imports:ensure_imports", "Image imports"),
    Step("definition", "definition:ensure_connected_registry", "Connected registry, sync scope map and token"),
    Step("settings", "settings:ensure_settings", "Sync password and connection string"),
    Step("manifest", "manifest:ensure_manifest", "IoT Edge deployment manifest"),
    Step("deploy", "deploy:ensure_deployment", "Deployment, until modules run and the registry is Online"),
    Step("access", "access:ensure_client_access", "Client scope maps and tokens"),
    Step("checks", "checks:run_checks", "Pull and push through the device endpoint"),
]
STEP_NAMES = [s.name for s in STEPS]
# Run only when named: they change or remove what the runbook built.
MAINTENANCE = [
    Step("rotate", "deploy:rotate_credentials", "New sync password, redeployed, until Online with it"),
    Step("teardown", "teardown:teardown", "Deactivate and delete the connected registry, remove the device"),
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


def phase(name: str) -> Phase:
    """A phase by notebook name, or by its number alone ("03")."""
    for candidate in PHASES:
        if name in (candidate.notebook, candidate.notebook.split("-")[0], f"{candidate.notebook}.ipynb"):
            return candidate
    from .errors import ParameterError

    raise ParameterError("only", f"unknown notebook '{name}'; notebooks are {', '.join(PHASE_NAMES)}")


class RunFailed(CrlibError):
    """A step failed; `results` holds what ran before it, `step` names it."""

    def __init__(self, step: str, error: Exception, results: list[StepResult]):
        super().__init__(f"step '{step}' failed: {error}")  # CrlibError masks any secret in it
        self.step = step
        self.error = error
        self.results = results


def select(only: Iterable[str] | None = None) -> list[Step]:
    if not only:
        return list(STEPS)
    wanted = set(only)
    every = STEPS + MAINTENANCE
    unknown = wanted - {s.name for s in every}
    if unknown:
        from .errors import ParameterError

        names = ", ".join(s.name for s in every)
        raise ParameterError("only", f"unknown steps {sorted(unknown)}; steps are {names}")
    return [s for s in every if s.name in wanted]


def run(ctx: RunContext, *, plan: bool = False, only: Iterable[str] | None = None,
        options: dict[str, dict] | None = None,
        on_start: Callable[[str], None] | None = None,
        on_result: Callable[[StepResult], None] | None = None) -> list[StepResult]:
    """Run the steps in order; raise RunFailed naming the step that failed.

    `options` holds keyword options per step name, e.g. {"teardown": {"delete_hub": True}}.
    """
    install_log_redaction()
    results: list[StepResult] = []
    for step in select(only):
        if on_start:
            on_start(step.name)
        started = time.monotonic()
        try:
            result = step.function()(ctx, plan=plan, **(options or {}).get(step.name, {}))
        except Exception as exc:
            raise RunFailed(step.name, exc, results) from exc
        result.duration_s = round(time.monotonic() - started, 3)
        log.info("%s: %s (%.1f s)", step.name, result.status, result.duration_s)
        results.append(result)
        if on_result:
            on_result(result)
    return results
