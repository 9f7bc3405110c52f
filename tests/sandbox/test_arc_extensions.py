"""Cluster extensions (Microsoft.KubernetesConfiguration/extensions, api-version 2025-03-01) through
azure-mgmt-kubernetesconfiguration-extensions 1.0 against the sandbox over HTTPS.

Protected settings: extensions.md documents them as "not retrievable using GET API calls", and an
update that omits them deletes them; the sandbox keeps them in a store record of their own, which
the admin state dump shows (that is how these tests see what a cluster agent would read)."""

from __future__ import annotations

import uuid

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.kubernetesconfiguration.extensions import KubernetesConfigurationExtensionsMgmtClient
from azure.mgmt.kubernetesconfiguration.extensions.models import (
    Extension,
    ExtensionProperties,
    PatchExtension,
    PatchExtensionProperties,
)

from crlib.sandbox import control

API = "2025-03-01"
SECRET = "s3cr3t-" + uuid.uuid4().hex


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def client(credential, sandbox) -> KubernetesConfigurationExtensionsMgmtClient:
    return KubernetesConfigurationExtensionsMgmtClient(
        credential, sandbox["subscription_id"], base_url=sandbox["arm_endpoint"],
        connection_verify=sandbox["ca_bundle"])


def make_group(arm) -> str:
    name = unique("rg-ext")
    response = arm.request("PUT", f"/subscriptions/{{sub}}/resourcegroups/{name}", api_version="2024-03-01",
                           json={"location": "westus"})
    assert response.status_code in (200, 201), response.text
    return name


@pytest.fixture
def cluster(sandbox, arm) -> tuple[str, str]:
    rg, name = make_group(arm), unique("edge")
    control.connect_cluster(sandbox, name, rg)
    return rg, name


def ext_path(rg: str, cluster: str, name: str = "") -> str:
    path = (f"/subscriptions/{{sub}}/resourceGroups/{rg}/providers/Microsoft.Kubernetes/connectedClusters/{cluster}"
            "/providers/Microsoft.KubernetesConfiguration/extensions")
    return f"{path}/{name}" if name else path


def protected_record(arm, sandbox, ext_id: str) -> dict | None:
    state = arm.session.get(sandbox["arm_endpoint"] + "/_sandbox/state",
                            headers=control.admin_headers(sandbox)).json()
    return state.get(f"{ext_id.lower()}/configurationprotectedsettings")


def monitor(**props) -> Extension:
    return Extension(properties=ExtensionProperties(extension_type="microsoft.azure.containerregistry", **props))


def test_lifecycle(client, cluster, arm, sandbox):
    rg, name = cluster
    args = (rg, "Microsoft.Kubernetes", "connectedClusters", name)
    created = client.extensions.begin_create(*args, "acr", monitor(
        configuration_settings={"connectedRegistry.name": "edge"},
        configuration_protected_settings={"connectedRegistry.connectionString": SECRET})).result()
    props = created.properties
    assert props.provisioning_state == "Succeeded" and props.auto_upgrade_minor_version is True
    assert props.release_train == "Stable" and props.configuration_settings == {"connectedRegistry.name": "edge"}
    assert props.configuration_protected_settings is None and props.is_system_extension is False
    assert client.extensions.get(*args, "acr").id == created.id
    assert [e.name for e in client.extensions.list(*args)] == ["acr"]
    updated = client.extensions.begin_update(*args, "acr", PatchExtension(properties=PatchExtensionProperties(
        configuration_settings={"pvc.storageClassName": "standard"},
        configuration_protected_settings={"connectedRegistry.connectionString": SECRET}))).result()
    assert updated.properties.provisioning_state == "Succeeded"
    assert updated.properties.configuration_settings == {"connectedRegistry.name": "edge",
                                                         "pvc.storageClassName": "standard"}
    assert protected_record(arm, sandbox, created.id)["settings"] == {"connectedRegistry.connectionString": SECRET}
    client.extensions.begin_delete(*args, "acr", force_delete=True).result()
    with pytest.raises(ResourceNotFoundError):
        client.extensions.get(*args, "acr")
    assert protected_record(arm, sandbox, created.id) is None
    assert list(client.extensions.list(*args)) == []


