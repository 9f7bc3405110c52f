"""IoT hubs through azure-mgmt-iothub 4, and each hub's service API through azure-iot-hub 2.7:
devices, modules, twins, edge configuration content, configurations, queries, SAS checks, and
disableLocalAuth with Microsoft Entra ID tokens.

azure-iot-hub is msrest-based and takes no CA argument; its documented msrest setting
`protocol.config.connection.verify` points it at the sandbox CA (see `service_client`). The
device-side calls (a device's own SAS token on its twin) have no SDK here, so they use requests
with a token from the SDK's own SasToken.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager
from azure.iot.hub.models import (
    Configuration,
    ConfigurationContent,
    ConfigurationMetrics,
    QuerySpecification,
    Twin,
    TwinProperties,
)
from azure.iot.hub.sastoken import SasToken
from azure.mgmt.iothub import IotHubClient
from azure.mgmt.iothub.models import (
    IotHubDescription,
    IotHubProperties,
    IotHubSkuInfo,
    OperationInputs,
    TagsResource,
)
from msrest.exceptions import ClientRequestError, HttpOperationError

from crlib.sandbox import control

SDK_API = "2021-04-12"  # what azure-iot-hub 2.7 sends
RIGHTS = {"iothubowner": "RegistryWrite, ServiceConnect, DeviceConnect", "service": "ServiceConnect",
          "device": "DeviceConnect", "registryRead": "RegistryRead", "registryReadWrite": "RegistryWrite"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def iot_hub_client(credential, status: dict) -> IotHubClient:
    return IotHubClient(credential, status["subscription_id"], base_url=status["arm_endpoint"],
                        connection_verify=status["ca_bundle"])


def make_group(arm) -> str:
    name = unique("rg-iot")
    response = arm.request("PUT", f"/subscriptions/{{sub}}/resourcegroups/{name}", api_version="2024-03-01",
                           json={"location": "westus"})
    assert response.status_code == 201, response.text
    return name


def create_hub(mgmt: IotHubClient, rg: str, name: str | None = None, **kwargs) -> IotHubDescription:
    description = IotHubDescription(location="westus", sku=IotHubSkuInfo(name="S1", capacity=1))
    return mgmt.iot_hub_resource.begin_create_or_update(rg, name or unique("hub"), description, **kwargs).result()


@dataclass
class Hub:
    rg: str
    name: str
    host: str
    keys: dict[str, str]  # policy name -> primary key

    def connection_string(self, policy: str = "iothubowner", key: str | None = None) -> str:
        return f"HostName={self.host};SharedAccessKeyName={policy};SharedAccessKey={key or self.keys[policy]}"


def hub_of(mgmt: IotHubClient, rg: str, description: IotHubDescription) -> Hub:
    keys = {k.key_name: k.primary_key for k in mgmt.iot_hub_resource.list_keys(rg, description.name)}
    return Hub(rg, description.name, description.properties.host_name, keys)


@pytest.fixture(scope="module")
def mgmt(credential, sandbox) -> IotHubClient:
    return iot_hub_client(credential, sandbox)


@pytest.fixture(scope="module")
def hub(mgmt, arm) -> Hub:
    rg = make_group(arm)
    return hub_of(mgmt, rg, create_hub(mgmt, rg))


def service_client(cls, hub: Hub, ca_bundle: str, policy: str = "iothubowner", key: str | None = None):
    client = cls.from_connection_string(hub.connection_string(policy, key))
    # azure-iot-hub has no CA argument; msrest's documented connection setting takes the bundle.
    client.protocol.config.connection.verify = ca_bundle
    return client


@pytest.fixture
def registry(hub, sandbox) -> IoTHubRegistryManager:
    return service_client(IoTHubRegistryManager, hub, sandbox["ca_bundle"])


@pytest.fixture
def configs(hub, sandbox) -> IoTHubConfigurationManager:
    return service_client(IoTHubConfigurationManager, hub, sandbox["ca_bundle"])


def refused(operation, *args) -> requests.Response:
    """The HTTP response of a service call the hub refuses."""
    with pytest.raises(HttpOperationError) as err:
        operation(*args)
    return err.value.response


def error_code(response: requests.Response) -> str:
    return response.headers.get("iothub-errorcode", "")


def raw(hub: Hub, ca_bundle: str, method: str, path: str, token: str, *, api_version: str = SDK_API,
        **kwargs) -> requests.Response:
    """A request with a token of the test's making, for what no installed SDK sends."""
    session = requests.Session()
    session.trust_env = False  # the machine's REQUESTS_CA_BUNDLE would replace the sandbox CA
    return session.request(method, f"https://{hub.host}{path}", params={"api-version": api_version},
                           headers={"Authorization": token}, verify=ca_bundle, **kwargs)


def edge_manifest(marker: str) -> dict:
    return {
        "$edgeAgent": {"properties.desired": {"schemaVersion": "1.1", "runtime": {"type": "docker"},
                                              "modules": {"registry": {"version": marker}}}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {"up": "FROM /* INTO $upstream"}}},
        "registry": {"properties.desired": {"marker": marker}},
    }


