"""Nested IoT Edge as Microsoft's tutorial builds it (tutorial-deploy-connected-registry-nested-iot-
edge-cli.md): three layers through the whole runbook, each child pulling its modules and syncing
only through its parent's device; the module repositories synced down; teardown bottom-up."""

from __future__ import annotations

import pytest
from requestlog import log_from_now
from testkit import site_data

from crlib import params, runbook
from crlib.azure import names, readers
from crlib.azure.pull_access import deployed_module_repositories
from crlib.errors import PreconditionFailed, RunFailed, StepTimeout
from crlib.hosts.iotedge_manifest import EDGE_AGENT, images_of, validate_manifest
from crlib.results import Status
from crlib.sandbox import control
from crlib.steps.teardown import teardown

SHORT = 10.0  # real seconds: a deploy that cannot succeed, ended early for its diagnosis


def child_of(parent: dict, label: str, *, mode: str = "ReadWrite", **connected) -> dict:
    """A site nested under `parent`: same hub and registry, its own device and connected registry."""
    tag = parent["site"].split("-", 1)[1]
    return {**parent, "site": f"{label}-{tag}",
            "device": {"id": f"{label}-{tag}", "parent_device": parent["device"]["id"]},
            "connected_registry": {**parent["connected_registry"], "name": f"{label}{tag}", "mode": mode,
                                   "parent": parent["connected_registry"]["name"], **connected},
            "client_access": {"scope_maps": {f"{label}-clients-{tag}": {
                "hello-world": ["content/read", "content/write", "metadata/read"]}},
                "tokens": [{"name": f"{label}-client-{tag}", "scope_map": f"{label}-clients-{tag}"}]}}


@pytest.fixture
def layered(sandbox, make_context):
    """Contexts made here are torn down bottom-up after the test."""
    made = []

    def make(data: dict):
        ctx = make_context(params.load(data))
        made.append(ctx)
        return ctx

    yield make
    for ctx in reversed(made):
        teardown(ctx, delete_hub=ctx is made[0], delete_registry=ctx is made[0])


def run_all(ctx) -> dict:
    return {r.step: r for r in runbook.run(ctx, options={"deploy": {"timeout": 90}})}


def test_three_layers_pull_and_sync_only_through_their_parents(sandbox, layered):
    top_data = site_data(sandbox)
    top = layered(top_data)
    run_all(top)
    middle_data = child_of(top_data, "mid")
    middle = layered(middle_data)
    run_all(middle)
    bottom = layered(child_of(middle_data, "low"))
    log = log_from_now(sandbox)
    done = run_all(bottom)

    # The bottom's deployment pulls everything from $upstream (its parent's API proxy), with the
    # pull token attached to the parent connected registry.
    record = done["manifest"].details["record"]
    validate_manifest(record)  # the IoT Edge schemas, and every createOptions a JSON object
    assert all(image.startswith("$upstream:8000/") for image in images_of(record).values()), images_of(record)
    credentials = record[EDGE_AGENT]["properties.desired"]["runtime"]["settings"]["registryCredentials"]
    assert [c["address"] for c in credentials.values()] == ["$upstream:8000"]
    pull_token = names.pull_token_name(bottom.site.connected_registry.name)
    middle_cr = readers.connected_registry(middle)
    assert any(i.endswith("/" + pull_token) for i in middle_cr.client_token_ids or [])
    # The middle and the top hold the module repositories, so the layers below can pull them.
    for ctx in (top, middle):
        actions = readers.scope_map(ctx, names.sync_scope_map_name(ctx.site.connected_registry.name)).actions
        assert all(f"repositories/{repo}/content/read" in actions for repo in deployed_module_repositories(bottom))

    # ARM gives the bottom no parent gateway: its connection string names the middle device's address.
    bottom_cr = readers.connected_registry(bottom)
    assert not bottom_cr.parent.sync_properties.gateway_endpoint
    middle_address = control.device_show(sandbox, middle.site.device.id)["address"]
    assert f"ParentGatewayEndpoint={middle_address};" in bottom.get_secret(names.CONNECTION_STRING_SECRET)

    # Pull and push at the bottom; ReadWrite all the way: the push reaches the cloud.
    checks = done["checks"]
    assert checks.details["pull"]["digest"].startswith("sha256:")
    assert checks.details["push"]["arrived_in_cloud"] is True

    # The request log: every request the bottom device made went to the middle device's address; none
    # reached the cloud registry (its login server or data endpoint).
    registry = readers.registry(bottom, fresh=True)
    cloud_hosts = {registry.login_server, *(registry.data_endpoint_host_names or [])}
    from_bottom = [r for r in log() if (r.get("user_agent") or "").endswith(f"IoTEdgeDevice/{bottom.site.device.id}")]
    assert from_bottom, "the bottom device made no request the log attributes to it"
    assert {r["host"] for r in from_bottom} == {middle_address}, {r["host"] for r in from_bottom}
    assert not cloud_hosts & {r["host"] for r in from_bottom}

    # Teardown: a parent with children is refused, naming them; bottom-up succeeds (the fixture).
    with pytest.raises(PreconditionFailed, match=f"has children {middle.site.connected_registry.name}"):
        teardown(top)
    with pytest.raises(PreconditionFailed, match=f"has children {bottom.site.connected_registry.name}"):
        teardown(middle)
    assert [teardown(ctx).status for ctx in (bottom, middle)] == [Status.DELETED, Status.DELETED]
    assert readers.connected_registry(middle) is None and readers.connected_registry(bottom) is None


def test_a_child_whose_parent_lacks_the_module_repositories_names_the_missing_one(sandbox, layered):
    top_data = site_data(sandbox)
    top = layered(top_data)
    run_all(top)
    child_data = child_of(top_data, "kid", mode="ReadOnly", sync_module_images=False)
    child = layered(child_data)
    with pytest.raises(RunFailed) as failed:
        runbook.run(child, options={"deploy": {"timeout": SHORT}})
    error = failed.value.error
    assert failed.value.step == "deploy" and isinstance(error, StepTimeout)
    named = [d for d in error.diagnosis if "does not sync repository" in d]
    assert sorted(named) == sorted(
        f"parent connected registry '{top.site.connected_registry.name}' does not sync repository '{repo}', which "
        "this device pulls from $upstream: set connected_registry.sync_module_images: true (or add "
        f"'{repo}' to the parent's repositories)" for repo in deployed_module_repositories(child)), error.diagnosis

    # The same site syncing the module images: the definition step adds them to the parent, and it works.
    fixed = layered({**child_data, "connected_registry": {**child_data["connected_registry"],
                                                           "sync_module_images": True}})
    done = run_all(fixed)
    # The deployment was applied already (unchanged): what changed is the parent's sync scope, and
    # the wait now sees every module running.
    assert done["definition"].status == Status.UPDATED and done["deploy"].details["modules"]
    assert done["checks"].details["pull"]["digest"].startswith("sha256:")
