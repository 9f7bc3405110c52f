"""What the fleet tests share: an inventory of sites with names unique to the test."""

from __future__ import annotations

import uuid
from pathlib import Path


def inventory_data(sandbox: dict, secrets_dir: Path, count: int, *, tag: str | None = None) -> dict:
    """An inventory of `count` IoT Edge sites on one registry and hub; the first is ReadWrite."""
    tag = tag or uuid.uuid4().hex[:6]
    return {
        "fleet": f"f-{tag}",
        "shared": {"target": {"kind": "sandbox", "sandbox_state_dir": sandbox["state_dir"]},
                   "resource_group": f"rg-f{tag}", "hub": {"name": f"hub-f{tag}"},
                   "registry": {"name": f"regf{tag}"},
                   "secrets": {"store": "local", "local_dir": str(secrets_dir)}},
        "defaults": {"device": {"id": "{site}-edge"},
                     "connected_registry": {"mode": "ReadOnly", "repositories": ["hello-world"]},
                     "client_access": {"scope_maps": {"{site}-clients": {"hello-world": ["content/read",
                                                                                          "metadata/read"]}},
                                       "tokens": [{"name": "{site}-client", "scope_map": "{site}-clients",
                                                   "expiry_days": 90}]}},
        "sites": [{"site": f"s{tag}-{i:02d}", "connected_registry": {"name": f"cr{tag}{i:02d}"}}
                  for i in range(1, count + 1)],
    }
