"""The resource group, IoT hub, edge device identity, device provisioning and readiness steps, and
the host provisioning script, against the sandbox through the real SDKs."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from azure.iot.hub.models import ConfigurationContent
from testkit import wait_for

from crlib import params
from crlib.azure import readers
from crlib.azure.names import DEVICE_SECRET, HUB_SECRET
from crlib.errors import ParameterError, PreconditionFailed
from crlib.results import Status
from crlib.sandbox import control
from crlib.steps.device import device_readiness, ensure_device, plan_device, plan_provision, provision_device
from crlib.steps.hub import ensure_hub, ensure_resource_group
from crlib.steps.provisioning import CONNECTION_STRING_FILE, provisioning_script


def variant(site: params.Site, **sections) -> params.Site:
    """The same site (same names) with whole sections replaced."""
    return params.load(site.model_dump() | sections)


def log_from_now(sandbox, *, admin: bool = False):
    """Requests logged from this moment on; the sandbox's admin calls only when asked for."""
    logged = control.admin(sandbox, "GET", "/_sandbox/requests")["requests"]
    since = logged[-1]["seq"] if logged else 0

    def read() -> list[dict]:
        rows = control.admin(sandbox, "GET", f"/_sandbox/requests?since={since}")["requests"]
        return [r for r in rows if admin or not r["path"].startswith("/_sandbox/")]

    return read


def writes(log) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in log() if r["wrote"]]




@pytest.fixture
def with_hub(make_site, make_context):
    """A site whose resource group and hub exist, and its context."""
    site = make_site()
    ctx = make_context(site)
    ensure_resource_group(ctx)
    ensure_hub(ctx)
    return site, ctx


def registry_manager(ctx):
    return ctx.clients.registry_manager(readers.hub_access(ctx))


# -- resource group and hub -----------------------------------------------------------------------------
def test_first_run_creates_group_hub_and_device_and_a_second_run_writes_nothing(sandbox, make_site, make_context):
    site = make_site()
    ctx = make_context(site)
    results = [ensure_resource_group(ctx), ensure_hub(ctx), ensure_device(ctx)]
    assert [r.status for r in results] == [Status.CREATED] * 3

    hub = ctx.clients.hubs.iot_hub_resource.get(site.resource_group, site.hub.name)
    assert (hub.sku.name, hub.sku.capacity) == ("S1", 1)
    host = hub.properties.host_name
    assert results[1].resource_ids == [hub.id] and results[1].details["host_name"] == host
    hub_cs = ctx.get_secret(HUB_SECRET)
    assert hub_cs.startswith(f"HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey=")
    device = registry_manager(ctx).get_device(site.device.id)
    assert device.capabilities.iot_edge and device.status == "enabled"
    key = device.authentication.symmetric_key.primary_key
    assert ctx.get_secret(DEVICE_SECRET) == f"HostName={host};DeviceId={site.device.id};SharedAccessKey={key}"
    # Results carry references, never values.
    assert results[1].secrets == {HUB_SECRET: f"local:crlib-{site.site}-{HUB_SECRET}"}
    assert results[2].secrets == {DEVICE_SECRET: f"local:crlib-{site.site}-{DEVICE_SECRET}"}
    assert not any(secret in r.to_json() for r in results for secret in (hub_cs, key))

    # A new process: state is rebuilt from Azure, and nothing is written.
    second_log = log_from_now(sandbox)
    fresh = make_context(site)
    again = [ensure_resource_group(fresh), ensure_hub(fresh), ensure_device(fresh)]
    assert [r.status for r in again] == [Status.UNCHANGED] * 3
    assert writes(second_log) == []
    assert again[1].details["host_name"] == host
    assert again[2].resource_ids == [f"{host}/devices/{site.device.id}"]
    assert again[2].details["device_scope"] == device.device_scope


