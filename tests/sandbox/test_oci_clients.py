"""Real OCI clients against the sandbox's registries, each with its own flows over TLS verified with the
sandbox's CA: oras-py (login with an ACR token, push and pull of a file artifact, an artifact whose
subject is an image, found again through the referrers API), skopeo (an image copied from a login
server to a `dir:` layout and back) and python-dxf. On a registry with its dedicated data endpoint on,
each client pulls from the login server, which answers every blob GET with a 307 to a signed URL on
the data endpoint; the request log shows both hops."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import oras.auth.utils
import oras.oci
import oras.provider
import pytest
from requestlog import log_from_now
from test_containerregistry import create_registry, new_group, unique
from test_registry_data import digest_of, dxf_client, new_token, pulled, push_image, registry_session

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# oras-py sets no `artifactType`: an artifact's type is its config's media type (image-spec 1.1,
# "Guidelines for Artifact Usage"), which the referrers API reports as its artifactType.
ARTIFACT_TYPE = "application/vnd.crlib.test.report.v1+json"
FILE_TYPE = "application/vnd.crlib.test.file"


@pytest.fixture(scope="module")
def registries(acr, arm) -> SimpleNamespace:
    """Two Premium registries, one with its dedicated data endpoint on ("split"), with an admin token
    each (shaped as test_registry_data's `registry`: host and admin)."""
    group = new_group(arm)
    plain = create_registry(acr, group)
    split = create_registry(acr, group, data_endpoint=True)
    assert split.data_endpoint_enabled and len(split.data_endpoint_host_names) == 1
    return SimpleNamespace(
        group=group,
        plain=SimpleNamespace(registry=plain, host=plain.login_server, admin=new_token(acr, group, plain)),
        split=SimpleNamespace(registry=split, host=split.login_server, admin=new_token(acr, group, split),
                              data_host=split.data_endpoint_host_names[0]))


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A HOME of the test's own: no docker or containers config of the machine's is read, and clients
    write theirs here."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    return path


# -- oras-py --------------------------------------------------------------------------------------------
def oras_login(host: str, ca: str, token, home: Path) -> tuple[oras.provider.Registry, str]:
    """An oras-py client that verifies TLS with the sandbox CA, logged in as oras does: the token's
    name and password go into a Docker config file, from which push and pull read them."""
    client = oras.provider.Registry(hostname=host, tls_verify=ca)
    config = str(home / "oras-config.json")
    assert client.login(token.name, token.password, hostname=host, config_path=config) == {
        "Status": "Login Succeeded"}
    return client, config


def write_artifact(folder: Path, name: str, content: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)
    (folder / "config.json").write_bytes(json.dumps({"kind": "crlib-test", "of": name}).encode())
    return folder


def ask_for_push_scope(client: oras.provider.Registry, host: str, repo: str) -> None:
    """oras-py (0.2.43) keeps the first bearer token it is given and, on a 401, retries with that same
    token: a push starts with a HEAD of the blob, challenged (rightly) for `pull`, so the upload's POST,
    challenged for `push`, is refused (oras-project/oras-py#187, open). oras (Go) asks for
    `pull,push` up front when it pushes; so do we here, through oras-py's own token request (Basic
    credentials from its login, realm and service from the registry's challenge)."""
    challenge = client.session.get(f"https://{host}/v2/", verify=client._tls_verify, timeout=30)
    assert challenge.status_code == 401
    wanted = oras.auth.utils.parse_auth_header(challenge.headers["WWW-Authenticate"])
    assert (wanted.realm, wanted.service) == (f"https://{host}/oauth2/token", host)
    wanted.scope = f"repository:{repo}:pull,push"
    token = client.auth.request_token(wanted)
    assert token, "the token endpoint refused oras-py's request"
    client.auth.set_token_auth(token)


def oras_push(client, config: str, target: str, folder: Path, name: str, monkeypatch, **kwargs):
    """`oras push target name:FILE_TYPE --config config.json:ARTIFACT_TYPE`, run from the folder (oras-py
    pushes only files below the working directory)."""
    container = client.get_container(target)
    ask_for_push_scope(client, container.registry, container.api_prefix)
    monkeypatch.chdir(folder)
    return client.push(target, files=[f"{name}:{FILE_TYPE}"], manifest_config=f"config.json:{ARTIFACT_TYPE}",
                       config_path=config, quiet=True, **kwargs)


def test_oras_pushes_and_pulls_a_file_artifact_with_its_own_token_flow(registries, sandbox, home, tmp_path,
                                                                       monkeypatch):
    reg, ca = registries.plain, sandbox["ca_bundle"]
    repo = unique("oras/report")
    content = b"crlib oras artifact\n" + os.urandom(4096)
    folder = write_artifact(tmp_path / "push", "report.bin", content)
    client, config = oras_login(reg.host, ca, reg.admin, home)
    pushed = oras_push(client, config, f"{reg.host}/{repo}:v1", folder, "report.bin", monkeypatch,
                       manifest_annotations={"org.example.purpose": "test"})
    assert pushed.status_code == 201, pushed.text
    digest = pushed.headers["Docker-Content-Digest"]

    # Pulled by a second client, logged in afresh, into an empty folder, wholly by oras-py's own flow:
    # the first request is challenged, it asks the token endpoint with the Basic credentials of its login
    # (its User-Agent says oras-py) for the challenge's scope, and retries with the bearer token.
    log = log_from_now(sandbox)
    puller, config = oras_login(reg.host, ca, reg.admin, home)
    out = tmp_path / "pulled"
    files = puller.pull(f"{reg.host}/{repo}:v1", config_path=config, outdir=str(out))
    assert [Path(f).relative_to(out) for f in files] == [Path("report.bin")]
    assert (out / "report.bin").read_bytes() == content
    rows = log()
    assert [(r["method"], r["path"], r["status"]) for r in rows] == [
        ("GET", f"/v2/{repo}/manifests/v1", 401), ("GET", "/oauth2/token", 200),
        ("GET", f"/v2/{repo}/manifests/v1", 200), ("GET", f"/v2/{repo}/blobs/{digest_of(content)}", 200)]
    assert rows[1]["user_agent"] == "oras-py"

    manifest = puller.get_manifest(f"{reg.host}/{repo}@{digest}")
    assert manifest == puller.get_manifest(f"{reg.host}/{repo}:v1")
    assert manifest["mediaType"] == OCI_MANIFEST and manifest["annotations"] == {"org.example.purpose": "test"}
    assert manifest["config"] == {"mediaType": ARTIFACT_TYPE, "digest": digest_of((folder / "config.json").read_bytes()),
                                  "size": (folder / "config.json").stat().st_size}
    assert manifest["layers"] == [{"mediaType": FILE_TYPE, "digest": digest_of(content), "size": len(content),
                                   "annotations": {"org.opencontainers.image.title": "report.bin"}}]
    assert puller.get_tags(f"{reg.host}/{repo}") == ["v1"]


def test_oras_attaches_an_artifact_to_an_image_and_the_referrers_api_lists_it(registries, sandbox, home, tmp_path,
                                                                            monkeypatch):
    reg, ca = registries.plain, sandbox["ca_bundle"]
    repo = unique("oras/app")
    image = dxf_client(reg.host, repo, ca, reg.admin.name, reg.admin.password)
    image_digest, _ = push_image(image, "v1", "oras-subject")
    image_manifest = image.get_manifest(image_digest).encode()
    assert digest_of(image_manifest) == image_digest

    client, config = oras_login(reg.host, ca, reg.admin, home)
    content = b'{"sbom": "for the image"}'
    folder = write_artifact(tmp_path / "attach", "sbom.json", content)
    subject = oras.oci.Subject(mediaType=OCI_MANIFEST, digest=image_digest, size=len(image_manifest))
    pushed = oras_push(client, config, f"{reg.host}/{repo}:v1-sbom", folder, "sbom.json", monkeypatch,
                       subject=subject)
    assert pushed.status_code == 201, pushed.text
    artifact_digest = pushed.headers["Docker-Content-Digest"]
    # Distribution spec 1.1, "Pushing Manifests with Subject": a registry that processed the subject says so.
    assert pushed.headers.get("OCI-Subject") == image_digest
    artifact = client.get_manifest(f"{reg.host}/{repo}@{artifact_digest}")
    assert artifact["subject"] == {"mediaType": OCI_MANIFEST, "digest": image_digest, "size": len(image_manifest)}

    # GET /v2/<name>/referrers/<digest>: an image index of the manifests whose subject it is.
    session = registry_session(reg, sandbox, repo, "pull")
    raw = session.get(f"https://{reg.host}/v2/{repo}/manifests/{artifact_digest}", headers={"Accept": OCI_MANIFEST},
                      timeout=30).content
    assert digest_of(raw) == artifact_digest
    url = f"https://{reg.host}/v2/{repo}/referrers/{image_digest}"
    answer = session.get(url, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].split(";")[0] == OCI_INDEX
    assert answer.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": artifact_digest, "size": len(raw),
        "artifactType": ARTIFACT_TYPE}]}
    # Filtered by artifactType: the filter is applied and said so; another type lists nothing.
    same = session.get(url, params={"artifactType": ARTIFACT_TYPE}, timeout=30)
    assert same.headers.get("OCI-Filters-Applied") == "artifactType" and same.json() == answer.json()
    other = session.get(url, params={"artifactType": "application/vnd.example.other"}, timeout=30)
    assert other.status_code == 200 and other.headers.get("OCI-Filters-Applied") == "artifactType"
    assert other.json()["manifests"] == []
    # The artifact itself has no referrers; an unknown digest has none either (an empty index, not a 404).
    for digest in (artifact_digest, digest_of(b"no such manifest")):
        empty = session.get(f"https://{reg.host}/v2/{repo}/referrers/{digest}", timeout=30)
        assert empty.status_code == 200 and empty.json()["manifests"] == [], empty.text


