"""crlib as a user gets it: the sdist and wheel built from this tree, installed into fresh venvs
outside the repository and used from a folder outside it.

With the sandbox extra, the installed `crlib` starts a sandbox, copies its bundled notebooks and
example parameter files out (`crlib notebooks copy`), runs the whole runbook against the sandbox
with the copied sandbox.yaml and verifies the archive. Without extras, `crlib` works and `crlib
sandbox` says in one line which extra to install; a run against the sandbox is recorded as failed
with that reason instead of staying "running".

The dependencies are resolved once, through pip's configured index, into a wheelhouse that both
venvs install from (`--no-index`): each venv still resolves crlib's declared dependencies from
nothing but the wheel's metadata. pytest-socket does not reach these subprocesses. It takes a few
minutes, so it has a marker of its own: `make test-wheel` (run by .ci/run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.wheel, pytest.mark.timeout(900)]


def sh(*args, cwd: Path | None = None, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {result.returncode}\n{result.stdout[-4000:]}\n"
                    f"{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wheel")
    assert not path.resolve().is_relative_to(ROOT), "the test must work outside the repository"
    return path


@pytest.fixture(scope="module")
def dist(base) -> dict[str, Path]:
    """The sdist, and the wheel `python -m build` makes from it."""
    out = base / "dist"
    sh(sys.executable, "-m", "build", "--outdir", out, ROOT)
    return {"sdist": next(out.glob("crlib-*.tar.gz")), "wheel": next(out.glob("crlib-*.whl"))}


@pytest.fixture(scope="module")
def wheelhouse(base, dist) -> Path:
    house = base / "wheelhouse"
    sh(sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", house, f"{dist['wheel']}[sandbox]")
    return house


def fresh_venv(path: Path, wheelhouse: Path, requirement: str) -> Path:
    """A venv with nothing in it but crlib and what its metadata asks for. Made without pip (the
    test's pip installs into it) and without byte-compiling: both only save time."""
    sh(sys.executable, "-m", "venv", "--without-pip", path)
    python = path / "bin" / "python"
    sh(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-compile", "--no-index",
       "--find-links", wheelhouse, requirement)
    return path / "bin"


def user_env(base: Path, bin_dir: Path) -> dict[str, str]:
    """A user's shell: the venv on PATH, a home of its own (so the sandbox.yaml's ~/.local secret store
    is inside the test's folder), and the sandbox's state directory chosen by CRLIB_SANDBOX_DIR."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "XDG_STATE_HOME", "CRLIB_SANDBOX_DIR")}
    home = base / "home"
    home.mkdir(exist_ok=True)
    return env | {"HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
                  "CRLIB_SANDBOX_DIR": str(base / "sandbox")}


def test_the_sdist_and_the_wheel_carry_the_notebooks_and_parameter_files(dist):
    with tarfile.open(dist["sdist"]) as sdist:
        names = {Path(*Path(n).parts[1:]).as_posix() for n in sdist.getnames()}
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        bundled = {n: wheel.read(n) for n in wheel.namelist() if n.startswith("crlib/_bundled/")}
    for folder, pattern in (("notebooks", "*.ipynb"), ("parameters", "*.yaml")):
        sources = sorted((ROOT / folder).glob(pattern))
        assert sources
        for source in sources:
            assert f"{folder}/{source.name}" in names
            assert bundled.pop(f"crlib/_bundled/{folder}/{source.name}") == source.read_bytes()
    assert bundled == {}, "the wheel bundles files the repository does not have"


def test_with_the_sandbox_extra_the_installed_crlib_runs_the_runbook_from_anywhere(base, wheelhouse, dist):
    bin_dir = fresh_venv(base / "venv-sandbox", wheelhouse, f"{dist['wheel']}[sandbox]")
    env = user_env(base, bin_dir)
    work = base / "work"
    work.mkdir()
    crlib = bin_dir / "crlib"

    listing = sh(crlib, "notebooks", "list", cwd=work, env=env).stdout
    assert str(base / "venv-sandbox") in listing and str(ROOT) not in listing, listing
    copied = sh(crlib, "notebooks", "copy", "site", cwd=work, env=env).stdout
    assert "site/notebooks/00-prerequisites.ipynb" in copied and "site/parameters/sandbox.yaml" in copied

    sh(crlib, "sandbox", "start", "--clock-speed", "60", cwd=work, env=env)
    try:
        run = sh(crlib, "run", "site/parameters/sandbox.yaml", "--yes", "--no-progress", cwd=work, env=env, check=False)
        assert run.returncode == 0, run.stdout + run.stderr
    finally:
        sh(crlib, "sandbox", "stop", cwd=work, env=env, check=False)
    (run_dir,) = (work / "runs").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded" and all(n["status"] == "completed" for n in record["notebooks"])
    verified = sh(crlib, "archive", "verify", run_dir, cwd=work, env=env)
    assert "verified" in verified.stdout
    assert "succeeded" in sh(crlib, "archive", "list", cwd=work, env=env).stdout
    archived = b"".join(p.read_bytes() for p in run_dir.rglob("*") if p.is_file())
    assert str(base).encode() not in archived and str(ROOT).encode() not in archived


def test_without_extras_crlib_works_and_the_sandbox_names_its_extra(base, wheelhouse, dist):
    bin_dir = fresh_venv(base / "venv-plain", wheelhouse, str(dist["wheel"]))
    env = user_env(base, bin_dir)
    work = base / "work-plain"
    work.mkdir()
    crlib = bin_dir / "crlib"

    helped = sh(crlib, "--help", cwd=work, env=env)
    assert "sandbox" in helped.stdout and "notebooks" in helped.stdout
    for command in (["run", "--help"], ["archive", "list"], ["sandbox", "--help"], ["notebooks", "list"]):
        sh(crlib, *command, cwd=work, env=env)
    # Every module outside the sandbox imports without the extra (and does not reach for aiohttp).
    sh(bin_dir / "python", "-c", "import importlib, importlib.util, pkgutil, sys, crlib\n"
       "assert importlib.util.find_spec('aiohttp') is None\n"
       "for m in pkgutil.walk_packages(crlib.__path__, 'crlib.'):\n"
       "    if not m.name.startswith('crlib.sandbox.') or m.name == 'crlib.sandbox.cli':\n"
       "        importlib.import_module(m.name)\n"
       "assert 'aiohttp' not in sys.modules", cwd=work, env=env)

    status = sh(crlib, "sandbox", "status", cwd=work, env=env, check=False)
    assert status.returncode == 2 and status.stdout == ""
    assert len(status.stderr.splitlines()) == 1 and "pip install 'crlib[sandbox]'" in status.stderr, status.stderr

    sh(crlib, "notebooks", "copy", "site", cwd=work, env=env)
    run = sh(crlib, "run", "site/parameters/sandbox.yaml", "--yes", "--no-progress", cwd=work, env=env, check=False)
    assert run.returncode == 1
    assert len(run.stderr.strip().splitlines()) == 1 and "pip install 'crlib[sandbox]'" in run.stderr, run.stderr
    (run_dir,) = (work / "runs").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and record["failed"]["reason"] == "setup", record["failed"]
    assert "crlib[sandbox]" in record["failed"]["error"]
    assert "failed" in sh(crlib, "archive", "list", cwd=work, env=env).stdout
    # Sealed, but unsigned: its key lives in the store named after the target, which it never reached.
    verify = sh(crlib, "archive", "verify", run_dir, cwd=work, env=env, check=False)
    assert verify.returncode == 1 and "SIGNATURE is missing: the record is not signed" in verify.stderr
    assert verify.stderr.count("\n  - ") == 1, verify.stderr  # the hashes hold; the signature is all that is missing
