"""Plan overhead: `crlib run PARAMS --plan` (notebooks 00-06 through papermill) against its budget.

Issue 16's budget: a plan-only run takes at most 2x the in-process plan time, plus kernel starts.
All three are measured here, side by side in one run against one sandbox, on a fresh site (every
step has something to plan):
- in-process plan: `runbook.run(open_context(site), plan=True)`, in this process after a warm-up
  plan (imports paid), median of 3;
- kernel starts: 7 kernels started and warmed up the way `crlib run --plan` starts them (all at
  once, `KernelAhead.start_next(..., ahead=7)`, then taken in order), wall time until the last is
  ready, median of 3;
- the plan run: `crlib run --plan` as a command (a fresh interpreter), wall time, median of 3.
Ratio = plan run / (2 x in-process plan + kernel starts); the target is <= 1.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as c

from crlib import runbook

NAME = "plan_overhead"
TARGET = "<= 1.0"
REPEATS = 3


def in_process_plan(data: dict) -> float:
    from crlib.context import open_context

    site = c.load_site(data)
    runbook.run(open_context(site), plan=True)  # imports and first reads paid
    times = []
    for _ in range(REPEATS):
        started = time.monotonic()
        runbook.run(open_context(site), plan=True)
        times.append(time.monotonic() - started)
    return statistics.median(times)


def kernel_starts() -> float:
    from crlib.kernels import KernelAhead

    phases = list(runbook.DEFAULT_PHASES)
    times = []
    for _ in range(REPEATS):
        with tempfile.TemporaryDirectory(prefix="crlib-bench-kernels-") as cwd:
            kernels = KernelAhead(Path(cwd))
            started = time.monotonic()
            for phase in phases:
                kernels.start_next(phase.steps, ahead=len(phases))
            taken = [kernels.take(phase.steps) for phase in phases]
            times.append(time.monotonic() - started)
            for manager in taken:
                KernelAhead.stop(manager)
            kernels.finish()
    return statistics.median(times)


def plan_runs(params: Path, runs_dir: Path) -> tuple[float, str]:
    crlib = str(Path(sys.executable).with_name("crlib"))
    times, last = [], ""
    for _ in range(REPEATS):
        started = time.monotonic()
        done = subprocess.run([crlib, "run", str(params), "--plan", "--no-progress", "--runs-dir", str(runs_dir)],
                              capture_output=True, text=True, check=True)
        times.append(time.monotonic() - started)
        last = next(line for line in done.stdout.splitlines() if line.startswith("Plan:"))
    return statistics.median(times), last


def main() -> None:
    with c.sandbox("instant") as (status, work):
        data = c.site_data(status, work / "secrets")
        params = c.write_params(data, work / "bench.yaml")
        c.say("crlib run --plan ...")
        plan_run, plan_line = plan_runs(params, work / "runs")
        c.say("in-process plan ...")
        in_process = in_process_plan(data)
        c.say("kernel starts ...")
        kernels = kernel_starts()
    budget = 2 * in_process + kernels
    print(c.table(["", "seconds (median of 3)"], [["crlib run --plan (a command)", f"{plan_run:.2f}"],
                                                 ["in-process plan", f"{in_process:.2f}"],
                                                 ["7 kernels started and warmed up", f"{kernels:.2f}"],
                                                 ["budget: 2 x in-process + kernel starts", f"{budget:.2f}"]]))
    print(f"\nthe plan it printed: {plan_line}")
    c.finish(NAME, plan_run / budget, TARGET, {"plan_run_s": round(plan_run, 3), "in_process_plan_s": round(in_process, 3),
                                             "kernel_starts_s": round(kernels, 3), "budget_s": round(budget, 3),
                                             "plan_line": plan_line})


if __name__ == "__main__":
    main()
