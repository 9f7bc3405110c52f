"""A fleet: many sites from one inventory (crlib/inventory.py), in one process.

The shared steps (prerequisites, group, hub, endpoint, imports) run once, as the fleet. Then
each site's own steps (device, provision, definition, settings, manifest, deploy, access, checks)
run through `crlib.runbook.run` in a thread pool of `max_parallel`, in dependency order: a nested
site starts after its parent's site succeeded, which means its parent is Online (the deploy step
waits for that). A site that fails stops only itself (and the sites nested under it); the others go
on. Every site shares one set of SDK clients, and so one ARM budget (crlib/azure/pacing.py), and
starts with what the shared steps read (the registry, the hub and its access) in its read cache.

Azure's limits are checked in the plan, before anything is written, each naming its source:
50 connected registries per registry, counting those that exist already, and 50 clients per
connected registry (Microsoft Learn, "What is a connected registry?", intro-connected-registry.md,
"Current limitations"); 100 configurations per IoT hub (Microsoft Learn, "IoT Hub quotas and
throttling", iot-hub-devguide-quotas-throttling.md), which crlib's per-device deployments
(`applyConfigurationOnEdgeDevice`) do not count against. The sandbox enforces the same numbers.

Results are typed records: `SiteOutcome` per site and attempt, `FleetPlan`, `FleetResult`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any

from . import plan_view, progress, runbook
from .azure import names, readers
from .azure.errors import map_exceptions
from .context import RunContext, open_context
from .errors import CrlibError, ParameterError, RunFailed
from .inventory import Fleet
from .params import Site
from .results import StepResult
from .secrets import MASKER

SHARED_STEPS = ("prerequisites", "group", "hub", "endpoint", "imports")
SITE_STEPS = ("device", "provision", "definition", "settings", "manifest", "deploy", "access", "checks")
# What the shared steps read that every site's steps read again: handed to each site's cache.
SHARED_CACHE_KEYS = ("group", "registry", "hub", "hub_access")
DEFAULT_MAX_PARALLEL = 8
log = logging.getLogger("crlib.fleet")

# Azure's limits, with the documents that state them.
CONNECTED_REGISTRY_LIMITS_DOC = "https://learn.microsoft.com/azure/container-registry/intro-connected-registry"
HUB_QUOTAS_DOC = "https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-quotas-throttling"
CONNECTED_REGISTRIES_PER_REGISTRY = 50
CLIENTS_PER_CONNECTED_REGISTRY = 50
CONFIGURATIONS_PER_HUB = 100


@dataclass(frozen=True)
class LimitCheck:
    """One of Azure's limits against what the fleet would reach."""

    limit: str
    scope: str
    existing: int
    new: int
    maximum: int
    source: str

    @property
    def total(self) -> int:
        return self.existing + self.new

    @property
    def ok(self) -> bool:
        return self.total <= self.maximum

    def line(self) -> str:
        return (f"{self.limit} on {self.scope}: {self.existing} existing + {self.new} new = {self.total} "
                f"of {self.maximum} ({self.source})")


@dataclass
class SiteOutcome:
    """One site's attempt: its status, its steps (status, duration, resource ids, changes), the
    failure, and how long it took."""

    site: str
    status: str  # planned, succeeded, failed, skipped (its parent failed)
    attempt: int = 1
    steps: list[dict[str, Any]] = field(default_factory=list)
    resource_ids: list[str] = field(default_factory=list)
    failure: dict[str, str] | None = None
    started: float | None = None
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FleetPlan:
    fleet: str
    shared: list[StepResult]
    sites: dict[str, SiteOutcome]
    limits: list[LimitCheck]

    def step_dicts(self) -> list[dict[str, Any]]:
        """The plan as plan_view reads it: the shared steps, then each site's."""
        rows = [{**r.to_dict(), "notebook": "shared (once for the fleet)"} for r in self.shared]
        for name, outcome in self.sites.items():
            rows += [{**s, "notebook": f"site {name}"} for s in outcome.steps]
        return rows

    def render(self) -> str:
        failed = [o for o in self.sites.values() if o.status == "failed"]
        text = plan_view.render(self.step_dicts(), title=f"Fleet {self.fleet}: {len(self.sites)} sites")
        limits = "\n".join(f"  {'ok' if c.ok else 'OVER'}  {c.line()}" for c in self.limits)
        problems = "".join(f"\n  site {o.site}: {o.failure['error'] if o.failure else ''}" for o in failed)
        return (f"{text}\n\nAzure's limits:\n{limits}"
                + (f"\n\n{len(failed)} sites cannot be planned:{problems}" if failed else ""))

    def counts(self) -> dict[str, int]:
        return plan_view.counts(self.step_dicts())