# -- Microsoft.Devices ------------------------------------------------------------------------
def test_hub_create_is_long_running_and_gets_a_reachable_host(mgmt, arm, sandbox):
    rg, name = make_group(arm), unique("hub")
    responses = []
    hub = create_hub(mgmt, rg, name, raw_response_hook=lambda r: responses.append(r.http_response))
    first = responses[0]
    assert first.status_code == 201 and "Azure-AsyncOperation" in first.headers
    assert first.json()["properties"]["provisioningState"] == "Accepted"
    assert first.json()["properties"]["state"] == "Activating"
    assert hub.properties.provisioning_state == "Succeeded" and hub.properties.state == "Active"
    assert hub.properties.host_name.startswith("127.0.0.1:")
    assert (hub.sku.name, hub.sku.tier, hub.sku.capacity) == ("S1", "Standard", 1)
    events = hub.properties.event_hub_endpoints["events"]
    assert events.partition_count == 4 and events.partition_ids == ["0", "1", "2", "3"]
    assert hub.properties.authorization_policies is None  # keys only through listkeys

    assert mgmt.iot_hub_resource.get(rg, name).etag == hub.etag
    assert [h.name for h in mgmt.iot_hub_resource.list_by_resource_group(rg)] == [name]
    assert name in {h.name for h in mgmt.iot_hub_resource.list_by_subscription()}
    registry = service_client(IoTHubRegistryManager, hub_of(mgmt, rg, hub), sandbox["ca_bundle"])
    assert registry.get_devices() == []


def test_listkeys_and_get_keys_for_key_name(mgmt, hub):
    rules = {r.key_name: r for r in mgmt.iot_hub_resource.list_keys(hub.rg, hub.name)}
    assert {name: r.rights for name, r in rules.items()} == RIGHTS
    for rule in rules.values():
        assert len(base64.b64decode(rule.primary_key)) == 32 and len(base64.b64decode(rule.secondary_key)) == 32
        assert rule.primary_key != rule.secondary_key
    service = mgmt.iot_hub_resource.get_keys_for_key_name(hub.rg, hub.name, "service")
    assert (service.primary_key, service.secondary_key) == (rules["service"].primary_key,
                                                           rules["service"].secondary_key)
    with pytest.raises(ResourceNotFoundError):
        mgmt.iot_hub_resource.get_keys_for_key_name(hub.rg, hub.name, "nobody")


def test_hub_names_are_checked_and_unique(mgmt, arm, hub):
    taken = mgmt.iot_hub_resource.check_name_availability(OperationInputs(name=hub.name))
    assert (taken.name_available, taken.reason) == (False, "AlreadyExists")
    invalid = mgmt.iot_hub_resource.check_name_availability(OperationInputs(name="-starts-with-hyphen"))
    assert (invalid.name_available, invalid.reason) == (False, "Invalid")
    assert mgmt.iot_hub_resource.check_name_availability(OperationInputs(name=unique("free"))).name_available

    other_rg = make_group(arm)
    with pytest.raises(HttpResponseError) as err:
        create_hub(mgmt, other_rg, hub.name)
    assert err.value.status_code == 409 and err.value.error.code == "IotHubNameNotAvailable"
    with pytest.raises(HttpResponseError) as err:
        create_hub(mgmt, other_rg, "x")
    assert err.value.status_code == 400 and err.value.error.code == "InvalidIotHubName"


def test_hub_tags_update_and_delete(mgmt, arm, sandbox):
    rg = make_group(arm)
    hub = hub_of(mgmt, rg, create_hub(mgmt, rg))
    updated = mgmt.iot_hub_resource.begin_update(rg, hub.name, TagsResource(tags={"env": "dev"})).result()
    assert updated.tags == {"env": "dev"} and updated.properties.provisioning_state == "Succeeded"
    assert mgmt.iot_hub_resource.get(rg, hub.name).tags == {"env": "dev"}

    mgmt.iot_hub_resource.begin_delete(rg, hub.name).result()
    with pytest.raises(ResourceNotFoundError) as err:
        mgmt.iot_hub_resource.get(rg, hub.name)
    assert err.value.error.code == "IotHubNotFound"
    registry = service_client(IoTHubRegistryManager, hub, sandbox["ca_bundle"])
    with pytest.raises(ClientRequestError):  # the hub's port is closed
        registry.get_devices()