# -- skopeo ---------------------------------------------------------------------------------------------
@pytest.fixture
def certs(sandbox, tmp_path) -> Path:
    """A containers-style certs directory (`--src-cert-dir`/`--dest-cert-dir`) holding the sandbox CA."""
    path = tmp_path / "certs"
    path.mkdir()
    shutil.copyfile(sandbox["ca_bundle"], path / "ca.crt")
    return path


def skopeo(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """skopeo with the test's HOME, an explicit policy that accepts unsigned images, no proxy: it talks
    only to the sandbox's hosts on 127.0.0.1."""
    binary = shutil.which("skopeo")
    assert binary, "Debian's skopeo is missing: apt-get install -y skopeo (.ci/run installs it)"
    policy = home / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()} | {"HOME": str(home)}
    done = subprocess.run([binary, "--policy", str(policy), *args], capture_output=True, text=True,
                          env=env, timeout=300, stdin=subprocess.DEVNULL)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def dir_layout(path: Path) -> tuple[str, set[str]]:
    """A `dir:` layout's manifest digest and the digests of its blobs (files named by their hex digest)."""
    manifest = (path / "manifest.json").read_bytes()
    blobs = {f.name for f in path.iterdir() if f.name not in ("manifest.json", "version")}
    for name in blobs:
        assert hashlib.sha256((path / name).read_bytes()).hexdigest() == name
    return digest_of(manifest), {f"sha256:{name}" for name in blobs}


