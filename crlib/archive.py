"""A run's archive: the change record that `crlib run` leaves in `runs/<UTC>-<site>-<id>/`.

    run.json              who, where, which versions, masked parameters, each step's outcome
    parameters.yaml       the parameter file the run used (it holds secret references only)
    notebooks/NN-*.ipynb  the executed notebooks, sanitised
    steps.jsonl           every step start, result and failure, as the notebooks recorded them
    SHA256SUMS            sha256sum format, over every other file but SIGNATURE
    SIGNATURE             ES256 over SHA256SUMS by the site's signing key (crlib/signing.py)

Files are written 0600 (folders 0700) and never through a symlink. Sealing clears every write bit
and adds no permission (the umask's removals stay removed); seal, unseal and `verify` refuse an
archive that holds a symlink and never follow one. `verify` checks every hash, that no file was
added or removed, that SIGNATURE signs these sums (by a key the caller trusts, when given), and
scans every byte for secrets: the values in the site's secret store and the shapes secrets take
(SAS keys, passwords in connection strings, private keys, bearer tokens); it names the file and
the store entry or shape found, and prints no part of the secret.

Sanitising fixes what papermill writes for a change record: local absolute paths go, the
parameters are masked, widget state is dropped, and cells that never ran are marked so instead
of "completed". It is hand-written because papermill has no such option.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from . import signing
from .errors import ArchiveError
from .secrets import MASK, MASKER, SecretStore, mask_keyed

if TYPE_CHECKING:
    import pandas as pd

SUMS = "SHA256SUMS"
SIGNATURE = signing.SIGNATURE
RECORD = "run.json"
# Shapes of secrets, for when the store is out of reach or a value was never registered.
SECRET_SHAPES = {
    "a SAS key": re.compile(rb"SharedAccessKey=(?!\*{8})[A-Za-z0-9+/=]{8,}"),
    "a sync token password": re.compile(rb"SyncTokenPassword=(?!\*{8})[^;\s\"']{8,}"),
    "a private key": re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "a bearer token": re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    # A SAS token's, or a signed URL's (a data endpoint's blob redirect): `sig=` anywhere.
    "a SAS signature": re.compile(rb"(?<![A-Za-z0-9_])sig=(?!\*{8})[^&;\s\"'\\]{8,}", re.I),
}


def sha256_file(path: Path, *, follow_symlinks: bool = True) -> str:
    """The file's sha256; with follow_symlinks=False a symlink is refused (OSError), never read through."""
    digest = hashlib.sha256()
    with _open(path, os.O_RDONLY, follow_symlinks=follow_symlinks) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _open(path: Path, flags: int, *, follow_symlinks: bool = False, mode: int = 0o600) -> IO[Any]:
    fd = os.open(path, flags | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW), mode)
    return os.fdopen(fd, "rb" if (flags & os.O_ACCMODE) == os.O_RDONLY else "ab" if flags & os.O_APPEND else "wb")


def write_private(path: Path, data: str | bytes, *, append: bool = False) -> None:
    """Write (or append to) a file of the archive: 0600 when created, never through a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    with _open(Path(path), flags) as fh:
        fh.write(data.encode() if isinstance(data, str) else data)


def read_private(path: Path) -> bytes:
    """A file of the archive, never read through a symlink."""
    with _open(Path(path), os.O_RDONLY) as fh:
        return fh.read()


def _walk(run_dir: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Every entry under run_dir with its lstat, depth first; never enters a symlinked folder."""
    with os.scandir(run_dir) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            path = Path(entry.path)
            info = entry.stat(follow_symlinks=False)
            yield path, info
            if stat.S_ISDIR(info.st_mode):
                yield from _walk(path)


def archived_files(run_dir: Path) -> list[Path]:
    """The archive's regular files but SHA256SUMS and SIGNATURE (symlinks are never counted: see tree_problems)."""
    outside = {run_dir / SUMS, run_dir / SIGNATURE}
    return sorted(p for p, info in _walk(run_dir) if stat.S_ISREG(info.st_mode) and p not in outside)


def tree_problems(run_dir: Path | str, *, others: bool = True) -> list[str]:
    """What makes a folder unsafe to trust: a symlink anywhere (the folder itself included), anything
    but regular files and folders, and with `others`, an entry another user owns or can write."""
    run_dir = Path(run_dir)
    try:
        top = run_dir.lstat()
    except OSError as exc:
        return [f"cannot be read ({exc.strerror})"]
    if stat.S_ISLNK(top.st_mode):
        return ["the folder is a symlink"]
    if not stat.S_ISDIR(top.st_mode):
        return ["is not a folder"]
    problems = []
    for path, info in [(run_dir, top), *_walk(run_dir)]:
        name = path.relative_to(run_dir).as_posix() if path != run_dir else "the folder"
        if stat.S_ISLNK(info.st_mode):
            problems.append(f"{name} is a symlink")
        elif not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            problems.append(f"{name} is not a regular file or folder")
        elif others and info.st_uid != os.geteuid():
            problems.append(f"{name} belongs to another user (uid {info.st_uid})")
        elif others and info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            problems.append(f"{name} can be written by other users (mode {stat.S_IMODE(info.st_mode):04o})")
    return problems


