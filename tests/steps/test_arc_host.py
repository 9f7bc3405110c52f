"""The Arc host end to end against the sandbox, through the real SDKs over HTTPS: the whole runbook
on a simulated Arc-enabled cluster, a second pass that writes nothing, rotation, teardown, and
each documented failure named by crlib (troubleshoot-connected-registry-arc.md)."""

from __future__ import annotations

import pytest
import requests
from requestlog import log_from_now
from testkit import site_data

from crlib import params, runbook
from crlib.azure import names, readers
from crlib.errors import PreconditionFailed, RunFailed, StepFailed, StepTimeout
from crlib.hosts import host_for
from crlib.results import Status
from crlib.sandbox import control
from crlib.steps.deploy import rotate_credentials
from crlib.steps.teardown import teardown

UP_TO_DEPLOY = [s for s in runbook.STEP_NAMES if s not in ("access", "checks")]
CONVERGING = [s for s in runbook.STEP_NAMES if s != "checks"]
SHORT = 8.0  # real seconds: a wait that cannot succeed, ended early to read its diagnosis


@pytest.fixture
def arc_site(sandbox, make_context, torn_down):
    """A site on a freshly connected cluster (`az connectedk8s connect` in the sandbox)."""
    def make(*, mode: str = "ReadOnly", arch: str = "amd64", cluster_storage_class: str = "standard", **arc):
        data = site_data(sandbox)
        cluster = "arc-" + data["site"]
        data["connected_registry"]["mode"] = mode
        data["host"] = {"kind": "arc", "arc": {"cluster": cluster, "service_cluster_ip": "10.0.0.100", **arc}}
        ctx = make_context(params.load(data))
        control.connect_cluster(sandbox, cluster, data["resource_group"], service_cidr="10.0.0.0/16",
                                storage_class=cluster_storage_class, arch=arch, create_group=True)
        torn_down(ctx)
        return ctx

    return make


def run_with_timeout(ctx, steps, timeout: float):
    return runbook.run(ctx, only=steps, options={"deploy": {"timeout": timeout}})


def failure(ctx, steps, timeout: float = SHORT) -> Exception:
    with pytest.raises(RunFailed) as exc:
        run_with_timeout(ctx, steps, timeout)
    return exc.value.error


@pytest.mark.parametrize("mode", ["ReadOnly", "ReadWrite"])
def test_the_whole_runbook_on_an_arc_cluster_then_a_second_pass_writes_nothing(sandbox, arc_site, mode):
    ctx = arc_site(mode=mode)
    first = {r.step: r for r in runbook.run(ctx)}
    assert [first[s].status for s in ("hub", "device", "provision")] == [Status.SKIPPED] * 3
    assert first["prerequisites"].details["cluster"]["connectivity_status"] == "Connected"
    assert first["deploy"].status == Status.CREATED
    assert first["deploy"].resource_ids[0].endswith(f"/extensions/{ctx.site.host.arc.extension_name}")
    assert first["manifest"].details["record"]["configurationProtectedSettings"]["connectionString"].startswith(
        "local:")
    # The checks went through the forward (loopback), verifying the cluster CA's certificate.
    checks = first["checks"]
    assert checks.details["endpoint"].startswith("127.0.0.1:") and checks.details["ca_cert_sha256"]
    assert checks.details["pull"]["digest"].startswith("sha256:")
    if mode == "ReadOnly":
        assert "not allowed" in checks.details["push"]["refusal"]
    else:
        assert checks.details["push"]["arrived_in_cloud"] is True
    # Only IoT Edge pulls module images from the cloud registry: no pull token, no module imports.
    assert readers.token(ctx, names.pull_token_name(ctx.site.connected_registry.name)) is None

    second_log = log_from_now(sandbox)
    second = runbook.run(ctx, only=CONVERGING)
    assert {(r.step, r.status) for r in second} <= {(s, Status.UNCHANGED) for s in CONVERGING} | {
        (s, Status.SKIPPED) for s in ("hub", "device", "provision")}
    writes = [f"{r['method']} {r['path']}" for r in second_log() if r["wrote"]]
    assert writes == [], writes


def test_rotation_brings_the_extension_back_online_and_the_old_password_is_refused(sandbox, arc_site):
    ctx = arc_site()
    run_with_timeout(ctx, UP_TO_DEPLOY, 60)
    registry = readers.registry(ctx, fresh=True)
    token = names.sync_token_name(ctx.site.connected_registry.name)
    old = ctx.get_secret(names.SYNC_PASSWORD_SECRET)

    def login(password: str) -> int:
        return requests.get(f"https://{registry.login_server}/oauth2/token", params={
            "service": registry.login_server, "scope": "repository:hello-world:pull"},
            auth=(token, password), verify=sandbox["ca_bundle"], timeout=10).status_code

    assert login(old) == 200
    rotated = rotate_credentials(ctx, timeout=60)
    assert rotated.status == Status.UPDATED
    new = ctx.get_secret(names.SYNC_PASSWORD_SECRET)
    assert new != old and login(new) == 200 and login(old) == 401
    cr = readers.connected_registry(ctx)
    assert cr.connection_state in ("Online", "Syncing") and cr.activation.status == "Active"
    extension = host_for(ctx, step="rotate").view()
    assert extension["provisioning_state"] == "Succeeded" and extension["statuses"] == []


