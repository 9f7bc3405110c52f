"""Helpers for the reliability suite: contexts, and normalised state dumps that say whether two
runs ended in the same place."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from crlib.context import open_context
from crlib.sandbox import control

# Keys whose values differ between two equal runs: times, generated secrets and ids, ports, and the
# live device's connection state (Syncing or Online, depending on the moment of the dump).
VOLATILE = re.compile("|".join([
    r"(time|date|at|since|updated|port|utc)$", r"^size$", r"^connectionstate$", r"^_sandbox$", r"^seq$",
    "password", "etag", "secret", "key", "expiry", "version", "generationid", "revision", "devicescope",
    "connectionstring", "statusdetails", "correlation", "lastsync", "sequence",
    # A module's runtime history: under faults a pull may fail and the module restart before it runs.
    "statusdescription", "restartcount", "exitcode"]), re.I)


def context(site):
    return open_context(site)


def _text(value: str, tag: str, subscription: str) -> str:
    value = value.replace(tag, "TAG").replace(subscription, "SUB")
    value = re.sub(r"crlib-check-\d+-[0-9a-f]+", "CHECK", value)  # every checks run pushes a new tag by design
    value = re.sub(r"sha256:[0-9a-f]{64}", "sha256:DIGEST", value)  # the check image's content names the site
    value = re.sub(r"(Password|SharedAccessKey)=[^;\"]+", r"\1=SECRET", value)  # generated per site
    return re.sub(r"127\.0\.0\.1:\d+", "HOST", value)  # each resource gets its own loopback port


def _normalise(value, tag: str, subscription: str):
    if isinstance(value, dict):
        return {_text(k, tag, subscription): _normalise(v, tag, subscription) for k, v in sorted(value.items())
                if not VOLATILE.search(k)}
    if isinstance(value, list):
        return sorted((_normalise(v, tag, subscription) for v in value), key=lambda item: json.dumps(item, sort_keys=True))
    if isinstance(value, str):
        return _text(value, tag, subscription)
    return value


def state_of(sandbox: dict, tag: str) -> dict[str, list[str]]:
    """The sandbox's documents that belong to one site, with names made site-neutral and times,
    secrets, generated ids and ports left out: normalised key -> the normalised documents under it
    (a list, so that a duplicated resource or blob shows as one more entry)."""
    dump = control.admin(sandbox, "GET", "/_sandbox/state")
    subscription = sandbox["subscription_id"]
    state: dict[str, list[str]] = {}
    for key, doc in dump.items():
        # An upload session abandoned by a lost connection is not a resource: registries expire them.
        if tag in key and "/oci/uploads/" not in key:
            normal = json.dumps(_normalise(doc, tag, subscription), sort_keys=True)
            state.setdefault(_text(key, tag, subscription), []).append(normal)
    return {key: sorted(docs) for key, docs in state.items()}


def difference(left: dict, right: dict) -> list[str]:
    only_left = sorted(set(left) - set(right))
    only_right = sorted(set(right) - set(left))
    changed = sorted(k for k in set(left) & set(right) if left[k] != right[k])
    return ([f"only in the first: {k}" for k in only_left] + [f"only in the second: {k}" for k in only_right]
            + [f"differs: {k}: {_first_difference(left[k], right[k])}" for k in changed])


def _first_difference(left: list[str], right: list[str]) -> str:
    if len(left) != len(right):
        return f"{len(left)} documents != {len(right)}"
    for a, b in zip(left, right, strict=True):
        if a != b:
            at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
            return f"...{a[max(0, at - 150):at + 150]} != ...{b[max(0, at - 150):at + 150]}"
    return "equal"


DRIVER = Path(__file__).with_name("driver.py")


def drive(params: Path, *extra: str) -> int:
    """The whole runbook in a process of its own (driver.py); its exit code (-9 when killed)."""
    return subprocess.run([sys.executable, str(DRIVER), str(params), *extra], capture_output=True, text=True,
                          timeout=600).returncode
