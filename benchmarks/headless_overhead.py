"""Headless overhead: `crlib run PARAMS` (notebooks 00-06 through papermill) against its floor.

The floor is what papermill itself costs: the same number of notebooks (7), each an EMPTY notebook
(one code cell, `pass`, kernel python3), executed with papermill.execute_notebook the same way the
runner does (same kernel, no progress bar, no logged output, saved on every cell). Three repetitions
of the 7 empty runs, two right before the headless run and one right after; the floor is their minimum.
The step work is the same steps (00-06's) run in-process with `runbook.run(open_context(site))` on a
site of the same shape in the same sandbox, right after the headless run: the server's and the
simulated device's time, which no notebook machinery can remove.
Ratio = headless wall time / (floor + in-process step time). The sandbox uses the "instant" latency profile, so what is left
above the floor is crlib's own cost (imports, clients, steps, the archive), plus the simulated
device's sync waits in 04 and 06.

It also reports, per notebook, the headless time against an empty notebook's, split by cell role
from papermill's per-cell timing in the archived notebooks (the first cell imports crlib and opens
the page; then read form, plan, apply, tables), and what importing crlib and the SDKs it uses costs
a fresh interpreter (a kernel pays that once per notebook).
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _common as c

from crlib import runbook, runner

NAME = "headless_overhead"
TARGET = "<= 1.3"
REPEATS = 3
# What a notebook's kernel imports: the notebook API, every step module, and the SDKs they load lazily.
KERNEL_IMPORTS = ["crlib.notebook", "crlib.runbook", "crlib.context",
                  *sorted({s.planner.__module__ for s in runbook.STEPS}),
                  "azure.identity", "azure.mgmt.containerregistry", "azure.mgmt.iothub", "azure.iot.hub", "dxf",
                  "jsonschema", "pandas", "ipywidgets"]


def empty_notebook(path: Path) -> Path:
    path.write_text(json.dumps({
        "cells": [{"cell_type": "code", "execution_count": None, "id": "empty", "metadata": {}, "outputs": [],
                   "source": ["pass"]}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5}))
    return path


def empty_runs(source: Path, out_dir: Path, count: int) -> list[float]:
    """`count` papermill runs of the empty notebook, executed as crlib.runner.execute does."""
    import papermill

    times = []
    for i in range(count):
        started = time.monotonic()
        papermill.execute_notebook(str(source), str(out_dir / f"empty-{i}.ipynb"), cwd=str(out_dir),
                                   kernel_name="python3", progress_bar=False, log_output=False,
                                   request_save_on_cell_execute=True)
        times.append(time.monotonic() - started)
    return times


CELL_ROLES = [("from crlib import notebook", "import+open"), ("page.read_form", "read form"), ("page.plan()", "plan"),
              ("page.apply()", "apply")]


def cell_times(notebook: Path) -> dict[str, float]:
    """Seconds per cell role in an executed notebook, from papermill's per-cell timing; "cells" is their sum."""
    out = dict.fromkeys([role for _, role in CELL_ROLES] + ["other cells"], 0.0)
    for cell in json.loads(notebook.read_text())["cells"]:
        seconds = (cell.get("metadata", {}).get("papermill") or {}).get("duration") or 0.0
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            out[next((role for start, role in CELL_ROLES if start in source), "other cells")] += seconds
    out["cells"] = sum(out.values())
    return out


def import_costs() -> dict:
    """Wall time of importing KERNEL_IMPORTS in a fresh interpreter (minus a bare one), min of 3, and the
    biggest top-level imports by -X importtime."""
    def timed(code: str) -> float:
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.monotonic() - started

    statement = "import " + ", ".join(KERNEL_IMPORTS)
    bare = min(timed("pass") for _ in range(3))
    full = min(timed(statement) for _ in range(3))
    trace = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True,
                           check=True).stderr
    top = []
    for line in trace.splitlines():  # "import time: self | cumulative | name"; top-level names are not indented
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\S.*)$", line)
        if m:
            top.append((m.group(3).strip(), int(m.group(2)) / 1e6))
    return {"seconds": round(full - bare, 3), "interpreter_s": round(bare, 3),
            "top": sorted(top, key=lambda t: -t[1])[:8]}