def test_plan_on_a_fresh_site_lists_each_write_and_writes_nothing(make_site, make_context, request_log, tmp_path):
    site = make_site()
    ctx = make_context(site)
    planned = [ensure_resource_group(ctx, plan=True), ensure_hub(ctx, plan=True), ensure_device(ctx, plan=True),
               provision_device(ctx, plan=True)]
    assert [r.status for r in planned] == [Status.PLANNED] * 4
    assert planned[0].changes == [f"create resource group '{site.resource_group}' in westus"]
    assert planned[1].changes == [f"create IoT hub '{site.hub.name}' (S1, 1 unit) in westus"]
    assert planned[2].changes == [f"create IoT Edge device identity '{site.device.id}' in hub '{site.hub.name}'"]
    assert "provision device" in planned[3].changes[0]
    # The same changes as data: resource, action, fields old -> new.
    assert planned[1].plan == [{"action": "create", "kind": "IoT hub", "name": site.hub.name,
                                "summary": planned[1].changes[0],
                                "fields": [{"name": "sku", "old": "(none)", "new": "S1"},
                                           {"name": "capacity", "old": "(none)", "new": "1"},
                                           {"name": "location", "old": "(none)", "new": "westus"}]}]
    assert [(c["action"], c["kind"]) for r in planned for c in r.plan] == [
        ("create", "resource group"), ("create", "IoT hub"), ("create", "device identity"), ("run", "device")]
    # Without the hub, the device steps can only foresee: applying them refuses as before, writing nothing.
    for blocked in (plan_device(ctx), plan_provision(ctx)):
        assert blocked.provisional
        with pytest.raises(PreconditionFailed) as refused:
            blocked.apply()
        assert refused.value.subject == "hub.name"
    assert [r for r in request_log() if r["wrote"]] == []
    assert not (tmp_path / "secrets").exists()


def test_a_reused_hub_must_exist_and_is_then_used_as_it_is(make_site, make_context, request_log):
    site = make_site()
    reused = variant(site, hub=site.hub.model_dump() | {"reuse": True})
    ctx = make_context(reused)
    ensure_resource_group(ctx)
    with pytest.raises(PreconditionFailed) as refused:
        ensure_hub(ctx)
    assert refused.value.subject == "hub.name" and site.hub.name in str(refused.value)
    assert [r["method"] for r in request_log() if r["wrote"]] == ["PUT"]  # the resource group only

    ensure_hub(make_context(site))
    assert ensure_hub(make_context(reused)).status == Status.UNCHANGED


def test_a_hub_is_scaled_to_the_parameters_within_its_tier(sandbox, with_hub, make_context):
    site, _ = with_hub
    bigger = variant(site, hub=site.hub.model_dump() | {"capacity": 2})
    plan_log = log_from_now(sandbox)
    planned = ensure_hub(make_context(bigger), plan=True)
    assert planned.status == Status.PLANNED
    assert planned.changes == [f"update IoT hub '{site.hub.name}' from S1, 1 unit to S1, 2 units"]
    assert planned.plan[0]["fields"] == [{"name": "capacity", "old": "1", "new": "2"}]
    assert writes(plan_log) == []

    before = make_context(site).clients.hubs.iot_hub_resource.get(site.resource_group, site.hub.name)
    ctx = make_context(bigger)
    assert ensure_hub(ctx).status == Status.UPDATED
    hub = ctx.clients.hubs.iot_hub_resource.get(site.resource_group, site.hub.name)
    assert hub.sku.capacity == 2 and hub.properties.host_name == before.properties.host_name
    assert ensure_hub(make_context(bigger)).status == Status.UNCHANGED

    free = variant(site, hub=site.hub.model_dump() | {"sku": "F1", "capacity": 1})
    refused_log = log_from_now(sandbox)
    with pytest.raises(PreconditionFailed) as refused:
        ensure_hub(make_context(free))
    assert refused.value.subject == "hub.sku" and "Standard tier" in str(refused.value)
    assert writes(refused_log) == []


@pytest.mark.parametrize(("sku", "capacity", "field", "says"), [
    ("B1", 1, "hub.sku", "do not support IoT Edge"),
    ("F1", 2, "hub.capacity", "at most 1 unit"),
    ("S3", 11, "hub.capacity", "at most 10 units"),
])
def test_a_hub_azure_would_refuse_is_refused_before_any_request(make_site, make_context, request_log, sku, capacity,
                                                                field, says):
    site = make_site()
    refusable = variant(site, hub=site.hub.model_dump() | {"sku": sku, "capacity": capacity})
    with pytest.raises(ParameterError) as refused:
        ensure_hub(make_context(refusable), plan=True)
    assert refused.value.field == field and says in refused.value.message
    assert request_log() == []


def test_a_hub_name_taken_in_another_group_is_refused(with_hub, make_site, make_context, request_log):
    site, _ = with_hub
    other = make_site(hub={"name": site.hub.name})
    ctx = make_context(other)
    ensure_resource_group(ctx)
    with pytest.raises(PreconditionFailed) as refused:
        ensure_hub(ctx)
    assert refused.value.subject == "hub.name"
    assert [r["path"] for r in request_log() if r["wrote"]] == [f"/subscriptions/{ctx.profile.subscription_id}"
                                                                f"/resourcegroups/{other.resource_group}"]


