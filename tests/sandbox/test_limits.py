"""The count limits Microsoft documents for connected registries and IoT Hub configurations, as the
sandbox enforces them (docs/sandbox.md, "Documented limits").

- 50 connected registries per registry and 50 clients (clientTokenIds) per connected registry:
  "What is a connected registry?", Current limitations.
- 100 configurations (automatic device and module configurations and IoT Edge deployments) per
  basic or standard IoT hub: "IoT Hub quotas and throttling", Other limits; refused with 413
  ConfigurationCountLimitExceeded ("Troubleshoot Azure IoT Hub error codes").

Resources are made with raw ARM PUTs (and the IoT Hub service SDK), and each test deletes the
registry or hub it made.
"""

from __future__ import annotations

import uuid

import pytest
from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager
from azure.iot.hub.models import Configuration, ConfigurationContent
from azure.mgmt.iothub import IotHubClient
from azure.mgmt.iothub.models import IotHubDescription, IotHubSkuInfo
from msrest.exceptions import HttpOperationError
from testkit import wait_for

from crlib.sandbox.arm_containerregistry import connected
from crlib.sandbox.iothub_service import configurations

ACR_API = "2025-11-01"
GROUP_API = "2024-03-01"


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:10]


def test_the_limits_are_the_documented_numbers():
    assert connected.MAX_CONNECTED_REGISTRIES == 50
    assert connected.MAX_CLIENT_TOKENS == 50
    assert configurations.MAX_CONFIGURATIONS == 100
    assert configurations.MAX_CONFIGURATIONS_FREE == 10


# -- connected registries --------------------------------------------------------------------
@pytest.fixture(scope="module")
def premium(arm):
    """A Premium registry with its data endpoint and a sync token, deleted afterwards."""
    group = unique("rglim")
    response = arm.request("PUT", f"/subscriptions/{{sub}}/resourcegroups/{group}", GROUP_API,
                           json={"location": "westus"})
    assert response.status_code == 201, response.text
    path = (f"/subscriptions/{{sub}}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries/"
            f"{unique('crlim')}")
    response = arm.request("PUT", path, ACR_API, json={"location": "westus", "sku": {"name": "Premium"},
                                                       "properties": {"dataEndpointEnabled": True}})
    assert response.status_code in (200, 201), response.text
    registry_id = response.json()["id"]
    sync = put_token(arm, path, registry_id)
    yield {"path": path, "id": registry_id, "sync": sync}
    assert arm.request("DELETE", path, ACR_API).status_code in (200, 202, 204)
    wait_for(lambda: arm.request("GET", path, ACR_API).status_code == 404, what="the registry's deletion")


def put_token(arm, registry_path: str, registry_id: str) -> str:
    response = arm.request("PUT", f"{registry_path}/tokens/{unique('tok')}", ACR_API, json={
        "properties": {"scopeMapId": f"{registry_id}/scopeMaps/_repositories_pull"}})
    assert response.status_code in (200, 201), response.text
    return response.json()["id"]


def connected_body(sync_token: str, client_tokens: list[str] | None = None) -> dict:
    props = {"mode": "ReadOnly", "parent": {"syncProperties": {"tokenId": sync_token, "messageTtl": "P2D"}}}
    if client_tokens is not None:
        props["clientTokenIds"] = client_tokens
    return {"properties": props}


def listed(arm, premium) -> list[str]:
    response = arm.request("GET", f"{premium['path']}/connectedRegistries", ACR_API)
    assert response.status_code == 200, response.text
    return [c["name"] for c in response.json()["value"]]


def test_clients_per_connected_registry_are_limited_to_50(arm, premium):
    tokens = [put_token(arm, premium["path"], premium["id"]) for _ in range(connected.MAX_CLIENT_TOKENS + 1)]
    path = f"{premium['path']}/connectedRegistries/{unique('clients')}"

    refused = arm.request("PUT", path, ACR_API, json=connected_body(premium["sync"], tokens))
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == connected.CLIENT_TOKEN_LIMIT_CODE and "limited to 50" in error["message"]
    assert arm.request("GET", path, ACR_API).status_code == 404

    created = arm.request("PUT", path, ACR_API, json=connected_body(premium["sync"], tokens[:50]))
    assert created.status_code == 201, created.text
    assert len(created.json()["properties"]["clientTokenIds"]) == 50
    # A repeated id counts as given.
    again = arm.request("PUT", path, ACR_API, json=connected_body(premium["sync"], tokens[:50] + tokens[:1]))
    assert again.status_code == 400 and again.json()["error"]["code"] == connected.CLIENT_TOKEN_LIMIT_CODE

    patched = arm.request("PATCH", path, ACR_API, json={"properties": {"clientTokenIds": tokens}})
    assert patched.status_code == 400 and patched.json()["error"]["code"] == connected.CLIENT_TOKEN_LIMIT_CODE
    kept = arm.request("GET", path, ACR_API).json()["properties"]["clientTokenIds"]
    assert [t.lower() for t in kept] == [t.lower() for t in tokens[:50]]

    assert arm.request("DELETE", path, ACR_API).status_code in (200, 202, 204)
    wait_for(lambda: arm.request("GET", path, ACR_API).status_code == 404, what="the connected registry's deletion")


