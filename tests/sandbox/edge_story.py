"""Helpers for the device stories: build what the runbook builds, straight through the SDKs.

These are test fixtures, not crlib's steps: they drive azure-mgmt-*, azure-iot-hub and python-dxf
directly, the way an engineer following Microsoft's quickstart would.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import requests
from azure.identity import ClientSecretCredential
from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager
from azure.iot.hub.models import ConfigurationContent
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerregistry import models as acr
from azure.mgmt.iothub import IotHubClient
from dxf import DXF
from testkit import push_small_image, wait_for  # noqa: F401 - re-exported for the device tests

from crlib.sandbox import control

MODULE_IMAGES = {  # repository -> tag, as the quickstart imports them
    "acr/connected-registry": "0.8.0",
    "azureiotedge-agent": "1.2.4",
    "azureiotedge-hub": "1.2.4",
    "azureiotedge-api-proxy": "1.1.2",
    "azureiotedge-diagnostics": "1.2.4",
}


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:8]


def dxf_client(host: str, repo: str, ca: str, username: str, password: str) -> DXF:
    def auth(dxf, response):
        dxf.authenticate(username, password, response=response)

    return DXF(host, repo, auth=auth, tlsverify=ca)


@dataclass
class Cloud:
    status: dict
    acr: ContainerRegistryManagementClient
    hubs: IotHubClient
    rg: str
    registry: acr.Registry
    hub_connection_string: str

    @property
    def ca(self) -> str:
        return self.status["ca_bundle"]

    def registry_manager(self) -> IoTHubRegistryManager:
        manager = IoTHubRegistryManager.from_connection_string(self.hub_connection_string)
        manager.protocol.config.connection.verify = self.ca
        return manager

    def configuration_manager(self) -> IoTHubConfigurationManager:
        manager = IoTHubConfigurationManager.from_connection_string(self.hub_connection_string)
        manager.protocol.config.connection.verify = self.ca
        return manager

    # -- ACR --------------------------------------------------------------------------------------
    def import_images(self, images: dict[str, str]) -> None:
        for repo, tag in images.items():
            self.acr.registries.begin_import_image(self.rg, self.registry.name, acr.ImportImageParameters(
                source=acr.ImportSource(registry_uri="mcr.microsoft.com", source_image=f"{repo}:{tag}"),
                target_tags=[f"{repo}:{tag}"], mode="NoForce")).result()

    def scope_map(self, name: str, actions: list[str]) -> acr.ScopeMap:
        return self.acr.scope_maps.begin_create(self.rg, self.registry.name, name,
                                                acr.ScopeMap(actions=actions)).result()

    def token(self, name: str, scope_map: acr.ScopeMap) -> tuple[acr.Token, str]:
        token = self.acr.tokens.begin_create(self.rg, self.registry.name, name,
                                             acr.Token(scope_map_id=scope_map.id, status="enabled")).result()
        return token, self.password(token)

    def password(self, token: acr.Token, name: str = "password1") -> str:
        result = self.acr.registries.begin_generate_credentials(
            self.rg, self.registry.name, acr.GenerateCredentialsParameters(token_id=token.id, name=name)).result()
        return result.passwords[0].value

    def connected_registry(self, name: str, mode: str, repos: list[str], *, parent_id: str | None = None,
                           client_token_ids: list[str] | None = None, schedule: str = "* * * * *",
                           sync_window: str | None = None):
        """Create the sync scope map, sync token and connected registry as Azure CLI 2.91 does."""
        verbs = ["content/read", "metadata/read"] if mode == "ReadOnly" else [
            "content/read", "content/write", "content/delete", "metadata/read", "metadata/write"]
        actions = [f"gateway/{name}/{a}" for a in ("config/read", "config/write", "message/read", "message/write")]
        actions += [f"repositories/{r}/{v}" for r in repos for v in verbs]
        sync_token, password = self.token(name, self.scope_map(name, actions))
        if parent_id:  # ancestors may read the child's gateway configuration
            parent_name = parent_id.rsplit("/", 1)[-1]
            parent_map = self.acr.scope_maps.get(self.rg, self.registry.name, parent_name)
            self.acr.scope_maps.begin_update(self.rg, self.registry.name, parent_name, acr.ScopeMapUpdateParameters(
                actions=[*parent_map.actions, *[f"gateway/{name}/{a}" for a in ("config/read", "message/write")]]
            )).result()
        cr = self.acr.connected_registries.begin_create(self.rg, self.registry.name, name, acr.ConnectedRegistry(
            mode=mode, parent=acr.ParentProperties(id=parent_id, sync_properties=acr.SyncProperties(
                token_id=sync_token.id, schedule=schedule, sync_window=sync_window, message_ttl="P1D")),
            client_token_ids=client_token_ids)).result()
        return cr, sync_token, password

    def get_connected_registry(self, name: str):
        return self.acr.connected_registries.get(self.rg, self.registry.name, name)

    # -- devices ----------------------------------------------------------------------------------
    def edge_device(self, device_id: str) -> str:
        """Create an edge device; return its connection string."""
        manager = self.registry_manager()
        manager.create_device_with_sas(device_id, "", "", "enabled", iot_edge=True)
        device = manager.get_device(device_id)
        host = self.hub_connection_string.split(";")[0].split("=", 1)[1]
        return f"HostName={host};DeviceId={device_id};SharedAccessKey={device.authentication.symmetric_key.primary_key}"

    def edge_agent_reported(self, device_id: str) -> dict:
        return self.registry_manager().get_module_twin(device_id, "$edgeAgent").properties.reported or {}

    def deploy(self, device_id: str, modules_content: dict) -> None:
        self.configuration_manager().apply_configuration_on_edge_device(
            device_id, ConfigurationContent(modules_content=modules_content))


def make_cloud(status: dict, arm_session: requests.Session | None = None) -> Cloud:
    credential = ClientSecretCredential(status["tenant_id"], status["client_id"], status["client_secret"],
                                        authority=status["authority"], disable_instance_discovery=True,
                                        connection_verify=status["ca_bundle"])
    session = arm_session or requests.Session()
    session.trust_env = False
    session.verify = status["ca_bundle"]
    token = credential.get_token("https://management.azure.com/.default").token
    rg = unique("rg")
    session.put(f"{status['arm_endpoint']}/subscriptions/{status['subscription_id']}/resourceGroups/{rg}",
                params={"api-version": "2024-03-01"}, json={"location": "westus"},
                headers={"Authorization": f"Bearer {token}"}).raise_for_status()
    acr_client = ContainerRegistryManagementClient(credential, status["subscription_id"],
                                                   base_url=status["arm_endpoint"], connection_verify=status["ca_bundle"])
    hubs = IotHubClient(credential, status["subscription_id"], base_url=status["arm_endpoint"],
                        connection_verify=status["ca_bundle"])
    registry = acr_client.registries.begin_create(rg, unique("reg"), acr.Registry(
        location="westus", sku=acr.Sku(name="Premium"))).result()
    registry = acr_client.registries.begin_update(rg, registry.name, acr.RegistryUpdateParameters(
        data_endpoint_enabled=True)).result()
    hub = hubs.iot_hub_resource.begin_create_or_update(rg, unique("hub"), {
        "location": "westus", "sku": {"name": "S1", "capacity": 1}}).result()
    key = hubs.iot_hub_resource.get_keys_for_key_name(rg, hub.name, "iothubowner")
    cs = f"HostName={hub.properties.host_name};SharedAccessKeyName=iothubowner;SharedAccessKey={key.primary_key}"
    return Cloud(status, acr_client, hubs, rg, registry, cs)


QUICKSTART_PROXY_ENV = {"NGINX_DEFAULT_PORT": "8000", "CONNECTED_ACR_ROUTE_ADDRESS": "connectedRegistry:8080"}
QUICKSTART_PROXY_PORTS = {"8000/tcp": [{"HostPort": "8000"}]}


def manifest(cloud: Cloud, *, pull_token: tuple[str, str], connection_string: str | None,
             images: dict[str, str] = MODULE_IMAGES, api_proxy: bool = True, schema: str = "1.1",
             proxy_env: dict[str, str] | None = None, proxy_ports: dict | None = None) -> dict:
    """An IoT Edge deployment manifest like the quickstart's; `proxy_env` and `proxy_ports` replace
    the API proxy's environment and port bindings."""
    login = cloud.registry.login_server

    def image(repo: str) -> str:
        return f"{login}/{repo}:{images[repo]}"

    modules = {}
    if connection_string is not None:
        modules["connectedRegistry"] = {
            "type": "docker", "status": "running", "restartPolicy": "always", "version": "1.0",
            "settings": {"image": image("acr/connected-registry"), "createOptions": json.dumps(
                {"HostConfig": {"Binds": ["/home/azureuser/connected-registry:/var/acr/data"]}})},
            "env": {"ACR_REGISTRY_CONNECTION_STRING": {"value": connection_string}}}
    if api_proxy:
        modules["IoTEdgeAPIProxy"] = {
            "type": "docker", "status": "running", "restartPolicy": "always", "version": "1.0",
            "settings": {"image": image("azureiotedge-api-proxy"), "createOptions": json.dumps(
                {"HostConfig": {"PortBindings": QUICKSTART_PROXY_PORTS if proxy_ports is None else proxy_ports}})},
            "env": {k: {"value": v} for k, v in (QUICKSTART_PROXY_ENV if proxy_env is None else proxy_env).items()}}
    return {
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": schema,
            "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25", "registryCredentials": {
                "cloudregistry": {"address": login, "username": pull_token[0], "password": pull_token[1]}}}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": image("azureiotedge-agent"), "createOptions": ""}},
                "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always", "settings": {
                    "image": image("azureiotedge-hub"), "createOptions": json.dumps(
                        {"HostConfig": {"PortBindings": {"443/tcp": [{"HostPort": "443"}]}}})}}},
            "modules": modules}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.2", "routes": {},
                                             "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}},
    }


def provision(status: dict, connection_string: str, parent_hostname: str | None = None) -> dict:
    return control.provision_device(status, connection_string, parent_hostname=parent_hostname)


def device_address(status: dict, device_id: str) -> tuple[str, str]:
    """Where the device's API proxy answers and the root CA to trust there, as its operator knows
    them from provisioning the host (ARM's loginServer of a connected registry is not a route to it)."""
    shown = control.device_show(status, device_id)
    return shown["address"], shown["ca_cert"]


def all_running(reported: dict, version: int | None = None) -> bool:
    """The documented success rule for a deployment on `$edgeAgent`."""
    if reported.get("lastDesiredStatus", {}).get("code") != 200:
        return False
    if version is not None and reported.get("lastDesiredVersion") != version:
        return False
    modules = {**reported.get("systemModules", {}), **reported.get("modules", {})}
    return bool(modules) and all(m.get("runtimeStatus") == "running" for m in modules.values())