@dataclass
class FleetResult:
    fleet: str
    shared: list[StepResult]
    sites: dict[str, SiteOutcome]
    limits: list[LimitCheck]
    duration_s: float = 0.0
    pacing: dict[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return all(o.status == "succeeded" for o in self.sites.values())

    def counts(self) -> dict[str, int]:
        return {status: sum(o.status == status for o in self.sites.values())
                for status in ("succeeded", "failed", "skipped")}


class FleetContexts:
    """One RunContext for the shared steps and one per site, all on one profile, one set of SDK
    clients (one ARM budget) and one secret store (its entries named per site)."""

    def __init__(self, fleet: Fleet):
        self.fleet = fleet
        self.shared = open_context(fleet.shared_site)
        self._sites: dict[str, RunContext] = {}
        self._lock = threading.Lock()
        self._parents: dict[str, threading.Lock] = {}
        self._listing: tuple[list, list] | None = None

    def list_shared(self) -> None:
        """The registry's tokens and scope maps, listed once (a page per hundred or so) for every
        site's first read of its own: in a fleet, reads are what ARM's budget runs out of first."""
        ctx = self.shared
        self._listing = None
        if readers.registry(ctx) is None:
            return
        site = ctx.site
        with map_exceptions("fleet", "listing the registry's tokens and scope maps"):
            self._listing = (list(ctx.clients.acr.tokens.list(site.resource_group, site.registry.name)),
                             list(ctx.clients.acr.scope_maps.list(site.resource_group, site.registry.name)))

    def fresh_sites(self) -> None:
        """Forget the sites' contexts (a plan's), so each starts from what the shared steps left."""
        with self._lock:
            self._sites.clear()

    def parent_lock(self, parent: str) -> threading.Lock:
        """Nested sites write into their parent (its sync scope map's actions, its client token ids)
        by reading it and writing it back: siblings take turns."""
        with self._lock:
            return self._parents.setdefault(parent.lower(), threading.Lock())

    def as_fleet(self, site: Site) -> RunContext:
        """A shared step run as `site` (another host kind, another image to import), named after the
        fleet, on the shared context's cache."""
        return RunContext(site.model_copy(update={"site": self.fleet.name}), self.shared.profile,
                          self.shared.clients, self.shared.secrets, cache=self.shared.cache)

    def for_site(self, site: Site) -> RunContext:
        with self._lock:
            if site.site not in self._sites:
                seeded = {k: self.shared.cache[k] for k in SHARED_CACHE_KEYS if self.shared.cache.get(k) is not None}
                ctx = self._sites[site.site] = RunContext(site, self.shared.profile, self.shared.clients,
                                                          self.shared.secrets, cache=seeded)
                if self._listing is not None:
                    cr = site.connected_registry.name
                    own = [names.sync_token_name(cr), names.pull_token_name(cr)]
                    readers.listed(ctx, "token", self._listing[0], [*own, *(t.name for t in site.client_access.tokens)])
                    readers.listed(ctx, "scope_map", self._listing[1],
                                   [names.sync_scope_map_name(cr), names.pull_token_name(cr),
                                    *site.client_access.scope_maps])
            return self._sites[site.site]



# -- limits -----------------------------------------------------------------------------------------
def clients_of(site: Site, fleet: Fleet, existing_children: Iterable[str] = ()) -> int:
    """A connected registry's clients: its client tokens, and one module pull token per nested child
    (crlib/azure/pull_access.py attaches each child's to its parent), in the inventory or not."""
    name = site.connected_registry.name.lower()
    children = {s.connected_registry.name.lower() for s in fleet.sites
                if (s.connected_registry.parent or "").lower() == name} | {c.lower() for c in existing_children}
    return len(site.client_access.tokens) + len(children)


def inventory_limits(fleet: Fleet, sites: Iterable[Site],
                     children: dict[str, set[str]] | None = None) -> list[tuple[str, str]]:
    """Clients per connected registry, for each site: (field, message) per site over the limit."""
    problems = []
    for site in sites:
        count = clients_of(site, fleet, (children or {}).get(site.connected_registry.name.lower(), set()))
        if count > CLIENTS_PER_CONNECTED_REGISTRY:
            problems.append((f"site {site.site}: client_access.tokens",
                             f"{count} clients (client tokens and nested children's pull tokens) exceed Azure's "
                             f"limit of {CLIENTS_PER_CONNECTED_REGISTRY} clients per connected registry "
                             f"({CONNECTED_REGISTRY_LIMITS_DOC})"))
    return problems


def check_limits(contexts: FleetContexts, sites: list[Site]) -> list[LimitCheck]:
    """Read what exists and check Azure's limits; raise ParameterError, before any write, naming the
    limit and its source when the fleet would break one."""
    fleet, ctx = contexts.fleet, contexts.shared
    registry = readers.registry(ctx)
    existing: set[str] = set()
    children: dict[str, set[str]] = {}
    if registry is not None:
        with map_exceptions("plan", "listing the registry's connected registries"):
            for cr in ctx.clients.acr.connected_registries.list(ctx.site.resource_group, ctx.site.registry.name):
                existing.add(str(cr.name).lower())
                parent_id = getattr(getattr(cr, "parent", None), "id", None)
                if parent_id:
                    children.setdefault(readers.name_of(parent_id).lower(), set()).add(str(cr.name).lower())
    problems = inventory_limits(fleet, sites, children)
    wanted = {s.connected_registry.name.lower() for s in fleet.sites}  # the whole inventory, not only --sites
    registries = LimitCheck("connected registries", f"registry {ctx.site.registry.name}", len(existing),
                            len(wanted - existing), CONNECTED_REGISTRIES_PER_REGISTRY, CONNECTED_REGISTRY_LIMITS_DOC)
    checks = [registries]
    clients = max((clients_of(s, fleet, children.get(s.connected_registry.name.lower(), set())) for s in sites),
                  default=0)
    checks.append(LimitCheck("clients per connected registry", "the largest site", 0, clients,
                             CLIENTS_PER_CONNECTED_REGISTRY, CONNECTED_REGISTRY_LIMITS_DOC))
    configurations = _hub_configurations(ctx) if any(s.host.kind == "iotedge" for s in sites) else None
    if configurations is not None:
        checks.append(LimitCheck("IoT Hub configurations", f"hub {ctx.site.hub.name}", configurations, 0,
                                 CONFIGURATIONS_PER_HUB, HUB_QUOTAS_DOC))
    for check in checks:
        if not check.ok and check is not checks[1]:
            problems.append(("sites", f"{check.line()}: over Azure's limit of {check.maximum} {check.limit}"))
    if problems:
        raise ParameterError(problems[0][0], problems[0][1], where=str(fleet.path),
                             problems=[(str(fleet.path), f, m) for f, m in problems])
    return checks


def _hub_configurations(ctx: RunContext) -> int | None:
    """How many configurations the hub holds (None when it does not exist yet: none)."""
    if readers.hub(ctx) is None:
        return None
    access = readers.hub_access(ctx)
    with map_exceptions("plan", "listing the hub's configurations"):
        return len(ctx.clients.configuration_manager(access).get_configurations(max_count=CONFIGURATIONS_PER_HUB + 1))


# -- plan -------------------------------------------------------------------------------------------
def _site_steps(site: Site, results: list[StepResult]) -> list[dict[str, Any]]:
    return [{"step": r.step, "status": str(r.status), "duration_s": r.duration_s, "resource_ids": r.resource_ids,
             "changes": r.changes, "plan": r.plan} for r in results]


def _failure(exc: BaseException) -> dict[str, str]:
    step = exc.step if isinstance(exc, RunFailed) else "fleet"
    error = exc.error if isinstance(exc, RunFailed) else exc
    text = str(error) if isinstance(error, CrlibError) else f"{type(error).__name__}: {error}"
    return {"step": step, "error": MASKER.redact((text.strip().splitlines() or [type(error).__name__])[0])}


def _shared_run(contexts: FleetContexts, *, plan: bool, sites: list[Site] | None = None) -> list[StepResult]:
    """The shared steps once, as the first site; then, as the first site of another host kind, what
    that kind needs besides: its prerequisites, its images, and for IoT Edge the hub (an Arc site
    skips the hub and the IoT Edge module images)."""
    fleet, chosen = contexts.fleet, sites or list(contexts.fleet.sites)
    first = fleet.sites[0]
    results = runbook.run(contexts.shared, plan=plan, only=("prerequisites", "group"))
    # The hub (minutes on Azure) and the registry with its imports touch nothing of each other's:
    # they are made side by side.
    with ThreadPoolExecutor(2, thread_name_prefix="crlib-fleet-shared") as pool:
        hub = pool.submit(runbook.run, contexts.shared, plan=plan, only=("hub",))
        registry = pool.submit(runbook.run, contexts.shared, plan=plan, only=("endpoint", "imports"))
        results += hub.result() + registry.result()
    kinds = {first.host.kind}
    for site in chosen:
        if site.host.kind in kinds:
            continue
        kinds.add(site.host.kind)
        steps = ["prerequisites", "hub", "imports"] if site.host.kind == "iotedge" else ["prerequisites", "imports"]
        for result in runbook.run(contexts.as_fleet(site), plan=plan, only=steps):
            result.step = f"{result.step} (as {site.site})"
            results.append(result)
    return results


def own_imports(fleet: Fleet, site: Site) -> bool:
    """Whether the site checks with an image the shared imports did not bring (its own pull image):
    it imports that first, as its own step, so a missing image fails that site alone."""
    shared = {s.checks.pull_image for s in fleet.sites if s is fleet.sites[0] or
              s is next(f for f in fleet.sites if f.host.kind == s.host.kind)}
    return site.checks.pull_image not in shared


def plan_fleet(fleet: Fleet, *, sites: Iterable[str] | None = None, max_parallel: int = DEFAULT_MAX_PARALLEL,
               contexts: FleetContexts | None = None) -> FleetPlan:
    """What a fleet run would do, read once, written nowhere. Raises ParameterError when Azure's
    limits would be broken; a site whose plan cannot be made is marked failed in the plan."""
    chosen = fleet.select(sites)
    contexts = contexts or FleetContexts(fleet)
    limits = check_limits(contexts, chosen)
    shared = _shared_run(contexts, plan=True, sites=chosen)
    contexts.list_shared()
    outcomes: dict[str, SiteOutcome] = {}

    def plan_site(site: Site) -> SiteOutcome:
        steps = ("imports", *SITE_STEPS) if own_imports(fleet, site) else SITE_STEPS
        try:
            results = runbook.run(contexts.for_site(site), plan=True, only=steps)
        except RunFailed as exc:
            return SiteOutcome(site.site, "failed", steps=_site_steps(site, exc.results), failure=_failure(exc))
        return SiteOutcome(site.site, "planned", steps=_site_steps(site, results))

    with ThreadPoolExecutor(max(1, max_parallel), thread_name_prefix="crlib-fleet-plan") as pool:
        for site, outcome in zip(chosen, pool.map(plan_site, chosen), strict=True):
            outcomes[site.site] = outcome
    return FleetPlan(fleet.name, shared, outcomes, limits)


# -- apply ------------------------------------------------------------------------------------------
def apply_fleet(fleet: Fleet, *, sites: Iterable[str] | None = None, max_parallel: int = DEFAULT_MAX_PARALLEL,
                attempt: int = 1, contexts: FleetContexts | None = None,
                on_event: Callable[[dict[str, Any]], None] | None = None) -> FleetResult:
    """Run the shared steps once, then every chosen site's steps, `max_parallel` at a time, parents
    first. A failed site fails alone (its nested sites are skipped); the result says which."""
    if max_parallel < 1:
        raise ParameterError("--max-parallel", f"must be at least 1, not {max_parallel}")
    started = time.monotonic()
    chosen = fleet.select(sites)
    contexts = contexts or FleetContexts(fleet)
    emit = on_event or (lambda event: None)
    limits = check_limits(contexts, chosen)
    pacer = contexts.shared.clients.arm_pacer
    before = (dict(pacer.stats.requests), pacer.stats.waits, pacer.stats.waited_s, pacer.stats.throttled,
              pacer.stats.held_polls)
    emit({"event": "shared", "status": "started"})
    shared = _shared_run(contexts, plan=False, sites=chosen)
    contexts.fresh_sites()  # a plan's site contexts read the registry before the shared steps wrote it
    contexts.list_shared()
    emit({"event": "shared", "status": "done", "steps": [r.to_dict() for r in shared]})
    outcomes = _apply_sites(fleet, chosen, contexts, max_parallel=max_parallel, attempt=attempt, emit=emit)
    pacing = {"requests": {k: v - before[0].get(k, 0) for k, v in pacer.stats.requests.items()},
              "waits": pacer.stats.waits - before[1], "waited_s": round(pacer.stats.waited_s - before[2], 2),
              "throttled": pacer.stats.throttled - before[3], "held_first_polls": pacer.stats.held_polls - before[4]}
    return FleetResult(fleet.name, shared, outcomes, limits, round(time.monotonic() - started, 2), pacing)


def _apply_sites(fleet: Fleet, chosen: list[Site], contexts: FleetContexts, *, max_parallel: int, attempt: int,
                 emit: Callable[[dict[str, Any]], None]) -> dict[str, SiteOutcome]:
    names = {s.site for s in chosen}
    waiting = {s.site: s for s in chosen}
    outcomes: dict[str, SiteOutcome] = {}

    def blocker(site: Site) -> str | None:
        """The chosen parent site this one waits for, when it has not succeeded yet."""
        parent = fleet.parent_of(site)
        if parent is None or parent.site not in names:
            return None
        return parent.site

    def say(event: dict[str, Any]) -> None:
        try:
            emit(event)
        except Exception:  # a record that cannot be written must not take the other sites down
            log.exception("recording the fleet event of site %s", event.get("site"))

    def run_site(site: Site) -> SiteOutcome:
        outcome = SiteOutcome(site.site, "running", attempt=attempt, started=time.time())
        began = time.monotonic()
        progress.speaking_for(site.site)
        say({"event": "site", "site": site.site, "status": "started", "attempt": attempt})
        parent = site.connected_registry.parent
        results: list[StepResult] = []
        try:
            ctx = contexts.for_site(site)
            if own_imports(fleet, site):
                with contexts.parent_lock(f"image:{site.checks.pull_image}"):  # one import of an image at a time
                    results += runbook.run(ctx, only=["imports"])
            with contexts.parent_lock(parent) if parent else contextlib.nullcontext():
                results += runbook.run(ctx, only=SITE_STEPS)
            outcome.status = "succeeded"
        except RunFailed as exc:
            results += exc.results
            outcome.status, outcome.failure = "failed", _failure(exc)
        except Exception as exc:  # a site's failure is its own, whatever it is
            outcome.status, outcome.failure = "failed", _failure(exc)
        outcome.steps = _site_steps(site, results)
        if outcome.failure:
            outcome.steps.append({"step": outcome.failure["step"], "status": "failed", "duration_s": None,
                                  "resource_ids": [], "changes": [], "plan": []})
        outcome.resource_ids = [r for result in results for r in result.resource_ids]
        outcome.duration_s = round(time.monotonic() - began, 2)
        say({"event": "site", **outcome.to_dict()})
        progress.speaking_for(None)
        return outcome

    with ThreadPoolExecutor(max_parallel, thread_name_prefix="crlib-fleet") as pool:
        running: dict[Future[SiteOutcome], str] = {}
        while waiting or running:
            for name, site in list(waiting.items()):
                parent = blocker(site)
                if parent is not None and parent in outcomes and outcomes[parent].status != "succeeded":
                    del waiting[name]
                    outcomes[name] = SiteOutcome(name, "skipped", attempt=attempt, failure={
                        "step": "(not run)", "error": f"its parent site {parent} did not succeed"})
                    say({"event": "site", **outcomes[name].to_dict()})
                elif parent is None or parent in outcomes:
                    del waiting[name]
                    running[pool.submit(run_site, site)] = name
            if not running:
                continue  # everything left was skipped just now
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                outcomes[running.pop(future)] = future.result()
    return {s.site: outcomes[s.site] for s in chosen}
