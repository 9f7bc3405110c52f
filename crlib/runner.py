"""`crlib run`: the runbook's notebooks, executed headless by papermill, archived as a change record.

Each notebook reads the run folder's archived copy of the parameter file (by its absolute path),
writes its step events to a JSON-lines file in the folder, and is then sanitised into `notebooks/`.
Its kernel never runs in the run folder: it starts in a fresh private temporary folder with
`PYTHONSAFEPATH=1`, so nothing in the run folder can be imported or run by it; the files a notebook
leaves in its working directory (the on-device check script) are then moved into the run folder.
Everything the run writes is 0600 (folders 0700) and never written through a symlink.

The record (`run.json`) is written after every notebook, so a killed run leaves what it did; its
final status comes from what the runner saw (papermill's exception, a cell timeout, a dead kernel)
and the step events, never from papermill's metadata, which calls a timed-out notebook "completed".
A run that fails outside any notebook (the notebooks missing, the target out of reach, an error in
the runner itself, Ctrl-C) is recorded as failed with the reason, never left "running".

The folder keeps the validated, masked parameters (`parameters.yaml`), never the file as written:
its comments and layout go. When the run ends the folder is sealed and SHA256SUMS signed with the
site's signing key (`records.signing_key`, crlib/signing.py), got or made when the run starts.

`--resume RUN_DIR` continues from the first notebook that did not complete, and only after checking
the folder: no symlink anywhere in it, nothing in it another user owns or can write, every hash in
SHA256SUMS matching, and SIGNATURE made by this site's own signing key (`archive.verify`); a run
that was never sealed, or sealed unsigned, cannot be resumed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import logging
import os
import secrets as random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import __version__, archive, bundled, runbook, signing
from .errors import ArchiveError, CrlibError, ParameterError
from .fast_imports import without_format_grammars
from .kernels import KERNEL_NAME, KernelAhead
from .params import Site, load_file
from .secrets import MASKER, LocalSecretStore

# papermill's logger (nbclient logs through it) has no handler, so Python's last resort printed its
# errors ("Kernel died while waiting for execute reply.") on stderr beside crlib's own one line; the
# runner records each notebook's outcome itself.
logging.getLogger("papermill").addHandler(logging.NullHandler())

NOTEBOOKS_DIR = bundled.notebooks_dir()  # the checkout's notebooks/, or the installed wheel's copies
PARTIAL = ".partial"
EVENTS = "steps.jsonl"


def _utc(moment: float | None = None) -> str:
    return dt.datetime.fromtimestamp(moment or time.time(), dt.UTC).isoformat(timespec="seconds")


@dataclass
class Outcome:
    """How one notebook ended, as the runner saw it."""

    status: str  # completed, failed, not run
    failure: str | None = None  # error, cell timeout, dead kernel, kernel start
    error: str | None = None
    step: str | None = None
    cell: str | None = None  # the failing cell's first line, when papermill names it
    events: list[dict] = field(default_factory=list)


def archived_parameters(site: Site) -> str:
    """What a run folder keeps of the parameter file: the validated document, masked. Comments and
    anything else the file held beyond its values never reach the archive."""
    document = yaml.safe_dump(site.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    return ("# The validated parameters this run used, as crlib read them (the source file's comments are not "
            "kept).\n" + MASKER.redact(document))


def parameters_digest(params_path: Path, overrides: dict | None = None) -> str:
    """The sha256 a run records as `parameters_sha256` for this file and these overrides."""
    import hashlib

    return hashlib.sha256(archived_parameters(load_file(params_path, overrides)).encode()).hexdigest()


def _read_events(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in archive.read_private(path).decode().splitlines() if line.strip()]


def _failing_step(events: list[dict], phase: runbook.Phase, cell: str | None) -> str:
    """The step a notebook was in when it stopped; else the cell, for failures outside any step."""
    failed = [e for e in events if e["event"] == "failed"]
    if failed:
        return failed[-1]["step"]
    finished = {e["step"] for e in events if e["event"] == "result"}
    started = [e["step"] for e in events if e["event"] == "start" and e["step"] not in finished]
    if started:
        return started[-1]
    return f"{phase.notebook}, cell `{cell}`" if cell else f"{phase.notebook}, outside its steps"


def _check_parameters(source: Path, phase: runbook.Phase, parameters: dict) -> None:
    """papermill only warns about parameters a notebook does not declare; refuse them here."""
    with without_format_grammars():
        import papermill

    declared = set(papermill.inspect_notebook(str(source)))
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise ParameterError(unknown[0], f"is not a parameter of {phase.notebook} (it takes {', '.join(declared)})")


def execute(phase: runbook.Phase, run_dir: Path, parameters: dict, *, notebooks_dir: Path,
            cell_timeout: float | None, kernel: Any = None, workdir: Path | None = None) -> Outcome:
    """Run one notebook with papermill into the run folder's partial area; say how it ended.
    `kernel`: a started kernel manager to run it on (crlib.kernels), shut down afterwards; else one
    is started in `workdir` (a private folder outside the run folder, never the run folder)."""
    with without_format_grammars():
        import papermill
        from nbclient.exceptions import CellTimeoutError, DeadKernelError
        from papermill.exceptions import PapermillExecutionError

    source = notebooks_dir / f"{phase.notebook}.ipynb"
    partial = run_dir / PARTIAL
    partial.mkdir(mode=0o700, exist_ok=True)
    events_path = partial / f"{phase.notebook}.jsonl"
    events_path.unlink(missing_ok=True)
    output = partial / f"{phase.notebook}.ipynb"
    output.unlink(missing_ok=True)
    for private in (events_path, output):  # 0600 from the start: papermill and the kernel keep the mode
        archive.write_private(private, b"")
    values = parameters | {"results_path": str(events_path.absolute())}
    _check_parameters(source, phase, values)
    outcome = Outcome("completed")
    own_workdir = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="crlib-kernel-"))
    try:
        if kernel is None:
            kernel = KernelAhead(workdir).take(phase.steps)
        # Saved after every cell: a timed-out or killed notebook's record then shows the cell that
        # was running (the archive marks it failed and the rest "not run"). A plan writes nothing,
        # so its notebooks are saved once, when they end: saving costs it a third of its time.
        # No `cwd`: papermill would chdir this whole process there (and back) around the run, which
        # notebooks run at once (a plan's) would undo for each other; the kernel already runs there.
        papermill.execute_notebook(str(source.absolute()), str(output.absolute()), parameters=values,
                                   kernel_name=KERNEL_NAME, progress_bar=False, log_output=False,
                                   execution_timeout=cell_timeout,
                                   request_save_on_cell_execute=not parameters.get("plan_only"),
                                   km=kernel)
    except PapermillExecutionError as exc:
        first_line = next((line for line in (exc.source or "").splitlines() if line.strip()), None)
        outcome = Outcome("failed", "error", f"{exc.ename}: {exc.evalue}", cell=first_line)
    except CellTimeoutError as exc:
        outcome = Outcome("failed", "cell timeout", f"a cell ran longer than {cell_timeout} s: {exc}".splitlines()[0])
    except DeadKernelError as exc:
        outcome = Outcome("failed", "dead kernel", str(exc).splitlines()[0] if str(exc) else "the kernel died")
    except RuntimeError as exc:  # the kernel did not start
        outcome = Outcome("failed", "kernel start", str(exc))
    finally:
        if kernel is not None:
            KernelAhead.stop(kernel)
        if own_workdir:
            collect_workdir(workdir, run_dir)
            shutil.rmtree(workdir, ignore_errors=True)
    outcome.events = _read_events(events_path)
    if outcome.status == "failed":
        outcome.step = _failing_step(outcome.events, phase, outcome.cell)
        outcome.error = MASKER.redact(outcome.error or "")
    return outcome


# Names a file a notebook leaves in its working directory may not take in the run folder.
_RESERVED = {archive.RECORD, archive.SUMS, archive.SIGNATURE, EVENTS, "parameters.yaml", "notebooks", PARTIAL,
             "fleet.json", "inventory.yaml", "sites"}  # the last three: a fleet run's (crlib/fleet_runner.py)


def collect_workdir(workdir: Path, run_dir: Path) -> None:
    """Move the regular files a notebook left in its kernel's working directory (the on-device check
    script) into the run folder, which archives them; symlinks, folders and the archive's own
    names stay behind (and go with the working directory)."""
    with os.scandir(workdir) as entries:
        for entry in entries:
            if entry.name in _RESERVED or not entry.is_file(follow_symlinks=False):
                continue
            path = Path(entry.path)
            archive.write_private(run_dir / entry.name, archive.read_private(path))
            path.unlink()


class Run:
    """One run folder: its record, its notebooks, its seal."""

    def __init__(self, run_dir: Path, record: dict):
        self.dir = run_dir
        self.record = record
        self._workdir: Path | None = None  # the kernels' working directory while the run goes on
        self.signer: signing.Signer | None = None  # got (or made) with the target, before any notebook
        self.unsigned: str | None = None  # why the seal has no signature, when it has none
        # The resource changes approved at the prompt (plan_view.resource_changes of the plan run's
        # first notebook), which that notebook's apply must match, or write nothing.
        self.approved_plan: list | None = None
        self._parallel: dict[str, tuple[float, Future]] = {}  # notebooks started: when, and their run
        self._executing: dict[str, Any] = {}  # their kernel managers, to stop them on Ctrl-C

    # -- creating and resuming --------------------------------------------------------------------
    @classmethod
    def create(cls, params_path: Path, *, runs_dir: Path, phases: list[runbook.Phase], plan: bool,
               overrides: dict | None = None) -> Run:
        """`overrides` (dotted keys, `crlib run -p`) are validated with the file, reflected in the
        archived parameters.yaml and recorded, masked, in run.json."""
        site = load_file(params_path, overrides)  # refuse bad parameters before any folder or request
        started = time.time()
        stamp = dt.datetime.fromtimestamp(started, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        run_dir = runs_dir / f"{stamp}-{site.site}-{random.token_hex(3)}"
        runs_dir.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir(mode=0o700)
        (run_dir / "notebooks").mkdir(mode=0o700)
        archive.write_private(run_dir / "parameters.yaml", archived_parameters(site))
        record = {"run": run_dir.name, "site": site.site, "crlib_version": __version__, "status": "running",
                  "plan_only": plan, "kind": archive.run_kind([p.notebook for p in phases], plan),
                  "ran": [step for p in phases for step in p.steps],
                  "started": _utc(started), "finished": None, "duration_s": None,
                  "operator": {"local_user": getpass.getuser()}, "tenant": None, "subscription": None,
                  "target": {"kind": site.target.kind}, "parameters": None, "parameters_sha256": None,
                  "notebooks": [{"name": p.notebook, "status": "not run"} for p in phases],
                  "steps": [], "failed": None, "attempts": [], "secrets_masked": 0,
                  "overrides": json.loads(MASKER.redact(json.dumps(overrides or {}, default=str)))}
        run = cls(run_dir, record)
        run._describe_parameters()
        return run

    @classmethod
    def resume(cls, run_dir: Path, params_path: Path | None = None) -> Run:
        """The run in `run_dir`, to continue; refused (ArchiveError, before anything is run or
        written) unless the folder holds no symlink, nothing another user owns or can write, every
        hash in its SHA256SUMS matches, and SIGNATURE is by this site's signing key."""
        run_dir = Path(run_dir)
        problems = archive.tree_problems(run_dir) or archive.verify(run_dir)
        if problems:
            raise ArchiveError(str(run_dir), ["refusing to resume: " + problems[0], *problems[1:]])
        _check_signer(run_dir, load_file(run_dir / "parameters.yaml"))
        record = archive.read_record(run_dir)
        if record["status"] == "succeeded":
            raise CrlibError(f"{run_dir.name} already succeeded; nothing to resume")
        site = load_file(params_path) if params_path is not None else None
        archive.unseal(run_dir)
        (run_dir / archive.SUMS).unlink(missing_ok=True)
        (run_dir / archive.SIGNATURE).unlink(missing_ok=True)
        if site is not None:
            archive.write_private(run_dir / "parameters.yaml", archived_parameters(site))
        run = cls(run_dir, record)
        run._describe_parameters()
        return run

    def _describe_parameters(self) -> None:
        path = self.dir / "parameters.yaml"
        site = load_file(path)
        self.site = site
        self.record["parameters"] = json.loads(MASKER.redact(json.dumps(site.model_dump(mode="json"))))
        self.record["parameters_sha256"] = archive.sha256_file(path)

    def describe_target(self) -> None:
        """Tenant, subscription and who signed in, read from the credential (never a secret)."""
        from .context import open_context
        from .steps.prerequisites import signed_in

        ctx = open_context(self.site)
        who = signed_in(ctx)
        self.record.update(tenant=who["tenant"], subscription=who["subscription"])
        self.record["operator"]["identity"] = who["identity"]
        self.record["target"] = {"kind": who["target"], "arm_endpoint": ctx.profile.arm_endpoint}
        self.secret_store = ctx.secrets
        self.signer = signing.signer_for(self.site, ctx.profile, ctx.secrets)  # get-or-create, before any notebook
        self.record["signing"] = {"key_id": self.signer.key_id, "key_source": self.signer.source}

    # -- running ----------------------------------------------------------------------------------
    def pending(self) -> list[runbook.Phase]:
        return [runbook.phase(n["name"]) for n in self.record["notebooks"] if n["status"] != "completed"]

    def known_secrets(self) -> set[str]:
        return archive.store_secrets(self.secret_store, f"crlib-{self.site.site}-") | MASKER.values()

    def run(self, *, notebooks_dir: Path = NOTEBOOKS_DIR, cell_timeout: float | None = None,
            progress: bool = True) -> dict:
        from tqdm.auto import tqdm

        pending = self.pending()
        attempt = {"started": _utc(), "from": pending[0].notebook if pending else None,
                   "parameters_sha256": self.record["parameters_sha256"], "status": "running"}
        self.record["attempts"].append(attempt)
        self.record.update(status="running", failed=None)
        seen: set[str] = set()
        current = None  # the notebook being run, for a failure outside the notebooks
        try:
            _check_notebooks(notebooks_dir, pending)
            # The kernels' working directory: private, fresh, outside the run folder. The first
            # kernel (a plan run: every kernel, its notebooks are short) starts and warms up while
            # this process reaches the target.
            self._workdir = Path(tempfile.mkdtemp(prefix="crlib-kernels-"))
            kernels = self._kernels = KernelAhead(self._workdir)
            for upcoming in pending if self.record["plan_only"] else pending[:1]:
                kernels.start_next(upcoming.steps, ahead=len(pending))
            self.describe_target()
            seen = self.seen = self.known_secrets()
            self._save()
            parameters = {"params_file": str((self.dir / "parameters.yaml").absolute()), "interactive": False,
                          "confirm": not self.record["plan_only"], "plan_only": self.record["plan_only"]}
            if self.record["plan_only"] and len(pending) > 1:
                # A plan writes nothing, so no notebook depends on another's: all run at once, each
                # on its own kernel, and are archived in order below.
                with without_format_grammars():  # imported once here, not by each thread at once
                    import papermill  # noqa: F401
                pool = ThreadPoolExecutor(len(pending), thread_name_prefix="crlib-plan")
                for phase in pending:
                    kernel = self._executing[phase.notebook] = kernels.take(phase.steps)
                    self._parallel[phase.notebook] = (time.monotonic(), pool.submit(
                        execute, phase, self.dir, parameters, notebooks_dir=notebooks_dir, cell_timeout=cell_timeout,
                        kernel=kernel, workdir=self._workdir))
                pool.shutdown(wait=False)
            with tqdm(pending, desc="crlib run", unit="notebook", disable=not progress) as bar:
                for index, phase in enumerate(bar):
                    current = phase
                    bar.set_postfix_str(phase.notebook)
                    source = notebooks_dir / f"{phase.notebook}.ipynb"
                    entry = next(n for n in self.record["notebooks"] if n["name"] == phase.notebook)
                    entry.update(source_sha256=archive.sha256_file(source), status="running", started=_utc())
                    if phase.notebook in self._parallel:
                        began, future = self._parallel[phase.notebook]
                        outcome = future.result()
                    else:
                        began = time.monotonic()
                        kernel = kernels.take(phase.steps)
                        if index + 1 < len(pending):
                            kernels.start_next(pending[index + 1].steps)  # starts and warms up while this one runs
                        # The plan approved at crlib run's prompt binds the first notebook, whose plan
                        # no earlier notebook of this run changes; later plans depend on its writes.
                        approved = {"approved_plan": json.dumps(self.approved_plan)} \
                            if index == 0 and self.approved_plan is not None else {}
                        # In a thread of its own, so that this one is free to take Ctrl-C: while
                        # nbclient runs a notebook in the main thread, it takes SIGINT for itself.
                        self._executing[phase.notebook] = kernel
                        one = ThreadPoolExecutor(1, thread_name_prefix="crlib-notebook")
                        self._parallel[phase.notebook] = (began, one.submit(
                            execute, phase, self.dir, parameters | approved, notebooks_dir=notebooks_dir,
                            cell_timeout=cell_timeout, kernel=kernel, workdir=self._workdir))
                        future = self._parallel[phase.notebook][1]
                        one.shutdown(wait=False)
                        outcome = future.result()
                    collect_workdir(self._workdir, self.dir)
                    seen |= self.known_secrets()
                    self._archive_notebook(phase, outcome, seen, source, attempt=len(self.record["attempts"]))
                    entry.update(status=outcome.status, duration_s=round(time.monotonic() - began, 2))
                    if outcome.status == "failed":
                        entry.update(failure=outcome.failure, step=outcome.step)
                        self.record["failed"] = {"notebook": phase.notebook, "step": outcome.step,
                                                 "reason": outcome.failure, "error": outcome.error}
                        break
                    self._save(seen)
        except (Exception, KeyboardInterrupt) as exc:
            with _uninterrupted():  # a second Ctrl-C must not leave the run unsealed
                self._stop_kernels()
                self._failed_outside_notebooks(exc, current)
                self.record["status"] = "failed"
                attempt.update(finished=_utc(), status="failed")
                self._finish(seen)
            if isinstance(exc, KeyboardInterrupt):
                raise
            return self.record
        self._stop_kernels()
        self.record["status"] = "failed" if self.record["failed"] else "succeeded"
        attempt.update(finished=_utc(), status=self.record["status"])
        self._finish(seen)
        return self.record

    def _stop_kernels(self) -> None:
        # Notebooks still running (Ctrl-C, or a plan whose earlier notebook failed) end first:
        # their kernels are stopped, and nothing may write into the folder once it is sealed.
        for notebook, (_, future) in self._parallel.items():
            if not future.done():  # its thread sees the kernel die, and cleans up after it itself
                KernelAhead.kill(self._executing[notebook])
        futures_wait([future for _, future in self._parallel.values()], timeout=300)
        self._parallel.clear()
        self._executing.clear()
        kernels = getattr(self, "_kernels", None)
        if kernels is not None:
            kernels.finish()
        workdir = self._workdir
        if workdir is not None:
            self._workdir = None
            collect_workdir(workdir, self.dir)
            shutil.rmtree(workdir, ignore_errors=True)

    def _failed_outside_notebooks(self, exc: BaseException, phase: runbook.Phase | None) -> None:
        """Record a failure the notebooks did not report: before the first one ran (the notebooks
        missing, the target out of reach), in the runner around one, or an interrupt."""
        if isinstance(exc, KeyboardInterrupt):
            reason, error = "interrupted", "KeyboardInterrupt"
        else:
            reason = "setup" if phase is None else "runner"
            error = str(exc) if isinstance(exc, CrlibError) else f"{type(exc).__name__}: {exc}"
        error = MASKER.redact((error.strip().splitlines() or [type(exc).__name__])[0])
        step = "before any notebook" if phase is None else f"{phase.notebook}, in the runner"
        if phase is not None:
            entry = next(n for n in self.record["notebooks"] if n["name"] == phase.notebook)
            if entry["status"] == "running":
                entry.update(status="failed", failure=reason, step=step)
        self.record["failed"] = {"notebook": phase.notebook if phase else None, "step": step, "reason": reason,
                                 "error": error}

    def _archive_notebook(self, phase: runbook.Phase, outcome: Outcome, secrets: set[str], source: Path, *,
                          attempt: int) -> None:
        """The executed notebook, sanitised; the unexecuted source when papermill saved nothing."""
        partial = self.dir / PARTIAL / f"{phase.notebook}.ipynb"
        notebook = json.loads(archive.read_private(partial) if partial.is_file() else source.read_bytes())
        roots = self._roots()
        clean, masked = archive.sanitise_notebook(notebook, name=phase.notebook, failure=outcome.failure,
                                                  secrets=secrets, roots=roots)
        self.record["secrets_masked"] += masked
        archive.write_private(self.dir / "notebooks" / f"{phase.notebook}.ipynb",
                              json.dumps(clean, indent=1, ensure_ascii=False) + "\n")
        lines = []
        for event in outcome.events:
            text, masked = archive.scrub(json.dumps(event | {"attempt": attempt}), secrets, roots)
            self.record["secrets_masked"] += masked
            lines.append(text + "\n")
        archive.write_private(self.dir / EVENTS, "".join(lines), append=True)
        for done in (partial, self.dir / PARTIAL / f"{phase.notebook}.jsonl"):
            done.unlink(missing_ok=True)  # this notebook's only: a plan's others may still be running
        steps = {s["step"]: s for s in self.record["steps"]}
        for event in outcome.events:
            if event["event"] in ("result", "plan"):
                steps[event["step"]] = {"step": event["step"], "notebook": phase.notebook, "status": event["status"],
                                        "duration_s": event.get("duration_s"), "resource_ids": event["resource_ids"],
                                        "changes": event["changes"], "plan": event.get("plan", [])}
        order = [s for p in runbook.PHASES for s in p.steps]
        if outcome.step in order:  # not a cell outside the steps
            steps[outcome.step] = {"step": outcome.step, "notebook": phase.notebook, "status": "failed",
                                   "duration_s": None, "resource_ids": [], "changes": [], "reason": outcome.failure}
        self.record["steps"] = sorted(steps.values(), key=lambda s: order.index(s["step"]))

    def _roots(self) -> list[tuple[str, str]]:
        return archive.local_roots({"<run>": self.dir, "<kernel-cwd>": self._workdir,
                                    "<repo>": bundled.checkout(),
                                    "<secrets>": getattr(getattr(self, "secret_store", None), "directory",
                                                         self.site.secrets.local_dir),
                                    "<sandbox>": self.site.target.sandbox_state_dir})

    def _save(self, secrets: AbstractSet[str] = frozenset()) -> None:
        text, _ = archive.scrub(json.dumps(self.record, indent=2), secrets, self._roots())
        archive.write_private(self.dir / archive.RECORD, text + "\n")

    def _finish(self, secrets: set[str]) -> None:
        finished = time.time()
        self.record["finished"] = _utc(finished)
        started = dt.datetime.fromisoformat(self.record["started"]).timestamp()
        self.record["duration_s"] = round(finished - started, 1)
        shutil.rmtree(self.dir / PARTIAL, ignore_errors=True)
        self._save(secrets)
        signer = self.signer or self._signer_without_target()
        try:
            archive.seal(self.dir, signer=signer, run=self.record["run"])
            if signer is not None:
                signing.remember_signer(signer.public_key())  # what --resume will trust
        except signing.SigningError as exc:
            self.unsigned = str(exc)
        if signer is None:
            self.unsigned = f"sealed {self.dir.name} unsigned: the signing key was out of reach"

    def _signer_without_target(self) -> signing.Signer | None:
        """A run that failed before reaching its target can still be signed with a local key in a
        local store; a Key Vault key or store needs the target."""
        site = getattr(self, "site", None)
        if site is None or site.records.key_vault_key or site.secrets.store != "local" or not site.secrets.local_dir:
            return None  # a Key Vault, or a store named after the target, needs the target
        return signing.signer_for(site, None, LocalSecretStore(site.secrets.local_dir))


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ctrl-C ignored while a failed run is recorded and sealed (in the main thread, where signals
    are handled); it is restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _check_signer(run_dir: Path, site: Site) -> None:
    """Refuse a folder whose SIGNATURE verifies but was made by a key other than the site's own:
    anyone who can write the folder can re-sum and re-sign it with a key of their own."""
    from .context import open_context

    check = archive.signature(run_dir)
    try:
        ctx = open_context(site)
        signer = signing.signer_for(site, ctx.profile, ctx.secrets, create=False)
        trusted = (signer.public_key_of(check.key_id) if isinstance(signer, signing.KeyVaultSigner)
                   else signer.public_key())
    except Exception as exc:
        raise ArchiveError(str(run_dir), [f"refusing to resume: cannot read this site's signing key to check who "
                                          f"signed the run ({type(exc).__name__}: {exc})"]) from None
    problems = archive.signature(run_dir, trusted=trusted, trusted_name="this site's signing key").problems
    # The site's key is named by the folder's own parameters, which its writer could point at a key
    # of their own; the key must also be one crlib has sealed runs with on this account.
    if not problems and not signing.remembered(trusted):
        problems = [f"signed by {check.key_id}, a key crlib has not sealed a run with on this account "
                    f"({signing.signers_file()} does not list it)"]
    if problems:
        raise ArchiveError(str(run_dir), ["refusing to resume: " + problems[0], *problems[1:]])


def _check_notebooks(notebooks_dir: Path, phases: list[runbook.Phase]) -> None:
    missing = [p.notebook for p in phases if not (notebooks_dir / f"{p.notebook}.ipynb").is_file()]
    if missing:
        raise CrlibError(f"the notebooks {', '.join(missing)} are missing from {notebooks_dir} "
                         "(reinstall crlib: pip install --force-reinstall crlib)")


def select_phases(only: list[str] | None) -> list[runbook.Phase]:
    if not only:
        return list(runbook.DEFAULT_PHASES)
    chosen = {runbook.phase(name).notebook for name in only}
    return [p for p in runbook.PHASES if p.notebook in chosen]
