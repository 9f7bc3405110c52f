"""The registry data plane, driven with python-dxf (a real OCI client) over verified TLS: pushing and
pulling images, monolithic and chunked uploads, deletes and digest checks; a 1 GiB blob through a
sandbox whose memory stays flat; and ACR token auth: who may pull and push what, and how disabled,
expired and rotated passwords are refused."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import tarfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from azure.mgmt.containerregistry import models as m
from dxf import DXF, DXFBase
from dxf.exceptions import DXFUnauthorizedError
from test_containerregistry import unique

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MiB = 1024 * 1024


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def new_token(acr, group: str, registry, actions: list[str] | None = None) -> SimpleNamespace:
    """A token with its own scope map (or the built-in admin one), and its first password."""
    if actions is None:
        scope_map_id = f"{registry.id}/scopeMaps/_repositories_admin"
    else:
        scope_map_id = acr.scope_maps.begin_create(group, registry.name, unique("map"),
                                                   m.ScopeMap(actions=actions)).result().id
    token = acr.tokens.begin_create(group, registry.name, unique("tok"), m.Token(scope_map_id=scope_map_id)).result()
    result = acr.registries.begin_generate_credentials(group, registry.name, m.GenerateCredentialsParameters(
        token_id=token.id, name="password1")).result()
    return SimpleNamespace(id=token.id, name=token.name, password=result.passwords[0].value)


def dxf_client(host: str, repo: str | None, ca_bundle: str, username: str | None = None,
               password: str | None = None) -> DXF | DXFBase:
    def auth(client: DXFBase, response: requests.Response) -> None:
        client.authenticate(username, password, response=response)

    if repo is None:
        return DXFBase(host, auth=auth, tlsverify=ca_bundle)
    return DXF(host, repo, auth=auth, tlsverify=ca_bundle)


def layer(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, content in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(buffer.getvalue(), mtime=0)


def push_image(client: DXF, tag: str, label: str) -> tuple[str, list[str]]:
    """Push two layers, a config and an OCI manifest; return the manifest's digest and the blobs'."""
    layers = [layer({"etc/label": label.encode()}), layer({f"app/{label}.txt": label.encode() * 100})]
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [
        digest_of(gzip.decompress(data)) for data in layers]}}).encode()
    for data in [*layers, config]:
        assert client.push_blob(data=iter([data]), digest=digest_of(data)) == digest_of(data)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest_of(data),
                    "size": len(data)} for data in layers],
    })
    client.set_manifest(tag, manifest)
    return digest_of(manifest.encode()), [digest_of(config), *map(digest_of, layers)]


def manifest_digest(client: DXF, reference: str) -> str:
    _, response = client.get_manifest_and_response(reference)
    return response.headers["Docker-Content-Digest"]


def pulled(client: DXF, digest: str) -> bytes:
    """A blob's bytes; dxf checks them against the digest as it reads."""
    return b"".join(client.pull_blob(digest))


def error_of(exc: pytest.ExceptionInfo) -> dict:
    return exc.value.response.json()["errors"][0]


# -- pushing and pulling ---------------------------------------------------------------------------
def test_image_round_trip(registry, sandbox):
    ca, admin = sandbox["ca_bundle"], registry.admin
    repo = unique("round/trip")
    client = dxf_client(registry.host, repo, ca, admin.name, admin.password)
    digest, blobs = push_image(client, "v1", "round-trip")

    assert client.list_aliases() == ["v1"]
    assert repo in dxf_client(registry.host, None, ca, admin.name, admin.password).list_repos()
    assert manifest_digest(client, "v1") == manifest_digest(client, digest) == digest
    manifest = json.loads(client.get_manifest("v1"))
    assert [manifest["config"]["digest"]] + [x["digest"] for x in manifest["layers"]] == blobs
    _, head = client.head_manifest_and_response("v1")
    assert head.headers["Docker-Content-Digest"] == digest and head.headers["Content-Type"] == OCI_MANIFEST
    for blob in blobs:
        data = pulled(client, blob)
        assert digest_of(data) == blob and client.blob_size(blob) == len(data)

    # Another tag on the same manifest, then deleting by digest takes both tags with it.
    client.set_manifest("v2", client.get_manifest("v1"))
    assert sorted(client.list_aliases()) == ["v1", "v2"]
    client.del_alias("v1")
    with pytest.raises(requests.HTTPError) as exc:
        client.get_manifest("v2")
    assert exc.value.response.status_code == 404 and error_of(exc)["code"] == "MANIFEST_UNKNOWN"
    client.del_blob(blobs[1])
    with pytest.raises(requests.HTTPError) as exc:
        client.blob_size(blobs[1])
    assert exc.value.response.status_code == 404
    assert digest_of(pulled(client, blobs[2])) == blobs[2]  # the other blobs stay


