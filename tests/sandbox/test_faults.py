"""Seeded fault injection: the same seed gives the same faults, each kind looks as it does on the
wire, a faulted request writes nothing, the Azure SDK's retry policy rides through them, failed
long-running operations can be retried, ARM's token buckets throttle, and a device can go offline.

The module has a sandbox of its own (`fast_sandbox`), and every test switches faults off when it
ends, so no fault leaks into another test.
"""

from __future__ import annotations

import time
import urllib.error
import uuid

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerregistry import models as acr
from edge_story import manifest, provision, wait_for

from crlib.cli import main as crlib_main
from crlib.sandbox import control

RG_API = "2024-03-01"


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def status(fast_sandbox):
    yield fast_sandbox
    control.set_faults(fast_sandbox)


@pytest.fixture(autouse=True)
def faults_off(status):
    """Whatever a test turned on is off again when it ends, passed or failed."""
    yield
    control.set_faults(status)


@pytest.fixture(scope="module")
def cred(status):
    return ClientSecretCredential(status["tenant_id"], status["client_id"], status["client_secret"],
                                  authority=status["authority"], disable_instance_discovery=True,
                                  connection_verify=status["ca_bundle"])


class Raw:
    """Plain HTTPS calls to ARM with a bearer token, without any retry."""

    def __init__(self, status: dict, token: str):
        self.status = status
        self.session = plain_session(status)
        self.session.headers["Authorization"] = f"Bearer {token}"

    def group_url(self, name: str) -> str:
        return f"{self.status['arm_endpoint']}/subscriptions/{self.status['subscription_id']}/resourcegroups/{name}"

    def put_group(self, name: str) -> requests.Response:
        return self.session.put(self.group_url(name), params={"api-version": RG_API}, json={"location": "westus"},
                                timeout=10)

    def get_group(self, name: str) -> requests.Response:
        return self.session.get(self.group_url(name), params={"api-version": RG_API}, timeout=10)

    def outcome(self, method: str, url: str, **kwargs) -> int | str:
        """The status, or "reset" when the connection was dropped."""
        try:
            return self.session.request(method, url, timeout=10, **kwargs).status_code
        except requests.ConnectionError:
            return "reset"


@pytest.fixture(scope="module")
def raw(status, cred) -> Raw:
    return Raw(status, cred.get_token(status["arm_endpoint"] + "/.default").token)


@pytest.fixture(scope="module")
def acr_client(status, cred) -> ContainerRegistryManagementClient:
    return ContainerRegistryManagementClient(cred, status["subscription_id"], base_url=status["arm_endpoint"],
                                             credential_scopes=[status["arm_endpoint"] + "/.default"],
                                             connection_verify=status["ca_bundle"])


def plain_session(status: dict) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # the machine's proxy and CA settings must not apply to loopback
    session.verify = status["ca_bundle"]
    return session


def logged_since(status: dict, seq: int) -> list[dict]:
    return [r for r in control.admin(status, "GET", f"/_sandbox/requests?since={seq}")["requests"]
            if not r["path"].startswith("/_sandbox")]


def last_seq(status: dict) -> int:
    return control.admin(status, "GET", "/_sandbox/requests?since=0")["requests"][-1]["seq"]


# -- settings and determinism ----------------------------------------------------------------------
def test_settings_are_checked_and_default_to_off(status):
    shown = control.set_faults(status)
    assert shown["settings"]["rate"] == 0 and shown["settings"]["lro_failure_rate"] == 0
    assert not shown["settings"]["arm_throttling"]
    assert shown["settings"]["services"] == ["arm", "iothub", "registry"]
    assert set(shown["counters"]) == {"requests_seen", "throttle", "unavailable", "reset", "slow", "lro_failed",
                                      "throttled_by_bucket"}
    for bad in ({"rate": 2}, {"kinds": {"explode": 1}}, {"services": ["admin"]}, {"color": "red"},
                {"buckets": {"writes": [5]}}, {"rate": 0.5, "kinds": {"throttle": 0}}):
        with pytest.raises(urllib.error.HTTPError) as exc:
            control.set_faults(status, **bad)
        assert exc.value.code == 400, bad


