"""The connected registry extension on a simulated Arc-enabled cluster, through
azure-mgmt-kubernetesconfiguration-extensions and azure-mgmt-containerregistry: the extension runs
the connected registry from its protected connectionString and is reached through the operator's
port-forward (loopback, the cluster CA's certificate)."""

from __future__ import annotations

import socket

import pytest
import requests
from azure.mgmt.kubernetesconfiguration.extensions import KubernetesConfigurationExtensionsMgmtClient
from azure.mgmt.kubernetesconfiguration.extensions.models import Extension, ExtensionProperties
from edge_story import dxf_client, unique, wait_for
from test_device import wait_fresh_sync

from crlib.sandbox import control

TYPE = "Microsoft.ContainerRegistry.ConnectedRegistry"


@pytest.fixture(scope="module")
def k8s(cloud) -> KubernetesConfigurationExtensionsMgmtClient:
    from edge_story import ClientSecretCredential
    s = cloud.status
    credential = ClientSecretCredential(s["tenant_id"], s["client_id"], s["client_secret"], authority=s["authority"],
                                        disable_instance_discovery=True, connection_verify=s["ca_bundle"])
    return KubernetesConfigurationExtensionsMgmtClient(credential, s["subscription_id"], base_url=s["arm_endpoint"],
                                                       connection_verify=s["ca_bundle"])


def connection_string(cloud, name: str, password: str | None = None) -> str:
    cr, token, generated = cloud.connected_registry(name, "ReadOnly", ["hello-world"])
    return (f"ConnectedRegistryName={name};SyncTokenName={token.name};SyncTokenPassword={password or generated};"
            f"ParentGatewayEndpoint={cr.parent.sync_properties.gateway_endpoint};ParentEndpointProtocol=https")


def cluster(cloud, **facts) -> str:
    name = unique("arc")
    control.connect_cluster(cloud.status, name, cloud.rg, **facts)
    return name


class Polls:
    """The statuses the poller read from the extension's operation (a raw_response_hook)."""

    def __init__(self):
        self.statuses: list[str] = []

    def __call__(self, pipeline_response) -> None:
        response = pipeline_response.http_response
        if "/operations/" in response.request.url:
            self.statuses.append(response.json()["status"])


def begin(k8s, cloud, cluster_name: str, ext: str, settings: dict, protected: dict, polls: Polls | None = None):
    """The create's poller, as `az k8s-extension create` waits on it."""
    extra = {"raw_response_hook": polls} if polls else {}
    return k8s.extensions.begin_create(cloud.rg, "Microsoft.Kubernetes", "connectedClusters", cluster_name, ext,
                                       Extension(properties=ExtensionProperties(
                                           extension_type=TYPE, configuration_settings=settings,
                                           configuration_protected_settings=protected)), **extra)


def install(k8s, cloud, cluster_name: str, ext: str, settings: dict, protected: dict):
    return begin(k8s, cloud, cluster_name, ext, settings, protected).result()


def stuck(k8s, cloud, cluster_name: str, ext: str, poller, polls: Polls, code: str):
    """Wait until the extension's statuses carry `code`; then the operation still runs: a poll made
    after that answers InProgress, and the poller has not finished."""
    ext_doc = wait_for(lambda: (lambda e: e if e.properties.statuses and e.properties.statuses[0].code == code
                                else None)(get(k8s, cloud, cluster_name, ext)), what=code)
    seen = len(polls.statuses)
    wait_for(lambda: len(polls.statuses) > seen, what="a poll after the extension got stuck")
    assert polls.statuses[seen] == "InProgress" and poller.status() == "InProgress" and not poller.done()
    return ext_doc


def deleted_ends(k8s, cloud, cluster_name: str, ext: str, poller) -> None:
    """Deleting a stuck extension (what the troubleshooting doc says to do) ends its create: Canceled."""
    from azure.core.exceptions import HttpResponseError
    k8s.extensions.begin_delete(cloud.rg, "Microsoft.Kubernetes", "connectedClusters", cluster_name, ext).result()
    with pytest.raises(HttpResponseError) as ended:
        poller.result()
    assert poller.status() == "Canceled", ended.value


def get(k8s, cloud, cluster_name: str, ext: str):
    return k8s.extensions.get(cloud.rg, "Microsoft.Kubernetes", "connectedClusters", cluster_name, ext)


def succeeded(k8s, cloud, cluster_name, ext):
    return wait_for(lambda: (lambda e: e if e.properties.provisioning_state == "Succeeded" else None)(
        get(k8s, cloud, cluster_name, ext)), what=f"{ext} Succeeded")


