"""The negative device stories: each mistake fails in the sandbox the way it fails in Azure."""

from __future__ import annotations

import pytest
from azure.mgmt.containerregistry import models as acr
from edge_story import MODULE_IMAGES, device_address, dxf_client, make_cloud, manifest, provision, unique, wait_for
from test_device import client_token, deploy_connected_registry, wait_fresh_sync, wait_online

from crlib.sandbox import control


def status_detail(cloud, name: str, code: str, state: str | None = None):
    """The connected registry once it reports `code` (and, if given, connection `state`): a failed
    sync leaves its detail while the next attempt runs (Syncing), so a state is waited for, not read."""
    def found():
        cr = cloud.get_connected_registry(name)
        details = [d for d in cr.status_details or [] if d.code == code]
        return (cr, details[0]) if details and state in (None, cr.connection_state) else None

    return wait_for(found, what=f"status detail {code} on {name}")


def module_status(cloud, device_id: str, module: str) -> dict:
    return cloud.edge_agent_reported(device_id).get("modules", {}).get(module, {})


def connected_registry_setup(cloud, mode: str = "ReadOnly"):
    device_id, name = unique("edge"), unique("cr")
    provision(cloud.status, cloud.edge_device(device_id))
    cr, sync_token, password = cloud.connected_registry(name, mode, ["hello-world"])
    return device_id, name, cr, sync_token, password


def connection_string(name, token, password, gateway):
    return (f"ConnectedRegistryName={name};SyncTokenName={token};SyncTokenPassword={password};"
            f"ParentGatewayEndpoint={gateway};ParentEndpointProtocol=https")


def test_wrong_sync_password_stays_offline(cloud, pull_token):
    device_id, name, cr, sync_token, _ = connected_registry_setup(cloud)
    cs = connection_string(name, sync_token.name, "not-the-password", cr.parent.sync_properties.gateway_endpoint)
    cloud.deploy(device_id, manifest(cloud, pull_token=pull_token, connection_string=cs))
    offline, detail = status_detail(cloud, name, "UNAUTHORIZED")
    assert offline.connection_state == "Offline" and offline.activation.status == "Inactive"
    assert "password" in detail.description
    wait_for(lambda: module_status(cloud, device_id, "connectedRegistry").get("runtimeStatus") == "backoff",
             what="the module in backoff")


def test_wrong_host_stays_offline(cloud, pull_token):
    device_id, name, _, sync_token, password = connected_registry_setup(cloud)
    cs = connection_string(name, sync_token.name, password, "127.0.0.1:1")
    cloud.deploy(device_id, manifest(cloud, pull_token=pull_token, connection_string=cs))
    wait_for(lambda: "Could not connect to the parent gateway 127.0.0.1:1" in
             module_status(cloud, device_id, "connectedRegistry").get("statusDescription", ""),
             what="the unreachable parent in the module status")
    assert cloud.get_connected_registry(name).connection_state == "Offline"


def test_disabled_data_endpoint_leads_to_offline(fast_sandbox, pull_token):
    cloud = make_cloud(fast_sandbox)
    cloud.import_images(MODULE_IMAGES | {"hello-world": "latest"})
    scope = cloud.scope_map("edgemodules", [f"repositories/{r}/content/read" for r in MODULE_IMAGES])
    token, token_password = cloud.token("edgemodules", scope)
    device_id, name, cr, sync_token, password = connected_registry_setup(cloud)
    gateway = cr.parent.sync_properties.gateway_endpoint
    cloud.acr.registries.begin_update(cloud.rg, cloud.registry.name,
                                      acr.RegistryUpdateParameters(data_endpoint_enabled=False)).result()
    cloud.deploy(device_id, manifest(cloud, pull_token=(token.name, token_password),
                                     connection_string=connection_string(name, sync_token.name, password, gateway)))
    offline, detail = status_detail(cloud, name, "DATA_ENDPOINT_DISABLED")
    assert offline.connection_state == "Offline" and "disabled" in detail.description


def test_image_never_imported_puts_its_module_in_backoff(cloud, pull_token):
    device_id = unique("edge")
    provision(cloud.status, cloud.edge_device(device_id))
    missing = MODULE_IMAGES | {"azureiotedge-api-proxy": "9.9.9"}
    cloud.deploy(device_id, manifest(cloud, pull_token=pull_token, connection_string=None, images=missing))
    reported = wait_for(lambda: (lambda r: r if r.get("lastDesiredStatus", {}).get("code") == 500 else None)(
        cloud.edge_agent_reported(device_id)), what="lastDesiredStatus 500")
    proxy = reported["modules"]["IoTEdgeAPIProxy"]
    assert proxy["runtimeStatus"] == "backoff"
    assert "azureiotedge-api-proxy:9.9.9" in proxy["statusDescription"] and "manifest_unknown" in \
        proxy["statusDescription"]
    assert reported["systemModules"]["edgeHub"]["runtimeStatus"] == "running"