def test_hub_keeps_its_host_across_a_restart(tmp_path):
    state_dir = tmp_path / "sb"
    try:
        status = control.start(state_dir)
        credential = ClientSecretCredential(status["tenant_id"], status["client_id"], status["client_secret"],
                                            authority=status["authority"], disable_instance_discovery=True,
                                            connection_verify=status["ca_bundle"])
        mgmt = iot_hub_client(credential, status)
        token = credential.get_token("https://management.azure.com/.default").token
        group = requests.put(f"{status['arm_endpoint']}/subscriptions/{status['subscription_id']}/resourcegroups/rg",
                             params={"api-version": "2024-03-01"}, json={"location": "westus"},
                             headers={"Authorization": f"Bearer {token}"}, verify=status["ca_bundle"])
        assert group.status_code == 201, group.text
        hub = hub_of(mgmt, "rg", create_hub(mgmt, "rg"))
        service_client(IoTHubRegistryManager, hub, status["ca_bundle"]).create_device_with_sas(
            "survivor", "", "", "enabled")
        control.stop(state_dir)
        status = control.start(state_dir)
        assert mgmt.iot_hub_resource.get("rg", hub.name).properties.host_name == hub.host
        registry = service_client(IoTHubRegistryManager, hub, status["ca_bundle"])
        assert registry.get_device("survivor").device_id == "survivor"
    finally:
        control.stop(state_dir)


# -- devices and modules ----------------------------------------------------------------------
def test_edge_device_gets_keys_and_system_modules(registry):
    device_id = unique("edge")
    device = registry.create_device_with_sas(device_id, "", "", "enabled", iot_edge=True)
    keys = device.authentication.symmetric_key
    assert device.authentication.type == "sas" and keys.primary_key != keys.secondary_key
    assert len(base64.b64decode(keys.primary_key)) == 32
    assert device.capabilities.iot_edge is True and device.connection_state == "Disconnected"
    assert device.status == "enabled" and device.generation_id.isdigit() and device.etag
    assert registry.get_device(device_id).etag == device.etag

    modules = {m.module_id: m for m in registry.get_modules(device_id)}
    assert set(modules) == {"$edgeAgent", "$edgeHub"}
    assert registry.get_module(device_id, "$edgeAgent").authentication.type == "sas"
    assert registry.get_module_twin(device_id, "$edgeHub").module_id == "$edgeHub"

    leaf_id = unique("leaf")
    registry.create_device_with_sas(leaf_id, "", "", "enabled")
    assert registry.get_modules(leaf_id) == []


def test_device_writes_check_existence_and_etags(registry):
    device_id = unique("dev")
    device = registry.create_device_with_sas(device_id, "", "", "enabled")
    again = refused(registry.create_device_with_sas, device_id, "", "", "enabled")
    assert again.status_code == 409 and error_code(again) == "DeviceAlreadyExists"
    assert again.json()["Message"].startswith("ErrorCode:DeviceAlreadyExists;")
    keys = device.authentication.symmetric_key
    stale = refused(registry.update_device_with_sas, device_id, "c3RhbGU=", keys.primary_key, keys.secondary_key,
                    "disabled")
    assert stale.status_code == 412 and error_code(stale) == "PreconditionFailed"

    updated = registry.update_device_with_sas(device_id, device.etag, keys.primary_key, keys.secondary_key,
                                              "disabled")
    assert updated.status == "disabled" and updated.etag != device.etag
    assert updated.authentication.symmetric_key.primary_key == keys.primary_key
    missing = refused(registry.get_device, unique("nobody"))
    assert missing.status_code == 404 and error_code(missing) == "DeviceNotFound"


def test_device_ids_are_case_sensitive(registry):
    upper = unique("Case").upper()
    lower = upper.lower()
    first = registry.create_device_with_sas(upper, "", "", "enabled")
    second = registry.create_device_with_sas(lower, "", "", "disabled")
    assert registry.get_device(upper).status == "enabled" and registry.get_device(lower).status == "disabled"
    assert first.authentication.symmetric_key.primary_key != second.authentication.symmetric_key.primary_key


def test_delete_device_takes_its_modules(registry):
    device_id = unique("edge")
    device = registry.create_device_with_sas(device_id, "", "", "enabled", iot_edge=True)
    stale = refused(registry.delete_device, device_id, "c3RhbGU=")
    assert stale.status_code == 412
    registry.delete_device(device_id, device.etag)
    assert error_code(refused(registry.get_device, device_id)) == "DeviceNotFound"
    assert error_code(refused(registry.get_module_twin, device_id, "$edgeAgent")) == "DeviceNotFound"
    assert error_code(refused(registry.delete_device, device_id)) == "DeviceNotFound"


# -- twins ------------------------------------------------------------------------------------
def test_twin_patch_merges_and_replace_replaces(registry):
    device_id = unique("dev")
    registry.create_device_with_sas(device_id, "", "", "enabled")
    twin = registry.get_twin(device_id)
    assert twin.properties.desired == {"$metadata": twin.properties.desired["$metadata"], "$version": 1}

    patch = Twin(tags={"environment": "prod"}, properties=TwinProperties(desired={"telemetry": {"interval": 5}}))
    patched = registry.update_twin(device_id, patch, twin.etag)
    assert patched.tags == {"environment": "prod"} and patched.properties.desired["telemetry"] == {"interval": 5}
    assert patched.properties.desired["$version"] == 2 and patched.version == twin.version + 1
    assert patched.properties.desired["$metadata"]["telemetry"]["interval"]["$lastUpdatedVersion"] == 2

    merged = registry.update_twin(device_id, Twin(properties=TwinProperties(
        desired={"telemetry": {"interval": None, "unit": "s"}})))
    assert merged.properties.desired["telemetry"] == {"unit": "s"}
    stale = refused(registry.update_twin, device_id, Twin(tags={"x": "y"}), twin.etag)
    assert stale.status_code == 412 and error_code(stale) == "PreconditionFailed"
    bad_name = refused(registry.update_twin, device_id, Twin(tags={"a.b": "c"}))
    assert bad_name.status_code == 400 and error_code(bad_name) == "ArgumentInvalid"

    replaced = registry.replace_twin(device_id, Twin(tags={"site": "lab"},
                                                     properties=TwinProperties(desired={"mode": "on"})))
    assert replaced.tags == {"site": "lab"}
    assert {k: v for k, v in replaced.properties.desired.items() if not k.startswith("$")} == {"mode": "on"}
    assert replaced.properties.desired["$version"] == 4


