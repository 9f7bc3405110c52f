"""The registry endpoint and image import steps, and the registry data plane's refresh-token sign-in
they rely on, against the sandbox through the real SDKs and python-dxf."""

from __future__ import annotations

import pytest
import requests
from azure.mgmt.containerregistry import models as acr
from dxf import DXF
from dxf.exceptions import DXFUnauthorizedError
from requestlog import log_from_now
from testkit import push_small_image

from crlib import params
from crlib.azure import readers
from crlib.azure.images import REFRESH_TOKEN_USER, wanted_images
from crlib.errors import PreconditionFailed
from crlib.results import Status
from crlib.steps.endpoint import ensure_endpoint
from crlib.steps.hub import ensure_resource_group
from crlib.steps.imports import ensure_imports

IMAGES = ["acr/connected-registry:0.8.0", "azureiotedge-agent:1.5", "azureiotedge-hub:1.5",
          "azureiotedge-api-proxy:1.1.2", "azureiotedge-diagnostics:1.5", "hello-world:latest"]


def variant(site: params.Site, **sections) -> params.Site:
    return params.load(site.model_dump() | sections)




def cloud(ctx):
    """The cloud registry as Azure describes it now."""
    return readers.registry(ctx, fresh=True)


def writes(log) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in log() if r["wrote"]]


@pytest.fixture
def with_group(make_site, make_context):
    site = make_site()
    ctx = make_context(site)
    ensure_resource_group(ctx)
    return site, ctx


@pytest.fixture
def with_registry(with_group):
    site, ctx = with_group
    ensure_endpoint(ctx)
    return site, ctx


def refresh_token(sandbox, credential, login_server: str) -> str:
    """ACR's token exchange, by hand: an Entra access token for a refresh token."""
    access = credential.get_token("https://management.azure.com/.default").token
    response = requests.post(f"https://{login_server}/oauth2/exchange", verify=sandbox["ca_bundle"], timeout=30,
                             data={"grant_type": "access_token", "service": login_server, "access_token": access})
    response.raise_for_status()
    return response.json()["refresh_token"]


def dxf(sandbox, host: str, repo: str, username: str | None = None, password: str | None = None) -> DXF:
    return DXF(host, repo, tlsverify=sandbox["ca_bundle"],
               auth=lambda d, response: d.authenticate(username, password, response=response))


def source_digest(sandbox, image: str) -> str:
    repo, tag = image.rsplit(":", 1)
    return dxf(sandbox, sandbox["image_source"], repo).head_manifest_and_response(tag)[0]


def push_other_image(client: DXF, tag: str) -> str:
    """Push a small one-layer image under `tag` whose content the source does not have."""
    return push_small_image(client, tag, "not what the source has")


# -- the registry and its data endpoint ----------------------------------------------------------------------------
def test_endpoint_creates_a_premium_registry_with_its_data_endpoint_then_writes_nothing(sandbox, with_group,
                                                                                        make_context):
    site, ctx = with_group
    result = ensure_endpoint(ctx)
    assert result.status == Status.CREATED
    registry = ctx.clients.acr.registries.get(site.resource_group, site.registry.name)
    assert registry.sku.name == "Premium" and registry.data_endpoint_enabled
    assert result.details == {"login_server": registry.login_server,
                              "data_endpoint": registry.data_endpoint_host_names[0]}
    assert result.resource_ids == [registry.id]

    log = log_from_now(sandbox)
    again = ensure_endpoint(make_context(site))
    assert again.status == Status.UNCHANGED
    assert writes(log) == []
    assert (again.resource_ids, again.details) == (result.resource_ids, result.details)


def test_endpoint_plan_on_a_fresh_site_writes_nothing(make_site, make_context, request_log):
    site = make_site()
    planned = ensure_endpoint(make_context(site), plan=True)
    assert planned.status == Status.PLANNED
    assert planned.changes == [f"create Premium registry '{site.registry.name}' in westus with its dedicated data "
                               "endpoint"]
    assert [r for r in request_log() if r["wrote"]] == []


