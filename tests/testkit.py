"""Small helpers several test packages share: waiting for a condition, pushing a tiny image."""

from __future__ import annotations

import hashlib
import json
import time

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
