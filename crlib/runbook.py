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
from dataclasses import dataclass

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
    Step("group", "hub:ensure_resource_group", "Resource group"),
    Step("hub", "hub:ensure_hub", "IoT Hub and its service connection string"),
    Step("device", "device:ensure_device", "Edge device identity and its connection string"),
    Step("provision", "device:provision_device", "Device provisioning (iotedge config mp + apply)"),
    Step("endpoint", "endpoint:ensure_endpoint", "Premium registry with its dedicated data endpoint"),
    Step("imports", "imports:ensure_imports", "Image imports"),
    Step("definition", "definition:ensure_connected_registry", "Connected registry, sync scope map and token"),
    Step("settings", "settings:ensure_settings", "Sync password and connection string"),
    Step("access", "access:ensure_client_access", "Client scope maps and tokens"),
    Step("manifest", "manifest:ensure_manifest", "IoT Edge deployment manifest"),
    Step("deploy", "deploy:ensure_deployment", "Deployment, until modules run and the registry is Online"),
    Step("checks", "checks:run_checks", "Pull and push through the device endpoint"),
]
STEP_NAMES = [s.name for s in STEPS]


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
    unknown = wanted - set(STEP_NAMES)
    if unknown:
        from .errors import ParameterError

        raise ParameterError("only", f"unknown steps {sorted(unknown)}; steps are {', '.join(STEP_NAMES)}")
    return [s for s in STEPS if s.name in wanted]


def run(ctx: RunContext, *, plan: bool = False, only: Iterable[str] | None = None,
        on_result: Callable[[StepResult], None] | None = None) -> list[StepResult]:
    """Run the steps in order; raise RunFailed naming the step that failed."""
    install_log_redaction()
    results: list[StepResult] = []
    for step in select(only):
        started = time.monotonic()
        try:
            result = step.function()(ctx, plan=plan)
        except Exception as exc:
            raise RunFailed(step.name, exc, results) from exc
        result.duration_s = round(time.monotonic() - started, 3)
        log.info("%s: %s (%.1f s)", step.name, result.status, result.duration_s)
        results.append(result)
        if on_result:
            on_result(result)
    return results