def test_connected_registries_per_registry_are_limited_to_50(arm, premium):
    existing = len(listed(arm, premium))
    names = [unique("edge") for _ in range(connected.MAX_CONNECTED_REGISTRIES - existing)]
    for name in names:
        response = arm.request("PUT", f"{premium['path']}/connectedRegistries/{name}", ACR_API,
                               json=connected_body(premium["sync"]))
        assert response.status_code == 201, response.text
    assert len(listed(arm, premium)) == connected.MAX_CONNECTED_REGISTRIES

    extra = f"{premium['path']}/connectedRegistries/{unique('extra')}"
    refused = arm.request("PUT", extra, ACR_API, json=connected_body(premium["sync"]))
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == connected.CONNECTED_REGISTRY_LIMIT_CODE and "limited to 50" in error["message"]
    assert arm.request("GET", extra, ACR_API).status_code == 404
    assert len(listed(arm, premium)) == connected.MAX_CONNECTED_REGISTRIES

    # At the limit, the existing ones still update, by PUT and by PATCH.
    first = f"{premium['path']}/connectedRegistries/{names[0]}"
    client = put_token(arm, premium["path"], premium["id"])
    updated = arm.request("PUT", first, ACR_API, json=connected_body(premium["sync"], [client]))
    assert updated.status_code == 200, updated.text
    patched = arm.request("PATCH", first, ACR_API, json={"properties": {"logging": {"logLevel": "Debug"}}})
    assert patched.status_code == 200, patched.text

    # Once one is gone, another fits.
    assert arm.request("DELETE", first, ACR_API).status_code in (200, 202, 204)
    wait_for(lambda: arm.request("GET", first, ACR_API).status_code == 404, what="the connected registry's deletion")
    assert arm.request("PUT", extra, ACR_API, json=connected_body(premium["sync"])).status_code == 201


# -- IoT Hub configurations -------------------------------------------------------------------
@pytest.fixture(scope="module")
def hub(arm, credential, sandbox):
    """An S1 hub's owner connection string; the hub and its group are deleted afterwards."""
    group = unique("rglimhub")
    response = arm.request("PUT", f"/subscriptions/{{sub}}/resourcegroups/{group}", GROUP_API,
                           json={"location": "westus"})
    assert response.status_code == 201, response.text
    mgmt = IotHubClient(credential, sandbox["subscription_id"], base_url=sandbox["arm_endpoint"],
                        connection_verify=sandbox["ca_bundle"])
    name = unique("hublim")
    description = mgmt.iot_hub_resource.begin_create_or_update(
        group, name, IotHubDescription(location="westus", sku=IotHubSkuInfo(name="S1", capacity=1))).result()
    key = next(k.primary_key for k in mgmt.iot_hub_resource.list_keys(group, name) if k.key_name == "iothubowner")
    yield f"HostName={description.properties.host_name};SharedAccessKeyName=iothubowner;SharedAccessKey={key}"
    mgmt.iot_hub_resource.begin_delete(group, name).result()


def service(cls, connection_string: str, ca_bundle: str):
    client = cls.from_connection_string(connection_string)
    client.protocol.config.connection.verify = ca_bundle  # msrest's documented CA setting
    return client


def manifest(marker: str) -> dict:
    return {"$edgeAgent": {"properties.desired": {"schemaVersion": "1.1", "runtime": {"type": "docker"},
                                                  "modules": {"marker": {"version": marker}}}},
            "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {}}}}


def test_configurations_per_hub_are_limited_to_100(hub, sandbox):
    configs = service(IoTHubConfigurationManager, hub, sandbox["ca_bundle"])
    registry = service(IoTHubRegistryManager, hub, sandbox["ca_bundle"])
    limit = configurations.MAX_CONFIGURATIONS
    # Deployments and automatic device configurations count together.
    for i in range(limit):
        content = (ConfigurationContent(modules_content=manifest(str(i))) if i % 2 else
                   ConfigurationContent(device_content={"properties.desired.limit": {"n": i}}))
        configs.create_configuration(Configuration(id=f"limit-{i}", target_condition="tags.limit='yes'",
                                                   priority=1, content=content))

    with pytest.raises(HttpOperationError) as refused:
        configs.create_configuration(Configuration(id="limit-extra", target_condition="tags.limit='yes'",
                                                   content=ConfigurationContent(modules_content=manifest("x"))))
    response = refused.value.response
    assert response.status_code == 413
    assert response.headers["iothub-errorcode"] == "ConfigurationCountLimitExceeded"
    with pytest.raises(HttpOperationError) as missing:
        configs.get_configuration("limit-extra")
    assert missing.value.response.status_code == 404

    # An existing configuration still updates, and content applied to one device is no configuration.
    first = configs.get_configuration("limit-1")
    first.priority = 5
    assert configs.update_configuration(first, first.etag).priority == 5
    device_id = unique("edge")
    registry.create_device_with_sas(device_id, "", "", "enabled", iot_edge=True)
    configs.apply_configuration_on_edge_device(device_id, ConfigurationContent(modules_content=manifest("one")))

    # Once one is deleted, another fits.
    configs.delete_configuration("limit-0")
    configs.create_configuration(Configuration(id="limit-extra", target_condition="tags.limit='yes'",
                                               content=ConfigurationContent(modules_content=manifest("x"))))
