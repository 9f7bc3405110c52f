"""Referrers through a connected registry, and blobs through the data endpoint: a Notary signature
pushed to the cloud with the pulled image as its subject is listed by the referrers API at the
cloud and, after a sync, at a ReadOnly connected registry's device endpoint, which crlib's opt-in
referrers check proves; and in ReadWrite the checks pull their pushed image back from the cloud,
each blob GET redirected by the login server to the registry's data endpoint."""

from __future__ import annotations

import hashlib
import json

import pytest
from test_manifest import log_from_now

from crlib.azure.readers import registry as get_registry
from crlib.results import Status
from crlib.steps.checks import run_checks

TIMEOUT = 60  # real seconds; the sandbox's device clock runs at 60x
NOTARY = "application/vnd.cncf.notary.signature"
EMPTY = b"{}"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def cloud_client(ctx):
    token = ctx.site.client_access.tokens[0].name  # content/write on hello-world, in the cloud too
    return ctx.clients.oci(get_registry(ctx).login_server, "hello-world", username=token,
                           password=ctx.get_secret(f"client-token-{token}"))


def sign(ctx, subject_digest: str, subject_type: str, subject_size: int) -> str:
    """Push a (made-up) Notary signature whose subject is the image; return its manifest digest."""
    envelope = json.dumps({"payload": "e30", "protected": "e30", "signature": "c2ln"}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": NOTARY,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(EMPTY), "size": 2},
        "layers": [{"mediaType": "application/jose+json", "digest": digest_of(envelope), "size": len(envelope)}],
        "subject": {"mediaType": subject_type, "digest": subject_digest, "size": subject_size},
        "annotations": {"io.cncf.notary.x509chain.thumbprint#S256": "[]"},
    }, separators=(",", ":"))
    with cloud_client(ctx) as cloud:
        for blob in (EMPTY, envelope):
            cloud.push_blob(data=iter([blob]), digest=digest_of(blob))
        response = cloud._request("put", f"manifests/{digest_of(manifest.encode())}", data=manifest,
                                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert response.status_code == 201 and response.headers["OCI-Subject"] == subject_digest
    return digest_of(manifest.encode())


def referrers(client, digest: str, **params) -> list[dict]:
    response = client._request("get", f"referrers/{digest}", params=params)
    assert response.headers["Content-Type"].startswith("application/vnd.oci.image.index.v1+json")
    return response.json()["manifests"]


def test_a_signature_pushed_to_the_cloud_is_listed_at_a_read_only_device_after_a_sync(deployed):
    ctx, _ = deployed(mode="ReadOnly", checks={"referrers": True})
    with cloud_client(ctx) as cloud:
        _, head = cloud.head_manifest_and_response("latest")
        subject, subject_type = head.headers["Docker-Content-Digest"], head.headers["Content-Type"]
        size = int(head.headers["Content-Length"])
    signature = sign(ctx, subject, subject_type, size)

    with cloud_client(ctx) as cloud:
        listed = referrers(cloud, subject)
        assert [(r["digest"], r["artifactType"]) for r in listed] == [(signature, NOTARY)]
        assert referrers(cloud, subject, artifactType="application/spdx+json") == []

    checks = run_checks(ctx, timeout=TIMEOUT)
    assert checks.status == Status.PASSED
    found = checks.details["referrers"]
    assert found["digest"] == subject and found["in_cloud"] == 1
    assert found["listed"] == [{"digest": signature, "artifactType": NOTARY}]
    assert checks.details["evidence"][1] == (
        f"listed 1 referrers of hello-world:latest through {checks.details['endpoint']}, every one of the 1 the "
        f"cloud registry lists: {NOTARY} {signature}")

    # The device serves the signature itself, not only its listing: it synced with its subject.
    access = ctx.profile.device_access(ctx.site)
    token = ctx.site.client_access.tokens[0].name
    with ctx.clients.oci(access.address, "hello-world", username=token,
                         password=ctx.get_secret(f"client-token-{token}"), ca_cert=access.ca_cert) as local:
        manifest = json.loads(local.get_manifest(signature))
        assert manifest["subject"]["digest"] == subject and manifest["artifactType"] == NOTARY


@pytest.mark.parametrize("mode", ["ReadWrite"])
def test_the_checks_pull_their_push_back_through_the_data_endpoint(deployed, sandbox, mode):
    ctx, _ = deployed(mode=mode)
    registry = get_registry(ctx)
    log = log_from_now(sandbox)
    checks = run_checks(ctx, timeout=TIMEOUT)
    assert checks.status == Status.PASSED
    push = checks.details["push"]
    assert push["pulled_back_blobs"] == 2 and push["pulled_back_bytes"] > 0
    assert checks.details["evidence"][1].endswith(
        f"; pulled back from there: 2 blobs, {push['pulled_back_bytes']} bytes, checked")
    rows = [(r["host"], r["method"], r["status"], r["path"]) for r in log()]
    redirected = [r for r in rows if r[0] == registry.login_server and r[2] == 307 and "/blobs/sha256:" in r[3]]
    served = [r for r in rows if r[0] == registry.data_endpoint_host_names[0] and r[2] == 200
              and r[3].endswith("/data")]
    assert len(redirected) == 2 and len(served) >= 2, rows


def test_the_referrers_listing_follows_every_page():
    """The sandbox answers in one page; a registry may page (distribution-spec, "Listing Referrers":
    `Link: <...>; rel="next"`). The check reads every page, through python-dxf's own request calls."""
    import requests

    from crlib.steps.checks import _referrer_list

    def page(manifests: list[str], following: str | None) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps({"manifests": [{"digest": d} for d in manifests]}).encode()
        if following:
            response.headers["Link"] = f'<{following}>; rel="next"'
        return response

    class PagingRegistry:
        def __init__(self):
            self.asked: list[str] = []

        def _request(self, method, path, **kwargs):
            self.asked.append(path)
            return page(["sha256:a", "sha256:b"], "/v2/app/referrers/sha256:s?last=b")

        def _base_request(self, method, path, **kwargs):
            self.asked.append(path)
            return page(["sha256:c"], None)

    client = PagingRegistry()
    assert [r["digest"] for r in _referrer_list(client, "sha256:s")] == ["sha256:a", "sha256:b", "sha256:c"]
    assert client.asked == ["referrers/sha256:s", "/v2/app/referrers/sha256:s?last=b"]


def sha512_of(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def test_sha512_content_and_its_referrers_sync_and_pass_the_checks(deployed):
    """The cloud takes sha512 blobs and manifests (distribution 3); a connected registry syncs them,
    and their referrers, and crlib's checks pull them with their digests verified. python-dxf checks
    sha256 only: both sides check sha512 themselves."""
    ctx, _ = deployed(mode="ReadOnly")
    # The image exists only once pushed below (the prerequisites step looks for the check image at
    # mcr.microsoft.com), so the checks' parameters change after the deployment.
    ctx.site = ctx.site.model_copy(update={"checks": ctx.site.checks.model_copy(
        update={"pull_image": "hello-world:sha512", "referrers": True})})
    layer, config = b"layer of sha512 content" * 100, json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    image = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha512_of(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha512_of(layer),
                    "size": len(layer)}],
    }).encode()
    envelope = b'{"payload":"e30","signature":"c2ln"}'
    with cloud_client(ctx) as cloud:
        for blob in (config, layer, EMPTY, envelope):
            response = cloud._request("post", f"blobs/uploads/?digest={sha512_of(blob)}", data=blob)
            assert response.status_code == 201
        put = cloud._request("put", "manifests/sha512", data=image,
                             headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        subject = put.headers["Docker-Content-Digest"]
        signature = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": NOTARY,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha512_of(EMPTY), "size": 2},
            "layers": [{"mediaType": "application/jose+json", "digest": sha512_of(envelope), "size": len(envelope)}],
            "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject,
                        "size": len(image)},
        }).encode()
        referrer = sha512_of(signature)
        assert cloud._request("put", f"manifests/{referrer}", data=signature, headers={
            "Content-Type": "application/vnd.oci.image.manifest.v1+json"}).headers["OCI-Subject"] == subject

    checks = run_checks(ctx, timeout=TIMEOUT)
    assert checks.status == Status.PASSED
    assert checks.details["pull"]["blobs"] == 2 and checks.details["pull"]["bytes"] == len(config + layer + image)
    assert checks.details["referrers"]["listed"] == [{"digest": referrer, "artifactType": NOTARY}]
