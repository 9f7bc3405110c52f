"""The image source standing in for mcr.microsoft.com and Docker Hub, inspected with python-dxf, and
importImage driven through azure-mgmt-containerregistry: every seed image copied and pulled back
through the registry's login server, NoForce and Force, untagged repositories, imports from other
sandbox registries, and imports that fail."""

from __future__ import annotations

import base64
import gzip
import json
from types import SimpleNamespace

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.mgmt.containerregistry import models as m
from dxf.exceptions import DXFUnauthorizedError
from test_containerregistry import create_registry, new_group
from test_registry_data import digest_of, dxf_client, manifest_digest, new_token, pulled, push_image

from crlib.sandbox import control
from crlib.sandbox.image_source.images import DOCKER_HUB, IMAGES, MCR, build

MCR_TAGS = [(i.repository, tag) for i in IMAGES if i.registry == MCR for tag in i.tags]
QUICKSTART = {("acr/connected-registry", "0.8.0"), ("azureiotedge-agent", "1.2.4"), ("azureiotedge-hub", "1.2.4"),
              ("azureiotedge-api-proxy", "1.1.2"), ("azureiotedge-diagnostics", "1.2.4")}


@pytest.fixture(scope="module")
def source(sandbox) -> SimpleNamespace:
    """Anonymous dxf clients of the image source, one per repository."""
    host = sandbox["image_source"]
    return SimpleNamespace(host=host, repo=lambda name: dxf_client(host, name, sandbox["ca_bundle"]))


@pytest.fixture(scope="module")
def target(acr, arm, sandbox) -> SimpleNamespace:
    """A registry to import into, and dxf clients of its login server with an admin token."""
    group = new_group(arm)
    reg = create_registry(acr, group)
    admin = new_token(acr, group, reg)
    return SimpleNamespace(group=group, registry=reg, repo=lambda name: dxf_client(
        reg.login_server, name, sandbox["ca_bundle"], admin.name, admin.password))


def import_image(acr, target, source: m.ImportSource, *, tags: list[str] | None = None,
                 untagged: list[str] | None = None, mode: str | None = None) -> None:
    acr.registries.begin_import_image(target.group, target.registry.name, m.ImportImageParameters(
        source=source, target_tags=tags, untagged_target_repositories=untagged, mode=mode)).result()


def mcr(image: str) -> m.ImportSource:
    return m.ImportSource(registry_uri="mcr.microsoft.com", source_image=image)


# -- the source itself -----------------------------------------------------------------------------
def test_source_serves_the_seed_images_anonymously(source, sandbox):
    catalog = dxf_client(source.host, None, sandbox["ca_bundle"]).list_repos()
    assert sorted(catalog) == sorted({i.repository for i in IMAGES})
    assert set(MCR_TAGS) >= QUICKSTART
    for image in IMAGES:
        client = source.repo(image.repository)
        assert set(image.tags) <= set(client.list_aliases())
        digests = {manifest_digest(client, tag) for tag in image.tags}
        # The same bytes in every sandbox: what this process builds is what the sandbox serves.
        assert digests == {build(image).digest}
        manifest = json.loads(client.get_manifest(image.tags[0]))
        assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert 2 <= len(manifest["layers"]) <= 3
        config = json.loads(pulled(client, manifest["config"]["digest"]))
        layers = [pulled(client, layer["digest"]) for layer in manifest["layers"]]
        assert config["rootfs"]["diff_ids"] == [digest_of(gzip.decompress(data)) for data in layers]
        assert config["config"]["Labels"]["org.opencontainers.image.version"] == image.version
        assert sum(map(len, layers)) + manifest["config"]["size"] < 100_000
    hello = {r: manifest_digest(source.repo(r), "latest") for r in ("hello-world", "library/hello-world")}
    assert len(set(hello.values())) == 1


def test_source_is_read_only(source, sandbox):
    client = source.repo("hello-world")
    with pytest.raises(DXFUnauthorizedError):
        client.push_blob(data=iter([b"mine"]), digest=digest_of(b"mine"))
    with pytest.raises(DXFUnauthorizedError):
        client.set_manifest("mine", client.get_manifest("latest"))
    with pytest.raises(DXFUnauthorizedError):
        client.del_alias("latest")
    token = requests.get(f"https://{source.host}/oauth2/token", timeout=10, verify=sandbox["ca_bundle"],
                         params={"service": source.host, "scope": "repository:hello-world:pull,push,delete"})
    assert token.status_code == 200
    grant = json.loads(_payload(token.json()["access_token"]))["access"]
    assert grant == [{"type": "repository", "name": "hello-world", "actions": ["metadata_read", "pull"]}]


def _payload(jwt: str) -> bytes:
    part = jwt.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_source_survives_a_reset_and_keeps_its_port(source, sandbox, tmp_path):
    state_dir = tmp_path / "sandbox"
    status = control.start(state_dir)
    try:
        host = status["image_source"]
        control.reset(state_dir)
        assert control.admin(status, "GET", "/_sandbox/status")["image_source"] == host
        [agent] = [i for i in IMAGES if i.repository == "azureiotedge-agent" and "1.5" in i.tags]
        assert manifest_digest(dxf_client(host, agent.repository, status["ca_bundle"]), "1.5") == build(agent).digest
        control.stop(state_dir)
        status = control.start(state_dir)
        assert status["image_source"] == host
    finally:
        control.stop(state_dir)


