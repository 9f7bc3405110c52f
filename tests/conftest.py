"""Shared fixtures: one sandbox process per test session, in a temporary state directory,
reached over HTTPS on 127.0.0.1 with its own CA, and clients built the way users build them."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import requests
from requestlog import log_from_now

from crlib.sandbox import control

# pytest-socket blocks a connection to anything but loopback by raising inside connect(), and the Azure
# SDKs swallow that (a managed identity probe of 169.254.169.254 just counts as "unavailable"): only a
# warning would say a test addressed a non-loopback IP. A test that tries is failed here instead.
_BLOCKED_CONNECT = "A test tried to use socket"


def _no_blocked_connect(item):
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            result = yield
    finally:
        for w in caught:  # handed on, so that pytest's warnings summary still lists every one
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    blocked = next((w for w in caught if _BLOCKED_CONNECT in str(w.message)), None)
    if blocked is not None:
        pytest.fail(f"{item.nodeid} addressed a host other than loopback: {blocked.message}", pytrace=False)
    return result


pytest_runtest_setup = pytest.hookimpl(wrapper=True)(_no_blocked_connect)
pytest_runtest_call = pytest.hookimpl(wrapper=True)(_no_blocked_connect)
pytest_runtest_teardown = pytest.hookimpl(wrapper=True)(_no_blocked_connect)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory) -> dict:
    """A running sandbox's status (endpoints, sandbox-only credentials, CA bundle)."""
    state_dir = tmp_path_factory.mktemp("sandbox")
    # Device schedules run 60x faster: a per-minute sync fires every real second.
    status = control.start(state_dir, clock_speed=60)
    yield status
    control.stop(state_dir)


@pytest.fixture(scope="session")
def credential(sandbox):
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(
        sandbox["tenant_id"], sandbox["client_id"], sandbox["client_secret"],
        authority=sandbox["authority"], disable_instance_discovery=True,
        connection_verify=sandbox["ca_bundle"],
    )


@pytest.fixture(scope="session")
def arm_token(credential) -> str:
    return credential.get_token("https://management.azure.com/.default").token


class Arm:
    """Raw ARM calls for tests that check wire shapes the SDKs hide."""

    def __init__(self, sandbox: dict, token: str):
        self.base = sandbox["arm_endpoint"]
        self.sub = sandbox["subscription_id"]
        self.session = requests.Session()
        # The machine's REQUESTS_CA_BUNDLE would otherwise replace the sandbox CA per request.
        self.session.trust_env = False
        self.session.verify = sandbox["ca_bundle"]
        self.session.headers["Authorization"] = f"Bearer {token}"

    def url(self, path: str) -> str:
        return self.base + path.replace("{sub}", self.sub)

    def request(self, method: str, path: str, api_version: str | None = None, **kwargs) -> requests.Response:
        params = kwargs.pop("params", {})
        if api_version:
            params["api-version"] = api_version
        return self.session.request(method, self.url(path), params=params, **kwargs)


@pytest.fixture(scope="session")
def arm(sandbox, arm_token) -> Arm:
    return Arm(sandbox, arm_token)


@pytest.fixture
def request_log(sandbox):
    """Requests the sandbox has logged since the test began."""
    return log_from_now(sandbox)


SHARED = Path(__file__).resolve().parents[2] / "shared"
SPECS = Path(__file__).resolve().parent / "specs"


def pytest_configure(config):
    os.environ.setdefault("AZURE_CORE_COLLECT_TELEMETRY", "0")