# -- device identity ----------------------------------------------------------------------------------------
def test_an_existing_device_that_is_not_edge_enabled_is_refused(sandbox, with_hub):
    site, ctx = with_hub
    registry_manager(ctx).create_device_with_sas(site.device.id, "", "", "enabled", iot_edge=False)
    log = log_from_now(sandbox)
    with pytest.raises(PreconditionFailed) as refused:
        ensure_device(ctx)
    assert refused.value.subject == "device.id" and "not an IoT Edge device" in str(refused.value)
    assert writes(log) == []


def test_a_disabled_device_is_enabled_again_keeping_its_keys(sandbox, with_hub, make_context):
    site, ctx = with_hub
    ensure_device(ctx)
    connection_string = ctx.get_secret(DEVICE_SECRET)
    manager = registry_manager(ctx)
    device = manager.get_device(site.device.id)
    keys = device.authentication.symmetric_key
    manager.update_device_with_sas(site.device.id, device.etag, keys.primary_key, keys.secondary_key, "disabled",
                                   iot_edge=True)
    planned = ensure_device(make_context(site), plan=True)
    assert planned.status == Status.PLANNED
    assert planned.changes == [f"update device '{site.device.id}': enable it (it is disabled)"]

    log = log_from_now(sandbox)
    assert ensure_device(ctx).status == Status.UPDATED
    assert writes(log) == [f"PUT /devices/{site.device.id}"]
    assert manager.get_device(site.device.id).status == "enabled"
    assert ctx.get_secret(DEVICE_SECRET) == connection_string


def test_a_nested_device_takes_its_parent_devices_scope(with_hub, make_context, request_log):
    site, ctx = with_hub
    ensure_device(ctx)
    parent = registry_manager(ctx).get_device(site.device.id)
    child_site = variant(site, device={"id": site.device.id + "-child", "parent_device": site.device.id})
    result = ensure_device(make_context(child_site))
    assert result.status == Status.CREATED
    child = registry_manager(ctx).get_device(child_site.device.id)
    assert child.parent_scopes == [parent.device_scope]
    assert "under parent device" in result.changes[0]

    orphan = variant(site, device={"id": site.device.id + "-orphan", "parent_device": "no-such-device"})
    with pytest.raises(PreconditionFailed) as refused:
        ensure_device(make_context(orphan))
    assert refused.value.subject == "device.parent_device"


# -- provisioning and readiness ---------------------------------------------------------------------------------
def test_provisioning_connects_the_device_once(sandbox, with_hub, make_context):
    site, ctx = with_hub
    ensure_device(ctx)
    assert device_readiness(ctx)["state"] == "not provisioned"
    assert provision_device(ctx, plan=True).status == Status.PLANNED

    first = log_from_now(sandbox, admin=True)
    result = provision_device(ctx)
    assert result.status == Status.UPDATED and result.details["provisioner"]
    assert "POST /_sandbox/edge/devices" in writes(first)
    readiness = wait_for(lambda: (lambda r: r if r["state"] == "waiting for modules" else None)(device_readiness(ctx)),
                         what="the device to connect and report 417")
    assert readiness["connection_state"] == "Connected" and readiness["code"] == 417

    second = log_from_now(sandbox, admin=True)
    again = provision_device(make_context(site))
    assert again.status == Status.UNCHANGED
    assert writes(second) == []


