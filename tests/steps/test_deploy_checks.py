"""Deploy, checks, rotation and teardown against the sandbox with its device clock at 60x: the
whole chain in both modes, idempotent deployment, drift, refusals before any write, a timeout
that names the module in backoff, and a teardown that leaves nothing behind."""

from __future__ import annotations

import copy

import pytest
import requests
from azure.mgmt.containerregistry import models as acr
from dxf import exceptions as dxf_errors
from test_manifest import build_upstream, log_from_now, writes

from crlib import runbook
from crlib.azure.errors import get_or_none
from crlib.azure.pull_access import deployed_module_repositories
from crlib.azure.readers import registry as get_registry
from crlib.errors import ManifestInvalid, ParameterError, PreconditionFailed, StepTimeout
from crlib.hosts.iotedge import EDGE_AGENT, EDGE_HUB
from crlib.hosts.iotedge_manifest import build_manifest
from crlib.params import Images
from crlib.results import Status
from crlib.sandbox import control
from crlib.steps.checks import READ_ONLY_REFUSAL, run_checks
from crlib.steps.definition import ensure_connected_registry
from crlib.steps.deploy import deployment_host, ensure_deployment, fetch_connected_registry, rotate_credentials
from crlib.steps.manifest import ensure_manifest
from crlib.steps.teardown import delete_connected_registry, teardown

TIMEOUT = 60  # real seconds; the sandbox's device clock runs at 60x


def desired(ctx) -> dict:
    host = deployment_host(ctx)
    return host.current([EDGE_AGENT, EDGE_HUB])


@pytest.mark.parametrize("mode", ["ReadWrite", "ReadOnly"])
def test_deploy_then_checks_then_teardown_leaves_nothing(deployed, sandbox, tmp_path, mode):
    ctx, result = deployed(mode=mode)
    assert result.status == Status.CREATED
    assert result.changes == [f"apply the deployment manifest to IoT Edge device '{ctx.site.device.id}' in IoT hub "
                              f"'{ctx.site.hub.name}' (no deployment yet)"]
    assert set(result.details["modules"].values()) == {"running"}
    assert set(result.details["modules"]) == {"edgeAgent", "edgeHub", "connectedRegistry", "IoTEdgeAPIProxy"}
    cr = fetch_connected_registry(ctx)
    assert result.details["login_server_host"] == cr.login_server.host
    assert desired(ctx) == build_manifest(ctx)

    log = log_from_now(sandbox)
    again = ensure_deployment(ctx, timeout=TIMEOUT)
    assert (again.status, again.changes) == (Status.UNCHANGED, [])
    assert writes(log) == []

    checks = run_checks(ctx, timeout=TIMEOUT)
    pull = checks.details["pull"]
    cloud = ctx.clients.oci(get_registry(ctx).login_server, "hello-world", username=ctx.site.client_access.tokens[0].name,
                            password=ctx.get_secret(f"client-token-{ctx.site.client_access.tokens[0].name}"))
    assert pull["digest"] == cloud.head_manifest_and_response("latest")[0]
    assert pull["blobs"] == 4 and pull["bytes"] > 0  # the config and three layers
    push = checks.details["push"]
    assert checks.status == Status.PASSED
    assert checks.details["evidence"][0].startswith(f"pulled hello-world:latest through {checks.details['endpoint']}: "
                                                    f"digest {pull['digest']}")
    if mode == "ReadWrite":
        assert push["arrived_in_cloud"] is True
        assert f"seen in the cloud registry at {push['seen_in_cloud_at']}" in checks.details["evidence"][1]
        assert push["seen_in_cloud_at"].endswith("Z")
        assert cloud.head_manifest_and_response(push["tag"])[0] == push["digest"]
    else:
        assert (push["refused_with"], push["refusal"], push["read_only_refusal"]) == (403, READ_ONLY_REFUSAL, True)
        assert checks.details["evidence"][1] == (f"push of hello-world:{push['tag']} refused by the ReadOnly connected "
                                                 f"registry: 403 {READ_ONLY_REFUSAL}")
        with pytest.raises(requests.HTTPError) as missing:
            cloud.head_manifest_and_response(push["tag"])
        assert missing.value.response.status_code == 404

    state = control.admin(sandbox, "GET", "/_sandbox/state")
    group = f"/resourcegroups/{ctx.site.resource_group}".lower()
    assert [key for key in state if group in key and not key.endswith(group)]
    planned = teardown(ctx, plan=True, delete_hub=True, delete_registry=True)
    assert planned.status == Status.PLANNED
    gone = teardown(ctx, delete_hub=True, delete_registry=True)
    assert gone.status == Status.DELETED
    assert gone.changes[:2] == [f"detach client tokens {ctx.site.client_access.tokens[0].name} from "
                                f"'{ctx.site.connected_registry.name}'",
                                f"delete client token '{ctx.site.client_access.tokens[0].name}'"]
    assert f"deactivate connected registry '{ctx.site.connected_registry.name}'" in gone.changes
    state = control.admin(sandbox, "GET", "/_sandbox/state")
    left = [key for key in state if group in key and not key.endswith(group)]
    assert left == []
    assert not any(p.is_file() for p in (tmp_path / "secrets").iterdir())

    log = log_from_now(sandbox)
    assert teardown(ctx, delete_hub=True, delete_registry=True).status == Status.UNCHANGED
    assert writes(log) == []