def test_module_twin_update(registry):
    device_id, module_id = unique("dev"), unique("mod")
    registry.create_device_with_sas(device_id, "", "", "enabled")
    module = registry.create_module_with_sas(device_id, module_id, None, "", "")
    assert module.module_id == module_id and module.authentication.symmetric_key.primary_key
    twin = registry.update_module_twin(device_id, module_id,
                                       Twin(properties=TwinProperties(desired={"level": 3})), "*")
    assert twin.module_id == module_id and twin.properties.desired["level"] == 3
    assert registry.get_module_twin(device_id, module_id).properties.desired["$version"] == 2
    missing = refused(registry.get_module_twin, device_id, "nothere")
    assert missing.status_code == 404 and error_code(missing) == "ModuleNotFound"


# -- IoT Edge configuration content -----------------------------------------------------------
def test_apply_configuration_on_edge_device_sets_module_twins(registry, configs):
    device_id = unique("edge")
    registry.create_device_with_sas(device_id, "", "", "enabled", iot_edge=True)
    manifest = edge_manifest("one")
    configs.apply_configuration_on_edge_device(device_id, ConfigurationContent(modules_content=manifest))

    for module_id, content in manifest.items():
        desired = registry.get_module_twin(device_id, module_id).properties.desired
        assert {k: v for k, v in desired.items() if not k.startswith("$")} == content["properties.desired"]
        assert desired["$version"] == 2
    assert registry.get_module(device_id, "registry").managed_by == "IotEdge"

    configs.apply_configuration_on_edge_device(device_id, ConfigurationContent(modules_content=edge_manifest("two")))
    agent = registry.get_module_twin(device_id, "$edgeAgent").properties.desired
    assert agent["modules"] == {"registry": {"version": "two"}} and agent["$version"] == 3


def test_apply_configuration_refuses_leaf_devices_and_partial_manifests(registry, configs):
    leaf_id, edge_id = unique("leaf"), unique("edge")
    registry.create_device_with_sas(leaf_id, "", "", "enabled")
    registry.create_device_with_sas(edge_id, "", "", "enabled", iot_edge=True)
    content = ConfigurationContent(modules_content=edge_manifest("x"))
    leaf = refused(configs.apply_configuration_on_edge_device, leaf_id, content)
    assert leaf.status_code == 400 and error_code(leaf) == "ArgumentInvalid"
    partial = {k: v for k, v in edge_manifest("x").items() if k != "$edgeHub"}
    incomplete = refused(configs.apply_configuration_on_edge_device, edge_id,
                         ConfigurationContent(modules_content=partial))
    assert incomplete.status_code == 400 and "$edgeHub" in incomplete.json()["Message"]


# -- configurations and queries ---------------------------------------------------------------
def deployment(config_id: str, environment: str, marker: str, priority: int = 10) -> Configuration:
    return Configuration(
        id=config_id, target_condition=f"tags.environment='{environment}'", priority=priority,
        labels={"purpose": "test"}, content=ConfigurationContent(modules_content=edge_manifest(marker)),
        metrics=ConfigurationMetrics(queries={
            "reporting": "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' "
                         "AND properties.reported.seen = true"}),
    )


def test_configuration_lifecycle_with_etags(registry, configs):
    environment, config_id = unique("env"), unique("deploy")
    targeted, untouched = unique("edge"), unique("edge")
    for device_id in (targeted, untouched):
        registry.create_device_with_sas(device_id, "", "", "enabled", iot_edge=True)
    registry.update_twin(targeted, Twin(tags={"environment": environment}))

    created = configs.create_configuration(deployment(config_id, environment, "deployed"))
    assert created.etag and created.priority == 10 and created.labels == {"purpose": "test"}
    assert created.system_metrics.results == {"targetedCount": 1, "appliedCount": 1, "reportedSuccessfulCount": 0,
                                              "reportedFailedCount": 0}
    assert created.metrics.results == {"reporting": 0}
    agent = registry.get_module_twin(targeted, "$edgeAgent").properties.desired
    assert agent["modules"] == {"registry": {"version": "deployed"}}
    assert "modules" not in registry.get_module_twin(untouched, "$edgeAgent").properties.desired

    again = refused(configs.create_configuration, deployment(config_id, environment, "deployed"))
    assert again.status_code == 409
    changed = deployment(config_id, environment, "deployed", priority=20)
    stale = refused(configs.update_configuration, changed, "c3RhbGU=")
    assert stale.status_code == 412 and error_code(stale) == "PreconditionFailed"
    updated = configs.update_configuration(changed, created.etag)
    assert updated.priority == 20 and updated.etag != created.etag
    new_content = refused(configs.update_configuration, deployment(config_id, environment, "other"), updated.etag)
    assert new_content.status_code == 400
    assert configs.get_configuration(config_id).priority == 20
    assert config_id in {c.id for c in configs.get_configurations()}

    assert refused(configs.delete_configuration, config_id, created.etag).status_code == 412
    configs.delete_configuration(config_id, updated.etag)
    gone = refused(configs.get_configuration, config_id)
    assert gone.status_code == 404 and error_code(gone) == "ConfigurationNotFound"