def _refuse_symlinks(run_dir: Path, action: str) -> None:
    problems = tree_problems(run_dir, others=False)
    if problems:
        raise ArchiveError(str(run_dir), [f"refusing to {action}: {p}" for p in problems])


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _chmod(path: Path, change: Callable[[int], int]) -> None:
    """chmod without following a symlink: through a descriptor opened O_NOFOLLOW."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchmod(fd, change(stat.S_IMODE(os.fstat(fd).st_mode)))
    finally:
        os.close(fd)


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
    text, by_key = mask_keyed(text)  # e.g. a signed blob URL's sig= inside an error message
    masked += by_key
    for root, placeholder in roots:
        # The whole path component only: /tmp/run must not eat the start of /tmp/run2.
        text = re.sub(re.escape(root) + r"(?![\w.-])", placeholder, text)
    return text, masked


def scan_bytes(data: bytes, secrets: Iterable[str] | Mapping[str, str]) -> list[str]:
    """What secret-looking content a file holds: known values first, then known shapes. `secrets`:
    values, or store entry names mapped to their values (the finding then names the entry). A
    finding never holds any part of the secret."""
    named = secrets.items() if isinstance(secrets, Mapping) else [(None, value) for value in secrets]
    found = [f"the secret '{name}' from the store" if name else "a secret from the store"
             for name, value in named if value and len(value) >= 6 and value.encode() in data]
    found += [what for what, shape in SECRET_SHAPES.items() if shape.search(data)]
    return found


def named_store_secrets(store: SecretStore, prefix: str) -> dict[str, str]:
    """Every entry the store holds under a prefix (the site's `crlib-<site>-`): name -> value."""
    named = {}
    for name in store.names(prefix):
        value = store.get(name)
        if value:
            named[name] = value
    return named


def store_secrets(store: SecretStore, prefix: str) -> set[str]:
    """Every value the store holds under a prefix (the site's `crlib-<site>-`)."""
    return set(named_store_secrets(store, prefix).values())


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
def seal(run_dir: Path, *, signer: signing.Signer | None = None, run: str | None = None) -> None:
    """Write SHA256SUMS over every file and, with a signer, SIGNATURE over SHA256SUMS (without one,
    a SIGNATURE of earlier sums is removed); then clear every write bit: no permission is added,
    and none the umask removes is kept. Refuses a folder that holds a symlink. A signer that fails
    leaves the archive sealed but unsigned, and the error is raised after sealing."""
    run_dir = Path(run_dir)
    _refuse_symlinks(run_dir, "seal")
    sums = run_dir / SUMS
    for path in (sums, run_dir / SIGNATURE):
        if path.exists():
            _chmod(path, lambda mode: mode | stat.S_IWUSR)
    lines = [f"{sha256_file(p, follow_symlinks=False)}  {p.relative_to(run_dir).as_posix()}\n"
             for p in archived_files(run_dir)]
    write_private(sums, "".join(lines))
    (run_dir / SIGNATURE).unlink(missing_ok=True)
    failure: Exception | None = None
    if signer is not None:
        try:
            write_private(run_dir / SIGNATURE, signing.sign(read_private(sums), signer, run=run or run_dir.name))
        except Exception as exc:  # the record is sealed all the same; verify will say it is unsigned
            failure = exc
    keep = ~(0o222 | _umask())
    for path, _ in sorted(_walk(run_dir), key=lambda entry: str(entry[0]), reverse=True):
        _chmod(path, lambda mode: mode & keep)
    _chmod(run_dir, lambda mode: mode & keep)
    if failure is not None:
        raise signing.SigningError(f"sealed {run_dir.name} unsigned: the signing key failed "
                                   f"({type(failure).__name__}: {failure})") from failure


def unseal(run_dir: Path) -> None:
    """Make a sealed archive writable again by its owner, for `crlib run --resume`. Refuses a
    folder that holds a symlink."""
    run_dir = Path(run_dir)
    _refuse_symlinks(run_dir, "unseal")
    _chmod(run_dir, lambda mode: mode | stat.S_IWUSR)
    for path, _ in _walk(run_dir):
        _chmod(path, lambda mode: mode | stat.S_IWUSR)


def signature(run_dir: Path | str, *, trusted: signing.ec.EllipticCurvePublicKey | None = None,
              trusted_name: str = "the given key") -> signing.SignatureCheck:
    """Who signed the archive's SHA256SUMS, and whether the signature holds (read without following
    a symlink); `trusted`: the key the signer must be."""
    run_dir = Path(run_dir)
    try:
        document = read_private(run_dir / SIGNATURE)
    except FileNotFoundError:
        return signing.SignatureCheck(problems=[f"{SIGNATURE} is missing: the record is not signed"])
    except OSError as exc:
        return signing.SignatureCheck(problems=[f"{SIGNATURE} cannot be read ({exc.strerror})"])
    try:
        sums = read_private(run_dir / SUMS)
    except OSError:
        sums = b""
    return signing.check(document, sums, trusted=trusted, trusted_name=trusted_name)


def verify(run_dir: Path | str, *, secrets: Iterable[str] | Mapping[str, str] = (),
           trusted: signing.ec.EllipticCurvePublicKey | None = None, trusted_name: str = "the given key") -> list[str]:
    """Every problem with an archive: symlinks, missing, altered or extra files, a missing or broken
    signature (or one by a key other than `trusted`), and secrets. Empty when sound. No symlink is
    followed; no problem holds any part of a secret. `secrets`: values, or store entry names mapped
    to values (a finding then names the entry)."""
    run_dir = Path(run_dir)
    links = tree_problems(run_dir, others=False)
    if links:
        return links
    sums = run_dir / SUMS
    if not sums.is_file():
        return [f"{SUMS} is missing"]
    problems, listed = [], set()
    for number, line in enumerate(read_private(sums).decode(errors="replace").splitlines(), 1):
        match = re.match(r"^([0-9a-f]{64})  (.+)$", line)
        if not match or ".." in Path(match.group(2)).parts or match.group(2).startswith("/"):
            problems.append(f"{SUMS} line {number} is not '<sha256>  <relative path>'")
            continue
        digest, relative = match.groups()
        listed.add(relative)
        path = run_dir / relative
        if not path.is_file():
            problems.append(f"{relative} is listed but missing")
        elif sha256_file(path, follow_symlinks=False) != digest:
            problems.append(f"{relative} was altered (sha256 differs)")
    for path in archived_files(run_dir):
        relative = path.relative_to(run_dir).as_posix()
        if relative not in listed:
            problems.append(f"{relative} is not listed in {SUMS}")
    problems += signature(run_dir, trusted=trusted, trusted_name=trusted_name).problems
    secrets = secrets if isinstance(secrets, Mapping) else list(secrets)
    extra = [p for p in (sums, run_dir / SIGNATURE) if p.is_file()]
    for path in [*archived_files(run_dir), *extra]:
        for found in scan_bytes(read_private(path), secrets):
            problems.append(f"{path.relative_to(run_dir).as_posix()} holds {found}")
    return problems


def verify_or_raise(run_dir: Path | str, *, secrets: Iterable[str] | Mapping[str, str] = ()) -> None:
    problems = verify(run_dir, secrets=secrets)
    if problems:
        raise ArchiveError(str(run_dir), problems)


# -- listing --------------------------------------------------------------------------------------
def read_record(run_dir: Path) -> dict:
    return json.loads(read_private(Path(run_dir) / RECORD))


KINDS = ("deploy", "plan", "rotate", "teardown")


def run_kind(notebooks: Iterable[str], plan_only: bool) -> str:
    """What a run is, from the notebooks it runs: `plan` (writes nothing), `teardown` (99),
    `rotate` (90), else `deploy`."""
    numbers = {name.split("-")[0] for name in notebooks}
    return "plan" if plan_only else "teardown" if "99" in numbers else "rotate" if "90" in numbers else "deploy"


def record_kind(record: Mapping[str, Any]) -> str:
    """A record's kind; records written before `kind` existed get it from their notebooks."""
    return record.get("kind") or run_kind([n.get("name", "") for n in record.get("notebooks", [])],
                                          bool(record.get("plan_only")))


def short_steps(steps: list[str]) -> str:
    """A run's steps, short: 'rotate', 'prerequisites..checks (13)'."""
    if len(steps) <= 2:
        return ", ".join(steps)
    return f"{steps[0]}..{steps[-1]} ({len(steps)})"


def list_runs(runs_dir: Path | str) -> pd.DataFrame:
    """A table of the runs under `runs_dir`, newest first: each run's kind and steps, and for a
    failed run the step (or "before any notebook") and the reason."""
    import pandas as pd

    rows = []
    for run_dir in sorted(Path(runs_dir).glob("*/"), reverse=True):
        try:
            record = read_record(run_dir)
        except (OSError, ValueError):  # no record, a symlinked one, or not JSON: not a run
            continue
        failed = record.get("failed") or {}
        ran = record.get("ran") or [s["step"] for s in record.get("steps", [])]
        rows.append({"run": run_dir.name, "site": record.get("site"), "kind": record_kind(record),
                     "steps": short_steps(ran), "target": record.get("target", {}).get("kind"),
                     "started": record.get("started"), "status": record.get("status"),
                     "failed_step": failed.get("step", ""), "reason": failed.get("reason", ""),
                     "duration_s": record.get("duration_s"),
                     "sealed": (run_dir / SUMS).is_file(), "signed": (run_dir / SIGNATURE).is_file()})
    return pd.DataFrame(rows, columns=["run", "site", "kind", "steps", "target", "started", "status", "failed_step",
                                       "reason", "duration_s", "sealed", "signed"])
