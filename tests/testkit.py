"""Small helpers several test packages share: a site's parameters, waiting for a condition, pushing a tiny image."""

from __future__ import annotations

import hashlib
import json
import time
import uuid

from dxf import DXF


def wait_for(predicate, *, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def push_small_image(client: DXF, tag: str, text: str) -> str:
    """Push a one-layer image; return its manifest digest."""
    layer = text.encode() * 10
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}
                         }).encode()
    digests = {}
    for blob in (layer, config):
        digests[blob] = "sha256:" + hashlib.sha256(blob).hexdigest()
        client.push_blob(data=iter([blob]), digest=digests[blob])
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digests[config],
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digests[layer],
                    "size": len(layer)}]})
    client.set_manifest(tag, manifest)
    return "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()


def site_data(sandbox: dict, **overrides) -> dict:
    """A valid parameter mapping with names unique to one test; overrides replace whole sections."""
    tag = uuid.uuid4().hex[:8]
    data = {
        "site": f"t-{tag}",
        "target": {"kind": "sandbox", "sandbox_state_dir": sandbox["state_dir"]},
        "resource_group": f"rg-{tag}",
        "location": "westus",
        "hub": {"name": f"hub-{tag}", "sku": "S1"},
        "device": {"id": f"edge-{tag}", "host_os": "ubuntu22.04"},
        "registry": {"name": f"reg{tag}", "sku": "Premium"},
        "connected_registry": {"name": f"cr{tag}", "mode": "ReadWrite", "repositories": ["hello-world"],
                               "sync_schedule": "* * * * *", "message_ttl": "P2D"},
        "client_access": {"scope_maps": {f"clients-{tag}": {"hello-world": ["content/read", "content/write",
                                                                              "metadata/read"]}},
                          "tokens": [{"name": f"client-{tag}", "scope_map": f"clients-{tag}", "expiry_days": 30}]},
    }
    data.update(overrides)
    return data
