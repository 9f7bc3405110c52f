"""Fixtures of the sandbox tests. For the registry tests: `acr`, a Microsoft.ContainerRegistry client
on the session sandbox, and `registry`, a Premium registry with an admin token, one per module. For
the device stories: each test module gets a sandbox of its own with the device clock at 60x, a cloud
(resource group, Premium registry with its data endpoint, IoT hub) with the quickstart's images
imported, and a token the edge agent pulls module images with."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from edge_story import MODULE_IMAGES, make_cloud
from test_containerregistry import create_registry, new_group
from test_registry_data import new_token

from crlib.sandbox import control

CLOCK_SPEED = 60


@pytest.fixture(scope="module")
def acr(credential, sandbox) -> ContainerRegistryManagementClient:
    return ContainerRegistryManagementClient(credential, sandbox["subscription_id"], base_url=sandbox["arm_endpoint"],
                                             connection_verify=sandbox["ca_bundle"])


@pytest.fixture(scope="module")
def registry(acr, arm) -> SimpleNamespace:
    """A Premium registry and an admin token for it."""
    group = new_group(arm)
    reg = create_registry(acr, group)
    return SimpleNamespace(group=group, registry=reg, host=reg.login_server, admin=new_token(acr, group, reg))


@pytest.fixture(scope="module")
def fast_sandbox(tmp_path_factory, request):
    state_dir = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    status = control.start(state_dir, clock_speed=CLOCK_SPEED)
    yield status
    control.stop(state_dir)


@pytest.fixture(scope="module")
def cloud(fast_sandbox):
    cloud = make_cloud(fast_sandbox)
    cloud.import_images(MODULE_IMAGES | {"hello-world": "latest"})
    return cloud


@pytest.fixture(scope="module")
def pull_token(cloud):
    scope = cloud.scope_map("edgemodules", [f"repositories/{r}/content/read" for r in MODULE_IMAGES])
    token, password = cloud.token("edgemodules", scope)
    return token.name, password