def test_the_same_seed_gives_the_same_faults(status, raw):
    url = f"{status['arm_endpoint']}/subscriptions/{status['subscription_id']}/resourcegroups"
    settings = {"seed": 1234, "rate": 0.5, "kinds": {"throttle": 1, "unavailable": 1, "reset": 1, "slow": 1},
                "slow_seconds": 0.01, "services": ["arm"]}

    def run(**overrides) -> tuple[list, dict]:
        control.set_faults(status, **(settings | overrides))
        outcomes = [raw.outcome("GET", url, params={"api-version": RG_API}) for _ in range(50)]
        return outcomes, control.fault_counters(status)

    first, counters = run()
    second, counters_again = run()
    assert first == second
    assert counters == counters_again
    assert counters["requests_seen"] == 50
    assert {200, 429, 503, "reset"} <= set(first), first
    assert counters["throttle"] == first.count(429) and counters["unavailable"] == first.count(503)
    assert counters["reset"] == first.count("reset") and counters["slow"] > 0
    assert run(seed=4321)[0] != first


# -- each kind, as a plain client sees it -----------------------------------------------------------
def test_throttle_answers_429_with_retry_after(status, raw):
    control.set_faults(status, rate=1, kinds={"throttle": 1})
    response = raw.get_group("anything")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert "retry-after-ms" not in {k.lower() for k in response.headers}
    assert response.json()["error"]["code"] == "TooManyRequests"
    assert control.fault_counters(status)["throttle"] == 1


def test_unavailable_answers_503_with_an_arm_error(status, raw):
    control.set_faults(status, rate=1, kinds={"unavailable": 1})
    response = raw.get_group("anything")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "ServiceUnavailable"
    assert response.json()["error"]["message"]


def test_reset_drops_the_connection(status, raw):
    control.set_faults(status, rate=1, kinds={"reset": 1})
    since = last_seq(status)
    with pytest.raises(requests.ConnectionError):
        raw.get_group("anything")
    assert control.fault_counters(status)["reset"] == 1
    (logged,) = logged_since(status, since)
    assert logged["status"] == 0 and not logged["wrote"]


def test_slow_answers_normally_after_the_delay(status, raw):
    name = unique("rg")
    control.set_faults(status, rate=1, kinds={"slow": 1}, slow_seconds=0.4)
    started = time.monotonic()
    response = raw.put_group(name)
    assert time.monotonic() - started >= 0.4
    assert response.status_code == 201  # a slow request runs its handler
    control.set_faults(status)
    assert raw.get_group(name).status_code == 200


def test_faulted_writes_have_no_side_effect(status, raw):
    since = last_seq(status)
    names = [unique("rg") for _ in range(3)]
    for name, kind in zip(names, ("throttle", "unavailable", "reset"), strict=True):
        control.set_faults(status, rate=1, kinds={kind: 1})
        assert raw.outcome("PUT", raw.group_url(name), params={"api-version": RG_API},
                           json={"location": "westus"}) in (429, 503, "reset")
    control.set_faults(status)
    for name in names:
        assert raw.get_group(name).status_code == 404
    puts = [r for r in logged_since(status, since) if r["method"] == "PUT"]
    assert [(r["status"], r["wrote"]) for r in puts] == [(429, False), (503, False), (0, False)]


def test_only_the_named_services_are_faulted_and_never_the_admin_api(status):
    session = plain_session(status)
    source = f"https://{status['image_source']}/v2/"
    token_url = f"{status['authority']}/{status['tenant_id']}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": status["client_id"],
            "client_secret": status["client_secret"], "scope": status["arm_endpoint"] + "/.default"}
    control.set_faults(status, rate=1, kinds={"throttle": 1})  # default services
    assert session.get(source, timeout=10).status_code == 429  # the registry data plane
    assert session.post(token_url, data=form, timeout=10).status_code == 200  # Entra is not listed
    control.set_faults(status, rate=1, kinds={"throttle": 1}, services=["entra"])
    assert session.post(token_url, data=form, timeout=10).status_code == 429
    assert session.get(source, timeout=10).status_code == 401  # anonymous: asks for a token, as usual
    assert session.get(f"{status['arm_endpoint']}/_sandbox/health", timeout=10,
                       headers=control.admin_headers(status)).status_code == 200