def test_install_runs_the_connected_registry_behind_the_forward(k8s, cloud):
    name, cr_name = cluster(cloud), unique("cr")
    cs = connection_string(cloud, cr_name)
    polls = Polls()
    created = begin(k8s, cloud, name, "connreg", {"service.clusterIP": "10.0.0.40"}, {"connectionString": cs},
                    polls).result()  # the operation lasts until the pod is ready
    assert created.properties.provisioning_state == "Succeeded" and polls.statuses[-1] == "Succeeded"
    ext = get(k8s, cloud, name, "connreg")
    assert ext.properties.statuses == [] and ext.properties.current_version == "0.11.0"
    wait_for(lambda: (lambda c: c.connection_state == "Online" and c.activation.status == "Active")(
        cloud.get_connected_registry(cr_name)), what="Online and Active")
    wait_for(lambda: cloud.get_connected_registry(cr_name).parent.sync_properties.last_sync_time, what="a sync")
    fwd = control.cluster_forward(cloud.status, name, "connreg", resource_group=cloud.rg)
    host, port = fwd["address"].split(":")
    assert host == "127.0.0.1"
    scope = cloud.scope_map(unique("client"), ["repositories/hello-world/content/read"])
    token, password = cloud.token(unique("client"), scope)
    from azure.mgmt.containerregistry import models as acr
    cloud.acr.connected_registries.begin_update(cloud.rg, cloud.registry.name, cr_name,
                                                acr.ConnectedRegistryUpdateParameters(client_token_ids=[token.id])).result()
    wait_fresh_sync(cloud, cr_name)  # client tokens take effect at a sync that starts after the attach
    client = dxf_client(fwd["address"], "hello-world", fwd["ca_cert"], token.name, password)
    assert client.get_digest("latest").startswith("sha256:")
    with pytest.raises(requests.exceptions.SSLError):  # the sandbox CA does not vouch for the forward
        dxf_client(fwd["address"], "hello-world", cloud.ca, token.name, password).get_digest("latest")
    # deleting the extension stops the pod and closes the forward
    k8s.extensions.begin_delete(cloud.rg, "Microsoft.Kubernetes", "connectedClusters", name, "connreg").result()
    wait_for(lambda: cloud.get_connected_registry(cr_name).connection_state == "Offline", what="Offline")

    def refused():
        try:
            socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
        except OSError:
            return True
        return False
    wait_for(refused, what="the forward to close")


def failed_with(k8s, cloud, cluster_name, ext, settings, protected, needle):
    from azure.core.exceptions import HttpResponseError
    with pytest.raises(HttpResponseError) as refused:
        install(k8s, cloud, cluster_name, ext, settings, protected)
    assert needle in str(refused.value.message), refused.value.message
    shown = get(k8s, cloud, cluster_name, ext)
    assert shown.properties.provisioning_state == "Failed" and needle in shown.properties.error_info.message


@pytest.mark.parametrize("ip, needle", [(None, "Required value"), ("not-an-ip", "must be a valid IP"),
                                        ("192.100.100.1", "is not in the valid range"),
                                        ("10.0.0.1", "already allocated")])
def test_bad_cluster_ip_fails_the_extension(k8s, cloud, ip, needle):
    name = cluster(cloud)
    settings = {"service.clusterIP": ip} if ip else {}
    failed_with(k8s, cloud, name, "connreg", settings, {"connectionString": "x"}, needle)


def test_missing_connection_string_fails(k8s, cloud):
    failed_with(k8s, cloud, cluster(cloud), "connreg", {"service.clusterIP": "10.0.0.41"}, {}, "connectionString")


def test_no_amd64_node_fails(k8s, cloud):
    failed_with(k8s, cloud, cluster(cloud, arch="arm64"), "connreg", {"service.clusterIP": "10.0.0.42"},
                {"connectionString": "x"}, "linux/amd64")


def test_offline_cluster_fails(k8s, cloud):
    name = cluster(cloud)
    control.cluster_offline(cloud.status, name, 3600)
    failed_with(k8s, cloud, name, "connreg", {"service.clusterIP": "10.0.0.43"}, {"connectionString": "x"}, "Offline")


def test_missing_storage_class_leaves_the_pvc_pending(k8s, cloud):
    name, polls = cluster(cloud), Polls()
    poller = begin(k8s, cloud, name, "connreg", {"service.clusterIP": "10.0.0.44", "pvc.storageClassName": "azurefile"},
                   {"connectionString": "x"}, polls)
    ext = stuck(k8s, cloud, name, "connreg", poller, polls, "PersistentVolumeClaimPending")
    assert ext.properties.provisioning_state == "Creating"
    assert "Pending" in ext.properties.statuses[0].message and "azurefile" in ext.properties.statuses[0].message
    deleted_ends(k8s, cloud, name, "connreg", poller)


def test_ip_used_by_another_extension_fails(k8s, cloud):
    name = cluster(cloud)
    begin(k8s, cloud, name, "first", {"service.clusterIP": "10.0.0.45"}, {"connectionString": "x"})
    failed_with(k8s, cloud, name, "second", {"service.clusterIP": "10.0.0.45"}, {"connectionString": "x"},
                "already allocated")


def test_wrong_password_is_unauthorized_and_stuck(k8s, cloud):
    name, cr_name = cluster(cloud), unique("cr")
    cs = connection_string(cloud, cr_name, password="wrong-password")
    polls = Polls()
    poller = begin(k8s, cloud, name, "connreg", {"service.clusterIP": "10.0.0.46"}, {"connectionString": cs}, polls)
    ext = stuck(k8s, cloud, name, "connreg", poller, polls, "UNAUTHORIZED")
    assert ext.properties.provisioning_state == "Creating"
    cr = cloud.get_connected_registry(cr_name)
    assert cr.connection_state == "Offline" and [d.code for d in cr.status_details] == ["UNAUTHORIZED"]
    deleted_ends(k8s, cloud, name, "connreg", poller)