def test_skopeo_copies_an_image_to_a_dir_and_back(registries, sandbox, home, certs, tmp_path):
    reg, ca = registries.plain, sandbox["ca_bundle"]
    source, target = unique("skopeo/source"), unique("skopeo/target")
    digest, blobs = push_image(dxf_client(reg.host, source, ca, reg.admin.name, reg.admin.password), "v1", "skopeo")
    creds = f"{reg.admin.name}:{reg.admin.password}"

    # Without the sandbox CA, skopeo refuses the login server's certificate: TLS is verified.
    refused = skopeo(home, "inspect", "--raw", "--creds", creds, f"docker://{reg.host}/{source}:v1", check=False)
    assert refused.returncode != 0 and "x509" in refused.stderr, refused.stderr
    inspected = skopeo(home, "inspect", "--raw", "--cert-dir", str(certs), "--creds", creds,
                       f"docker://{reg.host}/{source}:v1")
    assert digest_of(inspected.stdout.encode()) == digest

    layout = tmp_path / "layout"
    skopeo(home, "copy", "--quiet", "--src-cert-dir", str(certs), "--src-creds", creds,
           f"docker://{reg.host}/{source}:v1", f"dir:{layout}")
    assert dir_layout(layout) == (digest, set(blobs))
    assert (layout / "version").read_text().startswith("Directory Transport Version")

    skopeo(home, "copy", "--quiet", "--dest-cert-dir", str(certs), "--dest-creds", creds,
           f"dir:{layout}", f"docker://{reg.host}/{target}:v2")
    back = dxf_client(reg.host, target, ca, reg.admin.name, reg.admin.password)
    _, response = back.get_manifest_and_response("v2")
    assert response.headers["Docker-Content-Digest"] == digest and digest_of(response.content) == digest
    for blob in blobs:
        assert digest_of(pulled(back, blob)) == blob
    assert back.list_aliases() == ["v2"]