def test_device_and_module_configurations_apply_by_priority(registry, configs):
    tag, device_id, module_id = unique("site"), unique("dev"), unique("mod")
    registry.create_device_with_sas(device_id, "", "", "enabled")
    registry.create_module_with_sas(device_id, module_id, None, "", "")
    registry.update_twin(device_id, Twin(tags={"site": tag}))
    registry.update_module_twin(device_id, module_id, Twin(tags={"site": tag}))
    low, high, for_modules = unique("low"), unique("high"), unique("mods")

    def device_config(config_id: str, priority: int, temperature: int) -> Configuration:
        return Configuration(id=config_id, target_condition=f"tags.site = '{tag}'", priority=priority,
                             content=ConfigurationContent(device_content={
                                 "properties.desired.chiller": {"temperature": temperature}}))

    configs.create_configuration(device_config(low, 1, 60))
    assert registry.get_twin(device_id).properties.desired["chiller"] == {"temperature": 60}
    configs.create_configuration(device_config(high, 5, 70))
    assert registry.get_twin(device_id).properties.desired["chiller"] == {"temperature": 70}
    assert configs.get_configuration(low).system_metrics.results == {"targetedCount": 1, "appliedCount": 0}
    assert configs.get_configuration(high).system_metrics.results == {"targetedCount": 1, "appliedCount": 1}

    configs.create_configuration(Configuration(
        id=for_modules, target_condition=f"FROM devices.modules WHERE tags.site = '{tag}'", priority=1,
        content=ConfigurationContent(module_content={"properties.desired.logging": {"level": "debug"}})))
    assert registry.get_module_twin(device_id, module_id).properties.desired["logging"] == {"level": "debug"}
    assert configs.get_configuration(for_modules).system_metrics.results == {"targetedCount": 1, "appliedCount": 1}


def test_deployment_metric_queries(registry, configs, hub, sandbox):
    environment, config_id, device_id = unique("env"), unique("deploy"), unique("edge")
    registry.create_device_with_sas(device_id, "", "", "enabled", iot_edge=True)
    registry.update_twin(device_id, Twin(tags={"environment": environment}))
    configs.create_configuration(deployment(config_id, environment, "metrics"))

    def device_ids(query: str) -> list[str]:
        return [t.device_id for t in registry.query_iot_hub(QuerySpecification(query=query)).items]

    applied = (f"SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND "
               f"configurations.[[{config_id}]].status = 'Applied'")
    in_sync = ("SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND "
               "properties.desired.$version = properties.reported.lastDesiredVersion")
    succeeded = f"{in_sync} AND properties.reported.lastDesiredStatus.code = 200 AND deviceId = '{device_id}'"
    failed = f"{in_sync} AND properties.reported.lastDesiredStatus.code != 200 AND deviceId = '{device_id}'"
    assert device_ids(applied) == [device_id]
    assert device_ids(succeeded) == device_ids(failed) == []

    # The edge agent reports how the deployment went, with its module identity's own token.
    agent_key = registry.get_module(device_id, "$edgeAgent").authentication.symmetric_key.primary_key
    token = str(SasToken(f"{hub.host}/devices/{device_id}/modules/$edgeAgent", agent_key))
    version = registry.get_module_twin(device_id, "$edgeAgent").properties.desired["$version"]
    for code, expected in ((200, "succeeded"), (400, "failed")):
        report = {"properties": {"reported": {"lastDesiredVersion": version, "lastDesiredStatus": {"code": code}}}}
        response = raw(hub, sandbox["ca_bundle"], "PATCH", f"/twins/{device_id}/modules/$edgeAgent", token,
                       json=report)
        assert response.status_code == 200, response.text
        assert device_ids(succeeded) == ([device_id] if expected == "succeeded" else [])
        assert device_ids(failed) == ([device_id] if expected == "failed" else [])
    metrics = configs.get_configuration(config_id).system_metrics.results
    assert (metrics["reportedSuccessfulCount"], metrics["reportedFailedCount"]) == (0, 1)

    twins = registry.query_iot_hub(QuerySpecification(query=f"SELECT * FROM devices WHERE deviceId = '{device_id}'"))
    assert twins.type == "twin" and [t.tags for t in twins.items] == [{"environment": environment}]
    edge_ids = device_ids("SELECT * FROM devices WHERE capabilities.iotEdge = true")
    assert device_id in edge_ids
    modules = registry.query_iot_hub(
        QuerySpecification(query=f"SELECT * FROM devices.modules WHERE deviceId='{device_id}'"))
    assert {t.module_id for t in modules.items} == {"$edgeAgent", "$edgeHub", "registry"}
    unsupported = refused(registry.query_iot_hub, QuerySpecification(query="SELECT COUNT() FROM devices"))
    assert unsupported.status_code == 400 and error_code(unsupported) == "ArgumentInvalid"


