"""A fleet of 50 sites on one registry against ARM's token buckets at Azure's values.

The sandbox runs with the `benchmark` latency profile and `arm_throttling` on, its buckets at the
documented values (reads 250 + 25/s, writes 200 + 10/s, deletes 200 + 10/s per subscription and
principal). Measured side by side in one run:

- one site alone (a fleet of one, its own registry and hub): its wall time is the first floor;
- the buckets are left to refill, then 50 sites on one registry (`crlib.fleet.apply_fleet`,
  in-process, `--max-parallel` as given): the wall time, the ARM requests and 429s in the
  sandbox's request log, and this process's peak RSS.

The second floor is what ARM's write bucket allows: (ARM writes - 200) / 10 per second.
RESULT is fleet wall / max(one site, write floor), the median of `--repeat` runs (each on a sandbox
of its own), target <= 1.3; 429s <= 1 % of ARM requests; peak RSS <= 500 MB.

Reads, not writes, are what a fleet runs short of: ~25 ARM reads a site against ~11 writes, and the
read bucket refills 25 per second against the write bucket's 10, so the reads' floor,
(reads - 250) / 25 per second, is printed too.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import uuid
from pathlib import Path

import _common as common
import yaml

from crlib.fleet import apply_fleet
from crlib.inventory import load_inventory
from crlib.sandbox import control
from crlib.sandbox.faults import DEFAULT_BUCKETS


def inventory(status: dict, work: Path, count: int) -> Path:
    tag = uuid.uuid4().hex[:6]
    data = {
        "fleet": f"bench-{tag}",
        "shared": {"target": {"kind": "sandbox", "sandbox_state_dir": status["state_dir"]},
                   "resource_group": f"rg-bench-{tag}", "hub": {"name": f"hub-bench-{tag}"},
                   "registry": {"name": f"bench{tag}"},
                   "secrets": {"store": "local", "local_dir": str(work / "secrets")},
                   "records": {"signing_key": "local"}},
        "defaults": {"device": {"id": "{site}-edge"},
                     "connected_registry": {"mode": "ReadOnly", "repositories": ["hello-world"]},
                     "client_access": {"scope_maps": {"{site}-clients": {"hello-world": ["content/read",
                                                                                          "metadata/read"]}},
                                       "tokens": [{"name": "{site}-client", "scope_map": "{site}-clients",
                                                   "expiry_days": 90}]}},
        "sites": [{"site": f"b{tag}-{i:02d}", "connected_registry": {"name": f"b{tag}{i:02d}"}}
                  for i in range(1, count + 1)],
    }
    path = work / f"fleet-{tag}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def arm_figures(rows: list[dict]) -> dict:
    arm = [r for r in rows if r["service"] == "arm"]
    writes = [r for r in arm if r["method"] not in ("GET", "HEAD", "DELETE")]
    return {"arm_requests": len(arm), "arm_writes": sum(r["status"] != 429 for r in writes),
            "arm_429": sum(r["status"] == 429 for r in arm)}


def run(count: int, max_parallel: int) -> dict:
    with common.sandbox("benchmark") as (status, work):
        control.set_faults(status, arm_throttling=True)
        one = load_inventory(inventory(status, work, 1))
        seq = common.last_seq(status)
        started = time.monotonic()
        single = apply_fleet(one, max_parallel=1)
        one_wall = time.monotonic() - started
        one_figures = arm_figures(common.requests_since(status, seq))
        assert single.succeeded, single.sites
        common.say(f"one site: {one_wall:.1f} s, {one_figures}")
        capacity, refill = DEFAULT_BUCKETS["writes"]
        time.sleep(capacity / refill)  # every bucket full again, as the single site found them

        fleet = load_inventory(inventory(status, work, count))
        seq = common.last_seq(status)
        started = time.monotonic()
        result = apply_fleet(fleet, max_parallel=max_parallel)
        wall = time.monotonic() - started
        rows = common.requests_since(status, seq)
        figures = arm_figures(rows)
        counts = result.counts()
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_floor = (figures["arm_writes"] - capacity) / refill
    reads = figures["arm_requests"] - figures["arm_writes"] - figures["arm_429"]  # no deletes in a build
    read_capacity, read_refill = DEFAULT_BUCKETS["reads"]
    read_floor = (reads - read_capacity) / read_refill
    floor = max(one_wall, write_floor)
    share_429 = figures["arm_429"] / figures["arm_requests"] if figures["arm_requests"] else 0.0
    data = {"sites": count, "max_parallel": max_parallel, "one_site_wall_s": round(one_wall, 2),
            "fleet_wall_s": round(wall, 2), "write_floor_s": round(write_floor, 2), "ratio": round(wall / floor, 3),
            "read_floor_s": round(read_floor, 2),
            "share_429": round(share_429, 4), "peak_rss_mb": round(rss_mb, 1), "counts": counts,
            "pacing": result.pacing, **figures, "one_site": one_figures}
    print(common.table(["what", "value"], [
        ["sites", f"{count} ({counts['succeeded']} succeeded, {counts['failed']} failed)"],
        ["max parallel", max_parallel],
        ["one site wall", f"{one_wall:.2f} s"],
        ["fleet wall", f"{wall:.2f} s"],
        ["ARM requests / writes / 429s", f"{figures['arm_requests']} / {figures['arm_writes']} / {figures['arm_429']}"],
        ["write-bucket floor (writes - 200) / 10", f"{write_floor:.2f} s"],
        ["read-bucket floor (reads - 250) / 25", f"{read_floor:.2f} s"],
        ["ratio to max(one site, write floor)", f"{wall / floor:.3f}"],
        ["paced waits", f"{result.pacing['waits']} ({result.pacing['waited_s']} s)"],
        ["429s / ARM requests", f"{share_429:.2%} (target <= 1 %)"],
        ["peak RSS", f"{rss_mb:.1f} MB (target <= 500 MB)"],
    ]))
    if counts["succeeded"] != count:
        print("not every site succeeded:", {n: o.failure for n, o in result.sites.items() if o.failure},
              file=sys.stderr)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--max-parallel", type=int, default=50, help="sites at once (default: all 50)")
    parser.add_argument("--repeat", type=int, default=3, help="runs, each on a sandbox of its own; the median counts")
    args = parser.parse_args()
    runs = [run(args.sites, args.max_parallel) for _ in range(args.repeat)]
    ratios = sorted(r["ratio"] for r in runs)
    median = ratios[len(ratios) // 2]
    worst_429 = max(r["share_429"] for r in runs)
    peak = max(r["peak_rss_mb"] for r in runs)
    common.say(f"ratios {ratios}; 429s at most {worst_429:.2%} of ARM requests; peak RSS {peak} MB")
    common.finish("fleet", median, "<= 1.3 (and 429s <= 1 %, peak RSS <= 500 MB)",
                  {"median_ratio": median, "ratios": ratios, "max_share_429": worst_429, "peak_rss_mb": peak,
                   "runs": runs})


if __name__ == "__main__":
    main()
