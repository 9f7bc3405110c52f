"""The record of a connected registry extension's Helm release on a cluster: what the cluster agent
runs. Keyed under the extension (so it goes with it), it keeps the forward's port (stable per
extension), the activation instance (new per install, as a new pod is) and the TLS files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.http import free_loopback_port

if TYPE_CHECKING:
    from ..runtime import Sandbox

RELEASE = "arc.release"
FORWARD_ROLE = "arcforward"


def release_key(ext_id: str) -> str:
    return f"{ext_id.lower()}/arc-release"


def save(sandbox: Sandbox, record: dict) -> None:
    sandbox.store.put(release_key(record["extensionId"]), RELEASE, record, parent=record["extensionId"])


def records(sandbox: Sandbox) -> list[dict]:
    return sandbox.store.by_type(RELEASE)


def reserve_port(sandbox: Sandbox) -> int:
    return free_loopback_port(set(sandbox.hosts) | {r.get("forwardPort") for r in records(sandbox)})