def test_query_conditions_select_exactly(registry):
    leaf_id, edge_id, tag = unique("leaf"), unique("edge"), unique("tag")
    registry.create_device_with_sas(leaf_id, "", "", "enabled")
    registry.create_device_with_sas(edge_id, "", "", "enabled", iot_edge=True)
    for device_id in (leaf_id, edge_id):
        registry.update_twin(device_id, Twin(tags={"batch": tag}))

    def device_ids(query: str) -> set[str]:
        return {t.device_id for t in registry.query_iot_hub(QuerySpecification(query=query)).items}

    assert device_ids(f"SELECT deviceId FROM devices WHERE tags.batch = '{tag}'") == {leaf_id, edge_id}
    assert device_ids(f"select deviceId from devices where tags.batch = '{tag}' and capabilities.iotEdge = false") \
        == {leaf_id}
    assert device_ids(f"SELECT deviceId FROM devices WHERE tags.batch = '{tag}' AND tags.missing != 'x'") == set()


# -- shared access signatures -----------------------------------------------------------------
def test_sas_signature_expiry_and_api_version_are_checked(hub, sandbox):
    wrong_key = base64.b64encode(b"0" * 32).decode()
    bad = refused(service_client(IoTHubRegistryManager, hub, sandbox["ca_bundle"], key=wrong_key).get_devices)
    assert bad.status_code == 401 and error_code(bad) == "IotHubUnauthorizedAccess"
    assert bad.json()["Message"] == "ErrorCode:IotHubUnauthorizedAccess;Unauthorized"

    expired = str(SasToken(hub.host, hub.keys["iothubowner"], "iothubowner", ttl=-60))
    assert raw(hub, sandbox["ca_bundle"], "GET", "/devices", expired).status_code == 401
    valid = str(SasToken(hub.host, hub.keys["iothubowner"], "iothubowner"))
    assert raw(hub, sandbox["ca_bundle"], "GET", "/devices", valid).status_code == 200
    for version in ("2020-03-13", "2024-03-31"):
        assert raw(hub, sandbox["ca_bundle"], "GET", "/devices", valid, api_version=version).status_code == 200
    old = raw(hub, sandbox["ca_bundle"], "GET", "/devices", valid, api_version="2018-06-30")
    assert old.status_code == 400 and error_code(old) == "InvalidProtocolVersion"
    other_hub = str(SasToken("127.0.0.1:1", hub.keys["iothubowner"], "iothubowner"))
    assert raw(hub, sandbox["ca_bundle"], "GET", "/devices", other_hub).status_code == 401


def test_policy_rights_limit_what_a_token_may_do(registry, hub, sandbox):
    device_id = unique("dev")
    registry.create_device_with_sas(device_id, "", "", "enabled")
    service = service_client(IoTHubRegistryManager, hub, sandbox["ca_bundle"], "service")
    assert service.get_twin(device_id).device_id == device_id
    write = refused(service.create_device_with_sas, unique("dev"), "", "", "enabled")
    assert write.status_code == 401 and error_code(write) == "IotHubUnauthorizedAccess"
    assert refused(service.get_device, device_id).status_code == 401

    reader = service_client(IoTHubRegistryManager, hub, sandbox["ca_bundle"], "registryRead")
    assert reader.get_device(device_id).device_id == device_id
    assert refused(reader.delete_device, device_id).status_code == 401
    assert refused(reader.get_twin, device_id).status_code == 401


def test_device_token_reaches_only_its_own_twin(registry, hub, sandbox):
    own, other = unique("dev"), unique("dev")
    key = registry.create_device_with_sas(own, "", "", "enabled").authentication.symmetric_key.primary_key
    other_key = registry.create_device_with_sas(other, "", "", "enabled").authentication.symmetric_key.primary_key
    token = str(SasToken(f"{hub.host}/devices/{own}", key))
    ca = sandbox["ca_bundle"]

    read = raw(hub, ca, "GET", f"/twins/{own}", token)
    assert read.status_code == 200 and read.json()["deviceId"] == own
    for path in (f"/twins/{other}", f"/devices/{own}", "/devices"):
        refusal = raw(hub, ca, "GET", path, token)
        assert refusal.status_code == 401 and refusal.headers["iothub-errorcode"] == "IotHubUnauthorizedAccess"

    reported = raw(hub, ca, "PATCH", f"/twins/{own}", token, json={"properties": {"reported": {"fw": "1.2"}}})
    assert reported.status_code == 200
    twin = registry.get_twin(own)
    assert twin.properties.reported["fw"] == "1.2" and twin.properties.reported["$version"] == 2
    desired = raw(hub, ca, "PATCH", f"/twins/{own}", token, json={"properties": {"desired": {"fw": "2"}}})
    assert desired.status_code == 400

    signed_by_other = str(SasToken(f"{hub.host}/devices/{own}", other_key))
    assert raw(hub, ca, "GET", f"/twins/{own}", signed_by_other).status_code == 401
    device = registry.get_device(own)
    registry.update_device_with_sas(own, device.etag, key, device.authentication.symmetric_key.secondary_key,
                                    "disabled")
    assert raw(hub, ca, "GET", f"/twins/{own}", token).status_code == 401