def test_plan_on_a_fresh_site_writes_nothing(make_site, make_context, sandbox):
    ctx = make_context(make_site())
    log = log_from_now(sandbox)
    deploy = ensure_deployment(ctx, plan=True)
    assert deploy.status == Status.PLANNED and deploy.changes
    checks = run_checks(ctx, plan=True)
    assert checks.status == Status.PLANNED
    assert checks.changes[0].startswith("pull ") and checks.changes[1].startswith("push a generated image")
    assert teardown(ctx, plan=True, delete_hub=True, delete_registry=True).status == Status.UNCHANGED
    assert writes(log) == []


def test_drift_on_the_device_is_reported_in_plan_and_corrected(deployed, sandbox):
    ctx, _ = deployed()
    drifted = copy.deepcopy(build_manifest(ctx))
    drifted[EDGE_HUB]["properties.desired"]["storeAndForwardConfiguration"]["timeToLiveSecs"] = 60
    drifted[EDGE_AGENT]["properties.desired"]["modules"]["IoTEdgeAPIProxy"]["env"]["NGINX_DEFAULT_PORT"]["value"] = "1"
    deployment_host(ctx).apply(drifted)
    log = log_from_now(sandbox)
    plan = ensure_deployment(ctx, plan=True)
    assert plan.status == Status.PLANNED
    assert plan.changes[0].endswith("($edgeAgent modules.IoTEdgeAPIProxy, $edgeHub storeAndForwardConfiguration)")
    assert writes(log) == []
    fixed = ensure_deployment(ctx, timeout=TIMEOUT)
    assert fixed.status == Status.UPDATED
    assert desired(ctx) == build_manifest(ctx)


def test_an_invalid_manifest_is_refused_before_anything_is_applied(deployed, sandbox):
    ctx, _ = deployed()
    broken = copy.deepcopy(build_manifest(ctx))
    broken[EDGE_AGENT]["properties.desired"]["modules"]["connectedRegistry"]["settings"]["createOptions"] = "{'Binds'"
    log = log_from_now(sandbox)
    with pytest.raises(ManifestInvalid, match=r"modules\.connectedRegistry\.settings\.createOptions is not JSON"):
        ensure_deployment(ctx, manifest=broken, timeout=TIMEOUT)
    assert writes(log) == []


def test_a_module_image_never_imported_times_out_naming_the_module_in_backoff(make_site, make_context, torn_down):
    ctx = build_upstream(make_context(make_site()))
    torn_down(ctx)
    # The imports step brought the parameters' images; this tag of the API proxy was never imported.
    ctx.site = ctx.site.model_copy(update={"images": Images(api_proxy="azureiotedge-api-proxy:1.1.4")})
    ensure_manifest(ctx)
    with pytest.raises(StepTimeout) as timed_out:
        ensure_deployment(ctx, timeout=3)
    diagnosis = timed_out.value.diagnosis
    backoff = [d for d in diagnosis if d.startswith("module IoTEdgeAPIProxy is in backoff")]
    assert backoff and "azureiotedge-api-proxy:1.1.4" in backoff[0], diagnosis
    assert any(d.startswith("$edgeAgent lastDesiredStatus 500") for d in diagnosis), diagnosis
    assert "IoTEdgeAPIProxy" in str(timed_out.value)