def in_process_run(data: dict) -> float:
    """Wall time of runbook.run over every step of notebooks 00-06 in this process (a site of its own)."""
    from crlib.context import open_context

    ctx = open_context(c.load_site(data))
    runbook.run(ctx, only=["prerequisites"])  # imports and sign-in paid outside the timing, as a kernel's are
    started = time.monotonic()
    runbook.run(ctx, only=[s for p in runner.select_phases(None) for s in p.steps])
    return time.monotonic() - started


def main() -> None:
    phases = runner.select_phases(None)
    with c.sandbox("instant") as (status, work):
        params = c.write_params(c.site_data(status, work / "secrets"), work / "bench.yaml")
        source = empty_notebook(work / "empty.ipynb")
        (work / "empty-out").mkdir()
        reps = []
        for n in range(REPEATS - 1):
            c.say(f"empty notebooks, repetition {n + 1} ...")
            reps.append(empty_runs(source, work / "empty-out", len(phases)))
        c.say("crlib run ...")
        started = time.monotonic()
        run = runner.Run.create(params, runs_dir=work / "runs", phases=phases, plan=False)
        record = run.run(progress=False)
        headless = time.monotonic() - started
        cells = {n["name"]: cell_times(run.dir / "notebooks" / f"{n['name']}.ipynb") for n in record["notebooks"]}
        c.say("the same steps in-process ...")
        in_process = in_process_run(c.site_data(status, work / "secrets-in-process"))
        c.say(f"empty notebooks, repetition {REPEATS} ...")
        reps.append(empty_runs(source, work / "empty-out", len(phases)))
    if record["status"] != "succeeded":
        raise SystemExit(f"the headless run failed: {record['failed']}")
    c.say("import costs ...")
    imports = import_costs()
    floor = min(sum(r) for r in reps)
    empty_each = statistics.median(t for r in reps for t in r)
    print(f"headless_overhead: crlib run with {len(phases)} notebooks vs {len(phases)} empty papermill notebooks\n")
    roles = [role for _, role in CELL_ROLES] + ["other cells"]
    rows = [[n["name"], n["duration_s"], empty_each, n["duration_s"] - cells[n["name"]]["cells"],
             *[cells[n["name"]][role] for role in roles], n["duration_s"] / empty_each] for n in record["notebooks"]]
    rows.append(["total", *[sum(r[i] for r in rows) for i in range(1, len(rows[0]) - 1)], ""])
    print(c.table(["notebook", "headless s", "empty s", "outside cells s", *[f"{r} s" for r in roles], "x empty"], rows))
    print("\n(per-cell times from papermill's metadata in the archived notebooks; outside cells = kernel start,"
          " papermill, archiving the notebook)")
    print(f"outside any notebook (sign-in for the record, secret scan, seal): "
          f"{headless - sum(n['duration_s'] for n in record['notebooks']):.3f} s\n")
    print(c.table(["", "seconds"], [["headless run (Run.create + run)", headless],
                                    *[[f"7 empty notebooks, repetition {i + 1}", sum(r)] for i, r in enumerate(reps)],
                                    ["floor (min)", floor], ["steps in-process (runbook.run)", in_process],
                                    ["floor + steps", floor + in_process],
                                    ["run.json duration_s", record["duration_s"]]]))
    print(f"\nimporting crlib and its SDKs in a fresh interpreter: {imports['seconds']:.2f} s "
          f"(a bare interpreter starts in {imports['interpreter_s']:.2f} s); biggest imports (cumulative s):")
    for name, seconds in imports["top"]:
        print(f"  {seconds:6.3f}  {name}")
    c.finish(NAME, headless / (floor + in_process), TARGET, {
        "headless_s": round(headless, 3), "floor_s": round(floor, 3), "in_process_steps_s": round(in_process, 3),
        "ratio_to_floor_alone": round(headless / floor, 3), "empty_repetitions_s": reps,
        "notebooks": [{"name": n["name"], "headless_s": n["duration_s"], "cells_s": cells[n["name"]]}
                      for n in record["notebooks"]], "empty_notebook_median_s": round(empty_each, 3),
        "imports": imports, "status": record["status"]})


if __name__ == "__main__":
    main()
