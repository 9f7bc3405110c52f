"""Fixtures for step tests: a Site aimed at the session sandbox, with unique names, and a
RunContext whose secrets live in the test's own directory."""

from __future__ import annotations

import pytest
from testkit import site_data

from crlib import params
from crlib.context import open_context
from crlib.secrets import LocalSecretStore


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
