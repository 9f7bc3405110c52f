"""Fixtures for the notebook tests: a parameter file per test site, and `crlib run` in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from testkit import site_data

from crlib import runner


@pytest.fixture
def write_params(sandbox, tmp_path):
    """A parameter file for a fresh site; keyword arguments replace whole sections."""

    def write(name: str = "site.yaml", data: dict | None = None, **sections) -> Path:
        data = data or site_data(sandbox, **sections)
        data.setdefault("secrets", {"store": "local", "local_dir": str(tmp_path / "secrets")})
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


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