@pytest.mark.parametrize(("schema", "code"), [("9.0", 412), (None, 400)])
def test_agent_refuses_bad_deployments(cloud, pull_token, schema, code):
    device_id = unique("edge")
    provision(cloud.status, cloud.edge_device(device_id))
    content = manifest(cloud, pull_token=pull_token, connection_string=None)
    if schema is None:
        del content["$edgeAgent"]["properties.desired"]["systemModules"]["edgeHub"]["settings"]["image"]
    else:
        content["$edgeAgent"]["properties.desired"]["schemaVersion"] = schema
    cloud.deploy(device_id, content)
    status = wait_for(lambda: (lambda s: s if s and s.get("code") != 417 else None)(
        cloud.edge_agent_reported(device_id).get("lastDesiredStatus")), what="the refusal")
    assert status["code"] == code


def test_second_activation_gets_already_activated(cloud, pull_token):
    device_id, name, connection = deploy_connected_registry(cloud, pull_token, "ReadOnly")
    wait_online(cloud, name)
    second = unique("edge")
    provision(cloud.status, cloud.edge_device(second))
    cloud.deploy(second, manifest(cloud, pull_token=pull_token, connection_string=connection))
    active, _ = status_detail(cloud, name, "ALREADY_ACTIVATED")
    # The first instance keeps serving.
    assert active.activation.status == "Active" and active.connection_state in ("Online", "Syncing")
    wait_for(lambda: "ALREADY_ACTIVATED" in module_status(cloud, second, "connectedRegistry").get(
        "statusDescription", ""), what="ALREADY_ACTIVATED on the second device")
    # After deactivation the first instance stops, and the second may activate.
    cloud.acr.connected_registries.begin_deactivate(cloud.rg, cloud.registry.name, name).result()
    wait_for(lambda: "DEACTIVATED" in module_status(cloud, device_id, "connectedRegistry").get(
        "statusDescription", ""), what="the first instance to stop")
    wait_online(cloud, name)


def test_rotated_sync_password_never_redeployed_goes_offline(cloud, pull_token):
    _, name, _ = deploy_connected_registry(cloud, pull_token, "ReadOnly")
    wait_online(cloud, name)
    sync_token = cloud.acr.tokens.get(cloud.rg, cloud.registry.name, name)
    cloud.password(sync_token, "password1")  # rotate, but do not redeploy
    offline, detail = status_detail(cloud, name, "SYNC_FAILED", "Offline")
    assert offline.connection_state == "Offline" and "regenerated" in detail.description


def test_client_tokens_take_effect_at_the_next_sync(cloud, pull_token):
    device_id, name, _ = deploy_connected_registry(cloud, pull_token, "ReadOnly")
    wait_online(cloud, name)
    wait_for(lambda: cloud.get_connected_registry(name).parent.sync_properties.last_sync_time, what="a sync")
    reader, password = client_token(cloud, ["repositories/hello-world/content/read"])
    cloud.acr.connected_registries.begin_update(cloud.rg, cloud.registry.name, name, acr.ConnectedRegistryUpdateParameters(
        client_token_ids=[reader.id])).result()
    wait_fresh_sync(cloud, name)
    host, ca = device_address(cloud.status, device_id)
    assert dxf_client(host, "hello-world", ca, reader.name, password).get_digest("latest")


def test_log_level_takes_effect_at_the_next_sync(cloud, pull_token):
    device_id, name, _ = deploy_connected_registry(cloud, pull_token, "ReadOnly")
    wait_online(cloud, name)

    def applied_level():
        device = next(d for d in control.edge_devices(cloud.status) if d["deviceId"] == device_id)
        return device["connectedRegistries"]["connectedRegistry"]["logLevel"]

    def last_sync():
        return cloud.get_connected_registry(name).parent.sync_properties.last_sync_time

    assert wait_for(applied_level, what="the applied log level") == "Information"
    before = wait_for(last_sync, what="a first sync")
    cloud.acr.connected_registries.begin_update(cloud.rg, cloud.registry.name, name, acr.ConnectedRegistryUpdateParameters(
        logging=acr.LoggingProperties(log_level="Debug"))).result()
    wait_for(lambda: applied_level() == "Debug", what="Debug after the next sync")
    # It took a sync to apply it: the one that read it completes after the last one seen before.
    wait_for(lambda: last_sync() > before, what="that sync to complete")


def _digest_or_none(host, ca, user, password):
    try:
        return dxf_client(host, "hello-world", ca, user, password).get_digest("latest")
    except Exception:
        return None