def test_checks_need_an_activated_connected_registry_and_a_client_token_password(make_site, make_context, sandbox):
    ctx = build_upstream(make_context(make_site()))
    log = log_from_now(sandbox)
    with pytest.raises(PreconditionFailed, match="has not been activated on the device; run the deploy step"):
        run_checks(ctx)
    token = ctx.site.client_access.tokens[0].name
    ctx.secrets.delete(ctx.secret_name(f"client-token-{token}"))
    with pytest.raises(PreconditionFailed, match=f"client token '{token}': no password is stored"):
        run_checks(ctx)
    assert writes(log) == []


def test_rotation_redeploys_with_the_new_password(deployed, sandbox):
    ctx, _ = deployed()
    old_string = ctx.get_secret("connected-registry-connection-string")
    log = log_from_now(sandbox)
    plan = rotate_credentials(ctx, plan=True)
    assert plan.status == Status.PLANNED
    assert plan.changes[0].startswith("regenerate password1 of sync token")
    assert plan.changes[-2:] == [
        f"rebuild the deployment manifest with the new sync password and apply it to IoT Edge device "
        f"'{ctx.site.device.id}'", f"wait until connected registry '{ctx.site.connected_registry.name}' is Online with it"]
    assert writes(log) == []
    rotated = rotate_credentials(ctx, timeout=TIMEOUT)
    assert rotated.status == Status.UPDATED
    new_string = ctx.get_secret("connected-registry-connection-string")
    assert new_string != old_string
    env = desired(ctx)[EDGE_AGENT]["properties.desired"]["modules"]["connectedRegistry"]["env"]
    assert env["ACR_REGISTRY_CONNECTION_STRING"]["value"] == new_string
    cr = fetch_connected_registry(ctx)
    assert cr.connection_state in ("Online", "Syncing") and cr.activation.status == "Active"
    checks = run_checks(ctx, timeout=TIMEOUT)
    assert checks.details["push"]["arrived_in_cloud"] is True
    old_password = old_string.split("SyncTokenPassword=")[1].split(";")[0]
    gateway = cr.parent.sync_properties.gateway_endpoint
    with pytest.raises(dxf_errors.DXFUnauthorizedError):
        ctx.clients.oci(gateway, "hello-world", username=ctx.site.connected_registry.name,
                        password=old_password).get_digest("latest")


def nested_pair(make_site, make_context):
    """A ReadWrite parent (defined, not deployed) and a ReadOnly child with one repository of its own."""
    parent = build_upstream(make_context(make_site()))
    shared = {k: parent.site.model_dump()[k] for k in ("resource_group", "hub", "registry")}
    child_cr = {"name": f"{parent.site.connected_registry.name}kid", "mode": "ReadOnly", "parent":
                parent.site.connected_registry.name, "repositories": ["hello-world", "azureiotedge-diagnostics"]}
    child = make_context(make_site(**shared, connected_registry=child_cr, client_access={}))
    runbook.run(child, only=["hub"])  # the child site's own copy of the hub's connection string
    ensure_connected_registry(child)
    return parent, child


def sync_actions(ctx) -> list[str]:
    site = ctx.site
    return ctx.clients.acr.scope_maps.get(site.resource_group, site.registry.name, site.connected_registry.name).actions