# -- the Azure SDK ---------------------------------------------------------------------------------
def test_the_sdk_retry_policy_rides_through_faults(status, raw, acr_client):
    group = unique("rg")
    assert raw.put_group(group).status_code == 201
    control.set_faults(status, seed=3, rate=0.3, kinds={"throttle": 1, "unavailable": 1, "reset": 1, "slow": 1},
                       slow_seconds=0.05)
    registry = acr_client.registries.begin_create(group, unique("reg"), acr.Registry(
        location="westus", sku=acr.Sku(name="Premium"))).result()
    scope_map = acr_client.scope_maps.begin_create(group, registry.name, "pullmap", acr.ScopeMap(
        actions=["repositories/hello-world/content/read"])).result()
    counters = control.fault_counters(status)
    assert registry.provisioning_state == "Succeeded" and scope_map.provisioning_state == "Succeeded"
    assert counters["throttle"] + counters["unavailable"] + counters["reset"] >= 1, counters
    control.set_faults(status)
    assert [r.name for r in acr_client.registries.list_by_resource_group(group)] == [registry.name]


def test_a_failed_operation_surfaces_and_a_retried_create_succeeds(status, raw, acr_client):
    group, name = unique("rg"), unique("reg")
    assert raw.put_group(group).status_code == 201
    control.set_faults(status, lro_failure_rate=1)
    with pytest.raises(HttpResponseError) as exc:
        acr_client.registries.begin_create(group, name, acr.Registry(location="westus",
                                                                    sku=acr.Sku(name="Premium"))).result()
    assert "InternalServerError" in str(exc.value)
    assert control.fault_counters(status)["lro_failed"] == 1
    control.set_faults(status)
    assert acr_client.registries.get(group, name).provisioning_state == "Failed"
    registry = acr_client.registries.begin_create(group, name, acr.Registry(
        location="westus", sku=acr.Sku(name="Premium"))).result()
    assert registry.provisioning_state == "Succeeded"
    assert [r.name for r in acr_client.registries.list_by_resource_group(group)] == [name]


# -- ARM's token buckets ---------------------------------------------------------------------------
def test_arm_token_bucket_throttles_writes_but_not_reads(status, raw):
    control.set_faults(status, arm_throttling=True, buckets={"writes": [5, 1]})
    names = [unique("rg") for _ in range(8)]
    responses = [raw.put_group(name) for name in names]
    header = "x-ms-ratelimit-remaining-subscription-writes"
    assert [r.status_code for r in responses[:5]] == [201] * 5
    assert [int(r.headers[header]) for r in responses[:5]] == [4, 3, 2, 1, 0]
    refused = [r for r in responses[5:] if r.status_code == 429]
    assert len(refused) >= 2
    for r in refused:
        assert int(r.headers["Retry-After"]) >= 1
        assert r.headers[header] == "0"
        assert r.json()["error"]["code"] == "TooManyRequests"
    read = raw.get_group(names[0])  # reads have a bucket of their own
    assert read.status_code == 200
    assert int(read.headers["x-ms-ratelimit-remaining-subscription-reads"]) == 249
    assert header not in read.headers
    assert control.fault_counters(status)["throttled_by_bucket"] == len(refused)
    time.sleep(int(refused[-1].headers["Retry-After"]))
    assert raw.put_group(names[-1]).status_code == 201  # a token has come back
    delete = raw.session.delete(raw.group_url(names[0]), params={"api-version": RG_API}, timeout=10)
    assert delete.status_code == 202 and delete.headers["x-ms-ratelimit-remaining-subscription-deletes"] == "199"