def test_teardown_leaves_no_extension_connected_registry_token_or_scope_map(sandbox, arc_site):
    ctx = arc_site()
    run_with_timeout(ctx, UP_TO_DEPLOY, 60)
    host = host_for(ctx, step="teardown")
    assert host.extension() is not None
    result = teardown(ctx)
    assert result.status == Status.DELETED
    assert result.changes[0].startswith("delete connected registry extension")  # the extension first
    name = ctx.site.connected_registry.name
    assert host.extension() is None
    assert readers.connected_registry(ctx) is None
    assert readers.token(ctx, names.sync_token_name(name)) is None
    assert readers.scope_map(ctx, names.sync_scope_map_name(name)) is None
    assert ctx.get_secret(names.ARC_PROTECTED_DIGEST_SECRET) is None
    assert teardown(ctx).status == Status.UNCHANGED  # gone is gone: a second teardown deletes nothing


# -- each documented failure, named -----------------------------------------------------------------
def test_a_cluster_ip_outside_the_service_range_is_named(arc_site):
    ctx = arc_site(service_cluster_ip="10.1.0.100")
    error = failure(ctx, UP_TO_DEPLOY)
    assert isinstance(error, StepFailed) and "host.arc.service_cluster_ip: 10.1.0.100 is outside" in str(error)


def test_a_missing_storage_class_is_named(arc_site):
    ctx = arc_site(storage_class="fast-ssd")
    error = failure(ctx, UP_TO_DEPLOY)
    assert isinstance(error, StepTimeout)
    assert any("host.arc.storage_class: the cluster has no storage class 'fast-ssd'" in d for d in error.diagnosis)


def test_a_wrong_password_is_named(sandbox, arc_site):
    ctx = arc_site()
    run_with_timeout(ctx, [s for s in UP_TO_DEPLOY if s != "deploy"], 60)
    # The password changes behind crlib's back (az acr token credential generate): what it stored is wrong.
    token = readers.token(ctx, names.sync_token_name(ctx.site.connected_registry.name))
    from azure.mgmt.containerregistry import models as acr

    ctx.clients.acr.registries.begin_generate_credentials(
        ctx.site.resource_group, ctx.site.registry.name,
        acr.GenerateCredentialsParameters(token_id=token.id, name="password1")).result()
    error = failure(ctx, ["deploy"], 60)
    assert isinstance(error, StepFailed) and "refused its connection string (UNAUTHORIZED)" in str(error)


def test_installing_again_without_deactivating_is_named(arc_site):
    ctx = arc_site()
    run_with_timeout(ctx, UP_TO_DEPLOY, 60)
    # The extension alone goes (helm uninstall), the connected registry stays Active.
    from crlib.steps.teardown import plan_host_removal

    plan_host_removal(ctx).apply()
    error = failure(ctx, ["deploy"], 60)
    assert isinstance(error, StepFailed) and "ALREADY_ACTIVATED" in str(error) and "deactivate" in str(error)


def test_an_offline_cluster_is_named_before_any_write(sandbox, arc_site):
    ctx = arc_site()
    control.cluster_offline(sandbox, ctx.site.host.arc.cluster, 86400, resource_group=ctx.site.resource_group)
    log = log_from_now(sandbox)
    error = failure(ctx, ["prerequisites", "endpoint"])
    assert isinstance(error, PreconditionFailed) and str(error).startswith("host.arc.cluster:")
    assert "is Offline" in str(error)
    assert [r for r in log() if r["wrote"]] == []


def test_a_cluster_going_offline_during_deploy_is_named(sandbox, arc_site):
    ctx = arc_site()
    run_with_timeout(ctx, [s for s in UP_TO_DEPLOY if s != "deploy"], 60)
    control.cluster_offline(sandbox, ctx.site.host.arc.cluster, 86400, resource_group=ctx.site.resource_group)
    error = failure(ctx, ["deploy"])
    # The agents cannot fetch the extension: it fails (or, caught earlier, the wait names the cluster).
    assert isinstance(error, StepFailed | StepTimeout)
    assert f"host.arc.cluster: Arc cluster '{ctx.site.host.arc.cluster}' is Offline" in str(error)


def test_an_arm64_only_cluster_is_named(arc_site):
    ctx = arc_site(arch="arm64")
    error = failure(ctx, UP_TO_DEPLOY)
    assert isinstance(error, StepFailed) and "no linux/amd64 node" in str(error)
