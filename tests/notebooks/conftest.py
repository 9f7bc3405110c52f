"""Fixtures for the notebook tests: a parameter file per test site, and `crlib run` in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from testkit import site_data


def tear_down(params: Path) -> None:
    """Remove a test site's device and connected registry, so that its simulated device stops
    syncing (other tests count the sandbox's requests)."""
    from crlib import runbook
    from crlib.context import open_context
    from crlib.errors import ParameterError
    from crlib.params import load_file

    try:
        site = load_file(params)
    except ParameterError:  # a test made it invalid on purpose: nothing was built from it
        return
    runbook.run(open_context(site), only=["teardown"])


@pytest.fixture
def write_params(sandbox, tmp_path):
    """A parameter file for a fresh site; keyword arguments replace whole sections. Every site
    written is torn down after the test."""
    written = []

    def write(name: str = "site.yaml", data: dict | None = None, **sections) -> Path:
        data = data or site_data(sandbox, **sections)
        data.setdefault("secrets", {"store": "local", "local_dir": str(tmp_path / "secrets")})
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        written.append(path)
        return path

    yield write
    for path in written:
        tear_down(path)