def test_protected_settings_never_in_a_response(cluster, arm):
    rg, name = cluster
    path = ext_path(rg, name, "acr")
    responses = [arm.request("PUT", path, API, json={"properties": {
        "extensionType": "microsoft.azure.containerregistry",
        "configurationProtectedSettings": {"connectionString": SECRET}}})]
    assert responses[0].status_code == 201, responses[0].text
    status_url = responses[0].headers["Azure-AsyncOperation"]
    assert "/extensions/acr/operations/" in status_url
    responses.append(arm.session.get(status_url))
    assert responses[-1].json()["status"] == "Succeeded"
    responses.append(arm.request("GET", path, API))
    responses.append(arm.request("GET", ext_path(rg, name), API))
    responses.append(arm.request("PATCH", path, API, json={"properties": {
        "configurationProtectedSettings": {"connectionString": SECRET}}}))
    assert responses[-1].status_code == 202
    responses.append(arm.session.get(responses[-1].headers["Azure-AsyncOperation"]))
    responses.append(arm.request("GET", path, API))
    for response in responses:
        assert SECRET not in response.text and "configurationProtectedSettings" not in response.text, response.text


def test_patch_without_protected_settings_deletes_them(client, cluster, arm, sandbox):
    rg, name = cluster
    args = (rg, "Microsoft.Kubernetes", "connectedClusters", name)
    created = client.extensions.begin_create(*args, "acr", monitor(
        configuration_protected_settings={"a": SECRET, "b": SECRET})).result()
    assert protected_record(arm, sandbox, created.id)["settings"] == {"a": SECRET, "b": SECRET}
    client.extensions.begin_update(*args, "acr", PatchExtension(properties=PatchExtensionProperties(
        configuration_protected_settings={"a": "new"}))).result()
    assert protected_record(arm, sandbox, created.id)["settings"] == {"a": "new"}
    client.extensions.begin_update(*args, "acr", PatchExtension(properties=PatchExtensionProperties(
        release_train="Preview"))).result()
    assert protected_record(arm, sandbox, created.id)["settings"] == {}


def test_pinned_version_needs_auto_upgrade_off(client, cluster):
    rg, name = cluster
    args = (rg, "Microsoft.Kubernetes", "connectedClusters", name)
    with pytest.raises(HttpResponseError) as refused:
        client.extensions.begin_create(*args, "acr", monitor(version="0.1.0")).result()
    assert refused.value.status_code == 400 and refused.value.error.code == "InvalidExtensionVersion"
    with pytest.raises(ResourceNotFoundError):
        client.extensions.get(*args, "acr")
    pinned = client.extensions.begin_create(*args, "acr", monitor(
        version="0.1.0", auto_upgrade_minor_version=False)).result()
    assert pinned.properties.version == "0.1.0" and pinned.properties.current_version == "0.1.0"
    with pytest.raises(HttpResponseError) as again:
        client.extensions.begin_update(*args, "acr", PatchExtension(properties=PatchExtensionProperties(
            auto_upgrade_minor_version=True))).result()
    assert again.value.status_code == 400 and again.value.error.code == "InvalidExtensionVersion"


def test_extension_on_a_missing_cluster(client, arm):
    rg = make_group(arm)
    for cluster_rp, kind in (("Microsoft.Kubernetes", "connectedClusters"),
                             ("Microsoft.ContainerService", "managedClusters")):
        with pytest.raises(ResourceNotFoundError) as missing:
            client.extensions.begin_create(rg, cluster_rp, kind, unique("nobody"), "acr", monitor()).result()
        assert missing.value.error.code == "ParentResourceNotFound"
    with pytest.raises(ResourceNotFoundError):
        list(client.extensions.list(rg, "Microsoft.Kubernetes", "connectedClusters", unique("nobody")))