def test_teardown_of_a_child_takes_its_actions_out_of_the_parent(make_site, make_context, sandbox):
    parent, child = nested_pair(make_site, make_context)
    kid = child.site.connected_registry.name.lower()
    with_child = sync_actions(parent)
    assert f"gateway/{kid}/config/read" in with_child
    assert "repositories/azureiotedge-diagnostics/content/read" in with_child

    log = log_from_now(sandbox)
    with pytest.raises(PreconditionFailed, match=f"has children {child.site.connected_registry.name}"):
        teardown(parent)
    with pytest.raises(PreconditionFailed, match="still has connected registries of others"):
        teardown(child, delete_registry=True)
    with pytest.raises(PreconditionFailed, match=f"still has devices of others: {parent.site.device.id}"):
        teardown(child, delete_hub=True)
    reusing = copy.copy(child)
    reusing.site = child.site.model_copy(update={"hub": child.site.hub.model_copy(update={"reuse": True})})
    with pytest.raises(ParameterError, match=r"hub\.reuse: the hub is reused"):
        teardown(reusing, delete_hub=True)
    assert writes(log) == []

    removed = delete_connected_registry(child)
    assert removed.status == Status.DELETED
    # The ancestors are updated before the child's sync scope map goes: their cleanup is computed from it.
    assert [c for c in removed.changes if c.startswith(("remove ", "delete sync scope map"))] == [(
        f"remove gateway/{kid}/config/read, gateway/{kid}/config/write, gateway/{kid}/message/read, "
        f"gateway/{kid}/message/write, repositories/azureiotedge-diagnostics/content/read, "
        f"repositories/azureiotedge-diagnostics/metadata/read, "
        # The module repositories a nested child syncs by default (and so its parent too).
        + "".join(f"repositories/{repo}/content/read, repositories/{repo}/metadata/read, "
                  for repo in deployed_module_repositories(child)).removesuffix(", ")
        + " from sync scope map "
        f"'{parent.site.connected_registry.name}' of ancestor '{parent.site.connected_registry.name}'"),
        f"delete sync scope map '{child.site.connected_registry.name}'"]
    left = sync_actions(parent)
    assert not [a for a in left if kid in a or "azureiotedge-diagnostics" in a]
    # The parent keeps its own repository, which the child synced too.
    assert "repositories/hello-world/content/read" in left and "repositories/hello-world/content/write" in left
    site = child.site
    assert get_or_none(lambda: child.clients.acr.tokens.get(site.resource_group, site.registry.name,
                                                            site.connected_registry.name)) is None
    assert delete_connected_registry(child).status == Status.UNCHANGED


def test_an_ancestor_keeps_a_repository_another_descendant_still_needs(make_site, make_context):
    parent, child = nested_pair(make_site, make_context)
    site = child.site
    sibling_cr = {"name": f"{parent.site.connected_registry.name}sib", "mode": "ReadOnly", "parent":
                  parent.site.connected_registry.name, "repositories": ["azureiotedge-diagnostics"]}
    shared = {k: site.model_dump()[k] for k in ("resource_group", "hub", "registry")}
    sibling = make_context(make_site(**shared, connected_registry=sibling_cr, client_access={},
                                     checks={"pull_image": "azureiotedge-diagnostics:1.2.4"}))
    ensure_connected_registry(sibling)
    delete_connected_registry(child)
    left = sync_actions(parent)
    assert "repositories/azureiotedge-diagnostics/content/read" in left
    assert not [a for a in left if f"gateway/{site.connected_registry.name.lower()}/" in a]
    assert f"gateway/{sibling_cr['name'].lower()}/config/read" in left
    # A scope map another token still uses is kept.
    acr_ops = sibling.clients.acr
    sibling_map = acr_ops.scope_maps.get(site.resource_group, site.registry.name, sibling_cr["name"])
    acr_ops.tokens.begin_create(site.resource_group, site.registry.name, "borrower", acr.Token(
        scope_map_id=sibling_map.id, status="enabled")).result()
    kept = delete_connected_registry(sibling)
    assert kept.details == {"scope_map_kept_for": ["borrower"]}
    assert f"delete sync scope map '{sibling_cr['name']}'" not in kept.changes


def test_checks_test_the_mode_the_registry_has_and_report_the_parameters_that_differ(deployed, make_context):
    """A form edit in notebook 03 holds for that notebook only: the checks must test the registry
    as it is (ReadOnly here) even when the parameter file still says ReadWrite."""
    ctx, _ = deployed(mode="ReadOnly")
    data = ctx.site.model_dump(mode="json")
    data["connected_registry"]["mode"] = "ReadWrite"
    from crlib import params

    stale = make_context(params.load(data))
    stale.secrets = ctx.secrets
    checks = run_checks(stale, timeout=TIMEOUT)
    assert checks.status == Status.PASSED
    assert checks.details["mode"] == "ReadOnly" and checks.details["mode_in_parameters"] == "ReadWrite"
    assert checks.details["push"]["read_only_refusal"] is True