# -- pulls from a login server whose data endpoint serves the blobs ------------------------------------------
def assert_blobs_came_from_the_data_endpoint(rows: list[dict], split, repo: str, blobs: list[str]) -> None:
    """Each blob: a GET on the login server answered 307, then a GET of its signed URL on the data
    endpoint answered 200; the login server served no blob bytes itself."""
    seen = [(r["host"], r["method"], r["status"], r["path"]) for r in rows]
    for blob in blobs:
        assert (split.host, "GET", 307, f"/v2/{repo}/blobs/{blob}") in seen, seen
        algorithm, hexdigest = blob.split(":")
        signed = f"/{split.registry.name}//docker/registry/v2/blobs/{algorithm}/{hexdigest[:2]}/{hexdigest}/data"
        assert (split.data_host, "GET", 200, signed) in seen, seen
    assert not [r for r in seen if r[0] == split.host and r[1] == "GET" and "/blobs/sha256:" in r[3]
                and r[2] != 307], seen


def test_skopeo_pulls_through_the_data_endpoint_redirect(registries, sandbox, home, certs, tmp_path):
    split, ca = registries.split, sandbox["ca_bundle"]
    repo = unique("skopeo/split")
    digest, blobs = push_image(dxf_client(split.host, repo, ca, split.admin.name, split.admin.password), "v1",
                               "skopeo-split")
    log = log_from_now(sandbox)
    layout = tmp_path / "layout"
    skopeo(home, "copy", "--quiet", "--src-cert-dir", str(certs), "--src-creds",
           f"{split.admin.name}:{split.admin.password}", f"docker://{split.host}/{repo}:v1", f"dir:{layout}")
    assert dir_layout(layout) == (digest, set(blobs))
    assert_blobs_came_from_the_data_endpoint(log(), split, repo, blobs)


def test_python_dxf_pulls_an_image_through_the_data_endpoint_redirect_with_a_pull_token(acr, registries,
                                                                                         sandbox):
    split, ca = registries.split, sandbox["ca_bundle"]
    repo = unique("dxf/split")
    digest, blobs = push_image(dxf_client(split.host, repo, ca, split.admin.name, split.admin.password), "v1",
                               "dxf-split")
    reader = new_token(acr, registries.group, split.registry, [f"repositories/{repo}/content/read"])
    log = log_from_now(sandbox)
    client = dxf_client(split.host, repo, ca, reader.name, reader.password)
    manifest, response = client.get_manifest_and_response("v1")
    assert response.status_code == 200 and digest_of(manifest.encode()) == digest
    listed = json.loads(manifest)
    assert [listed["config"]["digest"], *(x["digest"] for x in listed["layers"])] == blobs
    for blob in blobs:
        assert digest_of(pulled(client, blob)) == blob  # dxf also checks each digest as it reads
    rows = log()
    assert ("GET", f"/v2/{repo}/manifests/v1", 200) in [(r["method"], r["path"], r["status"]) for r in rows
                                                       if r["host"] == split.host]
    assert_blobs_came_from_the_data_endpoint(rows, split, repo, blobs)


def test_oras_pulls_an_artifact_through_the_data_endpoint_redirect(registries, sandbox, home, tmp_path, monkeypatch):
    split, ca = registries.split, sandbox["ca_bundle"]
    repo = unique("oras/split")
    content = b"through the data endpoint\n" + os.urandom(2048)
    folder = write_artifact(tmp_path / "push", "payload.bin", content)
    client, config = oras_login(split.host, ca, split.admin, home)
    pushed = oras_push(client, config, f"{split.host}/{repo}:v1", folder, "payload.bin", monkeypatch)
    assert pushed.status_code == 201, pushed.text

    log = log_from_now(sandbox)
    puller, config = oras_login(split.host, ca, split.admin, home)
    out = tmp_path / "pulled"
    files = puller.pull(f"{split.host}/{repo}:v1", config_path=config, outdir=str(out))
    assert [Path(f).relative_to(out) for f in files] == [Path("payload.bin")]
    assert (out / "payload.bin").read_bytes() == content
    assert_blobs_came_from_the_data_endpoint(log(), split, repo, [digest_of(content)])
