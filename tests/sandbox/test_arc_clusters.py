"""Arc-enabled Kubernetes clusters (Microsoft.Kubernetes/connectedClusters) through
azure-mgmt-hybridkubernetes 2.0 (api-version 2026-05-01) against the sandbox over HTTPS, and the
admin route / CLI that connect a cluster as `az connectedk8s connect` would."""

from __future__ import annotations

import json
import urllib.error
import uuid

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.hybridkubernetes import ConnectedKubernetesClient
from azure.mgmt.hybridkubernetes.models import (
    ConnectedCluster,
    ConnectedClusterIdentity,
    ConnectedClusterPatch,
    ConnectedClusterProperties,
)

from crlib.cli import main as crlib_main
from crlib.sandbox import control

SDK_API = "2026-05-01"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def k8s_client(credential, status: dict) -> ConnectedKubernetesClient:
    return ConnectedKubernetesClient(credential, status["subscription_id"], base_url=status["arm_endpoint"],
                                     connection_verify=status["ca_bundle"])


def make_group(arm) -> str:
    name = unique("rg-arc")
    response = arm.request("PUT", f"/subscriptions/{{sub}}/resourcegroups/{name}", api_version="2024-03-01",
                           json={"location": "westus"})
    assert response.status_code in (200, 201), response.text
    return name


def test_sdk_pins_the_api_version_the_sandbox_serves(credential, sandbox):
    client = k8s_client(credential, sandbox)
    assert client._config.api_version == SDK_API


def test_create_get_list_update_delete(credential, sandbox, arm):
    client = k8s_client(credential, sandbox)
    rg, name = make_group(arm), unique("cluster")
    created = client.connected_cluster.begin_create_or_replace(rg, name, ConnectedCluster(
        location="westus", identity=ConnectedClusterIdentity(type="SystemAssigned"),
        properties=ConnectedClusterProperties(agent_public_key_certificate="", distribution="k3s",
                                              infrastructure="generic"))).result()
    assert created.properties.provisioning_state == "Succeeded"
    # Made through ARM alone, no agent runs on it: it never connects.
    assert created.properties.connectivity_status == "Connecting"
    assert created.properties.distribution == "k3s" and created.identity.principal_id
    got = client.connected_cluster.get(rg, name)
    assert got.id == created.id and got.properties.infrastructure == "generic"
    assert [c.name for c in client.connected_cluster.list_by_resource_group(rg)] == [name]
    assert name in [c.name for c in client.connected_cluster.list_by_subscription()]
    patched = client.connected_cluster.begin_update_async(rg, name, ConnectedClusterPatch(tags={"env": "test"})).result()
    assert patched.tags == {"env": "test"}
    client.connected_cluster.begin_delete(rg, name).result()
    with pytest.raises(ResourceNotFoundError):
        client.connected_cluster.get(rg, name)
    assert list(client.connected_cluster.list_by_resource_group(rg)) == []


def test_create_refusals(arm):
    rg, name = make_group(arm), unique("cluster")
    path = f"/subscriptions/{{sub}}/resourceGroups/{rg}/providers/Microsoft.Kubernetes/connectedClusters/{name}"
    no_cert = arm.request("PUT", path, SDK_API, json={"location": "westus", "identity": {"type": "SystemAssigned"},
                                                      "properties": {}})
    assert no_cert.status_code == 400, no_cert.text
    no_identity = arm.request("PUT", path, SDK_API, json={"location": "westus",
                                                          "properties": {"agentPublicKeyCertificate": ""}})
    assert no_identity.status_code == 400, no_identity.text
    old = arm.request("GET", path, "2021-10-01")
    assert old.status_code == 400 and old.json()["error"]["code"] == "NoRegisteredProviderFound"
    missing_group = arm.request("GET", path.replace(rg, unique("nogroup")), SDK_API)
    assert missing_group.status_code == 404 and missing_group.json()["error"]["code"] == "ResourceGroupNotFound"
    assert arm.request("GET", path, SDK_API).status_code == 404
    operations = arm.request("GET", "/providers/Microsoft.Kubernetes/operations", SDK_API)
    assert operations.status_code == 200
    assert "Microsoft.Kubernetes/connectedClusters/read" in [o["name"] for o in operations.json()["value"]]


