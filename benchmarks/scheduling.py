"""Scheduling: how close the runbook's wall time comes to the time the server (and the device) made it wait.

The sandbox runs with the "benchmark" latency profile, so long-running operations take Azure's
relative durations (scaled down 20x). The whole runbook runs in-process, RUNS times, each on a site
of its own in the same sandbox, reset between runs so that no earlier site's device keeps syncing
(the first run is "cold": it pays the process's one-time imports).

Critical path = the length of the union of the intervals in which something other than crlib was
working for the run:
  * every long-running operation, from its startTime to its dueTime (from /_sandbox/state);
  * every logged request, from its start to its answer (from /_sandbox/requests);
  * the simulated device, where a step waits for it (from the request log): deploy, from the
    apply to the connected registry's activation at the data endpoint; checks, from the token's
    attachment to the sync that made the device honour it, and from the push to the device's
    upstream manifest PUT. The device syncs on its cron schedule (every real second at clock 60).
Overlapping intervals count once, so concurrent imports count once. Ratio = wall / critical path.
"""

from __future__ import annotations

import statistics
import time

import _common as c

from crlib import runbook
from crlib.context import open_context
from crlib.sandbox import control

NAME = "scheduling"
TARGET = "<= 1.15"
RUNS = 5
DEVICE_STEPS = ("deploy", "checks")


def first(rows, cond):
    return next((r for r in rows if cond(r)), None)


def device_intervals(rows: list[dict], hosts: dict) -> list[tuple[str, float, float]]:
    """Spans in which a step waited for the simulated device, read from the request log."""
    data, device = hosts["data"], hosts["device"]
    spans = []
    apply = first(rows, lambda r: r["path"].endswith("/applyConfigurationContent") and r["wrote"])
    if apply:
        active = first(rows, lambda r: r["host"] == data and r["path"] == "/oauth2/token" and r["status"] == 200
                       and r["start"] >= apply["time"])
        if active:
            spans.append(("deploy: pull modules, activate", apply["time"], active["time"]))
    attach = [r for r in rows if r["method"] == "PATCH" and "/connectedRegistries/" in r["path"] and r["wrote"]]
    pulled = first(rows, lambda r: r["host"] == device and "/manifests/" in r["path"] and r["status"] == 200)
    if attach and pulled:
        syncs = [r for r in rows if r["host"] == data and r["path"].endswith("/tags/list")
                 and attach[-1]["time"] <= r["start"] <= pulled["start"]]
        if syncs:  # the last sync before the first successful pull is the one that honoured the token
            spans.append(("checks: sync reads the client token", attach[-1]["time"], syncs[-1]["start"]))
    push = first(rows, lambda r: r["host"] == device and r["method"] == "PUT" and "/manifests/" in r["path"])
    if push:
        upstream = first(rows, lambda r: r["host"] == data and r["method"] == "PUT" and "/manifests/" in r["path"]
                         and r["start"] >= push["time"])
        if upstream:
            spans.append(("checks: sync pushes upstream", push["time"], upstream["time"]))
    return spans


def poll_lags(rows: list[dict], ops: list[dict]) -> list[dict]:
    """Per operation: polls before it was due, and how late the first poll after its due time came."""
    out = []
    for op in ops:
        polls = [r for r in rows if op["id"] in r["path"]]
        late = [r["start"] - op["dueTime"] for r in polls if r["start"] >= op["dueTime"]]
        out.append({"kind": op["kind"], "duration_s": round(op["dueTime"] - op["startTime"], 3), "polls": len(polls),
                    "early_polls": len(polls) - len(late), "lag_s": round(late[0], 3) if late else None})
    return out