def test_a_wrong_digest_is_refused(registry, sandbox):
    client = dxf_client(registry.host, unique("digests"), sandbox["ca_bundle"], registry.admin.name,
                        registry.admin.password)
    with pytest.raises(requests.HTTPError) as exc:
        client.push_blob(data=iter([b"what was sent"]), digest=digest_of(b"what was promised"), check_exists=False)
    assert exc.value.response.status_code == 400 and error_of(exc)["code"] == "DIGEST_INVALID"
    with pytest.raises(requests.HTTPError) as exc:
        client.blob_size(digest_of(b"what was promised"))
    assert exc.value.response.status_code == 404


def registry_session(registry, sandbox, repo: str, actions: str) -> requests.Session:
    """A requests session holding a bearer token from the registry's token endpoint."""
    session = requests.Session()
    session.trust_env = False  # the machine's REQUESTS_CA_BUNDLE would replace the sandbox CA
    session.verify = sandbox["ca_bundle"]
    response = session.get(f"https://{registry.host}/oauth2/token", auth=(registry.admin.name, registry.admin.password),
                           params={"service": registry.host, "scope": f"repository:{repo}:{actions}"})
    assert response.status_code == 200, response.text
    session.headers["Authorization"] = "Bearer " + response.json()["access_token"]
    return session