def test_connect_as_connectedk8s(credential, sandbox, arm):
    client = k8s_client(credential, sandbox)
    rg, name = make_group(arm), unique("edge")
    shown = control.connect_cluster(sandbox, name, rg, service_cidr="10.96.0.0/12", storage_class="local-path",
                                    arch="arm64", kubernetes_version="1.29.7")
    assert shown["serviceCidr"] == "10.96.0.0/12" and shown["storageClasses"] == ["local-path"]
    assert shown["nodeArchitectures"] == ["arm64"] and shown["connectivityStatus"] == "Connected"
    got = client.connected_cluster.get(rg, name)
    props = got.properties
    assert (props.connectivity_status, props.provisioning_state) == ("Connected", "Succeeded")
    assert props.kubernetes_version == "1.29.7" and props.agent_version and props.last_connectivity_time
    assert props.total_node_count >= 1 and props.total_core_count >= 1 and props.agent_public_key_certificate
    # The cluster's own facts are the sandbox's, never part of the ARM resource.
    raw = arm.request("GET", got.id, SDK_API).text
    assert "10.96.0.0/12" not in raw and "local-path" not in raw and "_sandbox" not in raw
    with pytest.raises(urllib.error.HTTPError) as again:
        control.connect_cluster(sandbox, name, rg)
    assert again.value.code == 409
    with pytest.raises(urllib.error.HTTPError) as no_group:
        control.connect_cluster(sandbox, unique("edge"), unique("nogroup"))
    assert no_group.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as bad_cidr:
        control.connect_cluster(sandbox, unique("edge"), rg, service_cidr="10.0.0.1/16")
    assert bad_cidr.value.code == 400


def test_cluster_offline_on_the_simulated_clock(credential, sandbox, arm):
    client = k8s_client(credential, sandbox)
    rg, name = make_group(arm), unique("edge")
    control.connect_cluster(sandbox, name, rg)
    shown = control.cluster_offline(sandbox, name, 3600, resource_group=rg)
    assert shown["connectivityStatus"] == "Offline" and shown["offlineUntil"]
    offline = client.connected_cluster.get(rg, name).properties
    assert offline.connectivity_status == "Offline" and offline.last_connectivity_time
    # Zero simulated seconds: back at once (the offline period is over as soon as it begins).
    assert control.cluster_offline(sandbox, name, 0)["connectivityStatus"] == "Connected"
    assert client.connected_cluster.get(rg, name).properties.connectivity_status == "Connected"
    with pytest.raises(urllib.error.HTTPError) as missing:
        control.cluster_offline(sandbox, unique("nobody"), 10)
    assert missing.value.code == 404


def test_cli_cluster_commands(sandbox, arm, capsys):
    rg, name = make_group(arm), unique("cli")
    assert crlib_main(["sandbox", "cluster", "connect", name, "-g", rg, "--service-cidr", "10.1.0.0/16",
                       "--arch", "arm64", "--state-dir", sandbox["state_dir"]]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["serviceCidr"] == "10.1.0.0/16" and printed["nodeArchitectures"] == ["arm64"]
    assert crlib_main(["sandbox", "cluster", "offline", name, "--seconds", "600",
                       "--state-dir", sandbox["state_dir"]]) == 0
    assert json.loads(capsys.readouterr().out)["connectivityStatus"] == "Offline"
    assert crlib_main(["sandbox", "cluster", "connect", name, "-g", rg, "--state-dir", sandbox["state_dir"]]) == 2


def test_listing_user_credentials_is_refused(arm):
    rg, name = make_group(arm), unique("edge")
    status_path = f"/subscriptions/{{sub}}/resourceGroups/{rg}/providers/Microsoft.Kubernetes/connectedClusters/{name}"
    missing = arm.request("POST", status_path + "/listClusterUserCredential", SDK_API,
                          json={"authenticationMethod": "AAD", "clientProxy": True})
    assert missing.status_code == 404
