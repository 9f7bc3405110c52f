"""Fixtures for fleet tests: an inventory of sites with names unique to the test, aimed at the
session sandbox, and every site it built torn down afterwards (their devices stop syncing)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml


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


def tear_down_fleet(path: Path) -> None:
    from crlib.context import open_context
    from crlib.errors import ParameterError
    from crlib.inventory import load_inventory
    from crlib.steps.teardown import teardown

    try:
        fleet = load_inventory(path)
    except ParameterError:
        return
    for index, site in enumerate(fleet.sites):
        last = index == len(fleet.sites) - 1
        try:
            teardown(open_context(site), delete_hub=last, delete_registry=last)
        except Exception:  # a site that was never built, or is gone already
            if last:
                raise


@pytest.fixture
def write_inventory(sandbox, tmp_path):
    """Write an inventory (`count` sites, or `data` as given); every one written is torn down after the test."""
    written: list[Path] = []

    def write(count: int = 3, *, data: dict | None = None, name: str = "fleet.yaml", built: bool = True) -> Path:
        """`built`: False for an inventory the test expects to be refused (nothing to tear down)."""
        data = data or inventory_data(sandbox, tmp_path / "secrets", count)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        if built and path not in written:
            written.append(path)
        return path

    yield write
    for path in written:
        tear_down_fleet(path)