def measure(status: dict, work, n: int) -> dict:
    site = c.load_site(c.site_data(status, work / f"secrets-{n}"))
    seq = c.last_seq(status)
    ctx = open_context(site)
    t0 = time.time()
    results, windows = c.run_steps(ctx)
    t1 = time.time()
    rows = c.requests_since(status, seq)
    ops = [o for o in c.operations(status) if t0 <= o["startTime"] <= t1]
    hosts = {"data": ctx.state["registry"]["data_endpoint"], "device": ctx.state["deploy"]["login_server_host"]}
    server = [(r["start"], r["time"]) for r in rows] + [(o["startTime"], o["dueTime"]) for o in ops]
    device = device_intervals(rows, hosts)
    every = server + [(s, e) for _, s, e in device]
    steps = {}
    for r in results:
        window = windows[r.step]
        steps[r.step] = {"wall_s": r.duration_s, "server_s": c.union_length(server, window),
                         "device_s": c.union_length([(s, e) for _, s, e in device], window),
                         "critical_s": c.union_length(every, window),
                         "requests": sum(c.in_window(row, window) for row in rows)}
    wall = t1 - t0
    critical = c.union_length(every, (t0, t1))
    rest = [s for s in steps if s not in DEVICE_STEPS]
    return {"site": site.site, "wall_s": round(wall, 3), "steps_wall_s": round(sum(r.duration_s for r in results), 3),
            "critical_s": round(critical, 3), "ratio": wall / critical,
            "ratio_without_device_steps": sum(steps[s]["wall_s"] for s in rest) / sum(steps[s]["critical_s"]
                                                                                      for s in rest),
            "steps": steps, "device_spans": [{"what": w, "seconds": round(e - s, 3)} for w, s, e in device],
            "operations": poll_lags(rows, ops)}


def main() -> None:
    with c.sandbox("benchmark") as (status, work):
        runs = []
        for n in range(RUNS):
            runs.append(measure(status, work, n))
            control.reset(status["state_dir"])  # the last site's device stops syncing; the log starts afresh
            c.say(f"run {n + 1}/{RUNS}: wall {runs[-1]['wall_s']:.2f} s, critical path {runs[-1]['critical_s']:.2f} s")
    med = statistics.median
    print(f"scheduling: {RUNS} whole runbook runs in-process, latency profile 'benchmark', clock speed 60\n")
    rows = []
    for step in runbook.STEP_NAMES:
        per = [r["steps"][step] for r in runs]
        wall, crit = med(p["wall_s"] for p in per), med(p["critical_s"] for p in per)
        rows.append([step, per[0]["wall_s"], wall, med(p["server_s"] for p in per), med(p["device_s"] for p in per),
                     crit, wall - crit, med(p["requests"] for p in per)])
    print(c.table(["step", "cold wall s", "wall s", "server s", "device s", "critical s", "slack s", "requests"], rows))
    print("\n(medians over the runs; 'cold' is the first run; server and device overlap, critical is their union)\n")
    ops = {}
    for run in runs:
        for op in run["operations"]:
            ops.setdefault(op["kind"], []).append(op)
    print(c.table(["operation", "count", "server s", "polls", "early polls", "median lag s", "max lag s"],
                  [[k, len(v), med(o["duration_s"] for o in v), sum(o["polls"] for o in v),
                    sum(o["early_polls"] for o in v), med(o["lag_s"] or 0 for o in v), max(o["lag_s"] or 0 for o in v)]
                   for k, v in ops.items()]))
    print("\n(lag = first poll after the operation was due, minus its due time)\n")
    print(c.table(["run", "wall s", "critical s", "ratio", "ratio w/o deploy+checks"],
                  [[i + 1, r["wall_s"], r["critical_s"], r["ratio"], r["ratio_without_device_steps"]]
                   for i, r in enumerate(runs)]))
    ratio = med(r["ratio"] for r in runs)
    c.finish(NAME, ratio, TARGET, {
        "ratio_cold": runs[0]["ratio"], "ratio_warm_median": med(r["ratio"] for r in runs[1:]),
        "ratio_without_device_steps_median": med(r["ratio_without_device_steps"] for r in runs), "runs": runs})


if __name__ == "__main__":
    main()
