"""Helpers the benchmarks share: a sandbox of their own, a site's parameters, the request log,
interval arithmetic, a printed table and the JSON result file.

Every benchmark starts its own sandbox in a temporary state directory (never the user's), keeps
its secrets in a temporary directory too, and touches 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml

from crlib.sandbox import control

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"

os.environ.setdefault("AZURE_CORE_COLLECT_TELEMETRY", "0")


# -- the sandbox and a site ------------------------------------------------------------------------
@contextlib.contextmanager
def sandbox(latency_profile: str = "instant", clock_speed: float = 60) -> Iterator[tuple[dict, Path]]:
    """A sandbox of our own in a temporary directory: yields (status, work dir); stopped and removed after."""
    work = Path(tempfile.mkdtemp(prefix="crlib-bench-"))
    state_dir = work / "sandbox"
    try:
        status = control.start(state_dir, latency_profile=latency_profile, clock_speed=clock_speed)
        yield status, work
    finally:
        control.stop(state_dir)
        shutil.rmtree(work, ignore_errors=True)


def site_data(status: dict, secrets_dir: Path, *, repositories: Iterable[str] = ("hello-world",),
              mode: str = "ReadWrite", pull_image: str = "hello-world:latest") -> dict:
    """A valid site with names unique to this run, its secrets in `secrets_dir`."""
    tag = uuid.uuid4().hex[:8]
    repositories = list(repositories)
    actions = ["content/read", "content/write", "metadata/read"]
    return {
        "site": f"bench-{tag}",
        "target": {"kind": "sandbox", "sandbox_state_dir": status["state_dir"]},
        "resource_group": f"rg-bench-{tag}",
        "location": "westus",
        "hub": {"name": f"hub-bench-{tag}", "sku": "S1"},
        "device": {"id": f"edge-bench-{tag}", "host_os": "ubuntu22.04"},
        "registry": {"name": f"bench{tag}", "sku": "Premium"},
        "connected_registry": {"name": f"cr{tag}", "mode": mode, "repositories": repositories,
                               "sync_schedule": "* * * * *", "message_ttl": "P2D"},
        "client_access": {"scope_maps": {f"clients-{tag}": dict.fromkeys(repositories, actions)},
                          "tokens": [{"name": f"client-{tag}", "scope_map": f"clients-{tag}", "expiry_days": 30}]},
        "checks": {"pull_image": pull_image, "push_repository": repositories[0]},
        "secrets": {"store": "local", "local_dir": str(secrets_dir)},
    }


def load_site(data: dict):
    from crlib import params

    return params.load(data)


def write_params(data: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_steps(ctx, **kwargs) -> tuple[list, dict[str, tuple[float, float]]]:
    """runbook.run with each step's (start, end) wall-clock window, for attributing logged requests."""
    from crlib import runbook

    windows: dict[str, list[float]] = {}
    results = runbook.run(ctx, on_start=lambda step: windows.__setitem__(step, [time.time()]),
                          on_result=lambda result: windows[result.step].append(time.time()), **kwargs)
    return results, {step: (w[0], w[1]) for step, w in windows.items()}


def in_window(row: dict, window: tuple[float, float]) -> bool:
    return window[0] <= row["time"] <= window[1]


# -- the request log and the state ------------------------------------------------------------------
def last_seq(status: dict) -> int:
    rows = control.admin(status, "GET", "/_sandbox/requests")["requests"]
    return rows[-1]["seq"] if rows else 0


def requests_since(status: dict, seq: int = 0) -> list[dict]:
    """Logged Azure requests after `seq`, without the sandbox's own admin calls; each row gains `start`."""
    rows = control.admin(status, "GET", f"/_sandbox/requests?since={seq}", timeout=60)["requests"]
    rows = [r for r in rows if not r["path"].startswith("/_sandbox/")]
    for row in rows:
        row["start"] = row["time"] - row["duration_ms"] / 1000  # `time` is logged when the answer is ready
    return rows


def operations(status: dict) -> list[dict]:
    """Every long-running operation the sandbox holds (pending or done), from its state dump."""
    dump = control.admin(status, "GET", "/_sandbox/state", timeout=60)
    return [doc for key, doc in dump.items() if key.startswith("operation:")]


# -- intervals ------------------------------------------------------------------------------------------
def merge(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of intervals as sorted, disjoint intervals."""
    merged: list[list[float]] = []
    for start, end in sorted((s, e) for s, e in intervals if e > s):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def union_length(intervals: Iterable[tuple[float, float]], within: tuple[float, float] | None = None) -> float:
    """Length of the union of intervals, optionally clipped to a window."""
    total = 0.0
    for start, end in merge(intervals):
        if within:
            start, end = max(start, within[0]), min(end, within[1])
        total += max(0.0, end - start)
    return total


# -- output -------------------------------------------------------------------------------------------
def table(headers: list[str], rows: list[list]) -> str:
    cells = [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        os_name = next(line.split("=", 1)[1].strip().strip('"') for line in
                       Path("/etc/os-release").read_text().splitlines() if line.startswith("PRETTY_NAME"))
    return {"cpu": model, "cores": os.cpu_count(), "ram_gib": round(mem_kb / 1024**2, 1),
            "python": platform.python_version(), "os": os_name, "kernel": platform.release()}


def finish(name: str, ratio: float | int, target: str, data: dict) -> None:
    """Write results/<name>.json and print the RESULT line (a float with 3 decimals, a count as it is)."""
    RESULTS.mkdir(exist_ok=True)
    shown = f"{ratio:.3f}" if isinstance(ratio, float) else str(ratio)
    record = {"name": name, "ratio": round(ratio, 3), "target": target,
              "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine()} | data
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"RESULT {name} {shown} (target {target})", flush=True)


def say(*args) -> None:
    print(*args, file=sys.stderr, flush=True)
