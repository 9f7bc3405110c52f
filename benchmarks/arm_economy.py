"""ARM economy: how many ARM requests each step makes, on a first run and on a re-run that has nothing to do.

The runbook runs twice in-process against its own sandbox ("instant" latency profile): a full run
on an empty sandbox, then a re-run of every step on a fresh context. Each logged ARM request is
attributed to the step whose (start, end) window holds it (runbook.run's on_start/on_result).
Long-running-operation polls (operationStatuses/operationResults) are counted apart from other reads.

The promise: the re-run writes nothing (the checks step pushes a new tag every time by design, but
through the registry's data plane, not ARM; it is listed apart). Identical GETs (same path and
api-version) within one step are listed: "re-read" when a write to that resource came between them
(an LRO's final GET), "possibly unneeded" when nothing did.
"""

from __future__ import annotations

import re
from collections import Counter

import _common as c

from crlib import runbook
from crlib.context import open_context

NAME = "arm_economy"
TARGET = "0 ARM writes on the re-run; no possibly-unneeded GET"
POLL = re.compile(r"/operation(Statuses|Results)/", re.I)


def short(path: str) -> str:
    """The path from its provider on, without subscription and resource group."""
    path = re.sub(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/", "…/", path, flags=re.I)
    return re.sub(r"^/subscriptions/[^/]+", "/subscriptions/…", path, flags=re.I)


def classify(rows: list[dict]) -> dict:
    """Counts of one step's ARM requests, and its repeated identical GETs."""
    seen: dict[tuple, int] = {}
    duplicates, rereads = [], []
    for i, row in enumerate(rows):
        if row["method"] != "GET" or POLL.search(row["path"]):
            continue
        key = (row["path"].lower(), row["api_version"])
        if key in seen:
            between = rows[seen[key] + 1:i]
            written = any(r["wrote"] and r["path"].lower().startswith(key[0]) for r in between)
            (rereads if written else duplicates).append(short(row["path"]))
        seen[key] = i
    return {"requests": len(rows), "reads": sum(r["method"] in ("GET", "HEAD") and not POLL.search(r["path"])
                                                for r in rows),
            "polls": sum(bool(POLL.search(r["path"])) for r in rows),
            "writes": sum(r["wrote"] for r in rows),
            "other": sum(r["method"] not in ("GET", "HEAD") and not r["wrote"] for r in rows),
            "rereads": rereads, "possibly_unneeded": duplicates,
            "write_list": [f"{r['method']} {short(r['path'])}" for r in rows if r["wrote"]],
            "gets": sorted({short(r["path"]) for r in rows if r["method"] == "GET" and not POLL.search(r["path"])})}


def one_run(status: dict, site, secrets_dir) -> dict:
    from crlib.secrets import LocalSecretStore

    seq = c.last_seq(status)
    results, windows = c.run_steps(open_context(site, secrets=LocalSecretStore(secrets_dir)))
    rows = [r for r in c.requests_since(status, seq) if r["service"] == "arm"]
    tokens = [r for r in c.requests_since(status, seq) if r["service"] == "entra" and "/token" in r["path"]]
    steps = {s: classify([r for r in rows if c.in_window(r, w)]) for s, w in windows.items()}
    for s, w in windows.items():
        steps[s]["statuses"] = next(r.status.value for r in results if r.step == s)
        steps[s]["token_requests"] = sum(c.in_window(r, w) for r in tokens)
    return steps


def totals(steps: dict, names) -> dict:
    keys = ("requests", "reads", "polls", "writes", "other")
    out = {k: sum(steps[s][k] for s in names) for k in keys}
    out["possibly_unneeded"] = sum(len(steps[s]["possibly_unneeded"]) for s in names)
    out["rereads"] = sum(len(steps[s]["rereads"]) for s in names)
    return out


def main() -> None:
    converging = [s for s in runbook.STEP_NAMES if s != "checks"]
    with c.sandbox("instant") as (status, work):
        site = c.load_site(c.site_data(status, work / "secrets"))
        c.say("first run ...")
        first = one_run(status, site, work / "secrets")
        c.say("re-run ...")
        again = one_run(status, site, work / "secrets")
    print("arm_economy: ARM requests per step (instant latency profile)\n")
    head = ["step", "reads", "polls", "writes", "other", "re-reads", "dup GETs", "| re-run reads", "polls", "writes",
            "dup GETs", "status"]
    rows = []
    for s in runbook.STEP_NAMES:
        a, b = first[s], again[s]
        rows.append([s, a["reads"], a["polls"], a["writes"], a["other"], len(a["rereads"]),
                     len(a["possibly_unneeded"]), b["reads"], b["polls"], b["writes"], len(b["possibly_unneeded"]),
                     b["statuses"]])
    print(c.table(head, rows))
    print("\n(other = POSTs that only read, e.g. listKeys, checkNameAvailability; re-reads = the same GET after a"
          " write to it, e.g. an LRO's final GET)\n")
    sums = {"first run": totals(first, runbook.STEP_NAMES), "first run without checks": totals(first, converging),
            "re-run without checks": totals(again, converging), "re-run: checks only": totals(again, ["checks"])}
    print(c.table(["", "requests", "reads", "polls", "writes", "other", "re-reads", "dup GETs"],
                  [[k, v["requests"], v["reads"], v["polls"], v["writes"], v["other"], v["rereads"],
                    v["possibly_unneeded"]] for k, v in sums.items()]))
    dups = [(name, s, path) for name, run in (("first", first), ("re-run", again)) for s in runbook.STEP_NAMES
            for path in run[s]["possibly_unneeded"]]
    if dups:
        print("\npossibly unneeded (an identical GET earlier in the same step, no write to it in between):")
        for (name, s, path), n in Counter(dups).items():
            print(f"  {name:6} {s:13} {n}x  GET {path}")
    across = Counter(path for s in converging for path in again[s]["gets"])
    print("\nre-run: the same GET in several steps (each step reads for itself; notebooks run them apart):")
    for path, n in across.most_common():
        if n > 1:
            print(f"  {n:2} steps  GET {path}")
    rerun_writes = [w for s in converging for w in again[s]["write_list"]]
    if rerun_writes:
        print("\nARM writes on the re-run:", *rerun_writes, sep="\n  ")
    print(f"\nsign-in token requests: first run {sum(first[s]['token_requests'] for s in first)}, "
          f"re-run {sum(again[s]['token_requests'] for s in again)}")
    c.finish(NAME, sums["re-run without checks"]["writes"] + sums["re-run: checks only"]["writes"],
             f"{TARGET}; found {len(dups)} possibly-unneeded GETs",
             {"totals": sums, "first_run": first, "re_run": again})


if __name__ == "__main__":
    main()
