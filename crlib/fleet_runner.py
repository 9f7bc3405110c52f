"""`crlib fleet run`: notebooks/10-fleet.ipynb executed headless by papermill, archived as one change
record for the whole fleet.

The run folder (`runs/<stamp>-fleet-<name>-<hex>/`) holds:

- `inventory.yaml`: the validated inventory, masked (every site's merged parameters, the shared
  part once), never the file as written: its comments go, as a site run's parameters do;
- `notebooks/10-fleet.ipynb`, sanitised (a resumed run adds `10-fleet.attempt-<n>.ipynb`);
- `fleet.json`: per site its status and every attempt (steps, durations, resource ids, failure),
  the limits checked, ARM's budget as the run used it, who ran it where;
- `sites/<site>.json`: one record per site, its attempts;
- `steps.jsonl`: the notebook's events; then SHA256SUMS and SIGNATURE, as a site run's
  (crlib/runner.py, crlib/archive.py, crlib/signing.py), so `crlib archive verify` checks it alike.

`--resume RUN_DIR` checks the folder as a site run's resume does (no symlink, nothing another user
can write, hashes, the fleet's own signing key), then runs only the sites that did not succeed.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import secrets as random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from . import __version__, archive, bundled, runbook, signing
from .errors import ArchiveError, CrlibError, ParameterError
from .inventory import SHARED_KEYS, Fleet, load_inventory
from .runner import EVENTS, PARTIAL, _check_signer, _utc, collect_workdir, execute
from .secrets import MASKER

RECORD = "fleet.json"
INVENTORY = "inventory.yaml"
NOTEBOOK = "10-fleet"
PHASE = runbook.Phase(NOTEBOOK, (), ())  # not a runbook phase: crlib run never runs it


def archived_inventory(fleet: Fleet) -> str:
    """The validated inventory as a document load_inventory reads again: the shared part once, each
    site's merged parameters without it. Masked; the source file's comments are not kept."""
    dumps = [site.model_dump(mode="json") for site in fleet.sites]
    shared = {key: dumps[0][key] for key in SHARED_KEYS if key in dumps[0]}
    document = {"fleet": fleet.name, "shared": shared,
                "sites": [{k: v for k, v in d.items() if k not in SHARED_KEYS} for d in dumps]}
    return ("# The validated inventory this fleet run used, as crlib read it (the source file's comments are not "
            "kept).\n" + MASKER.redact(yaml.safe_dump(document, sort_keys=False, allow_unicode=True)))


def is_fleet_run(run_dir: Path) -> bool:
    return (Path(run_dir) / RECORD).is_file() or (Path(run_dir) / INVENTORY).is_file()


class FleetRun:
    def __init__(self, run_dir: Path, record: dict, fleet: Fleet):
        self.dir, self.record, self.fleet = run_dir, record, fleet
        self.signer: signing.Signer | None = None
        self.unsigned: str | None = None
        self.secret_store: Any = None

    @classmethod
    def create(cls, inventory_path: Path, *, runs_dir: Path, sites: list[str] | None, max_parallel: int,
               plan: bool) -> FleetRun:
        from .fleet import FleetContexts, check_limits

        fleet = load_inventory(inventory_path)  # refused before any folder or request
        chosen = [s.site for s in fleet.select(sites)]
        check_limits(FleetContexts(fleet), fleet.select(sites))  # Azure's limits: refused before any folder
        started = time.time()
        stamp = dt.datetime.fromtimestamp(started, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        run_dir = runs_dir / f"{stamp}-fleet-{fleet.name}-{random.token_hex(3)}"
        runs_dir.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir(mode=0o700)
        (run_dir / "notebooks").mkdir(mode=0o700)
        (run_dir / "sites").mkdir(mode=0o700)
        archive.write_private(run_dir / INVENTORY, archived_inventory(fleet))
        record = {"run": run_dir.name, "fleet": fleet.name, "kind": "fleet-plan" if plan else "fleet",
                  "crlib_version": __version__, "status": "running", "plan_only": plan,
                  "started": _utc(started), "finished": None, "duration_s": None,
                  "operator": {"local_user": getpass.getuser()}, "tenant": None, "subscription": None,
                  "target": {"kind": fleet.sites[0].target.kind},
                  "inventory_sha256": archive.sha256_file(run_dir / INVENTORY), "max_parallel": max_parallel,
                  "sites_chosen": chosen, "attempts": [], "sites": {}, "limits": [], "pacing": [],
                  "secrets_masked": 0}
        return cls(run_dir, record, load_inventory(run_dir / INVENTORY))

    @classmethod
    def resume(cls, run_dir: Path, inventory_path: Path | None = None) -> FleetRun:
        """Refused (ArchiveError, before anything runs or is written) unless the folder is sound and
        signed by the fleet's own key, as `crlib run --resume` requires of a site run. With
        `inventory_path` (the inventory, fixed), its sites replace the archived ones: same fleet, and
        every site the run chose still in it."""
        run_dir = Path(run_dir)
        problems = archive.tree_problems(run_dir) or archive.verify(run_dir)
        if problems:
            raise ArchiveError(str(run_dir), ["refusing to resume: " + problems[0], *problems[1:]])
        fleet = load_inventory(run_dir / INVENTORY)
        _check_signer(run_dir, fleet.shared_site)
        record = json.loads(archive.read_private(run_dir / RECORD))
        if record["status"] == "succeeded":
            raise CrlibError(f"{run_dir.name} already succeeded; nothing to resume")
        if record.get("plan_only"):
            raise CrlibError(f"{run_dir.name} is a plan; nothing to resume")
        fixed = load_inventory(inventory_path) if inventory_path is not None else None
        if fixed is not None:
            if fixed.name != fleet.name:
                raise ParameterError("fleet", f"'{fixed.name}' is not the fleet this run ran ('{fleet.name}')",
                                     where=str(inventory_path))
            missing = [name for name in record["sites_chosen"] if name not in {s.site for s in fixed.sites}]
            if missing:
                raise ParameterError("sites", f"{', '.join(missing)} ran in {run_dir.name} but are not in this "
                                              "inventory", where=str(inventory_path))
            before, after = fleet.sites[0].model_dump(mode="json"), fixed.sites[0].model_dump(mode="json")
            changed = [key for key in SHARED_KEYS if before.get(key) != after.get(key)]
            if changed:  # the sites already built stand on the shared part as it was
                raise ParameterError(f"shared.{changed[0]}", f"differs from the inventory {run_dir.name} ran with; a "
                                     "resume may fix sites, not what they share", where=str(inventory_path))
        archive.unseal(run_dir)
        (run_dir / archive.SUMS).unlink(missing_ok=True)
        (run_dir / archive.SIGNATURE).unlink(missing_ok=True)
        if fixed is not None:  # the inventory each earlier attempt ran with stays in the record
            earlier = len(record["attempts"])
            archive.write_private(run_dir / f"inventory.attempt-{earlier}.yaml", archive.read_private(run_dir / INVENTORY))
            archive.write_private(run_dir / INVENTORY, archived_inventory(fixed))
            record["inventory_sha256"] = archive.sha256_file(run_dir / INVENTORY)
            fleet = load_inventory(run_dir / INVENTORY)
        return cls(run_dir, record, fleet)

    def pending(self) -> list[str]:
        """The chosen sites that have not succeeded yet."""
        done = {name for name, site in self.record["sites"].items() if site.get("status") == "succeeded"}
        return [name for name in self.record["sites_chosen"] if name not in done]

    # -- running ----------------------------------------------------------------------------------
    def describe_target(self) -> None:
        from .context import open_context
        from .steps.prerequisites import signed_in

        ctx = open_context(self.fleet.shared_site)
        who = signed_in(ctx)
        self.record.update(tenant=who["tenant"], subscription=who["subscription"])
        self.record["operator"]["identity"] = who["identity"]
        self.record["target"] = {"kind": who["target"], "arm_endpoint": ctx.profile.arm_endpoint}
        self.secret_store = ctx.secrets
        self.signer = signing.signer_for(self.fleet.shared_site, ctx.profile, ctx.secrets)
        self.record["signing"] = {"key_id": self.signer.key_id, "key_source": self.signer.source}

    def known_secrets(self) -> set[str]:
        found: set[str] = set()
        for prefix in [f"crlib-{self.fleet.name}-", *(f"crlib-{s.site}-" for s in self.fleet.sites)]:
            found |= archive.store_secrets(self.secret_store, prefix)
        return found | MASKER.values()

    def _roots(self, workdir: Path | None) -> list[tuple[str, str]]:
        site = self.fleet.sites[0]
        return archive.local_roots({"<run>": self.dir, "<kernel-cwd>": workdir, "<repo>": bundled.checkout(),
                                    "<secrets>": getattr(self.secret_store, "directory", site.secrets.local_dir),
                                    "<sandbox>": site.target.sandbox_state_dir})

    def run(self, *, notebooks_dir: Path | None = None, cell_timeout: float | None = None) -> dict:
        notebooks_dir = notebooks_dir or bundled.notebooks_dir()
        number = len(self.record["attempts"]) + 1
        sites = self.pending() if number > 1 else self.record["sites_chosen"]
        attempt: dict[str, Any] = {"attempt": number, "started": _utc(), "sites": sites, "status": "running",
                                   "inventory_sha256": self.record["inventory_sha256"]}
        self.record["attempts"].append(attempt)
        self.record["status"] = "running"
        workdir = Path(tempfile.mkdtemp(prefix="crlib-kernels-"))
        seen: set[str] = set()
        if not sites:  # every chosen site succeeded before (the notebook failed after them): seal it again
            attempt["note"] = "no site left to run"
            self.describe_target()
            self._finish(attempt, self.known_secrets(), workdir)
            return self.record
        try:
            self.describe_target()
            seen = self.known_secrets()
            self._save(seen, workdir)
            parameters = {"inventory_file": str((self.dir / INVENTORY).absolute()), "interactive": False,
                          "confirm": not self.record["plan_only"], "plan_only": self.record["plan_only"],
                          "sites": ",".join(sites) if sites != [s.site for s in self.fleet.sites] else "",
                          "max_parallel": self.record["max_parallel"], "attempt": number}
            outcome = execute(PHASE, self.dir, parameters, notebooks_dir=notebooks_dir, cell_timeout=cell_timeout,
                              workdir=workdir)
            collect_workdir(workdir, self.dir)
            seen |= self.known_secrets()
            self._take_events(outcome.events, number, seen, workdir)
            name = NOTEBOOK if number == 1 else f"{NOTEBOOK}.attempt-{number}"
            self._archive_notebook(name, outcome.failure, seen, workdir)
            if outcome.status == "failed":
                attempt["failed"] = {"reason": outcome.failure, "error": outcome.error}
        except (Exception, KeyboardInterrupt) as exc:
            error = str(exc) if isinstance(exc, CrlibError) else f"{type(exc).__name__}: {exc}"
            attempt["failed"] = {"reason": "interrupted" if isinstance(exc, KeyboardInterrupt) else "setup",
                                 "error": MASKER.redact((error.splitlines() or [""])[0])}
            self._finish(attempt, seen, workdir)
            if isinstance(exc, KeyboardInterrupt):
                raise
            return self.record
        self._finish(attempt, seen, workdir)
        return self.record

    def _take_events(self, events: list[dict], number: int, seen: set[str], workdir: Path) -> None:
        lines = []
        for event in events:
            text, masked = archive.scrub(json.dumps(event | {"attempt": number}), seen, self._roots(workdir))
            self.record["secrets_masked"] += masked
            lines.append(text + "\n")
            event = json.loads(text)
            if event.get("event") == "site":
                entry = self.record["sites"].setdefault(event["site"], {"status": None, "attempts": []})
                entry["status"] = event["status"]
                entry["attempts"].append({k: v for k, v in event.items() if k not in ("event", "time")})
            elif event.get("event") == "plan":
                for name, planned in event["sites"].items():
                    entry = self.record["sites"].setdefault(name, {"status": None, "attempts": []})
                    entry["plan"] = planned["steps"]
                    if self.record["plan_only"]:
                        entry["status"] = planned["status"]
                self.record["limits"] = event["limits"]
                self.record["plan_counts"] = event["counts"]
            elif event.get("event") == "fleet":
                self.record["limits"] = event["limits"]
                self.record["pacing"].append({"attempt": number, **event["pacing"]})
                self.record["duration_apply_s"] = event["duration_s"]
            elif event.get("event") == "shared" and event.get("status") == "done":
                self.record.setdefault("shared", []).append({"attempt": number, "steps": [
                    {k: s[k] for k in ("step", "status", "duration_s", "resource_ids", "changes")}
                    for s in event["steps"]]})
        archive.write_private(self.dir / EVENTS, "".join(lines), append=True)

    def _archive_notebook(self, name: str, failure: str | None, seen: set[str], workdir: Path) -> None:
        partial = self.dir / PARTIAL / f"{NOTEBOOK}.ipynb"
        source = bundled.notebooks_dir() / f"{NOTEBOOK}.ipynb"
        notebook = json.loads(archive.read_private(partial) if partial.is_file() else source.read_bytes())
        clean, masked = archive.sanitise_notebook(notebook, name=name, failure=failure, secrets=seen,
                                                  roots=self._roots(workdir))
        self.record["secrets_masked"] += masked
        archive.write_private(self.dir / "notebooks" / f"{name}.ipynb", json.dumps(clean, indent=1, ensure_ascii=False)
                              + "\n")

    def _finish(self, attempt: dict, seen: set[str], workdir: Path) -> None:
        chosen = self.record["sites_chosen"]
        statuses = [self.record["sites"].get(name, {}).get("status") for name in chosen]
        wanted = "planned" if self.record["plan_only"] else "succeeded"
        ok = not attempt.get("failed") and all(status == wanted for status in statuses)
        self.record["status"] = attempt["status"] = "succeeded" if ok else "failed"
        attempt["finished"] = _utc()
        self.record["counts"] = {s: statuses.count(s) for s in ("succeeded", "failed", "skipped", "planned")} \
            | {"not run": sum(status is None for status in statuses)}
        finished = time.time()
        self.record["finished"] = _utc(finished)
        self.record["duration_s"] = round(finished - dt.datetime.fromisoformat(self.record["started"]).timestamp(), 1)
        shutil.rmtree(self.dir / PARTIAL, ignore_errors=True)
        for name, entry in self.record["sites"].items():
            text, _ = archive.scrub(json.dumps({"fleet": self.fleet.name, "run": self.dir.name, "site": name, **entry},
                                               indent=2), seen, self._roots(workdir))
            archive.write_private(self.dir / "sites" / f"{name}.json", text + "\n")
        self._save(seen, workdir)
        collect_workdir(workdir, self.dir)
        shutil.rmtree(workdir, ignore_errors=True)
        try:
            archive.seal(self.dir, signer=self.signer, run=self.dir.name)
            if self.signer is not None:
                signing.remember_signer(self.signer.public_key())
        except signing.SigningError as exc:
            self.unsigned = str(exc)
        if self.signer is None:
            self.unsigned = f"sealed {self.dir.name} unsigned: the signing key was out of reach"

    def _save(self, seen: set[str], workdir: Path | None) -> None:
        text, _ = archive.scrub(json.dumps(self.record, indent=2), seen, self._roots(workdir))
        archive.write_private(self.dir / RECORD, text + "\n")
