"""A run's archive: the change record that `crlib run` leaves in `runs/<UTC>-<site>-<id>/`.

    run.json              who, where, which versions, masked parameters, each step's outcome
    parameters.yaml       the parameter file the run used (it holds secret references only)
    notebooks/NN-*.ipynb  the executed notebooks, sanitised
    steps.jsonl           every step start, result and failure, as the notebooks recorded them
    SHA256SUMS            sha256sum format, over every other file

Sealing makes every file and folder read-only; `verify` checks every hash, that no file was added
or removed, and scans every byte for secrets: the values in the site's secret store and the
shapes secrets take (SAS keys, passwords in connection strings, private keys, bearer tokens).

Sanitising fixes what papermill writes for a change record: local absolute paths go, the
parameters are masked, widget state is dropped, and cells that never ran are marked so instead
of "completed". It is hand-written because papermill has no such option.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ArchiveError
from .secrets import MASK, MASKER, SecretStore

if TYPE_CHECKING:
    import pandas as pd

SUMS = "SHA256SUMS"
RECORD = "run.json"
# Shapes of secrets, for when the store is out of reach or a value was never registered.
SECRET_SHAPES = {
    "a SAS key": re.compile(rb"SharedAccessKey=(?!\*{8})[A-Za-z0-9+/=]{8,}"),
    "a sync token password": re.compile(rb"SyncTokenPassword=(?!\*{8})[^;\s\"']{8,}"),
    "a private key": re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "a bearer token": re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    "a SAS signature": re.compile(rb"SharedAccessSignature sr=[^\s\"']*&sig=(?!\*{8})[^&\s\"']{8,}"),
}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def archived_files(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.rglob("*") if p.is_file() and p.name != SUMS)


# -- secrets and paths ----------------------------------------------------------------------------
def local_roots(named: dict[str, Path | str | None]) -> list[tuple[str, str]]:
    """(absolute path, placeholder) pairs to take out of archived text, longest first; `named`
    maps placeholders (e.g. "<run>") to the paths they stand for."""
    roots = [(str(Path(path).expanduser().resolve()), name) for name, path in named.items() if path]
    roots += [(sys.prefix, "<python>"), (sys.base_prefix, "<python>"), (str(Path.cwd()), "<cwd>"),
              (str(Path.home()), "~")]
    return sorted({r for r in roots if len(r[0]) > 1}, key=lambda r: len(r[0]), reverse=True)


def scrub(text: str, secrets: Iterable[str], roots: list[tuple[str, str]]) -> tuple[str, int]:
    """Mask every known secret and replace local roots; also returns how many secrets were masked."""
    masked = 0
    for value in sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True):
        masked += text.count(value)
        text = text.replace(value, MASK)
    for root, placeholder in roots:
        # The whole path component only: /tmp/run must not eat the start of /tmp/run2.
        text = re.sub(re.escape(root) + r"(?![\w.-])", placeholder, text)
    return text, masked


def scan_bytes(data: bytes, secrets: Iterable[str]) -> list[str]:
    """What secret-looking content a file holds: known values first, then known shapes."""
    found = [f"a secret from the store ({value[:3]}…)" for value in secrets
             if value and len(value) >= 6 and value.encode() in data]
    found += [what for what, shape in SECRET_SHAPES.items() if shape.search(data)]
    return found


def store_secrets(store: SecretStore, prefix: str) -> set[str]:
    """Every value the store holds under a prefix (the site's `crlib-<site>-`)."""
    values = set()
    for name in store.names(prefix):
        value = store.get(name)
        if value:
            values.add(value)
    return values


# -- notebooks ------------------------------------------------------------------------------------
def sanitise_notebook(notebook: dict, *, name: str, failure: str | None, secrets: Iterable[str],
                      roots: list[tuple[str, str]]) -> tuple[dict, int]:
    """A papermill output notebook made fit for the archive. `failure` says why execution stopped
    (e.g. "cell timeout"), or None when every cell ran."""
    secrets = list(secrets)
    meta = notebook.setdefault("metadata", {})
    meta.pop("widgets", None)
    papermill = meta.get("papermill")
    if papermill is not None:
        papermill["input_path"] = f"notebooks/{name}.ipynb"
        papermill["output_path"] = f"notebooks/{name}.ipynb"
        papermill["environment_variables"] = {}
        papermill["parameters"] = json.loads(MASKER.redact(json.dumps(papermill.get("parameters", {}))))
    if failure:
        _mark_failure(notebook, failure)
    text, masked = scrub(json.dumps(notebook, indent=1, ensure_ascii=False), secrets, roots)
    return json.loads(text), masked


def _mark_failure(notebook: dict, failure: str) -> None:
    """papermill saves a timed-out or killed notebook as if it completed; say what happened."""
    meta = notebook["metadata"].setdefault("papermill", {})
    meta["exception"] = True
    meta["crlib_failure"] = failure
    code = [c for c in notebook["cells"] if c.get("cell_type") == "code"]
    ran = [c for c in code if (c.get("metadata", {}).get("papermill") or {}).get("start_time")]
    for cell in code:
        cell_meta = cell.setdefault("metadata", {}).setdefault("papermill", {})
        if cell not in ran:
            cell_meta["status"] = "not run"
    if ran and not any(c["metadata"]["papermill"].get("exception") for c in ran):
        last = ran[-1]
        last["metadata"]["papermill"].update(status="failed", exception=True)
        last.setdefault("outputs", []).append({"output_type": "error", "ename": failure.title().replace(" ", ""),
                                               "evalue": f"crlib run: {failure} in this cell", "traceback": []})


# -- sealing and verifying ------------------------------------------------------------------------
def seal(run_dir: Path) -> None:
    """Write SHA256SUMS over every file, then make the archive read-only."""
    sums = run_dir / SUMS
    if sums.exists():
        sums.chmod(0o644)
    lines = [f"{sha256_file(p)}  {p.relative_to(run_dir).as_posix()}\n" for p in archived_files(run_dir)]
    sums.write_text("".join(lines))
    for path in sorted(run_dir.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    run_dir.chmod(0o555)


def unseal(run_dir: Path) -> None:
    """Make a sealed archive writable again, for `crlib run --resume`."""
    run_dir.chmod(0o755)
    for path in run_dir.rglob("*"):
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def verify(run_dir: Path | str, *, secrets: Iterable[str] = ()) -> list[str]:
    """Every problem with an archive: missing, altered or extra files, and secrets. Empty when sound."""
    run_dir = Path(run_dir)
    sums = run_dir / SUMS
    if not sums.is_file():
        return [f"{SUMS} is missing"]
    problems, listed = [], set()
    for number, line in enumerate(sums.read_text().splitlines(), 1):
        match = re.match(r"^([0-9a-f]{64})  (.+)$", line)
        if not match or ".." in Path(match.group(2)).parts or match.group(2).startswith("/"):
            problems.append(f"{SUMS} line {number} is not '<sha256>  <relative path>'")
            continue
        digest, relative = match.groups()
        listed.add(relative)
        path = run_dir / relative
        if not path.is_file():
            problems.append(f"{relative} is listed but missing")
        elif sha256_file(path) != digest:
            problems.append(f"{relative} was altered (sha256 differs)")
    for path in archived_files(run_dir):
        relative = path.relative_to(run_dir).as_posix()
        if relative not in listed:
            problems.append(f"{relative} is not listed in {SUMS}")
    secrets = list(secrets)
    for path in [*archived_files(run_dir), sums]:
        for found in scan_bytes(path.read_bytes(), secrets):
            problems.append(f"{path.relative_to(run_dir).as_posix()} holds {found}")
    return problems


def verify_or_raise(run_dir: Path | str, *, secrets: Iterable[str] = ()) -> None:
    problems = verify(run_dir, secrets=secrets)
    if problems:
        raise ArchiveError(str(run_dir), problems)


# -- listing --------------------------------------------------------------------------------------
def read_record(run_dir: Path) -> dict:
    return json.loads((run_dir / RECORD).read_text())


def list_runs(runs_dir: Path | str) -> pd.DataFrame:
    """A table of the runs under `runs_dir`, newest first."""
    import pandas as pd

    rows = []
    for run_dir in sorted(Path(runs_dir).glob("*/"), reverse=True):
        if not (run_dir / RECORD).is_file():
            continue
        record = read_record(run_dir)
        failed = record.get("failed") or {}
        rows.append({"run": run_dir.name, "site": record.get("site"), "target": record.get("target", {}).get("kind"),
                     "started": record.get("started"), "status": record.get("status"),
                     "failed_step": failed.get("step", ""), "duration_s": record.get("duration_s"),
                     "sealed": (run_dir / SUMS).is_file()})
    return pd.DataFrame(rows, columns=["run", "site", "target", "started", "status", "failed_step", "duration_s",
                                       "sealed"])