# -- importImage -----------------------------------------------------------------------------------
def test_import_every_seed_image_and_pull_it(acr, source, target):
    for repo, tag in MCR_TAGS:
        import_image(acr, target, mcr(f"{repo}:{tag}"))
        pulled_from = target.repo(repo)
        digest = manifest_digest(pulled_from, tag)
        assert digest == manifest_digest(source.repo(repo), tag), f"{repo}:{tag}"
        manifest = json.loads(pulled_from.get_manifest(tag))
        for blob in [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]:
            assert digest_of(pulled(pulled_from, blob)) == blob
    hello = manifest_digest(source.repo("library/hello-world"), "latest")
    for registry_uri, image, into in [(DOCKER_HUB, "library/hello-world:latest", "hub/hello:docker-io"),
                                      ("registry.hub.docker.com", "hello-world", "hub/hello:hub"),
                                      ("registry-1.docker.io", "library/hello-world", "hub/hello:registry-1")]:
        import_image(acr, target, m.ImportSource(registry_uri=registry_uri, source_image=image), tags=[into])
        assert manifest_digest(target.repo("hub/hello"), into.split(":")[1]) == hello


def test_no_force_keeps_a_tag_force_moves_it(acr, source, target, sandbox):
    agent = manifest_digest(source.repo("azureiotedge-agent"), "1.2.4")
    hub = manifest_digest(source.repo("azureiotedge-hub"), "1.2.4")
    import_image(acr, target, mcr("azureiotedge-agent:1.2.4"), tags=["edge/module:stable"])
    tag_key = f"{target.registry.id.lower()}/oci/repos/edge/module/tags/stable"
    before = control.admin(sandbox, "GET", "/_sandbox/state")[tag_key]

    with pytest.raises(HttpResponseError) as exc:
        import_image(acr, target, mcr("azureiotedge-hub:1.2.4"), tags=["edge/module:stable"])
    assert exc.value.error.code == "TagAlreadyExists" and "edge/module:stable" in exc.value.error.message
    assert manifest_digest(target.repo("edge/module"), "stable") == agent

    import_image(acr, target, mcr("azureiotedge-agent:1.2.4"), tags=["edge/module:stable"])  # same digest
    assert control.admin(sandbox, "GET", "/_sandbox/state")[tag_key] == before

    import_image(acr, target, mcr("azureiotedge-hub:1.2.4"), tags=["edge/module:stable"], mode="Force")
    assert manifest_digest(target.repo("edge/module"), "stable") == hub


def test_untagged_repositories_get_the_manifest_without_a_tag(acr, source, target):
    digest = manifest_digest(source.repo("azureiotedge-diagnostics"), "1.5")
    import_image(acr, target, mcr("azureiotedge-diagnostics:1.5"), untagged=["untagged/diag", "untagged/other"])
    for repo in ("untagged/diag", "untagged/other"):
        client = target.repo(repo)
        assert client.list_aliases() == []
        assert manifest_digest(client, digest) == digest


def test_import_from_another_sandbox_registry(acr, source, target, sandbox):
    other = create_registry(acr, target.group, "Standard")
    pusher = new_token(acr, target.group, other)
    pushed, _ = push_image(dxf_client(other.login_server, "team/app", sandbox["ca_bundle"], pusher.name,
                                      pusher.password), "1.0", "team-app")

    import_image(acr, target, m.ImportSource(resource_id=other.id, source_image="team/app:1.0"))
    import_image(acr, target, m.ImportSource(resource_id=other.id, source_image=f"team/app@{pushed}"),
                 tags=["copies/app:by-digest"])
    assert manifest_digest(target.repo("team/app"), "1.0") == pushed
    assert manifest_digest(target.repo("copies/app"), "by-digest") == pushed
    import_image(acr, target, m.ImportSource(resource_id=other.id, source_image="team/app:1.0"), tags=["copies/app"])
    assert manifest_digest(target.repo("copies/app"), "1.0") == pushed  # a target without a tag keeps the source's

    reader = new_token(acr, target.group, other, ["repositories/team/app/content/read"])
    by_login = m.ImportSource(registry_uri=other.login_server, source_image="team/app:1.0",
                              credentials=m.ImportSourceCredentials(username=reader.name, password=reader.password))
    import_image(acr, target, by_login, tags=["copies/app:by-login-server"])
    assert manifest_digest(target.repo("copies/app"), "by-login-server") == pushed

    by_login.credentials.password = "wrong"
    with pytest.raises(HttpResponseError) as exc:
        import_image(acr, target, by_login, tags=["copies/app:refused"])
    assert exc.value.error.code == "Unauthorized" and "incorrect" in exc.value.error.message
    by_login.credentials = None
    with pytest.raises(HttpResponseError) as exc:
        import_image(acr, target, by_login, tags=["copies/app:refused"])
    assert exc.value.error.code == "Unauthorized"
    assert "refused" not in target.repo("copies/app").list_aliases()


@pytest.mark.parametrize(("registry_uri", "image", "named"), [
    ("mcr.microsoft.com", "azureiotedge-agent:9.9", "azureiotedge-agent:9.9"),
    ("mcr.microsoft.com", "library/hello-world:latest", "library/hello-world"),  # Docker Hub's, not MCR's
    ("docker.io", "azureiotedge-agent:1.5", "azureiotedge-agent:1.5"),
    ("mcr.microsoft.com", "hello-world@sha256:" + "a" * 64, "hello-world@sha256:"),
    ("quay.io", "prometheus/prometheus:v2.0.0", "quay.io"),
])
def test_import_of_a_missing_image_fails_the_operation(acr, target, registry_uri, image, named):
    with pytest.raises(HttpResponseError) as exc:
        import_image(acr, target, m.ImportSource(registry_uri=registry_uri, source_image=image), tags=["missing:x"])
    assert exc.value.error.code == "InvalidParameters" and named in exc.value.error.message
    with pytest.raises(requests.HTTPError):
        target.repo("missing").get_manifest("x")

