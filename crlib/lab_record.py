"""Applies made in JupyterLab, recorded as `crlib run` records its runs.

`crlib run` executes the notebooks headless and seals a run folder; an engineer stepping through a
notebook in JupyterLab applies from the notebook's own kernel, which no runner watches. So the page's
apply cell (crlib/notebook.py, interactively and outside `crlib run`) calls `after_apply`, which
writes the same kind of run folder:

    runs/<UTC>-<site>-<id>/
    ├── run.json         "source": "jupyterlab"; kind, site, who (local user, signed-in identity), when,
    │                    where (tenant, subscription, target), each step with its plan and result, status
    ├── parameters.yaml  the validated parameters the apply used (form edits included), masked
    ├── steps.jsonl      the page's plan, start, result and failure events
    ├── notebooks/NN-*.ipynb   the notebook file as last saved, sanitised (archive.sanitise_notebook)
    ├── SHA256SUMS
    └── SIGNATURE        by the site's signing key, as `crlib archive verify` checks

A sealed folder cannot change, and the notebook file JupyterLab saved before the apply cell ran
does not hold the apply's outputs. So the apply cell records at once (nothing is lost if nobody
saves), and shows a **Save record** button: after saving the notebook (Ctrl+S), pressing it writes
a *new* sealed folder with the same record, the notebook file as saved by then, and `"supersedes":
<the earlier folder>`; an unchanged notebook file is not recorded twice.

Where: the checkout's `runs/` when the notebook lies in crlib's checkout (crlib/bundled.py), else
`runs/` beside the notebook. Which notebook: VS Code names it (`__vsc_ipynb_file__`); jupyter_server 2
starts kernels with `JPY_SESSION_NAME`, the notebook's path. A kernel that names no notebook (a bare
IPython, papermill) records nothing and says so.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import secrets as random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, archive, bundled, signing
from .forms import message_html
from .secrets import MASKER

if TYPE_CHECKING:
    from .errors import RunFailed
    from .notebook import Page

SOURCE = "jupyterlab"


def notebook_path(phase_notebook: str, namespace: dict | None = None) -> Path | None:
    """The notebook file this kernel runs, when its front end says so and the file is this phase's
    notebook (it calls open_page with the phase's name): VS Code's `__vsc_ipynb_file__`, else
    JupyterLab's `JPY_SESSION_NAME` (absolute, or relative to the kernel's folder, the notebook's)."""
    candidates = []
    if namespace and isinstance(namespace.get("__vsc_ipynb_file__"), str):
        candidates.append(Path(namespace["__vsc_ipynb_file__"]))
    session = os.environ.get("JPY_SESSION_NAME")
    if session:
        path = Path(session)
        candidates += [path] if path.is_absolute() else [Path.cwd() / path, Path.cwd() / path.name]
    for path in candidates:
        try:
            if path.suffix != ".ipynb" or not path.is_file():
                continue
            cells = json.loads(path.read_text()).get("cells", [])
        except (OSError, ValueError, AttributeError):
            continue
        sources = ["".join(c.get("source", "")) for c in cells if isinstance(c, dict)]
        if any(f'"{phase_notebook}"' in source or f"'{phase_notebook}'" in source for source in sources):
            return path.resolve()
    return None


def runs_dir_for(notebook: Path) -> Path:
    """The checkout's runs/ for a notebook inside crlib's checkout; else runs/ beside the notebook."""
    root = bundled.checkout()
    if root is not None and notebook.resolve().is_relative_to(root.resolve()):
        return root / "runs"
    return notebook.resolve().parent / "runs"


def _utc() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _apply_events(events: list[dict]) -> list[dict]:
    """The last apply's events: those after the last plan event."""
    last_plan = max((i for i, e in enumerate(events) if e["event"] == "plan"), default=-1)
    return [e for e in events[last_plan + 1:] if e["event"] in ("start", "result", "failed")]


def _steps(page: Page, failure: RunFailed | None) -> list[dict]:
    planned = {r.step: r for r in page.planned or []}
    steps = [{"step": r.step, "notebook": page.phase.notebook, "status": str(r.status), "duration_s": r.duration_s,
              "resource_ids": list(r.resource_ids), "changes": list(r.changes),
              "plan": planned[r.step].plan if r.step in planned else []} for r in page.applied]
    if failure is not None:
        steps.append({"step": failure.step, "notebook": page.phase.notebook, "status": "failed", "duration_s": None,
                      "resource_ids": [], "changes": [], "reason": "error",
                      "plan": planned[failure.step].plan if failure.step in planned else []})
    return steps


def write_record(page: Page, *, notebook: Path | None, runs_dir: Path, failure: RunFailed | None = None,
                 supersedes: str | None = None) -> Path:
    """Write, seal and sign a run folder for the page's last apply; its path. `notebook`: the file
    to archive as saved now (None: the record holds no notebook)."""
    from .runner import archived_parameters
    from .steps.prerequisites import signed_in

    site, ctx, phase = page.site, page.context, page.phase
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    runs_dir.mkdir(parents=True, exist_ok=True)
    run_dir = runs_dir / f"{stamp}-{site.site}-{random.token_hex(3)}"
    run_dir.mkdir(mode=0o700)
    (run_dir / "notebooks").mkdir(mode=0o700)
    archive.write_private(run_dir / "parameters.yaml", archived_parameters(site))

    who = signed_in(ctx)
    signer = signing.signer_for(site, ctx.profile, ctx.secrets)
    known = archive.store_secrets(ctx.secrets, f"crlib-{site.site}-") | MASKER.values()
    roots = archive.local_roots({"<run>": run_dir, "<repo>": bundled.checkout(),
                                 "<notebook-dir>": notebook.parent if notebook is not None else None,
                                 "<secrets>": getattr(ctx.secrets, "directory", None) or site.secrets.local_dir,
                                 "<sandbox>": site.target.sandbox_state_dir})
    masked = 0

    entry: dict[str, Any] = {"name": phase.notebook, "status": "failed" if failure else "completed"}
    if failure is not None:
        entry.update(failure="error", step=failure.step)
    if notebook is not None:
        raw = notebook.read_bytes()
        saved = dt.datetime.fromtimestamp(notebook.stat().st_mtime, dt.UTC).isoformat(timespec="seconds")
        clean, count = archive.sanitise_notebook(json.loads(raw), name=phase.notebook, failure=None, secrets=known,
                                                 roots=roots)
        masked += count
        archive.write_private(run_dir / "notebooks" / f"{phase.notebook}.ipynb",
                              json.dumps(clean, indent=1, ensure_ascii=False) + "\n")
        entry.update(source_sha256=archive.sha256_file(notebook), saved=saved, file=notebook.name)
    else:
        entry["saved"] = None

    lines = []
    for event in page.events:
        text, count = archive.scrub(json.dumps(event | {"source": SOURCE}), known, roots)
        masked += count
        lines.append(text + "\n")
    archive.write_private(run_dir / "steps.jsonl", "".join(lines))

    applied = _apply_events(page.events)
    started = applied[0]["time"] if applied else _utc()
    finished = applied[-1]["time"] if applied else _utc()
    duration = (dt.datetime.fromisoformat(finished) - dt.datetime.fromisoformat(started)).total_seconds()
    record = {"run": run_dir.name, "site": site.site, "crlib_version": __version__, "source": SOURCE,
              "status": "failed" if failure else "succeeded", "plan_only": False,
              "kind": archive.run_kind([phase.notebook], False), "ran": list(phase.steps),
              "started": started, "finished": finished, "duration_s": round(duration, 1), "recorded": _utc(),
              "operator": {"local_user": getpass.getuser(), "identity": who["identity"]},
              "tenant": who["tenant"], "subscription": who["subscription"],
              "target": {"kind": who["target"], "arm_endpoint": ctx.profile.arm_endpoint},
              "parameters": json.loads(MASKER.redact(json.dumps(site.model_dump(mode="json")))),
              "parameters_sha256": archive.sha256_file(run_dir / "parameters.yaml"),
              "overrides": json.loads(MASKER.redact(json.dumps(page.values["overrides"] | page.form_overrides,
                                                               default=str))),
              "form_overrides": json.loads(MASKER.redact(json.dumps(page.form_overrides, default=str))),
              "notebooks": [entry], "steps": _steps(page, failure),
              "failed": None if failure is None else {"notebook": phase.notebook, "step": failure.step,
                                                      "reason": "error", "error": MASKER.redact(str(failure))},
              "attempts": [{"started": started, "finished": finished, "from": phase.notebook,
                            "status": "failed" if failure else "succeeded", "source": SOURCE}],
              "signing": {"key_id": signer.key_id, "key_source": signer.source},
              "supersedes": supersedes, "secrets_masked": 0}
    text, count = archive.scrub(json.dumps(record, indent=2), known, roots)
    record["secrets_masked"] = masked + count
    text, _ = archive.scrub(json.dumps(record, indent=2), known, roots)
    archive.write_private(run_dir / archive.RECORD, text + "\n")
    archive.seal(run_dir, signer=signer, run=run_dir.name)
    return run_dir


def _shown_path(run_dir: Path) -> str:
    try:
        return str(run_dir.relative_to(Path.cwd()))
    except ValueError:
        return str(run_dir)


class RecordBox:
    """What the apply cell shows after recording: where the record is, and the Save record button."""

    def __init__(self, page: Page, run_dir: Path, notebook: Path, failure: RunFailed | None) -> None:
        import ipywidgets as w

        self.page, self.notebook, self.failure = page, notebook, failure
        self.records = [run_dir]
        self.note = w.HTML(self._recorded(run_dir, first=True))
        self.button = w.Button(description="Save record", icon="save", button_style="info",
                               tooltip="Record the notebook as saved now (save it first: Ctrl+S), in a new sealed "
                                       "run folder")
        self.button.add_class("crlib-save-record")
        self.button.on_click(self.save)
        self.status = w.HTML("")
        self.status.add_class("crlib-save-record-status")
        self.widget = w.VBox([self.note, w.HBox([self.button]), self.status])
        self.widget.add_class("crlib-record")

    def _recorded(self, run_dir: Path, *, first: bool, supersedes: str | None = None) -> str:
        check = archive.signature(run_dir)
        lines = [f"{_shown_path(run_dir)}: sealed, signed by {check.key_id or '(unsigned)'}; "
                 f"`crlib archive verify {_shown_path(run_dir)}` checks it."]
        if supersedes:
            lines.append(f"It supersedes {supersedes}.")
        if first:
            lines.append("It holds the notebook as last saved. Save the notebook (Ctrl+S), then press Save record "
                         "to record it with this cell's outputs in a new sealed folder.")
        return message_html("Recorded:" if first else "Saved record:", lines, kind="note")

    def save(self, _button: Any = None) -> Path | None:
        """A new sealed record of the same apply with the notebook file as saved now; None when the
        file is unchanged since the last record."""
        self.button.disabled = True
        try:
            last = self.records[-1]
            previous = archive.read_record(last)["notebooks"][0].get("source_sha256")
            if previous == archive.sha256_file(self.notebook):
                self.status.value = message_html("Not saved:", [f"{self.notebook.name} is unchanged since "
                                                                f"{last.name}: save the notebook (Ctrl+S) first."],
                                                  kind="note")
                return None
            run_dir = write_record(self.page, notebook=self.notebook, runs_dir=last.parent, failure=self.failure,
                                   supersedes=last.name)
            self.records.append(run_dir)
            self.status.value = self._recorded(run_dir, first=False, supersedes=last.name)
            return run_dir
        except Exception as exc:  # shown beside the button: a callback's exception would vanish
            self.status.value = message_html("Not saved:", [f"{type(exc).__name__}: {MASKER.redact(str(exc))}"])
            return None
        finally:
            self.button.disabled = False


def after_apply(page: Page, *, failure: RunFailed | None = None, namespace: dict | None = None) -> Path | None:
    """Record the page's apply (interactive, outside `crlib run`) and show where, with the Save
    record button; the run folder, or None when nothing could be recorded (said in the cell)."""
    from IPython.display import HTML, display

    notebook = notebook_path(page.phase.notebook, namespace)
    if notebook is None:
        display(HTML(message_html("Not recorded:", [
            "this kernel does not say which notebook it runs (JupyterLab sets JPY_SESSION_NAME); "
            "`crlib run` records headless runs."], kind="note")))
        return None
    try:
        run_dir = write_record(page, notebook=notebook, runs_dir=runs_dir_for(notebook), failure=failure)
    except Exception as exc:  # the apply happened: say the record failed, do not hide the apply's result
        display(HTML(message_html("Not recorded:", [f"{type(exc).__name__}: {MASKER.redact(str(exc))}"])))
        return None
    page.record_box = RecordBox(page, run_dir, notebook, failure)
    display(page.record_box.widget)
    return run_dir
