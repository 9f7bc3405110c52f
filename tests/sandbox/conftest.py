"""Fixtures for the device stories: each test module gets a sandbox of its own with the device
clock at 60x, a cloud (resource group, Premium registry with its data endpoint, IoT hub) with the
quickstart's images imported, and a token the edge agent pulls module images with."""

from __future__ import annotations

import pytest
from edge_story import MODULE_IMAGES, make_cloud

from crlib.sandbox import control

CLOCK_SPEED = 60


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
