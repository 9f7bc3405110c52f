"""Fixtures for `crlib status`: two sites on one registry and one hub, deployed by the runbook's own
steps (everything but the checks), with their parameter files and a fleet inventory of both; torn
down at the end of the module so their devices stop syncing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from testkit import site_data

from crlib import params, runbook
from crlib.context import open_context
from crlib.inventory import SHARED_KEYS
from crlib.steps.teardown import teardown


@dataclass
class Sites:
    healthy: dict  # site A's parameters: a client token 30 days from expiry
    expiring: dict  # site B's: its client token 3 days from expiry
    healthy_file: Path
    expiring_file: Path
    inventory: Path


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def sites(sandbox, tmp_path_factory):
    root = tmp_path_factory.mktemp("status")
    a = site_data(sandbox)
    a["secrets"] = {"store": "local", "local_dir": str(root / "secrets")}
    b = site_data(sandbox)
    for key in ("resource_group", "hub", "registry", "secrets"):  # one registry, one hub: a fleet's
        b[key] = a[key]
    b["client_access"]["tokens"][0]["expiry_days"] = 3
    inventory = {"fleet": "status-test", "shared": {k: v for k, v in a.items() if k in SHARED_KEYS},
                 "sites": [{k: v for k, v in d.items() if k not in SHARED_KEYS} for d in (a, b)]}
    found = Sites(a, b, write(root / "a.yaml", a), write(root / "b.yaml", b), write(root / "fleet.yaml", inventory))
    contexts = []
    try:
        for data in (a, b):
            ctx = open_context(params.load(data))
            contexts.append(ctx)
            runbook.run(ctx, only=[s for s in runbook.STEP_NAMES if s != "checks"])
        yield found
    finally:
        for ctx in reversed(contexts):  # the last one removes the shared hub and registry
            teardown(ctx, delete_hub=ctx is contexts[0], delete_registry=ctx is contexts[0])
