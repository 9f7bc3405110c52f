"""Image imports: the five module images and the checks' image, copied from the source registry
into the cloud registry under the same repository and tag, concurrently, in NoForce mode.

Before anything is imported, every image is looked at on both sides (`crlib.azure.images`). The
target's digest is read through the registry's data plane (an Entra token exchanged for an ACR
refresh token); the source's with an anonymous manifest HEAD. An image whose target tag holds the
source's digest is left alone; one whose target tag holds other content is refused before any
import (NoForce would fail on it, and moving a tag is the owner's call). When the source cannot be
reached from here, an existing target tag counts as present, and the result says it was not
verified. The plan has one change per image to import; each change's call starts its import, and
the step waits for them together, so they run concurrently (at most `max_workers` at once).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from functools import partial

from azure.mgmt.containerregistry import models as acr

from .. import progress
from ..azure import readers
from ..azure.errors import map_exceptions, message
from ..azure.images import Look, look_both_sides
from ..context import RunContext
from ..errors import PreconditionFailed, StepFailed
from ..plans import Action, FieldChange, StepPlan
from ..results import StepResult

STEP = "imports"


def _import(ctx: RunContext, image: str) -> None:
    source = acr.ImportSource(registry_uri=ctx.site.images.source_registry, source_image=image)
    with map_exceptions(STEP, f"importing {image}"):
        ctx.clients.acr.registries.begin_import_image(ctx.site.resource_group, ctx.site.registry.name,
                                                      acr.ImportImageParameters(source=source, target_tags=[image],
                                                                                mode="NoForce")).result()


class _Imports:
    """The imports a plan's calls started, awaited together by the step's finish."""

    def __init__(self, ctx: RunContext, max_workers: int):
        self._ctx, self._max_workers = ctx, max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._running: dict[Future[None], str] = {}

    def start(self, image: str) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._max_workers)
        self._running[self._pool.submit(_import, self._ctx, image)] = image

    def wait(self) -> list[str]:
        """Every started import, done; StepFailed listing each one Azure refused."""
        running, pool, self._running, self._pool = self._running, self._pool, {}, None  # a retry starts afresh
        failures: dict[str, StepFailed] = {}
        with progress.bar(len(running), "importing images", "image") as shown:
            for done in as_completed(running):
                try:
                    done.result()
                except StepFailed as exc:
                    failures[running[done]] = exc
                shown.update(1, f"{running[done]} {'failed' if running[done] in failures else 'imported'}")
        if pool is not None:
            pool.shutdown()
        if failures:
            listed = "; ".join(f"{image}: {message(exc.error or exc)}" for image, exc in failures.items())
            raise StepFailed(STEP, f"{len(failures)} of {len(running)} imports failed ({listed})",
                             error=next(iter(failures.values())).error)
        return list(running.values())


def _refuse_moved_tags(ctx: RunContext, looks: list[Look]) -> None:
    site = ctx.site
    moved = [look for look in looks if look.target_digest and look.source_digest
             and look.target_digest != look.source_digest]
    if moved:
        listed = "; ".join(f"'{m.image}' is {m.target_digest} there, {m.source_digest} in "
                           f"{site.images.source_registry}" for m in moved)
        raise PreconditionFailed(moved[0].field, f"registry '{site.registry.name}' holds other content under the "
                                                 f"same tag ({listed}). Imports never move a tag: delete the tag, or "
                                                 "import the image yourself with mode Force")


def plan_imports(ctx: RunContext, *, max_workers: int = 4) -> StepPlan:
    """Every image the device needs, in the cloud registry at the source's digest."""
    site = ctx.site
    registry = readers.registry(ctx)
    looks = look_both_sides(ctx, registry, max_workers)
    _refuse_moved_tags(ctx, looks)
    imports = _Imports(ctx, max_workers)
    plan = StepPlan(STEP, resource_ids=[registry.id] if registry is not None else [], details={
        "present": sorted(look.image for look in looks if look.target_digest),
        "unverified": {look.image: look.source_unknown for look in looks if look.target_digest and look.source_unknown},
    })
    if registry is None:
        plan.blocked_by = PreconditionFailed("registry.name", f"registry '{site.registry.name}' does not exist in "
                                                              f"resource group '{site.resource_group}'; run the "
                                                              "endpoint step first")
    for look in looks:
        if look.target_digest is None:
            plan.add(Action.CREATE, "image", look.image,
                     f"import {site.images.source_registry}/{look.image} into registry '{site.registry.name}'",
                     fields=[FieldChange("digest", None, look.source_digest or f"(not checked: {look.source_unknown})")],
                     call=partial(imports.start, look.image))
    if plan.changes:
        plan.created = True
        plan.finish = partial(_imports_result, imports)
    return plan


def _imports_result(imports: _Imports, plan: StepPlan) -> StepResult:
    imported = imports.wait()
    return StepResult(STEP, plan.applied_status(), list(plan.resource_ids), plan.summaries,
                      details=plan.details | {"imported": imported})


def ensure_imports(ctx: RunContext, *, plan: bool = False, max_workers: int = 4) -> StepResult:
    return plan_imports(ctx, max_workers=max_workers).outcome(plan=plan)