# -- what the simulated device calls ----------------------------------------------------------
def test_device_side_functions_read_and_report(tmp_path):
    """The plain functions (no HTTP) a simulated device uses, on a sandbox that is not serving."""
    from crlib.sandbox.core.errors import SandboxError
    from crlib.sandbox.iothub_service import device_side, models
    from crlib.sandbox.runtime import Sandbox

    sandbox = Sandbox(tmp_path / "sb")
    hub_id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Devices/IotHubs/hub"
    try:
        with sandbox.store.transaction():
            models.put_device(sandbox, hub_id, "edge", {"capabilities": {"iotEdge": True}}, None)
        device_side.set_connection_state(sandbox, hub_id, "edge", "$edgeAgent", True)
        agent = device_side.twin(sandbox, hub_id, "edge", "$edgeAgent")
        assert agent["connectionState"] == "Connected" and agent["lastActivityTime"] != "0001-01-01T00:00:00Z"
        assert device_side.twin(sandbox, hub_id, "edge")["connectionState"] == "Disconnected"

        assert device_side.report(sandbox, hub_id, "edge", None, {"fw": {"version": "1", "hash": "x"}}) == 2
        assert device_side.report(sandbox, hub_id, "edge", None, {"fw": {"hash": None}}) == 3
        reported = device_side.twin(sandbox, hub_id, "edge")["properties"]["reported"]
        assert reported["fw"] == {"version": "1"} and reported["$version"] == 3
        assert "hash" not in reported["$metadata"]["fw"]
        assert device_side.desired(sandbox, hub_id, "edge", "$edgeHub")["$version"] == 1
        with pytest.raises(SandboxError, match="DeviceNotFound"):
            device_side.report(sandbox, hub_id, "nobody", None, {"a": 1})
    finally:
        sandbox.store.close()


# -- disableLocalAuth and Microsoft Entra ID ----------------------------------------------------------
def entra_client(cls, hub: Hub, credential, ca_bundle: str):
    """A service client that signs in with Entra ID tokens for https://iothubs.azure.net."""
    client = cls.from_token_credential(hub.host, credential)
    client.protocol.config.connection.verify = ca_bundle
    return client


def auth_journal(sandbox: dict, hub: Hub, since: int = 0) -> list[tuple[str, str, str, bool]]:
    rows = control.admin(sandbox, "GET", f"/_sandbox/iothub/auth?since={since}")["requests"]
    return [(r["method"], r["path"], r["scheme"], r["admitted"]) for r in rows if r["host"] == hub.host]


def journal_seq(sandbox: dict) -> int:
    rows = control.admin(sandbox, "GET", "/_sandbox/iothub/auth")["requests"]
    return rows[-1]["seq"] if rows else 0


def set_local_auth(mgmt: IotHubClient, hub: Hub, disabled: bool) -> IotHubDescription:
    """A read-modify-write PUT of the hub with disableLocalAuth set."""
    current = mgmt.iot_hub_resource.get(hub.rg, hub.name)
    current.properties.disable_local_auth = disabled
    return mgmt.iot_hub_resource.begin_create_or_update(hub.rg, hub.name, current, if_match=current.etag).result()


def test_disable_local_auth_is_an_arm_property_of_the_hub(mgmt, arm):
    rg = make_group(arm)
    plain = create_hub(mgmt, rg)
    assert plain.properties.disable_local_auth is False  # Azure shows false on a hub that never set it
    description = IotHubDescription(location="westus", sku=IotHubSkuInfo(name="S1", capacity=1),
                                    properties=IotHubProperties(disable_local_auth=True))
    strict = mgmt.iot_hub_resource.begin_create_or_update(rg, unique("hub"), description).result()
    assert strict.properties.disable_local_auth is True
    assert mgmt.iot_hub_resource.get(rg, strict.name).properties.disable_local_auth is True
    # An update turns it off and on; a PUT that leaves it out turns local auth back on.
    hub = hub_of(mgmt, rg, plain)
    assert set_local_auth(mgmt, hub, True).properties.disable_local_auth is True
    assert mgmt.iot_hub_resource.get(rg, plain.name).properties.disable_local_auth is True
    body = arm.request("GET", f"/subscriptions/{{sub}}/resourceGroups/{rg}/providers/Microsoft.Devices/IotHubs/"
                              f"{plain.name}", api_version="2023-06-30").json()
    assert body["properties"]["disableLocalAuth"] is True
    body["properties"].pop("disableLocalAuth")
    path = f"/subscriptions/{{sub}}/resourceGroups/{rg}/providers/Microsoft.Devices/IotHubs/{plain.name}"
    put = arm.request("PUT", path, api_version="2023-06-30", json=body)
    assert put.status_code == 200 and put.json()["properties"]["disableLocalAuth"] is False
    body["properties"]["disableLocalAuth"] = "yes"
    wrong = arm.request("PUT", path, api_version="2023-06-30", json=body)
    assert wrong.status_code == 400 and wrong.json()["code"] == "InvalidProperties"


