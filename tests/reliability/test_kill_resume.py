"""A killed run resumes without duplicates: the run is SIGKILLed at a step boundary (or in the
middle of the concurrent imports), run again, and the sandbox then holds exactly what a clean
run leaves, compared document by document (names made site-neutral)."""

from __future__ import annotations

import signal

import pytest
from reliability_kit import difference, drive, state_of

from crlib import runbook

QUICK = ["deploy"]
EVERY_BOUNDARY = runbook.STEP_NAMES[1:]  # killing before the first step is a run that never began


def _kill_and_resume(faulty_sandbox, new_site, clean_state, *kill: str) -> list[str]:
    _, path, tag = new_site()
    assert drive(path, *kill) == -signal.SIGKILL, f"the run was not killed at {kill}"
    assert drive(path) == 0, f"the resumed run failed after a kill at {kill}"
    return difference(state_of(faulty_sandbox, tag), clean_state)


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
