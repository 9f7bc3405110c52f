"""The registry data plane against the OCI distribution-spec v1.1, on the points its conformance
suite (opencontainers/distribution-spec, conformance/) found: sha512 digests for blobs and
manifests, DIGEST_INVALID and BLOB_UNKNOWN where the spec's error table puts them, the referrers
API with OCI-Subject and artifactType filtering, the 416 for an out-of-order final chunk, challenges
that name every scope a request needs (and clients that follow them mount), and non-distributable
layers. Raw `requests` and python-dxf over verified TLS, with ACR tokens."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import jwt
import pytest
import requests
from test_containerregistry import unique
from test_registry_data import dxf_client, new_token

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
EMPTY_JSON = "application/vnd.oci.empty.v1+json"
ND_LAYER_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
ND_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar"
SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def descriptor(media_type: str, data: bytes, algorithm: str = "sha256") -> dict:
    return {"mediaType": media_type, "digest": digest_of(data, algorithm), "size": len(data)}


def plain_session(sandbox) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # the machine's REQUESTS_CA_BUNDLE would replace the sandbox CA
    session.verify = sandbox["ca_bundle"]
    return session


def fetch_token(registry, sandbox, scopes: list[str], token=None, *, joined: bool = False) -> str:
    """An access token for these scopes: repeated `scope` parameters, or one space-separated."""
    token = token or registry.admin
    params: list[tuple[str, str]] = [("service", registry.host)]
    params += [("scope", " ".join(scopes))] if joined else [("scope", s) for s in scopes]
    response = plain_session(sandbox).get(f"https://{registry.host}/oauth2/token", params=params,
                                          auth=(token.name, token.password))
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def session_for(registry, sandbox, scopes: list[str], token=None) -> requests.Session:
    session = plain_session(sandbox)
    session.headers["Authorization"] = "Bearer " + fetch_token(registry, sandbox, scopes, token)
    return session


def push_session(registry, sandbox, repo: str) -> requests.Session:
    return session_for(registry, sandbox, [f"repository:{repo}:pull,push,delete"])


def url(registry, path: str) -> str:
    return f"https://{registry.host}{path}"


def error_of(response: requests.Response) -> dict:
    [error] = response.json()["errors"]
    return error


def push_blob(session: requests.Session, registry, repo: str, data: bytes, algorithm: str = "sha256") -> str:
    digest = digest_of(data, algorithm)
    response = session.post(url(registry, f"/v2/{repo}/blobs/uploads/"), params={"digest": digest}, data=data,
                            headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 201, response.text
    return digest


def put_manifest(session: requests.Session, registry, repo: str, reference: str, manifest: dict,
                 media_type: str = OCI_MANIFEST) -> requests.Response:
    return session.put(url(registry, f"/v2/{repo}/manifests/{reference}"), data=json.dumps(manifest).encode(),
                       headers={"Content-Type": media_type})


def challenge_scope(response: requests.Response) -> str:
    assert response.status_code == 401, response.text
    header = response.headers["WWW-Authenticate"]
    assert header.startswith("Bearer realm=")
    return re.search(r'scope="([^"]*)"', header).group(1)


# -- sha512 ---------------------------------------------------------------------------------------
def test_sha512_blob_monolithic_upload_get_head_delete(registry, sandbox):
    repo = unique("sha512/mono")
    session = push_session(registry, sandbox, repo)
    data = os.urandom(4096)
    digest = digest_of(data, "sha512")

    pushed = session.post(url(registry, f"/v2/{repo}/blobs/uploads/"), params={"digest": digest}, data=data)
    assert pushed.status_code == 201, pushed.text
    assert pushed.headers["Docker-Content-Digest"] == digest
    assert pushed.headers["Location"] == f"/v2/{repo}/blobs/{digest}"
    hexdigest = digest.split(":")[1]
    assert (Path(sandbox["state_dir"]) / "blobs" / "sha512" / hexdigest[:2] / hexdigest).read_bytes() == data

    fetched = session.get(url(registry, pushed.headers["Location"]))
    assert fetched.status_code == 200 and fetched.content == data
    assert fetched.headers["Docker-Content-Digest"] == digest
    head = session.head(url(registry, f"/v2/{repo}/blobs/{digest}"))
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))

    assert session.delete(url(registry, f"/v2/{repo}/blobs/{digest}")).status_code == 202
    gone = session.get(url(registry, f"/v2/{repo}/blobs/{digest}"))
    assert gone.status_code == 404 and error_of(gone)["code"] == "BLOB_UNKNOWN"


def test_sha512_blob_chunked_and_streamed_uploads(registry, sandbox):
    repo = unique("sha512/chunks")
    session = push_session(registry, sandbox, repo)
    data = os.urandom(300_000)
    digest = digest_of(data, "sha512")

    started = session.post(url(registry, f"/v2/{repo}/blobs/uploads/"))
    assert started.status_code == 202
    location = url(registry, started.headers["Location"])
    for start, end in ((0, 100_000), (100_000, 200_000)):
        sent = session.patch(location, data=data[start:end], headers={
            "Content-Type": "application/octet-stream", "Content-Range": f"{start}-{end - 1}"})
        assert sent.status_code == 202 and sent.headers["Range"] == f"0-{end - 1}"
        location = url(registry, sent.headers["Location"])
    closed = session.put(location, params={"digest": digest}, data=data[200_000:],
                         headers={"Content-Range": f"200000-{len(data) - 1}"})
    assert closed.status_code == 201, closed.text
    assert closed.headers["Docker-Content-Digest"] == digest
    assert session.get(url(registry, f"/v2/{repo}/blobs/{digest}")).content == data

    # Streamed: one PATCH without Content-Range, then an empty PUT.
    other = os.urandom(50_000)
    started = session.post(url(registry, f"/v2/{repo}/blobs/uploads/"))
    streamed = session.patch(url(registry, started.headers["Location"]), data=other)
    assert streamed.status_code == 202
    closed = session.put(url(registry, streamed.headers["Location"]), params={"digest": digest_of(other, "sha512")})
    assert closed.status_code == 201, closed.text
    assert session.get(url(registry, f"/v2/{repo}/blobs/{digest_of(other, 'sha512')}")).content == other


def test_sha512_blob_mount(registry, sandbox):
    source, target = unique("sha512/source"), unique("sha512/target")
    data = os.urandom(1024)
    digest = push_blob(push_session(registry, sandbox, source), registry, source, data, "sha512")
    session = session_for(registry, sandbox, [f"repository:{target}:pull,push", f"repository:{source}:pull"])
    mounted = session.post(url(registry, f"/v2/{target}/blobs/uploads/"), params={"mount": digest, "from": source})
    assert mounted.status_code == 201, mounted.text
    assert mounted.headers["Docker-Content-Digest"] == digest
    assert session.get(url(registry, f"/v2/{target}/blobs/{digest}")).content == data


def test_sha512_upload_of_other_content_is_digest_invalid(registry, sandbox):
    repo = unique("sha512/wrong")
    session = push_session(registry, sandbox, repo)
    promised = digest_of(b"what was promised", "sha512")
    response = session.post(url(registry, f"/v2/{repo}/blobs/uploads/"), params={"digest": promised},
                            data=b"what was sent")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "DIGEST_INVALID" and "did not match uploaded content" in error["message"]
    assert error["detail"] == {"expected": promised, "actual": digest_of(b"what was sent", "sha512")}
    assert session.head(url(registry, f"/v2/{repo}/blobs/{promised}")).status_code == 404


def test_sha512_manifest_put_get_head_delete_by_digest(registry, sandbox):
    repo = unique("sha512/manifest")
    session = push_session(registry, sandbox, repo)
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = os.urandom(1000)
    push_blob(session, registry, repo, config, "sha512")
    push_blob(session, registry, repo, layer, "sha512")
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config, "sha512"),
                "layers": [descriptor(OCI_LAYER, layer, "sha512")]}
    body = json.dumps(manifest).encode()
    digest = digest_of(body, "sha512")

    pushed = put_manifest(session, registry, repo, digest, manifest)
    assert pushed.status_code == 201, pushed.text
    assert pushed.headers["Docker-Content-Digest"] == digest
    assert pushed.headers["Location"] == f"/v2/{repo}/manifests/{digest}"
    fetched = session.get(url(registry, pushed.headers["Location"]), headers={"Accept": OCI_MANIFEST})
    assert fetched.status_code == 200 and fetched.content == body
    assert fetched.headers["Content-Type"] == OCI_MANIFEST and fetched.headers["Docker-Content-Digest"] == digest
    head = session.head(url(registry, f"/v2/{repo}/manifests/{digest}"))
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(body))
    # Stored under the digest it was pushed by, not under its sha256 as well.
    assert session.get(url(registry, f"/v2/{repo}/manifests/{digest_of(body)}")).status_code == 404

    assert session.delete(url(registry, f"/v2/{repo}/manifests/{digest}")).status_code == 202
    gone = session.get(url(registry, f"/v2/{repo}/manifests/{digest}"))
    assert gone.status_code == 404 and error_of(gone)["code"] == "MANIFEST_UNKNOWN"


def test_manifest_whose_body_does_not_match_its_digest_is_digest_invalid(registry, sandbox):
    repo = unique("sha512/mismatch")
    session = push_session(registry, sandbox, repo)
    config = b"{}"
    push_blob(session, registry, repo, config)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(EMPTY_JSON, config), "layers": []}
    wrong = digest_of(json.dumps(manifest).encode() + b"  ", "sha512")
    response = put_manifest(session, registry, repo, wrong, manifest)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "DIGEST_INVALID"
    assert error["message"] == (f"manifest digest did not match: the body's digest is "
                                f"{digest_of(json.dumps(manifest).encode(), 'sha512')}, the reference {wrong}")
    assert session.get(url(registry, f"/v2/{repo}/manifests/{wrong}")).status_code == 404


# -- digest errors ----------------------------------------------------------------------------------
def test_unsupported_algorithm_is_digest_invalid_everywhere(registry, sandbox):
    repo = unique("digests/alg")
    session = push_session(registry, sandbox, repo)
    sha384 = "sha384:" + hashlib.sha384(b"x").hexdigest()
    expected = f"unsupported digest algorithm 'sha384' in {sha384!r}: this registry supports sha256 and sha512"
    for method, path, params in [("GET", f"/v2/{repo}/blobs/{sha384}", {}),
                                 ("DELETE", f"/v2/{repo}/blobs/{sha384}", {}),
                                 ("GET", f"/v2/{repo}/manifests/{sha384}", {}),
                                 ("DELETE", f"/v2/{repo}/manifests/{sha384}", {}),
                                 ("GET", f"/v2/{repo}/referrers/{sha384}", {}),
                                 ("POST", f"/v2/{repo}/blobs/uploads/", {"digest": sha384})]:
        response = session.request(method, url(registry, path), params=params, data=b"x" if method == "POST" else None)
        assert response.status_code == 400, (method, path, response.text)
        assert error_of(response) == {"code": "DIGEST_INVALID", "message": expected, "detail": None}, (method, path)
    assert session.head(url(registry, f"/v2/{repo}/blobs/{sha384}")).status_code == 400


def test_malformed_digest_is_digest_invalid(registry, sandbox):
    repo = unique("digests/bad")
    session = push_session(registry, sandbox, repo)
    for path in (f"/v2/{repo}/manifests/sha256:baddigeststring", f"/v2/{repo}/blobs/sha256:baddigeststring"):
        response = session.get(url(registry, path))
        assert response.status_code == 400 and error_of(response) == {
            "code": "DIGEST_INVALID", "detail": None,
            "message": "invalid sha256 digest 'sha256:baddigeststring': expected 64 lowercase hex characters"}
    response = put_manifest(session, registry, repo, "sha256:baddigeststring", {"schemaVersion": 2})
    assert response.status_code == 400 and error_of(response)["code"] == "DIGEST_INVALID"
    response = session.get(url(registry, f"/v2/{repo}/blobs/not-a-digest:"))
    assert response.status_code == 400 and error_of(response)["message"].startswith(
        "invalid digest 'not-a-digest:': a digest is <algorithm>:<hex>")


def test_unknown_blob_is_blob_unknown(registry, sandbox):
    repo = unique("digests/unknown")
    session = push_session(registry, sandbox, repo)
    push_blob(session, registry, repo, b"something, so the repository exists")
    for algorithm in ("sha256", "sha512"):
        digest = digest_of(os.urandom(64), algorithm)
        response = session.get(url(registry, f"/v2/{repo}/blobs/{digest}"))
        assert response.status_code == 404 and error_of(response) == {
            "code": "BLOB_UNKNOWN", "message": f"blob unknown to registry: {digest}", "detail": None}
        assert session.head(url(registry, f"/v2/{repo}/blobs/{digest}")).status_code == 404
        deleted = session.delete(url(registry, f"/v2/{repo}/blobs/{digest}"))
        assert deleted.status_code == 404 and error_of(deleted)["code"] == "BLOB_UNKNOWN"


# -- the out-of-order final chunk -----------------------------------------------------------------
def test_out_of_order_final_chunk_put_is_416_and_keeps_the_upload(registry, sandbox):
    repo = unique("chunks/order")
    session = push_session(registry, sandbox, repo)
    data = os.urandom(30_000)
    started = session.post(url(registry, f"/v2/{repo}/blobs/uploads/"))
    location = url(registry, started.headers["Location"])
    assert session.patch(location, data=data[:10_000], headers={"Content-Range": "0-9999"}).status_code == 202

    skipped = session.put(location, params={"digest": digest_of(data)}, data=data[20_000:],
                          headers={"Content-Range": f"20000-{len(data) - 1}"})
    assert skipped.status_code == 416, skipped.text
    assert skipped.headers["Range"] == "0-9999"
    assert error_of(skipped)["code"] == "BLOB_UPLOAD_INVALID"
    status = session.get(location)
    assert status.status_code == 204 and status.headers["Range"] == "0-9999"

    assert session.patch(location, data=data[10_000:20_000], headers={"Content-Range": "10000-19999"}).status_code == 202
    closed = session.put(location, params={"digest": digest_of(data)}, data=data[20_000:],
                         headers={"Content-Range": f"20000-{len(data) - 1}"})
    assert closed.status_code == 201, closed.text
    assert session.get(url(registry, f"/v2/{repo}/blobs/{digest_of(data)}")).content == data


# -- referrers -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def referred(registry, sandbox) -> SimpleNamespace:
    """An image, and three referrers of it pushed after it: an SBOM artifact (artifactType, empty
    config, annotations), a signature that is a plain image manifest (no artifactType: its config's
    media type stands in), and an index with a subject."""
    repo = unique("referrers/app")
    session = push_session(registry, sandbox, repo)
    empty, config, layer = b"{}", json.dumps({"os": "linux", "architecture": "amd64"}).encode(), os.urandom(500)
    for data in (empty, config, layer):
        push_blob(session, registry, repo, data)
    image = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
             "layers": [descriptor(OCI_LAYER, layer)]}
    assert put_manifest(session, registry, repo, "v1", image).status_code == 201
    subject = {"mediaType": OCI_MANIFEST, "digest": digest_of(json.dumps(image).encode()),
               "size": len(json.dumps(image))}
    sbom = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SBOM,
            "config": descriptor(EMPTY_JSON, empty), "layers": [descriptor(SBOM, layer)], "subject": subject,
            "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}}
    signature = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(SIGNATURE, empty),
                 "layers": [descriptor(OCI_LAYER, layer)], "subject": subject}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": "application/vnd.example.bundle.v1",
             "manifests": [subject], "subject": subject, "annotations": {"purpose": "bundle"}}
    responses = {name: put_manifest(session, registry, repo, digest_of(json.dumps(m).encode()), m, m["mediaType"])
                 for name, m in (("sbom", sbom), ("signature", signature), ("index", index))}
    return SimpleNamespace(repo=repo, session=session, subject=subject["digest"], responses=responses, expected=[
        {"mediaType": OCI_MANIFEST, "digest": digest_of(json.dumps(sbom).encode()), "size": len(json.dumps(sbom)),
         "artifactType": SBOM, "annotations": sbom["annotations"]},
        {"mediaType": OCI_MANIFEST, "digest": digest_of(json.dumps(signature).encode()),
         "size": len(json.dumps(signature)), "artifactType": SIGNATURE},
        {"mediaType": OCI_INDEX, "digest": digest_of(json.dumps(index).encode()), "size": len(json.dumps(index)),
         "artifactType": "application/vnd.example.bundle.v1", "annotations": {"purpose": "bundle"}},
    ])


def list_referrers(referred, registry, subject: str, **params) -> requests.Response:
    return referred.session.get(url(registry, f"/v2/{referred.repo}/referrers/{subject}"), params=params)


def by_digest(descriptors: list[dict]) -> list[dict]:
    return sorted(descriptors, key=lambda d: d["digest"])


def test_put_of_a_manifest_with_subject_answers_oci_subject(referred):
    for response in referred.responses.values():
        assert response.status_code == 201, response.text
        assert response.headers["OCI-Subject"] == referred.subject


def test_referrers_lists_image_and_index_manifests_with_their_artifact_types(referred, registry):
    response = list_referrers(referred, registry, referred.subject)
    assert response.status_code == 200 and response.headers["Content-Type"] == OCI_INDEX
    assert "OCI-Filters-Applied" not in response.headers
    body = response.json()
    assert body["schemaVersion"] == 2 and body["mediaType"] == OCI_INDEX
    assert by_digest(body["manifests"]) == by_digest(referred.expected)


def test_referrers_filter_by_artifact_type(referred, registry):
    response = list_referrers(referred, registry, referred.subject, artifactType=SBOM)
    assert response.status_code == 200 and response.headers["OCI-Filters-Applied"] == "artifactType"
    assert response.json()["manifests"] == [referred.expected[0]]
    none = list_referrers(referred, registry, referred.subject, artifactType="application/vnd.example.none")
    assert none.headers["OCI-Filters-Applied"] == "artifactType" and none.json()["manifests"] == []


def test_an_unknown_subject_has_an_empty_referrers_index(referred, registry, sandbox):
    response = list_referrers(referred, registry, digest_of(os.urandom(32)))
    assert response.status_code == 200 and response.headers["Content-Type"] == OCI_INDEX
    assert response.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    # Referrers belong to their repository: another one lists none of them.
    other = unique("referrers/other")
    elsewhere = push_session(registry, sandbox, other).get(url(registry, f"/v2/{other}/referrers/{referred.subject}"))
    assert elsewhere.status_code == 200 and elsewhere.json()["manifests"] == []


def test_a_referrer_of_a_missing_subject_is_accepted_and_listed(referred, registry):
    missing = {"mediaType": OCI_MANIFEST, "digest": digest_of(b"missing content"), "size": 123}
    artifact = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SBOM,
                "config": descriptor(EMPTY_JSON, b"{}"), "layers": [], "subject": missing}
    pushed = put_manifest(referred.session, registry, referred.repo, "tagged-artifact", artifact)
    assert pushed.status_code == 201 and pushed.headers["OCI-Subject"] == missing["digest"]
    listed = list_referrers(referred, registry, missing["digest"]).json()["manifests"]
    assert listed == [{"mediaType": OCI_MANIFEST, "digest": pushed.headers["Docker-Content-Digest"],
                       "size": len(json.dumps(artifact)), "artifactType": SBOM}]


def test_a_deleted_referrer_leaves_the_list(registry, sandbox):
    repo = unique("referrers/delete")
    session = push_session(registry, sandbox, repo)
    push_blob(session, registry, repo, b"{}")
    subject = {"mediaType": OCI_MANIFEST, "digest": digest_of(b"subject"), "size": 7}
    kept, dropped = ({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": kind,
                      "config": descriptor(EMPTY_JSON, b"{}"), "layers": [], "subject": subject}
                     for kind in (SBOM, SIGNATURE))
    digests = {}
    for name, manifest in (("kept", kept), ("dropped", dropped)):
        response = put_manifest(session, registry, repo, name, manifest)
        assert response.status_code == 201
        digests[name] = response.headers["Docker-Content-Digest"]

    # Deleting a tag leaves the manifest, so it stays a referrer; deleting the manifest does not.
    assert session.delete(url(registry, f"/v2/{repo}/manifests/dropped")).status_code == 202
    listed = session.get(url(registry, f"/v2/{repo}/referrers/{subject['digest']}")).json()["manifests"]
    assert sorted(d["digest"] for d in listed) == sorted(digests.values())
    assert session.delete(url(registry, f"/v2/{repo}/manifests/{digests['dropped']}")).status_code == 202
    listed = session.get(url(registry, f"/v2/{repo}/referrers/{subject['digest']}")).json()["manifests"]
    assert [d["digest"] for d in listed] == [digests["kept"]]


def test_the_empty_config_must_be_uploaded_like_any_config(registry, sandbox):
    repo = unique("referrers/empty")
    session = push_session(registry, sandbox, repo)
    artifact = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SBOM,
                "config": descriptor(EMPTY_JSON, b"{}"), "layers": []}
    refused = put_manifest(session, registry, repo, "sbom", artifact)
    assert refused.status_code == 400 and error_of(refused) == {
        "code": "MANIFEST_BLOB_UNKNOWN", "message": f"blob unknown to registry: {digest_of(b'{}')}",
        "detail": [{"digest": digest_of(b"{}")}]}
    push_blob(session, registry, repo, b"{}")
    assert put_manifest(session, registry, repo, "sbom", artifact).status_code == 201


# -- challenges and tokens -------------------------------------------------------------------------
def test_push_requests_are_challenged_for_pull_and_push(registry, sandbox):
    repo = unique("challenge/push")
    anonymous = plain_session(sandbox)
    upload = f"/v2/{repo}/blobs/uploads/0b8c1c39-1f7a-4b8f-9f43-1ac1e1b6c0de"
    for method, path in [("POST", f"/v2/{repo}/blobs/uploads/"), ("PATCH", upload), ("PUT", upload),
                         ("GET", upload), ("DELETE", upload), ("PUT", f"/v2/{repo}/manifests/v1")]:
        response = anonymous.request(method, url(registry, path))
        assert challenge_scope(response) == f"repository:{repo}:pull,push", (method, path)
        assert response.headers["WWW-Authenticate"] == (
            f'Bearer realm="https://{registry.host}/oauth2/token",service="{registry.host}",'
            f'scope="repository:{repo}:pull,push"')
    # A token that may only pull is challenged the same way.
    reader = session_for(registry, sandbox, [f"repository:{repo}:pull"])
    assert challenge_scope(reader.post(url(registry, f"/v2/{repo}/blobs/uploads/"))) == f"repository:{repo}:pull,push"


def test_deletes_are_challenged_for_delete(registry, sandbox):
    repo = unique("challenge/delete")
    anonymous = plain_session(sandbox)
    for path in (f"/v2/{repo}/manifests/{digest_of(b'm')}", f"/v2/{repo}/blobs/{digest_of(b'b')}"):
        assert challenge_scope(anonymous.delete(url(registry, path))) == f"repository:{repo}:delete"


def test_token_endpoint_grants_every_scope_asked_cut_to_the_scope_map(acr, registry, sandbox):
    mine, theirs, readonly = unique("grant/mine"), unique("grant/theirs"), unique("grant/readonly")
    token = new_token(acr, registry.group, registry.registry, [
        f"repositories/{mine}/content/read", f"repositories/{mine}/content/write",
        f"repositories/{readonly}/content/read"])
    scopes = [f"repository:{mine}:pull,push", f"repository:{readonly}:pull,push", f"repository:{theirs}:pull"]
    expected = [{"type": "repository", "name": mine, "actions": ["pull", "push"]},
                {"type": "repository", "name": readonly, "actions": ["pull"]},
                {"type": "repository", "name": theirs, "actions": []}]
    for joined in (False, True):
        access = jwt.decode(fetch_token(registry, sandbox, scopes, token, joined=joined),
                            options={"verify_signature": False})["access"]
        assert access == expected, joined


@pytest.fixture
def mount_source(registry, sandbox) -> SimpleNamespace:
    source, target = unique("mount/source"), unique("mount/target")
    data = os.urandom(2048)
    digest = push_blob(push_session(registry, sandbox, source), registry, source, data)
    return SimpleNamespace(source=source, target=target, data=data, digest=digest,
                           path=f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": source})


def test_a_mount_without_a_token_is_challenged_for_both_repositories(registry, sandbox, mount_source):
    response = plain_session(sandbox).post(url(registry, mount_source.path), params=mount_source.params)
    assert challenge_scope(response) == (f"repository:{mount_source.target}:pull,push "
                                         f"repository:{mount_source.source}:pull")


def test_a_mount_with_a_token_never_asked_for_the_source_is_challenged(registry, sandbox, mount_source):
    session = session_for(registry, sandbox, [f"repository:{mount_source.target}:pull,push"])
    response = session.post(url(registry, mount_source.path), params=mount_source.params)
    assert challenge_scope(response) == (f"repository:{mount_source.target}:pull,push "
                                         f"repository:{mount_source.source}:pull")


def test_a_requests_client_following_the_challenge_mounts(registry, sandbox, mount_source):
    session = plain_session(sandbox)
    challenged = session.post(url(registry, mount_source.path), params=mount_source.params)
    # As the conformance suite and oras-py do: the challenge's scope as one parameter.
    token = fetch_token(registry, sandbox, [challenge_scope(challenged)])
    session.headers["Authorization"] = "Bearer " + token
    mounted = session.post(url(registry, mount_source.path), params=mount_source.params)
    assert mounted.status_code == 201, mounted.text
    assert mounted.headers["Location"] == f"/v2/{mount_source.target}/blobs/{mount_source.digest}"
    assert mounted.headers["Docker-Content-Digest"] == mount_source.digest
    assert session.get(url(registry, mounted.headers["Location"])).content == mount_source.data


def test_a_dxf_client_following_the_challenge_mounts(registry, sandbox, mount_source):
    admin = registry.admin
    client = dxf_client(registry.host, mount_source.target, sandbox["ca_bundle"], admin.name, admin.password)
    client.push_blob(data=iter([b"first, so dxf holds a token for the target only"]),
                     digest=digest_of(b"first, so dxf holds a token for the target only"))
    assert client.mount_blob(mount_source.source, mount_source.digest) == mount_source.digest
    assert b"".join(client.pull_blob(mount_source.digest)) == mount_source.data


def test_a_mount_the_token_service_did_not_grant_falls_back_to_an_upload(acr, registry, sandbox, mount_source):
    token = new_token(acr, registry.group, registry.registry, [
        f"repositories/{mount_source.target}/content/read", f"repositories/{mount_source.target}/content/write"])
    session = session_for(registry, sandbox, [f"repository:{mount_source.target}:pull,push",
                                              f"repository:{mount_source.source}:pull"], token)
    response = session.post(url(registry, mount_source.path), params=mount_source.params)
    assert response.status_code == 202, response.text
    assert response.headers["Location"].startswith(f"/v2/{mount_source.target}/blobs/uploads/")
    assert session.head(url(registry, f"/v2/{mount_source.target}/blobs/{mount_source.digest}")).status_code == 404


# -- non-distributable layers ----------------------------------------------------------------------
def test_non_distributable_layers_need_not_be_uploaded(registry, sandbox):
    """image-spec layer.md: such layers are "never uploaded"; see models.py for the decision."""
    repo = unique("nondist/image")
    session = push_session(registry, sandbox, repo)
    config, layer = json.dumps({"os": "linux", "architecture": "amd64"}).encode(), os.urandom(300)
    push_blob(session, registry, repo, config)
    push_blob(session, registry, repo, layer)
    foreign = [descriptor(ND_LAYER_GZIP, os.urandom(256)), descriptor(ND_LAYER, os.urandom(256))]
    for item in foreign:
        item["urls"] = [f"https://store.example.com/blobs/sha256/{item['digest'].split(':')[1]}"]
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                "layers": [*foreign, descriptor(OCI_LAYER, layer)]}

    pushed = put_manifest(session, registry, repo, "non-distributable-image", manifest)
    assert pushed.status_code == 201, pushed.text
    fetched = session.get(url(registry, f"/v2/{repo}/manifests/non-distributable-image"))
    assert fetched.status_code == 200 and fetched.json() == manifest
    never_uploaded = session.get(url(registry, f"/v2/{repo}/blobs/{foreign[0]['digest']}"))
    assert never_uploaded.status_code == 404 and error_of(never_uploaded)["code"] == "BLOB_UNKNOWN"


def test_an_ordinary_layer_with_urls_must_still_be_uploaded(registry, sandbox):
    """image-spec: "the presence of the urls field SHOULD NOT be used to determine whether or not a
    layer is non-distributable"."""
    repo = unique("nondist/urls")
    session = push_session(registry, sandbox, repo)
    config = json.dumps({"os": "linux", "architecture": "amd64"}).encode()
    push_blob(session, registry, repo, config)
    missing = descriptor(OCI_LAYER, os.urandom(256)) | {"urls": ["https://store.example.com/blob"]}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                "layers": [missing]}
    refused = put_manifest(session, registry, repo, "v1", manifest)
    assert refused.status_code == 400 and error_of(refused) == {
        "code": "MANIFEST_BLOB_UNKNOWN", "message": f"blob unknown to registry: {missing['digest']}",
        "detail": [{"digest": missing["digest"]}]}