def test_a_hub_without_local_auth_refuses_policy_sas_and_takes_entra_and_device_sas(mgmt, arm, credential, sandbox):
    ca = sandbox["ca_bundle"]
    rg = make_group(arm)
    hub = hub_of(mgmt, rg, create_hub(mgmt, rg))
    owner = service_client(IoTHubRegistryManager, hub, ca)
    device_id = unique("dev")
    device_key = owner.create_device_with_sas(device_id, "", "", "enabled").authentication.symmetric_key.primary_key
    # Entra ID works on any hub: IoT Hub takes both by default.
    assert entra_client(IoTHubRegistryManager, hub, credential, ca).get_device(device_id).device_id == device_id

    set_local_auth(mgmt, hub, True)
    since = journal_seq(sandbox)
    # Every shared access policy's key is refused, whatever its rights, as IoT Hub refuses it.
    for policy in RIGHTS:
        refusal = refused(service_client(IoTHubRegistryManager, hub, ca, policy).get_device, device_id)
        assert refusal.status_code == 401 and error_code(refusal) == "IotHubUnauthorizedAccess"
        assert refusal.json()["Message"] == "ErrorCode:IotHubUnauthorizedAccess;Unauthorized"
    # The policies and their keys remain: listKeys still lists them (their use is what is refused).
    assert {k.key_name: k.primary_key for k in mgmt.iot_hub_resource.list_keys(rg, hub.name)} == hub.keys

    # Entra ID tokens for IoT Hub's resource reach registry, twins and configurations.
    registry = entra_client(IoTHubRegistryManager, hub, credential, ca)
    created = registry.create_device_with_sas(unique("dev"), "", "", "enabled")
    assert registry.get_twin(created.device_id).device_id == created.device_id
    configs = entra_client(IoTHubConfigurationManager, hub, credential, ca)
    configs.apply_configuration_on_edge_device(
        registry.create_device_with_sas(unique("edge"), "", "", "enabled", iot_edge=True).device_id,
        ConfigurationContent(modules_content=edge_manifest("entra")))
    assert isinstance(configs.get_configurations(), list)
    # A token for another audience (ARM's) or none at all is refused.
    arm_token = credential.get_token("https://management.azure.com/.default").token
    assert raw(hub, ca, "GET", "/devices", f"Bearer {arm_token}").status_code == 401
    assert raw(hub, ca, "GET", "/devices", "Bearer ").status_code == 401
    iothub_token = credential.get_token("https://iothubs.azure.net/.default").token
    assert raw(hub, ca, "GET", "/devices", f"Bearer {iothub_token}").status_code == 200

    # A device's own key is not a hub-scoped key: disableLocalAuth leaves device SAS alone.
    device_token = str(SasToken(f"{hub.host}/devices/{device_id}", device_key))
    assert raw(hub, ca, "GET", f"/twins/{device_id}", device_token).status_code == 200

    journal = auth_journal(sandbox, hub, since)
    assert [(s, a) for _, _, s, a in journal if s == "policy-sas"] == [("policy-sas", False)] * len(RIGHTS)
    assert ("GET", f"/twins/{device_id}", "device-sas", True) in journal
    assert ("GET", "/devices", "entra", True) in journal and ("GET", "/devices", "entra", False) in journal

    # Local auth back on: the same keys work again.
    set_local_auth(mgmt, hub, False)
    assert owner.get_device(device_id).device_id == device_id


def test_disable_device_sas_is_a_separate_property(mgmt, arm, sandbox):
    ca = sandbox["ca_bundle"]
    rg = make_group(arm)
    hub = hub_of(mgmt, rg, create_hub(mgmt, rg))
    device_id = unique("dev")
    key = service_client(IoTHubRegistryManager, hub, ca).create_device_with_sas(
        device_id, "", "", "enabled").authentication.symmetric_key.primary_key
    current = mgmt.iot_hub_resource.get(rg, hub.name)
    current.properties.disable_device_sas = True
    mgmt.iot_hub_resource.begin_create_or_update(rg, hub.name, current, if_match=current.etag).result()
    token = str(SasToken(f"{hub.host}/devices/{device_id}", key))
    assert raw(hub, ca, "GET", f"/twins/{device_id}", token).status_code == 401
    # ... and leaves the policies alone.
    assert service_client(IoTHubRegistryManager, hub, ca).get_device(device_id).device_id == device_id