def test_endpoint_enables_a_disabled_data_endpoint_with_one_write(sandbox, with_group, make_context):
    site, ctx = with_group
    ctx.clients.acr.registries.begin_create(site.resource_group, site.registry.name, acr.Registry(
        location="westus", sku=acr.Sku(name="Premium"))).result()
    log = log_from_now(sandbox)
    planned = ensure_endpoint(make_context(site), plan=True)
    assert planned.changes == [f"enable the dedicated data endpoint of registry '{site.registry.name}'"]
    assert writes(log) == []
    result = ensure_endpoint(ctx)
    assert result.status == Status.UPDATED
    assert [w.split(" ")[0] for w in writes(log)] == ["PATCH"]
    assert result.details["data_endpoint"] == cloud(ctx).data_endpoint_host_names[0]


def test_endpoint_refuses_a_registry_that_is_not_premium(sandbox, with_group):
    site, ctx = with_group
    ctx.clients.acr.registries.begin_create(site.resource_group, site.registry.name, acr.Registry(
        location="westus", sku=acr.Sku(name="Standard"))).result()
    log = log_from_now(sandbox)
    with pytest.raises(PreconditionFailed) as refused:
        ensure_endpoint(ctx)
    assert refused.value.subject == "registry.sku"
    assert f"'{site.registry.name}' is Standard; connected registries need Premium" in str(refused.value)
    assert writes(log) == []


def test_endpoint_refuses_a_registry_name_taken_in_another_group(sandbox, with_registry, make_site, make_context):
    site, _ = with_registry
    other = make_site(registry={"name": site.registry.name})
    ctx = make_context(other)
    ensure_resource_group(ctx)
    log = log_from_now(sandbox)
    with pytest.raises(PreconditionFailed) as refused:
        ensure_endpoint(ctx)
    assert refused.value.subject == "registry.name"
    assert writes(log) == []


# -- imports ----------------------------------------------------------------------------------------------------------
def test_imports_copy_every_image_at_the_sources_digest_then_write_nothing(sandbox, credential, with_registry,
                                                                           make_context):
    site, ctx = with_registry
    assert list(wanted_images(ctx)) == IMAGES
    result = ensure_imports(ctx)
    assert result.status == Status.CREATED
    assert sorted(result.details["imported"]) == sorted(IMAGES) and len(result.changes) == 6
    login_server = cloud(ctx).login_server
    token = refresh_token(sandbox, credential, login_server)
    for image in IMAGES:
        repo, tag = image.rsplit(":", 1)
        target = dxf(sandbox, login_server, repo, REFRESH_TOKEN_USER, token).head_manifest_and_response(tag)[0]
        assert target == source_digest(sandbox, image), image

    log = log_from_now(sandbox)
    again = ensure_imports(make_context(site))
    assert again.status == Status.UNCHANGED and again.changes == []
    assert again.details["unverified"] == {} and again.details["present"] == sorted(IMAGES)
    assert writes(log) == []


def test_imports_plan_on_a_fresh_site_lists_every_image_and_writes_nothing(sandbox, make_site, make_context,
                                                                          request_log):
    site = make_site()
    planned = ensure_imports(make_context(site), plan=True)
    assert planned.status == Status.PLANNED
    assert planned.changes == [f"import mcr.microsoft.com/{image} into registry '{site.registry.name}'"
                               for image in IMAGES]
    # One change per image, with the source's digest it will have.
    assert [(c["action"], c["kind"], c["name"]) for c in planned.plan] == [("create", "image", i) for i in IMAGES]
    assert [c["fields"][0]["new"] for c in planned.plan] == [source_digest(sandbox, image) for image in IMAGES]
    assert [r for r in request_log() if r["wrote"]] == []


def test_imports_bring_only_what_is_missing(sandbox, with_registry):
    site, ctx = with_registry
    ctx.clients.acr.registries.begin_import_image(site.resource_group, site.registry.name, acr.ImportImageParameters(
        source=acr.ImportSource(registry_uri="mcr.microsoft.com", source_image="hello-world:latest"))).result()
    planned = ensure_imports(ctx, plan=True)
    assert len(planned.changes) == 5 and not any("hello-world" in c for c in planned.changes)
    assert planned.details["present"] == ["hello-world:latest"]
    log = log_from_now(sandbox)
    result = ensure_imports(ctx, max_workers=2)
    assert result.status == Status.CREATED and "hello-world:latest" not in result.details["imported"]
    assert [w for w in writes(log) if w.endswith("/importImage")] == [
        f"POST {cloud(ctx).id}/importImage"] * 5