# -- restarts and the CLI --------------------------------------------------------------------------
def test_settings_survive_a_restart_and_the_cli_sets_them(tmp_path, capsys):
    first = control.start(tmp_path)
    try:
        assert crlib_main(["sandbox", "faults", "--state-dir", str(tmp_path), "--rate", "0.25", "--seed", "9",
                           "--kinds", "throttle=2,slow=1", "--lro-failure-rate", "0.5", "--arm-throttling"]) == 0
        printed = capsys.readouterr().out
        assert '"rate": 0.25' in printed
        control.stop(tmp_path)
        again = control.start(tmp_path)
        assert again["pid"] != first["pid"]
        settings = control.admin(again, "GET", "/_sandbox/faults")["settings"]
        assert settings["rate"] == 0.25 and settings["seed"] == 9 and settings["kinds"] == {"throttle": 2, "slow": 1}
        assert settings["lro_failure_rate"] == 0.5 and settings["arm_throttling"] is True
        assert crlib_main(["sandbox", "faults", "--state-dir", str(tmp_path), "--off"]) == 0
        capsys.readouterr()
        assert control.admin(again, "GET", "/_sandbox/faults")["settings"]["rate"] == 0
    finally:
        control.stop(tmp_path)


# -- a device that goes offline (last: its device keeps running in the background) -----------------
def test_a_device_goes_offline_and_comes_back(status, cloud, pull_token):
    device_id, name = unique("edge"), unique("cr")
    provision(status, cloud.edge_device(device_id))
    cr, sync_token, password = cloud.connected_registry(name, "ReadOnly", ["hello-world"])
    gateway = cr.parent.sync_properties.gateway_endpoint
    cs = (f"ConnectedRegistryName={name};SyncTokenName={sync_token.name};SyncTokenPassword={password};"
          f"ParentGatewayEndpoint={gateway};ParentEndpointProtocol=https")
    cloud.deploy(device_id, manifest(cloud, pull_token=pull_token, connection_string=cs))
    wait_for(lambda: (lambda c: c if c.connection_state == "Online" else None)(
        cloud.get_connected_registry(name)), what="the connected registry Online")
    shown_device = control.device_show(status, device_id)
    endpoint = shown_device["address"]
    device_side = plain_session(status)
    device_side.verify = shown_device["ca_cert"]  # the device serves its own IoT Edge CA's chain
    manager = cloud.registry_manager()
    assert manager.get_device(device_id).connection_state == "Connected"
    assert device_side.get(f"https://{endpoint}/v2/", timeout=5).status_code == 401

    with pytest.raises(urllib.error.HTTPError) as exc:
        control.device_offline(status, unique("nobody"), 60)
    assert exc.value.code == 404
    hub_host = cloud.hub_connection_string.split(";")[0].split("=", 1)[1]
    # A simulated day: the test brings it back itself, so no wall-clock window is raced.
    shown = control.device_offline(status, device_id, 86400, hub=hub_host)
    assert shown["offline"] is True and shown["connected"] is False
    assert manager.get_device(device_id).connection_state == "Disconnected"
    assert cloud.get_connected_registry(name).connection_state == "Offline"

    def refused() -> bool:
        try:
            return device_side.get(f"https://{endpoint}/v2/", timeout=5).status_code == 503
        except requests.ConnectionError:
            return True

    wait_for(refused, what="the device endpoint to stop answering")
    time.sleep(1)
    assert cloud.get_connected_registry(name).connection_state == "Offline"  # no report while offline

    back = control.device_offline(status, device_id, 0, hub=hub_host)  # offline until now: back at its next step
    assert back["offline"] is False
    wait_for(lambda: manager.get_device(device_id).connection_state == "Connected", what="the device back")
    wait_for(lambda: cloud.get_connected_registry(name).connection_state == "Online", what="Online again")
    assert device_side.get(f"https://{endpoint}/v2/", timeout=5).status_code == 401
    (device,) = [d for d in control.edge_devices(status) if d["deviceId"] == device_id]
    assert device["offline"] is False and device["address"] == endpoint and device["listening"] is True
