"""Fixtures for step tests: a Site aimed at the session sandbox, with unique names, and a
RunContext whose secrets live in the test's own directory."""

from __future__ import annotations

import pytest
from testkit import site_data

from crlib import params
from crlib.context import open_context
from crlib.secrets import LocalSecretStore
from crlib.steps.deploy import ensure_deployment
from crlib.steps.manifest import ensure_manifest
from crlib.steps.teardown import teardown

DEPLOY_TIMEOUT = 60  # real seconds; the sandbox's device clock runs at 60x


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


@pytest.fixture
def torn_down():
    """Register contexts to tear down after the test: their devices would keep syncing in the
    background, and other tests' request logs would see it."""
    contexts = []
    yield contexts.append
    for ctx in contexts:
        teardown(ctx, delete_hub=ctx.site.host.kind == "iotedge", delete_registry=True)


@pytest.fixture
def deployed(make_site, make_context, torn_down):
    def deploy(**overrides):
        from test_manifest import build_upstream  # a test module's helper: imported when used

        ctx = build_upstream(make_context(make_site(**overrides)))
        torn_down(ctx)
        ensure_manifest(ctx)
        return ctx, ensure_deployment(ctx, timeout=DEPLOY_TIMEOUT)

    return deploy
