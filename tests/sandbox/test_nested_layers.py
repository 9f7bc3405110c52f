"""A nested (lower layer) device reaches only its parent, as in Microsoft's nested IoT Edge and
connected registry tutorials: its images come from `$upstream:8000` (the parent's API proxy, which
serves what the parent connected registry has synced), its connected registry syncs through the
parent's address, and anything aimed at the cloud is blocked. The request log names the device
behind each request (User-Agent ending `IoTEdgeDevice/<deviceId>`).

Driven through the SDKs and python-dxf, never through crlib's steps; waits poll for the state the
story expects, never for a length of time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import requests
from azure.mgmt.containerregistry import models as acr
from edge_story import (
    MODULE_IMAGES,
    all_running,
    device_address,
    dxf_client,
    manifest,
    provision,
    unique,
    wait_for,
)
from requestlog import log_from_now
from test_device import wait_online
from test_device_failures import connection_string, status_detail

UPSTREAM = "$upstream:8000"


@dataclass
class Top:
    device_id: str
    name: str
    cr: acr.ConnectedRegistry
    address: str
    ca: str


def device_of(row: dict) -> str | None:
    """The simulated device a logged request came from (the User-Agent's last token)."""
    last = (row.get("user_agent") or "").rsplit(" ", 1)[-1]
    return last.split("/", 1)[1] if last.startswith("IoTEdgeDevice/") else None


@pytest.fixture(scope="module")
def top(cloud, pull_token) -> Top:
    """A top layer device whose ReadWrite connected registry syncs the module images (not
    hello-world), as the nested tutorial asks of the parent."""
    device_id, name = unique("top"), unique("cr")
    provision(cloud.status, cloud.edge_device(device_id))
    cr, sync_token, password = cloud.connected_registry(name, "ReadWrite", list(MODULE_IMAGES))
    cs = connection_string(name, sync_token.name, password, cr.parent.sync_properties.gateway_endpoint)
    cloud.deploy(device_id, manifest(cloud, pull_token=pull_token, connection_string=cs))
    cr = wait_online(cloud, name)
    wait_for(lambda: cloud.get_connected_registry(name).parent.sync_properties.last_sync_time, what="a first sync")
    address, ca = device_address(cloud.status, device_id)
    return Top(device_id, name, cr, address, ca)


def child_device(cloud, top: Top) -> str:
    device_id = unique("low")
    provision(cloud.status, cloud.edge_device(device_id), parent_hostname=top.address)
    return device_id


def child_registry(cloud, top: Top, repos: list[str]):
    name = unique("cr")
    _, sync_token, password = cloud.connected_registry(name, "ReadOnly", repos, parent_id=top.cr.id)
    return name, sync_token.name, password


def lower_layer_manifest(cloud, *, credential: tuple[str, str], connection_string: str | None,
                         extra: dict[str, str] | None = None) -> dict:
    """The quickstart manifest turned into the tutorial's lower layer one: every image from
    `$upstream:8000`, the registry credential for `$upstream:8000`; `extra` adds modules by image."""
    login = cloud.registry.login_server
    content = json.loads(json.dumps(manifest(cloud, pull_token=credential, connection_string=connection_string))
                         .replace(f'"{login}/', f'"{UPSTREAM}/'))
    agent = content["$edgeAgent"]["properties.desired"]
    agent["runtime"]["settings"]["registryCredentials"] = {
        "connectedregistry": {"address": UPSTREAM, "username": credential[0], "password": credential[1]}}
    for name, image in (extra or {}).items():
        agent["modules"][name] = {"type": "docker", "status": "running", "restartPolicy": "always",
                                  "version": "1.0", "settings": {"image": image, "createOptions": ""}}
    return content


def modules_reported(cloud, device_id: str) -> dict:
    reported = cloud.edge_agent_reported(device_id)
    return {**reported.get("systemModules", {}), **reported.get("modules", {})}


def backoff(cloud, device_id: str, module: str, text: str) -> dict:
    seen: list[dict] = [{}]

    def found():
        seen[0] = status = modules_reported(cloud, device_id).get(module, {})
        return status if status.get("runtimeStatus") == "backoff" and text in status.get("statusDescription", "") \
            else None

    try:
        return wait_for(found, what=f"{module} in backoff with '{text}'")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {module} last reported {seen[0]}") from None


def cloud_digest(cloud, repo: str, tag: str, credential: tuple[str, str]) -> str:
    """The manifest digest the cloud registry holds for repo:tag (read by the test, not a device)."""
    client = dxf_client(cloud.registry.login_server, repo, cloud.ca, *credential)
    return client.head_manifest_and_response(tag)[1].headers["Docker-Content-Digest"]


def import_as(cloud, repo: str) -> None:
    cloud.acr.registries.begin_import_image(cloud.rg, cloud.registry.name, acr.ImportImageParameters(
        source=acr.ImportSource(registry_uri="mcr.microsoft.com", source_image="hello-world:latest"),
        target_tags=[f"{repo}:latest"], mode="NoForce")).result()


def test_a_child_whose_manifest_names_cloud_images_is_blocked(cloud, pull_token, top):
    device_id = child_device(cloud, top)
    cloud.deploy(device_id, manifest(cloud, pull_token=pull_token, connection_string=None))
    login = cloud.registry.login_server
    blocked = (f"connect to {login} blocked: device '{device_id}' is in a lower network layer and reaches only "
               f"its parent '{top.address}'")
    hub = backoff(cloud, device_id, "edgeHub", blocked)
    assert hub["statusDescription"].startswith(f"Failed to pull image {login}/azureiotedge-hub")
    backoff(cloud, device_id, "IoTEdgeAPIProxy", blocked)
    assert cloud.edge_agent_reported(device_id)["lastDesiredStatus"]["code"] == 500
    # The top layer device, with no parent, pulls the same images from the cloud.
    assert all_running(cloud.edge_agent_reported(top.device_id))


def test_a_child_whose_registry_syncs_with_the_cloud_cannot_activate(cloud, top):
    device_id = child_device(cloud, top)
    name, token, password = child_registry(cloud, top, list(MODULE_IMAGES))
    [data_host] = cloud.registry.data_endpoint_host_names
    cs = connection_string(name, token, password, data_host)
    cloud.deploy(device_id, lower_layer_manifest(cloud, credential=(token, password), connection_string=cs))
    cr, detail = status_detail(cloud, name, "PARENT_UNREACHABLE", "Offline")
    assert (f"connect to {data_host} blocked: device '{device_id}' is in a lower network layer and reaches only "
            f"its parent '{top.address}'") in detail.description
    assert cr.activation.status == "Inactive"
    status = backoff(cloud, device_id, "connectedRegistry", f"connect to {data_host} blocked")
    assert status["statusDescription"].startswith("PARENT_UNREACHABLE")


def test_a_child_pulls_from_upstream_only_what_the_parent_has_synced(cloud, top):
    repo = unique("nested/hello")
    import_as(cloud, repo)  # in the cloud, not yet in the parent's sync scope
    device_id = child_device(cloud, top)
    _, token, password = child_registry(cloud, top, [*MODULE_IMAGES, repo])
    read = log_from_now(cloud.status)
    cloud.deploy(device_id, lower_layer_manifest(cloud, credential=(token, password), connection_string=None, extra={
        "hello": f"{UPSTREAM}/{repo}:latest", "via443": "$upstream:443/azureiotedge-api-proxy:1.1.2"}))

    # The module images come through the parent's API proxy, as the parent synced them.
    def pulled():
        modules = modules_reported(cloud, device_id)
        wanted = ("edgeAgent", "edgeHub", "IoTEdgeAPIProxy")
        return modules if all(modules.get(m, {}).get("runtimeStatus") == "running" for m in wanted) else None

    modules = wait_for(pulled, what="the module images pulled from $upstream:8000")
    assert modules["edgeHub"]["settings"]["imageHash"] == cloud_digest(cloud, "azureiotedge-hub", "1.2.4",
                                                                       (token, password))

    # A repository the parent has not synced is unknown there, whatever the cloud holds.
    # (404 with the distribution spec's NAME_UNKNOWN or MANIFEST_UNKNOWN: the sandbox's data plane
    # answers a manifest of a repository it does not hold with MANIFEST_UNKNOWN.)
    status = backoff(cloud, device_id, "hello", "_unknown: ")
    assert status["statusDescription"].startswith(f"Failed to pull image {UPSTREAM}/{repo}:latest: ")
    assert status["statusDescription"].split(": ")[1] in ("name_unknown", "manifest_unknown")
    with pytest.raises(requests.HTTPError) as missing:
        dxf_client(top.address, repo, top.ca, token, password).get_manifest_and_response("latest")
    assert missing.value.response.status_code == 404
    assert missing.value.response.json()["errors"][0]["code"] in ("NAME_UNKNOWN", "MANIFEST_UNKNOWN")
    with pytest.raises(requests.HTTPError) as no_tags:
        dxf_client(top.address, repo, top.ca, token, password).list_aliases()
    assert no_tags.value.response.status_code == 404
    assert no_tags.value.response.json()["errors"][0]["code"] == "NAME_UNKNOWN"

    # Host port 443 of the parent is edgeHub's in Microsoft's layout, not the API proxy's.
    backoff(cloud, device_id, "via443", "the parent's API proxy does not publish host port 443")

    # Once the parent syncs the repository, the child's next attempt gets it from the parent.
    scope_map = cloud.acr.scope_maps.get(cloud.rg, cloud.registry.name, top.name)
    cloud.acr.scope_maps.begin_update(cloud.rg, cloud.registry.name, top.name, acr.ScopeMapUpdateParameters(
        actions=[*scope_map.actions, f"repositories/{repo}/content/read", f"repositories/{repo}/metadata/read"]
    )).result()
    hello = wait_for(lambda: (lambda m: m if m.get("runtimeStatus") == "running" else None)(
        modules_reported(cloud, device_id).get("hello", {})), timeout=60, what="hello pulled once the parent synced it")
    assert hello["settings"]["imageHash"] == cloud_digest(cloud, repo, "latest", (token, password))

    # Attribution: every request of the child went to its parent's address, none to the cloud.
    rows = read()
    from_child = [r for r in rows if device_of(r) == device_id]
    assert from_child and {r["host"] for r in from_child} == {top.address}
    cloud_hosts = {cloud.registry.login_server, *cloud.registry.data_endpoint_host_names}
    assert not [r for r in rows if r["host"] in cloud_hosts and device_of(r) == device_id]
    # ... while the parent's sync of the repository reached the cloud under the parent's name.
    from_top = [r for r in rows if device_of(r) == top.device_id and r["host"] in cloud_hosts]
    assert any(repo in r["path"] for r in from_top)
    assert all(r["user_agent"].startswith("connected-registry/") for r in from_top)
    assert all(r["user_agent"].startswith("edgeAgent/") for r in from_child)


def test_a_read_only_child_syncs_through_its_parents_address(cloud, top):
    """The nested tutorial's lower layer end to end: images and sync through the parent only."""
    device_id = child_device(cloud, top)
    name, token, password = child_registry(cloud, top, list(MODULE_IMAGES))
    read = log_from_now(cloud.status)
    # The tutorial's connection string names the parent by IoT Edge's variable, not its address.
    cs = connection_string(name, token, password, "$IOTEDGE_PARENTHOSTNAME:8000")
    cloud.deploy(device_id, lower_layer_manifest(cloud, credential=(token, password), connection_string=cs))
    wait_online(cloud, name)
    wait_for(lambda: cloud.get_connected_registry(name).parent.sync_properties.last_sync_time, what="a child sync")
    wait_for(lambda: all_running(cloud.edge_agent_reported(device_id)), what="every module of the child running")
    rows = [r for r in read() if device_of(r) == device_id]
    assert {r["host"] for r in rows} == {top.address}
    assert any(r["user_agent"].startswith("connected-registry/") for r in rows)