def test_readiness_names_the_module_that_does_not_run(with_hub):
    site, ctx = with_hub
    ensure_device(ctx)
    provision_device(ctx)
    wait_for(lambda: device_readiness(ctx)["state"] == "waiting for modules", what="the device to connect")

    def deploy(**modules):
        system = {name: {"type": "docker", "settings": {"image": f"mcr.microsoft.com/azureiotedge-{name[4:].lower()}"
                                                                  ":1.2.4", "createOptions": ""}}
                  for name in ("edgeAgent", "edgeHub")}
        system["edgeHub"] |= {"status": "running", "restartPolicy": "always"}
        custom = {name: {"type": "docker", "status": "running", "restartPolicy": "always", "version": "1.0",
                         "settings": {"image": image, "createOptions": ""}} for name, image in modules.items()}
        ctx.clients.configuration_manager(readers.hub_access(ctx)).apply_configuration_on_edge_device(
            site.device.id, ConfigurationContent(modules_content={
                "$edgeAgent": {"properties.desired": {"schemaVersion": "1.1", "runtime": {
                    "type": "docker", "settings": {}}, "systemModules": system, "modules": custom}},
                "$edgeHub": {"properties.desired": {"schemaVersion": "1.2", "routes": {},
                                                     "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}}}))

    deploy(broken="mcr.microsoft.com/no-such-image:1.0")
    failing = wait_for(lambda: (lambda r: r if r["state"] == "not ready" and any(
        d.startswith("broken: backoff") for d in r["diagnosis"]) else None)(device_readiness(ctx)),
        what="the broken module to be diagnosed")
    assert failing["modules"]["broken"] == "backoff"

    deploy(hello="mcr.microsoft.com/hello-world:latest")
    ready = wait_for(lambda: (lambda r: r if r["state"] == "ready" else None)(device_readiness(ctx)),
                     what="every module running")
    assert ready["diagnosis"] == [] and ready["modules"] == {"edgeAgent": "running", "edgeHub": "running",
                                                             "hello": "running"}


def test_a_nested_device_needs_its_parent_connected_registry(with_hub, make_context):
    site, ctx = with_hub
    ensure_device(ctx)
    child = variant(site, device={"id": site.device.id + "-child", "parent_device": site.device.id})
    child_ctx = make_context(child)
    ensure_device(child_ctx)
    with pytest.raises(ParameterError) as unnamed:
        provision_device(child_ctx)
    assert unnamed.value.field == "connected_registry.parent"

    # The parent device's address is what the child needs; the sandbox knows it once the parent is provisioned.
    named = variant(child, connected_registry=child.connected_registry.model_dump() | {"parent": "parentcr1"})
    with pytest.raises(PreconditionFailed) as missing:
        provision_device(make_context(named))
    assert missing.value.subject == "device.parent_device" and site.device.id in str(missing.value)


# -- the host provisioning script ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("host_os", "version"), [("ubuntu22.04", "22.04"), ("ubuntu24.04", "24.04")])
@pytest.mark.parametrize("parent_hostname", [None, "parent-device.contoso.local"])
def test_the_provisioning_script_passes_shellcheck(make_site, make_context, tmp_path, host_os, version,
                                                   parent_hostname):
    site = make_site(device={"id": "edge-$(id)'x", "host_os": host_os, "parent_device": None})
    script = provisioning_script(make_context(site), parent_hostname=parent_hostname)
    for expected in ("https://packages.microsoft.com/config/ubuntu/$UBUNTU_VERSION/packages-microsoft-prod.deb",
                     f"readonly UBUNTU_VERSION={version}", "apt-get install -y moby-engine",
                     "apt-get install -y aziot-edge", "iotedge config apply", "iotedge system status",
                     "iotedge check"):
        assert expected in script
    assert ("parent_hostname = " in script) and (f"readonly PARENT_HOSTNAME={parent_hostname or chr(39) * 2}"
                                                in script)
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install -y shellcheck)")
    path = tmp_path / "provision-iotedge.sh"
    path.write_text(script)
    checked = subprocess.run([shellcheck, "--shell=bash", str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_provisioning_script_reads_the_connection_string_from_a_root_only_file(with_hub):
    site, ctx = with_hub
    ensure_device(ctx)
    key = registry_manager(ctx).get_device(site.device.id).authentication.symmetric_key.primary_key
    script = provisioning_script(ctx)
    assert key not in script and ctx.get_secret(DEVICE_SECRET) not in script
    assert f"readonly CONNECTION_STRING_FILE={CONNECTION_STRING_FILE}" in script
    assert '[[ $owner_mode == "root:root 600" ]]' in script
    assert "--connection-string" not in script  # argv is visible to every local user
    assert 'printf \'connection_string = "%s"\\n\' "$connection_string"' in script
    assert f"secret 'crlib-{site.site}-{DEVICE_SECRET}'" in script


def test_the_provisioning_script_refuses_a_parent_host_that_is_not_a_host_name(make_site, make_context):
    with pytest.raises(ParameterError) as refused:
        provisioning_script(make_context(make_site()), parent_hostname='host"; rm -rf /')
    assert refused.value.field == "parent_hostname"


def test_real_hardware_provisioning_writes_nothing_and_asks_for_the_script(sandbox, with_hub):
    """With a provisioner that cannot reach the device (real hardware), the step says what to do."""
    import dataclasses

    from crlib.profiles import ManualProvisioner

    _, ctx = with_hub
    ensure_device(ctx)
    ctx.profile = dataclasses.replace(ctx.profile, provisioner=ManualProvisioner())
    first = log_from_now(sandbox, admin=True)
    result = provision_device(ctx)
    assert result.status == Status.UNCHANGED and result.changes == []
    assert "provisioning script" in result.details["action_required"]
    assert writes(first) == []
