"""Helpers for the notebook tests: `crlib run` in-process, and the secret values a store holds."""

from __future__ import annotations

from pathlib import Path

import yaml
from testkit import site_data

from crlib import runner


def crlib_run(params: Path | None, runs_dir: Path, *, only: list[str] | None = None, plan: bool = False,
              resume: Path | None = None, cell_timeout: float | None = None) -> runner.Run:
    """What `crlib run` does, without the command line: returns the Run (its record and folder)."""
    if resume is not None:
        run = runner.Run.resume(resume, params)
    else:
        run = runner.Run.create(params, runs_dir=runs_dir, phases=runner.select_phases(only), plan=plan)
    run.run(cell_timeout=cell_timeout, progress=False)
    return run


def secret_values(directory: Path) -> set[str]:
    return {p.read_text() for p in directory.iterdir() if p.is_file()} if directory.is_dir() else set()


def params_file(tmp_path: Path, sandbox: dict) -> Path:
    """A fresh site's parameter file, its secrets in tmp_path."""
    data = site_data(sandbox)
    data["secrets"] = {"store": "local", "local_dir": str(tmp_path / "secrets")}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