def test_chunked_and_monolithic_uploads(registry, sandbox):
    repo = unique("chunks")
    session = registry_session(registry, sandbox, repo, "pull,push")
    base = f"https://{registry.host}/v2/{repo}/blobs/uploads/"
    data = os.urandom(3 * MiB + 12345)
    parts = [data[: MiB], data[MiB: 3 * MiB], data[3 * MiB:]]

    started = session.post(base)
    assert started.status_code == 202
    location = f"https://{registry.host}{started.headers['Location']}"
    offset = 0
    for part in parts[:2]:
        sent = session.patch(location, data=part, headers={
            "Content-Type": "application/octet-stream", "Content-Range": f"{offset}-{offset + len(part) - 1}"})
        offset += len(part)
        assert sent.status_code == 202 and sent.headers["Range"] == f"0-{offset - 1}"
    assert session.get(location).headers["Range"] == f"0-{offset - 1}"
    gap = session.patch(location, data=b"x", headers={"Content-Range": f"{offset + 5}-{offset + 5}"})
    assert gap.status_code == 416 and gap.headers["Range"] == f"0-{offset - 1}"
    finished = session.put(location, params={"digest": digest_of(data)}, data=parts[2])
    assert finished.status_code == 201 and finished.headers["Docker-Content-Digest"] == digest_of(data)

    small = b"one request"
    monolithic = session.post(base, params={"digest": digest_of(small)}, data=small)
    assert monolithic.status_code == 201

    reader = dxf_client(registry.host, repo, sandbox["ca_bundle"], registry.admin.name, registry.admin.password)
    assert pulled(reader, digest_of(data)) == data and pulled(reader, digest_of(small)) == small
    blob_url = f"https://{registry.host}/v2/{repo}/blobs/{digest_of(data)}"
    ranged = session.get(blob_url, headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == data[10:20]
    assert ranged.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert session.get(blob_url, headers={"Range": "bytes=-5"}).content == data[-5:]
    assert session.get(blob_url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416


# -- a large blob ----------------------------------------------------------------------------------
GiB_CHUNKS = 1024


def big_chunks() -> object:
    """1 GiB, made one MiB at a time (each MiB different), never held whole."""
    block = bytes(range(256)) * (MiB // 256)
    for i in range(GiB_CHUNKS):
        yield i.to_bytes(8, "big") + block[8:]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class PeakRss:
    """Samples a process's resident memory in the background; `growth` is the peak over the start, in MB."""

    def __init__(self, pid: int):
        self.pid, self.start, self.peak = pid, rss_kib(pid), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_kib(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kib(self.pid))

    @property
    def growth(self) -> float:
        return (self.peak - self.start) * 1024 / 1e6


def test_a_1_gib_blob_streams_with_flat_memory(registry, sandbox):
    hasher = hashlib.sha256()
    for chunk in big_chunks():
        hasher.update(chunk)
    digest = "sha256:" + hasher.hexdigest()
    client = dxf_client(registry.host, unique("big"), sandbox["ca_bundle"], registry.admin.name,
                        registry.admin.password)
    with client, PeakRss(sandbox["pid"]) as upload:
        began = time.perf_counter()
        client.push_blob(data=big_chunks(), digest=digest)
        up_seconds = time.perf_counter() - began
    with client, PeakRss(sandbox["pid"]) as download:
        began = time.perf_counter()
        chunks, size = client.pull_blob(digest, size=True, chunk_size=MiB)
        received = sum(len(chunk) for chunk in chunks)  # dxf checks the digest at the end
        down_seconds = time.perf_counter() - began
    print(f"1 GiB blob: upload {up_seconds:.1f} s (sandbox RSS +{upload.growth:.1f} MB), "
          f"download {down_seconds:.1f} s (sandbox RSS +{download.growth:.1f} MB)")
    try:
        assert size == received == GiB_CHUNKS * MiB
        assert upload.growth < 100 and download.growth < 100
    finally:
        # The sandbox keeps blob files until its state directory goes; free the disk now.
        client.del_blob(digest)
        hexdigest = digest.split(":")[1]
        (Path(sandbox["state_dir"]) / "blobs" / "sha256" / hexdigest[:2] / hexdigest).unlink()


# -- who may do what -------------------------------------------------------------------------------
def token_refusal(registry, sandbox, username: str, password: str) -> dict:
    """What the token endpoint says to these credentials, as `docker login` would see it."""
    response = requests.get(f"https://{registry.host}/oauth2/token", timeout=10, verify=sandbox["ca_bundle"],
                            headers={"Authorization": "Basic " + base64.b64encode(
                                f"{username}:{password}".encode()).decode()},
                            params={"service": registry.host, "scope": "repository:alpha:pull"})
    assert response.status_code == 401, response.text
    [error] = response.json()["errors"]
    assert error["code"] == "UNAUTHORIZED"
    return error


def test_token_access_matrix(acr, registry, sandbox):
    ca, admin, group = sandbox["ca_bundle"], registry.admin, registry.group
    alpha, beta = unique("alpha"), unique("beta")
    pushed = {repo: push_image(dxf_client(registry.host, repo, ca, admin.name, admin.password), "v1", repo)[0]
              for repo in (alpha, beta)}
    reader = new_token(acr, group, registry.registry, [f"repositories/{alpha}/content/read"])

    def as_reader(repo: str, password: str | None = None) -> DXF:
        return dxf_client(registry.host, repo, ca, reader.name, password or reader.password)

    assert manifest_digest(as_reader(alpha), "v1") == pushed[alpha]
    with pytest.raises(DXFUnauthorizedError):
        as_reader(beta).get_manifest("v1")
    with pytest.raises(DXFUnauthorizedError):
        as_reader(alpha).push_blob(data=iter([b"new"]), digest=digest_of(b"new"))
    with pytest.raises(DXFUnauthorizedError):
        as_reader(alpha).del_alias("v1")

    old = reader.password
    [new] = acr.registries.begin_generate_credentials(group, registry.registry.name, m.GenerateCredentialsParameters(
        token_id=reader.id, name="password1")).result().passwords
    with pytest.raises(DXFUnauthorizedError):
        as_reader(alpha, old).get_manifest("v1")
    assert "regenerated" in token_refusal(registry, sandbox, reader.name, old)["message"]
    assert "incorrect" in token_refusal(registry, sandbox, reader.name, "not-a-password")["message"]
    assert manifest_digest(as_reader(alpha, new.value), "v1") == pushed[alpha]

    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    [expired] = acr.registries.begin_generate_credentials(group, registry.registry.name, m.GenerateCredentialsParameters(
        token_id=reader.id, name="password2", expiry=past)).result().passwords
    with pytest.raises(DXFUnauthorizedError):
        as_reader(alpha, expired.value).get_manifest("v1")
    assert "expired" in token_refusal(registry, sandbox, reader.name, expired.value)["message"]

    acr.tokens.begin_update(group, registry.registry.name, reader.name, m.TokenUpdateParameters(
        status="disabled")).result()
    with pytest.raises(DXFUnauthorizedError):
        as_reader(alpha, new.value).get_manifest("v1")
    assert "disabled" in token_refusal(registry, sandbox, reader.name, new.value)["message"]
