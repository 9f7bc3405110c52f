"""The whole runbook against the sandbox, through the real SDKs: both modes, a nested pair,
idempotency (a second pass writes nothing), plan mode (writes nothing), and no secret in any result."""

from __future__ import annotations

from pathlib import Path

import pytest
from requestlog import log_from_now

from crlib import runbook
from crlib.results import Status

CONVERGING = [s for s in runbook.STEP_NAMES if s != "checks"]




def secret_values(secret_dir: Path) -> list[str]:
    return [p.read_text() for p in secret_dir.iterdir() if p.is_file()] if secret_dir.exists() else []


def assert_no_secret(results, secret_dir: Path) -> None:
    secrets = secret_values(secret_dir)
    assert secrets, "the run stored no secret at all"
    for result in results:
        for text in (result.to_json(), repr(result)):
            leaked = [s[:4] + "…" for s in secrets if s in text]
            assert not leaked, f"{result.step} shows a secret value"


@pytest.mark.parametrize("mode", ["ReadWrite", "ReadOnly"])
def test_whole_runbook_then_a_second_pass_writes_nothing(sandbox, make_site, make_context, tmp_path, mode):
    site = make_site(mode=mode)
    first = runbook.run(make_context(site))
    assert [r.step for r in first] == runbook.STEP_NAMES
    assert all(r.status in (Status.CREATED, Status.UPDATED, Status.UNCHANGED) for r in first[:-1]), \
        [(r.step, r.status) for r in first]
    checks = first[-1]
    assert checks.status == Status.PASSED
    assert checks.details["pull"]["digest"].startswith("sha256:")
    if mode == "ReadWrite":
        assert checks.details["push"]["arrived_in_cloud"] is True
    else:
        assert "not allowed" in checks.details["push"]["refusal"]
    assert_no_secret(first, tmp_path / "secrets")

    second_log = log_from_now(sandbox)
    second = runbook.run(make_context(site), only=CONVERGING)
    assert [(r.step, r.status) for r in second] == [(s, Status.UNCHANGED) for s in CONVERGING]
    writes = [f"{r['method']} {r['path']}" for r in second_log() if r["wrote"]]
    assert writes == [], writes


def test_plan_on_an_empty_sandbox_lists_every_change_and_writes_nothing(sandbox, make_site, make_context, tmp_path):
    site = make_site()
    planned_log = log_from_now(sandbox)
    plan = runbook.run(make_context(site), plan=True, only=CONVERGING)
    # The prerequisites only read (the sandbox's providers are registered); everything else is to do.
    assert [r.status for r in plan] == [Status.UNCHANGED] + [Status.PLANNED] * (len(CONVERGING) - 1), \
        [(r.step, r.status) for r in plan]
    assert all(r.changes for r in plan[1:])
    assert [r for r in planned_log() if r["wrote"]] == []
    assert not (tmp_path / "secrets").exists() or secret_values(tmp_path / "secrets") == []


def test_nested_pair(sandbox, make_context, tmp_path):
    """A ReadWrite parent, then a ReadOnly child on a device nested under the parent's device:
    the child syncs through the parent's device endpoint and serves the synced image."""
    from testkit import site_data

    from crlib import params

    parent_data = site_data(sandbox)
    parent = params.load(parent_data)
    assert [r.step for r in runbook.run(make_context(parent))] == runbook.STEP_NAMES

    tag = parent.site.removeprefix("t-")
    child_data = {**parent_data, "site": f"c-{tag}",
                  "device": {"id": f"child-{tag}", "parent_device": parent.device.id},
                  "connected_registry": {**parent_data["connected_registry"], "name": f"child{tag}",
                                         "mode": "ReadOnly", "parent": parent.connected_registry.name},
                  "client_access": {"scope_maps": {f"kids-{tag}": {"hello-world": ["content/read", "metadata/read"]}},
                                    "tokens": [{"name": f"kid-{tag}", "scope_map": f"kids-{tag}"}]}}
    child = params.load(child_data)
    results = runbook.run(make_context(child))
    by_step = {r.step: r for r in results}
    assert by_step["checks"].details["pull"]["digest"].startswith("sha256:")
    # The child's gateway is the parent's device endpoint, not the cloud's data endpoint.
    parent_cr = make_context(parent).clients.acr.connected_registries.get(
        parent.resource_group, parent.registry.name, parent.connected_registry.name)
    child_cr = make_context(child).clients.acr.connected_registries.get(
        child.resource_group, child.registry.name, child.connected_registry.name)
    assert child_cr.parent.sync_properties.gateway_endpoint == parent_cr.login_server.host
    # The device syncs every simulated minute; read mid-sync, a working registry says Syncing.
    assert child_cr.connection_state in ("Online", "Syncing") and child_cr.activation.status == "Active"
    assert_no_secret(results, tmp_path / "secrets")