def test_extension_on_an_offline_cluster_fails(client, cluster, sandbox):
    rg, name = cluster
    args = (rg, "Microsoft.Kubernetes", "connectedClusters", name)
    control.cluster_offline(sandbox, name, 3600, resource_group=rg)
    poller = client.extensions.begin_create(*args, "acr", monitor())
    with pytest.raises(HttpResponseError) as failed:
        poller.result()
    assert "Offline" in str(failed.value)
    props = client.extensions.get(*args, "acr").properties
    assert props.provisioning_state == "Failed"
    assert props.error_info.code == "ExtensionOperationFailed" and "Offline" in props.error_info.message
    # Back online, a retry (PUT again) succeeds.
    control.cluster_offline(sandbox, name, 0, resource_group=rg)
    assert client.extensions.begin_create(*args, "acr", monitor()).result().properties.provisioning_state \
        == "Succeeded"


def test_failed_operation_carries_the_extension_error(cluster, arm, sandbox):
    """The operation (Azure-AsyncOperation) ends as the extension does: Failed, its errorInfo as the
    ARM error; no Retry-After once it has ended."""
    rg, name = cluster
    control.cluster_offline(sandbox, name, 3600, resource_group=rg)
    put = arm.request("PUT", ext_path(rg, name, "acr"), API, json={"properties": {
        "extensionType": "microsoft.azure.containerregistry"}})
    assert put.status_code == 201 and put.json()["properties"]["provisioningState"] == "Creating", put.text
    polls = [arm.session.get(put.headers["Azure-AsyncOperation"])]
    while polls[-1].json()["status"] == "InProgress" and len(polls) < 50:  # instant profile: at once
        polls.append(arm.session.get(put.headers["Azure-AsyncOperation"]))
    status = polls[-1].json()
    info = arm.request("GET", ext_path(rg, name, "acr"), API).json()["properties"]["errorInfo"]
    assert status["status"] == "Failed" and status["error"] == {"code": info["code"], "message": info["message"]}
    assert info["code"] == "ExtensionOperationFailed" and "Offline" in info["message"]
    assert "Retry-After-Ms" not in polls[-1].headers and status["properties"]["endTime"]


def test_extension_on_a_cluster_without_agents_fails(client, arm):
    rg, name = make_group(arm), unique("bare")
    put = arm.request("PUT", f"/subscriptions/{{sub}}/resourceGroups/{rg}/providers/Microsoft.Kubernetes/"
                      f"connectedClusters/{name}", "2026-05-01", json={
                          "location": "westus", "identity": {"type": "SystemAssigned"},
                          "properties": {"agentPublicKeyCertificate": ""}})
    assert put.status_code == 201, put.text
    with pytest.raises(HttpResponseError):
        client.extensions.begin_create(rg, "Microsoft.Kubernetes", "connectedClusters", name, "acr",
                                       monitor()).result()


def test_deleting_the_cluster_deletes_its_extensions(client, cluster, arm, sandbox):
    rg, name = cluster
    args = (rg, "Microsoft.Kubernetes", "connectedClusters", name)
    created = client.extensions.begin_create(*args, "acr", monitor(
        configuration_protected_settings={"a": SECRET})).result()
    cluster_path = ext_path(rg, name).split("/providers/Microsoft.KubernetesConfiguration")[0]
    deleted = arm.request("DELETE", cluster_path, "2026-05-01")
    assert deleted.status_code == 202
    polls = [arm.session.get(deleted.headers["Location"]) for _ in range(1)]
    while polls[-1].status_code == 202 and len(polls) < 50:  # the instant latency profile: done at once
        polls.append(arm.session.get(deleted.headers["Location"]))
    assert polls[-1].status_code == 204
    assert protected_record(arm, sandbox, created.id) is None
    assert arm.request("GET", ext_path(rg, name, "acr"), API).status_code == 404
