"""Fixtures for step tests: a Site aimed at the session sandbox, with unique names, and a
RunContext whose secrets live in the test's own directory."""

from __future__ import annotations

import uuid

import pytest

from crlib import params
from crlib.context import open_context
from crlib.secrets import LocalSecretStore


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


@pytest.fixture
def make_site(sandbox):
    def make(*, mode: str | None = None, **overrides) -> params.Site:
        data = site_data(sandbox, **overrides)
        if mode:
            data["connected_registry"]["mode"] = mode
        return params.load(data)

    return make


@pytest.fixture
def make_context(tmp_path):
    def make(site: params.Site):
        return open_context(site, secrets=LocalSecretStore(tmp_path / "secrets"))

    return make
