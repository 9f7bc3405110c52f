"""The reliability suite's own sandbox (faults must not disturb other tests), sites, and the
normalised state dumps that say whether two runs ended in the same place."""

from __future__ import annotations

import pytest
import yaml
from testkit import site_data

from crlib import params
from crlib.sandbox import control


@pytest.fixture(scope="package")
def faulty_sandbox(tmp_path_factory) -> dict:
    state_dir = tmp_path_factory.mktemp("reliability-sandbox")
    status = control.start(state_dir, clock_speed=60)
    yield status
    control.stop(state_dir)


@pytest.fixture
def faults(faulty_sandbox):
    """Set the sandbox's faults for one test; always off afterwards."""

    def configure(**settings) -> dict:
        return control.set_faults(faulty_sandbox, **settings)

    yield configure
    control.set_faults(faulty_sandbox)


@pytest.fixture
def new_site(faulty_sandbox, tmp_path):
    """A fresh site on the reliability sandbox: (Site, parameter file path, tag)."""

    def make(**sections):
        data = site_data(faulty_sandbox, **sections)
        data["secrets"] = {"store": "local", "local_dir": str(tmp_path / f"secrets-{data['site']}")}
        path = tmp_path / f"{data['site']}.yaml"
        path.write_text(yaml.safe_dump(data))
        return params.load(data), path, data["site"].removeprefix("t-")

    return make


FIGURES: list[str] = []


@pytest.fixture
def figure(request):
    """Record a measured figure; the suite prints them all at the end of the run."""

    def record(text: str) -> None:
        FIGURES.append(f"{request.node.name}: {text}")

    return record


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("reliability figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="package")
def clean_state(faulty_sandbox, tmp_path_factory):
    """What one clean run of the whole runbook leaves in the sandbox, normalised."""
    from reliability_kit import drive, state_of

    data = site_data(faulty_sandbox)
    data["secrets"] = {"store": "local", "local_dir": str(tmp_path_factory.mktemp("clean-secrets"))}
    path = tmp_path_factory.mktemp("clean") / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    assert drive(path) == 0
    return state_of(faulty_sandbox, data["site"].removeprefix("t-"))
