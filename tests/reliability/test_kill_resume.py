"""A killed run resumes without duplicates: the run is SIGKILLed at a step boundary (or in the
middle of the concurrent imports), run again, and the sandbox then holds exactly what a clean
run leaves, compared document by document (names made site-neutral)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_kit import difference, state_of

from crlib import runbook

DRIVER = Path(__file__).with_name("driver.py")
QUICK = ["deploy"]
EVERY_BOUNDARY = runbook.STEP_NAMES[1:]  # killing before the first step is a run that never began


def drive(params: Path, *extra: str) -> int:
    return subprocess.run([sys.executable, str(DRIVER), str(params), *extra], capture_output=True, text=True,
                          timeout=300).returncode


@pytest.fixture(scope="module")
def clean_state(faulty_sandbox, tmp_path_factory):
    import yaml
    from testkit import site_data

    data = site_data(faulty_sandbox)
    data["secrets"] = {"store": "local", "local_dir": str(tmp_path_factory.mktemp("clean-secrets"))}
    path = tmp_path_factory.mktemp("clean") / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    assert drive(path) == 0
    return state_of(faulty_sandbox, data["site"].removeprefix("t-"))


def _kill_and_resume(faulty_sandbox, new_site, clean_state, *kill: str) -> list[str]:
    _, path, tag = new_site()
    assert drive(path, *kill) == -signal.SIGKILL, f"the run was not killed at {kill}"
    assert drive(path) == 0, f"the resumed run failed after a kill at {kill}"
    found = difference(state_of(faulty_sandbox, tag), clean_state)
    print("\n".join(found))
    return found


@pytest.mark.parametrize("step", QUICK)
def test_a_kill_before_a_step_then_a_resume_ends_like_a_clean_run(faulty_sandbox, new_site, clean_state, step, figure):
    assert _kill_and_resume(faulty_sandbox, new_site, clean_state, "--kill-before", step) == []
    figure(f"kill before {step}: resumed state equals the clean run's ({len(clean_state)} documents)")


def test_a_kill_in_the_middle_of_the_imports_then_a_resume_ends_like_a_clean_run(faulty_sandbox, new_site,
                                                                                 clean_state, figure):
    assert _kill_and_resume(faulty_sandbox, new_site, clean_state, "--kill-during-imports") == []
    figure(f"kill mid-imports: resumed state equals the clean run's ({len(clean_state)} documents)")


@pytest.mark.long
def test_a_kill_at_every_step_boundary_then_a_resume_ends_like_a_clean_run(faulty_sandbox, new_site, clean_state,
                                                                           figure):
    differing = {step: _kill_and_resume(faulty_sandbox, new_site, clean_state, "--kill-before", step)
                 for step in EVERY_BOUNDARY}
    figure(f"{len(EVERY_BOUNDARY)} step boundaries killed and resumed: "
           f"{sum(not d for d in differing.values())} end states equal the clean run's "
           f"({len(clean_state)} documents each)")
    assert {s: d for s, d in differing.items() if d} == {}