def test_second_install_is_already_activated(k8s, cloud):
    name, cr_name = cluster(cloud), unique("cr")
    cs = connection_string(cloud, cr_name)
    install(k8s, cloud, name, "first", {"service.clusterIP": "10.0.0.47"}, {"connectionString": cs})
    succeeded(k8s, cloud, name, "first")
    install(k8s, cloud, name, "second", {"service.clusterIP": "10.0.0.48"}, {"connectionString": cs})
    ext = succeeded(k8s, cloud, name, "second")
    ext = wait_for(lambda: (lambda e: e if e.properties.statuses else None)(get(k8s, cloud, name, "second")),
                   what="statuses")
    assert ext.properties.statuses[0].code == "ALREADY_ACTIVATED"
    # The second pod reports ALREADY_ACTIVATED at each activation retry; the first one's syncs clear
    # statusDetails meanwhile, so watch for it rather than read once.
    wait_for(lambda: "ALREADY_ACTIVATED" in [d.code for d in cloud.get_connected_registry(cr_name).status_details],
             what="ALREADY_ACTIVATED in statusDetails")


def test_cluster_offline_turns_the_connected_registry_offline(k8s, cloud):
    name, cr_name = cluster(cloud), unique("cr")
    install(k8s, cloud, name, "connreg", {"service.clusterIP": "10.0.0.49"},
            {"connectionString": connection_string(cloud, cr_name)})
    succeeded(k8s, cloud, name, "connreg")
    wait_for(lambda: cloud.get_connected_registry(cr_name).connection_state == "Online", what="Online")
    control.cluster_offline(cloud.status, name, 3600)
    wait_for(lambda: cloud.get_connected_registry(cr_name).connection_state == "Offline", what="Offline")


def test_update_lasts_until_the_pod_is_ready_again(k8s, cloud):
    from azure.mgmt.kubernetesconfiguration.extensions.models import PatchExtension, PatchExtensionProperties
    name, cr_name = cluster(cloud), unique("cr")
    cs = connection_string(cloud, cr_name)
    install(k8s, cloud, name, "connreg", {"service.clusterIP": "10.0.0.50"}, {"connectionString": cs})
    polls = Polls()
    updated = k8s.extensions.begin_update(
        cloud.rg, "Microsoft.Kubernetes", "connectedClusters", name, "connreg", PatchExtension(
            properties=PatchExtensionProperties(configuration_settings={"logLevel": "debug"},
                                                configuration_protected_settings={"connectionString": cs})),
        raw_response_hook=polls).result()
    assert updated.properties.provisioning_state == "Succeeded" and polls.statuses[-1] == "Succeeded"
    assert updated.properties.configuration_settings["logLevel"] == "debug"


def test_an_idle_agent_reads_nothing(tmp_path, monkeypatch):
    """The agent's tick scans the release records only when one was written or deleted, and prunes
    the clusters' certificate folders only when a cluster was; other writes cost it nothing."""
    from types import SimpleNamespace

    from crlib.sandbox.arc_clusters import agent, certs, releases
    from crlib.sandbox.arm_kubernetes import models as clusters
    from crlib.sandbox.store import Store

    store, followed = Store(tmp_path / "state.db"), []
    sandbox = SimpleNamespace(store=store, state_dir=tmp_path, listener_port=lambda *args: None,
                              operations=SimpleNamespace(follow_resource=followed.append))
    scans, prunes = [], []
    monkeypatch.setattr(releases, "records", lambda sb: scans.append(1) or store.by_type(releases.RELEASE))
    monkeypatch.setattr(certs, "prune", lambda state_dir, keep: prunes.append(keep))
    agents = agent.ArcAgents(sandbox)
    for _ in range(3):
        agents.reconcile()
    assert (len(scans), len(prunes)) == (1, 1)
    cluster_id = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Kubernetes/connectedClusters/c"
    store.put(cluster_id, clusters.CLUSTER_TYPE, {"id": cluster_id})
    store.put("unrelated", "something.else", {})
    agents.reconcile()
    agents.reconcile()
    assert (len(scans), len(prunes)) == (1, 2) and prunes[-1] == {certs.cluster_directory(tmp_path, cluster_id)}
    ext_id = f"{cluster_id}/providers/Microsoft.KubernetesConfiguration/extensions/e"
    releases.save(sandbox, {"extensionId": ext_id, "clusterId": cluster_id, "phase": "PvcPending",
                            "generation": 1})
    agents.reconcile()
    assert len(scans) == 2 and agents.running(ext_id) and len(prunes) == 2
    store.delete_tree(cluster_id)  # the cluster, its extension and the release go together
    agents.reconcile()
    agents.reconcile()
    assert (len(scans), len(prunes)) == (3, 3) and prunes[-1] == set()
    assert not agents.running(ext_id) and followed == [ext_id]