def test_imports_refuse_a_tag_that_holds_other_content(sandbox, credential, with_registry):
    _, ctx = with_registry
    login_server = cloud(ctx).login_server
    token = refresh_token(sandbox, credential, login_server)
    pushed = push_other_image(dxf(sandbox, login_server, "hello-world", REFRESH_TOKEN_USER, token), "latest")
    log = log_from_now(sandbox)
    for plan in (True, False):
        with pytest.raises(PreconditionFailed) as refused:
            ensure_imports(ctx, plan=plan)
        assert refused.value.subject == "checks.pull_image"
        assert pushed in str(refused.value) and "mode Force" in str(refused.value)
    assert writes(log) == []


def test_imports_trust_existing_tags_when_the_source_cannot_be_read(sandbox, with_registry, make_context):
    site, ctx = with_registry
    ensure_imports(ctx)
    unreachable = make_context(site)
    unreachable.profile.registry_hosts = {"mcr.microsoft.com": "127.0.0.1:1"}  # nothing listens there
    log = log_from_now(sandbox)
    result = ensure_imports(unreachable)
    assert result.status == Status.UNCHANGED
    assert sorted(result.details["unverified"]) == sorted(IMAGES)
    assert "could not be read" in result.details["unverified"]["hello-world:latest"]
    assert writes(log) == []


def test_imports_still_import_missing_images_when_the_source_cannot_be_read(with_registry, make_context):
    site, _ = with_registry
    ctx = make_context(site)
    ctx.profile.registry_hosts = {"mcr.microsoft.com": "127.0.0.1:1"}
    result = ensure_imports(ctx)
    assert result.status == Status.CREATED and sorted(result.details["imported"]) == sorted(IMAGES)


def test_imports_refuse_an_image_the_source_does_not_have(sandbox, with_registry, make_context):
    site, _ = with_registry
    missing = variant(site, images=site.images.model_dump() | {"edge_agent": "azureiotedge-agent:1.5.99"})
    log = log_from_now(sandbox)
    with pytest.raises(PreconditionFailed) as refused:
        ensure_imports(make_context(missing))
    assert refused.value.subject == "images.edge_agent" and "azureiotedge-agent:1.5.99" in str(refused.value)
    assert writes(log) == []


def test_imports_need_the_registry(with_group):
    _, ctx = with_group
    with pytest.raises(PreconditionFailed) as refused:
        ensure_imports(ctx)
    assert refused.value.subject == "registry.name"


# -- the data plane's refresh-token sign-in ------------------------------------------------------------------------
def test_registry_takes_a_refresh_token_as_the_null_guid_users_password(sandbox, credential, with_registry):
    _, ctx = with_registry
    ensure_imports(ctx)
    login_server = cloud(ctx).login_server
    token = refresh_token(sandbox, credential, login_server)
    assert dxf(sandbox, login_server, "hello-world", REFRESH_TOKEN_USER, token).list_aliases() == ["latest"]
    # The data endpoint issues tokens for the same registry.
    data_endpoint = cloud(ctx).data_endpoint_host_names[0]
    assert dxf(sandbox, data_endpoint, "hello-world", REFRESH_TOKEN_USER, token).list_aliases() == ["latest"]

    for wrong in ("not-a-token", token[:-4] + "AAAA"):
        with pytest.raises(DXFUnauthorizedError):
            dxf(sandbox, login_server, "hello-world", REFRESH_TOKEN_USER, wrong).list_aliases()
    # An access token is not a refresh token.
    access = requests.get(f"https://{login_server}/oauth2/token", verify=sandbox["ca_bundle"], timeout=30,
                          params={"service": login_server, "scope": "repository:hello-world:pull"},
                          auth=(REFRESH_TOKEN_USER, token)).json()["access_token"]
    with pytest.raises(DXFUnauthorizedError):
        dxf(sandbox, login_server, "hello-world", REFRESH_TOKEN_USER, access).list_aliases()


def test_a_refresh_token_from_one_registry_does_not_open_another(sandbox, credential, with_registry, make_site,
                                                                 make_context):
    _, ctx = with_registry
    other = make_context(make_site())
    ensure_resource_group(other)
    ensure_endpoint(other)
    token = refresh_token(sandbox, credential, cloud(ctx).login_server)
    with pytest.raises(DXFUnauthorizedError):
        dxf(sandbox, cloud(other).login_server, "hello-world", REFRESH_TOKEN_USER, token).list_aliases()
