"""The registry state other parts of the sandbox build on: the token password check the data
plane uses, the runtime status the device simulator reports for connected registries, and
registry endpoints that come back on their ports after a restart."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
import requests
from azure.identity import ClientSecretCredential
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerregistry import models as m
from test_containerregistry import assert_schema, connected_body, listening

from crlib.sandbox import control
from crlib.sandbox.arm_containerregistry import connected, tokens
from crlib.sandbox.arm_containerregistry.common import (
    CONNECTED_REGISTRY_TYPE,
    REGISTRY_TYPE,
    SCOPE_MAP_TYPE,
    TOKEN_TYPE,
    save,
)
from crlib.sandbox.clock import Clock
from crlib.sandbox.store import Store


@pytest.fixture
def offline(tmp_path) -> SimpleNamespace:
    """A store and clock without a server, for the model functions other sandbox parts call."""
    return SimpleNamespace(store=Store(tmp_path / "state.db"), clock=Clock())


REGISTRY_ID = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/reg01"


def test_verify_token_password(offline):
    registry = {"id": REGISTRY_ID, "name": "reg01"}
    scope_map = {"id": f"{REGISTRY_ID}/scopeMaps/map01", "properties": {"type": "UserDefined"}}
    save(offline, SCOPE_MAP_TYPE, scope_map)
    token, _ = tokens.put_token(offline, registry, "tok01", {"properties": {"scopeMapId": scope_map["id"]}})
    save(offline, TOKEN_TYPE, token)
    first = {p["name"]: p["value"] for p in tokens.generate_credentials(
        offline, registry, {"tokenId": token["id"]})["passwords"]}
    verify = tokens.verify_token_password
    assert verify(offline, REGISTRY_ID, "tok01", first["password2"]) == (True, None)
    assert verify(offline, REGISTRY_ID, "tok01", "guess") == (False, "wrong")
    assert verify(offline, REGISTRY_ID, "nobody", first["password1"]) == (False, "wrong")

    [new] = tokens.generate_credentials(offline, registry, {"tokenId": token["id"], "name": "password1",
                                                            "expiry": "2020-01-01T00:00:00Z"})["passwords"]
    assert verify(offline, REGISTRY_ID, "tok01", first["password1"]) == (False, "rotated")
    assert verify(offline, REGISTRY_ID, "tok01", new["value"]) == (False, "expired")
    assert verify(offline, REGISTRY_ID, "tok01", first["password2"]) == (True, None)
    token = offline.store.get(token["id"])
    tokens.patch_token(offline, registry, token, {"properties": {"status": "disabled"}})
    save(offline, TOKEN_TYPE, token)
    assert verify(offline, REGISTRY_ID, "tok01", first["password2"]) == (False, "disabled")


def test_set_runtime_status(offline):
    registry = {"id": REGISTRY_ID, "name": "reg01", "properties": {"dataEndpointHostNames": ["127.0.0.1:4000"]}}
    offline.store.put(REGISTRY_ID, REGISTRY_TYPE, registry)
    token = {"id": f"{REGISTRY_ID}/tokens/sync01"}
    offline.store.put(token["id"], TOKEN_TYPE, token)
    allowed = registry | {"sku": {"name": "Premium"}, "properties": {"dataEndpointEnabled": True}}
    parent, _ = connected.put_connected_registry(offline, allowed, "edge01", connected_body(token["id"], "ReadWrite"))
    save(offline, CONNECTED_REGISTRY_TYPE, parent)
    child, _ = connected.put_connected_registry(offline, allowed, "edge02",
                                                connected_body(token["id"], parent_id=parent["id"]))
    save(offline, CONNECTED_REGISTRY_TYPE, child)

    now = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    shown = connected.set_runtime_status(
        offline, parent["id"], connection_state="online", activation_status="Active", last_activity_time=now,
        last_sync_time=now, version="0.11.0", login_server={"host": "10.0.0.5:8080", "tls": {"status": "Disabled"}},
        status_details=[{"type": "sync", "code": "200", "description": "ok", "timestamp": "2030-01-02T03:04:05Z",
                         "correlationId": "c1"}])
    assert_schema("ConnectedRegistry", shown)
    props = shown["properties"]
    assert (props["connectionState"], props["activation"]["status"], props["version"]) == ("Online", "Active", "0.11.0")
    assert props["lastActivityTime"].startswith("2030-01-02T03:04:05")
    assert props["parent"]["syncProperties"]["gatewayEndpoint"] == "127.0.0.1:4000"
    # ARM cannot know where the parent device is, even when it reported a login server host.
    assert "gatewayEndpoint" not in connected.render_connected_registry(offline, child)["properties"]["parent"][
        "syncProperties"]
    docs = offline.store.children(REGISTRY_ID, CONNECTED_REGISTRY_TYPE)
    assert [d["name"] for d in connected.filter_connected_registries(docs, "connectionState eq 'Online'")] == ["edge01"]
    connected.finish_deactivation(offline, {"resourceId": parent["id"]})
    after = offline.store.get(parent["id"])["properties"]
    assert (after["connectionState"], after["activation"]) == ("Offline", {"status": "Inactive"})


def test_restart_reopens_registry_endpoints_on_their_ports(tmp_path):
    state_dir = tmp_path / "sandbox"
    status = control.start(state_dir)
    try:
        cred = ClientSecretCredential(status["tenant_id"], status["client_id"], status["client_secret"],
                                      authority=status["authority"], disable_instance_discovery=True,
                                      connection_verify=status["ca_bundle"])
        client = ContainerRegistryManagementClient(cred, status["subscription_id"], base_url=status["arm_endpoint"],
                                                   connection_verify=status["ca_bundle"])
        token = cred.get_token("https://management.azure.com/.default").token
        requests.put(f"{status['arm_endpoint']}/subscriptions/{status['subscription_id']}/resourcegroups/rg01",
                     params={"api-version": "2024-03-01"}, json={"location": "westus"},
                     headers={"Authorization": f"Bearer {token}"}, verify=status["ca_bundle"], timeout=10)
        before = client.registries.begin_create("rg01", "restarted", m.Registry(
            location="westus", sku=m.Sku(name="Premium"), data_endpoint_enabled=True)).result()
        control.stop(state_dir)
        status = control.start(state_dir)
        after = client.registries.get("rg01", before.name)
        assert after.login_server == before.login_server
        assert after.data_endpoint_host_names == before.data_endpoint_host_names
        assert all(listening(h, status["ca_bundle"]) for h in [after.login_server, *after.data_endpoint_host_names])
    finally:
        control.stop(state_dir)
