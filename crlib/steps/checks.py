"""End-to-end checks through the device endpoint, as a client on the device's network would do.

The endpoint is the connected registry's `loginServer.host` from ARM (the API proxy on the
device). The client token is `checks.client_token`, or the first of `client_access.tokens`, with
its password from the secret store; client tokens are tokens of the cloud registry too.

1. Pull `checks.pull_image`: the manifest (its digest checked against Docker-Content-Digest),
   then the config and every layer, streamed; python-dxf verifies each blob's digest.
2. Push a small generated image (one gzip'd tar layer, an OCI config whose diff_id matches) to
   `checks.push_repository` under a unique `crlib-check-...` tag. ReadWrite: wait until the next
   sync brings it to the cloud registry with the same digest. ReadOnly: the push must be refused.

The pull waits as well (up to the timeout) for the image to be synced and for the client token
to be honoured: the connected registry reads its client tokens at each sync.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import tarfile
import time
import uuid

import requests
from dxf import exceptions as dxf_errors

from .. import retries
from ..context import RunContext
from ..errors import ParameterError, PreconditionFailed, StepFailed, StepTimeout
from ..results import Status, StepResult
from .access import secret_purpose
from .definition import text
from .deploy import fetch_connected_registry
from .endpoint import get_registry

STEP = "checks"
READ_ONLY_REFUSAL = "This operation is not allowed on this registry."
DEFAULT_TIMEOUT = 600.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
# Waits for a sync start short and back off: the sync that honours a token often comes within a second.
_FIRST_RETRY_S, _MAX_RETRY_S = 0.1, 2.0


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def client_token(ctx: RunContext) -> tuple[str, str]:
    """The checks' client token name and its password from the secret store."""
    name = ctx.site.checks.client_token or next((t.name for t in ctx.site.client_access.tokens), None)
    if name is None:
        raise ParameterError("client_access.tokens", "the checks need a client token; define one")
    password = ctx.get_secret(secret_purpose(name))
    if password is None:
        raise PreconditionFailed(f"client token '{name}'", f"no password is stored (secret "
                                                           f"'{ctx.secret_name(secret_purpose(name))}'); "
                                                           "run the access step first")
    return name, password


def _refusal(exc: Exception) -> tuple[int | None, str]:
    """(HTTP status, the registry's first error message) of a refused request."""
    if isinstance(exc, dxf_errors.DXFUnauthorizedError):
        return 401, "unauthorized"
    response = getattr(exc, "response", None)
    if response is None:
        return None, str(exc)
    try:
        errors = response.json().get("errors") or [{}]
        return response.status_code, errors[0].get("message") or response.reason
    except ValueError:
        return response.status_code, response.reason


def _until(what: str, attempt, timeout: float, diagnose):
    """Call attempt() until it returns a value; refusals (401, 404) are retried until the timeout."""
    deadline = time.monotonic() + timeout
    pause = _FIRST_RETRY_S
    while True:
        try:
            return attempt()
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            # A connection lost mid-stream, after the client's own retries: start the attempt again.
            if time.monotonic() >= deadline:
                raise StepTimeout(STEP, f"{what}: the connection kept failing ({exc})", diagnosis=diagnose()) from exc
        except (requests.HTTPError, dxf_errors.DXFUnauthorizedError) as exc:
            status, message = _refusal(exc)
            if status not in (401, 404):
                raise StepFailed(STEP, f"{what}: {status} {message}", error=exc) from exc
            if time.monotonic() >= deadline:
                raise StepTimeout(STEP, f"{what}: still {status} {message} after {timeout:g} s",
                                  diagnosis=diagnose()) from exc
        time.sleep(pause)
        pause = min(pause * 1.5, _MAX_RETRY_S)


def _pull(client, tag: str) -> dict:
    """Manifest and blobs of one image, streamed and verified; returns digests and byte counts."""
    started = time.monotonic()
    text, response = client.get_manifest_and_response(tag)
    body = response.content
    digest = response.headers.get("Docker-Content-Digest") or _sha256(body)
    if _sha256(body) != digest:
        raise StepFailed(STEP, f"the manifest of :{tag} does not match its digest {digest}")
    manifest = json.loads(text)
    image_manifest = manifest
    if manifest.get("mediaType") in INDEX_TYPES:
        entry = next((m for m in manifest["manifests"] if m.get("platform", {}).get("os") == "linux"
                      and m.get("platform", {}).get("architecture") == "amd64"), manifest["manifests"][0])
        child_text, child = client.get_manifest_and_response(entry["digest"])
        if _sha256(child.content) != entry["digest"]:
            raise StepFailed(STEP, f"the image manifest {entry['digest']} does not match its digest")
        image_manifest = json.loads(child_text)
    size = 0
    blobs = [image_manifest["config"], *image_manifest.get("layers", [])]
    for blob in blobs:
        try:
            for chunk in client.pull_blob(blob["digest"], chunk_size=1 << 20):  # 1 MiB reads: 35 % faster
                size += len(chunk)
        except dxf_errors.DXFDigestMismatchError as exc:
            raise StepFailed(STEP, f"blob {blob['digest']} of :{tag} arrived with another digest", error=exc) from exc
    return {"digest": digest, "blobs": len(blobs), "bytes": size + len(body),
            "duration_s": round(time.monotonic() - started, 3)}


def generated_image(site_name: str) -> tuple[list[bytes], bytes]:
    """A one-layer OCI image: ([layer, config], manifest bytes)."""
    note = f"crlib check for site {site_name} at {dt.datetime.now(dt.UTC).isoformat()}\n".encode()
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        info = tarfile.TarInfo("crlib-check.txt")
        info.size = len(note)
        tar.addfile(info, io.BytesIO(note))
    layer = gzip.compress(tar_bytes.getvalue(), mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [_sha256(tar_bytes.getvalue())]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _sha256(layer),
                    "size": len(layer)}]}).encode()
    return [layer, config], manifest


def _push(client, tag: str, blobs: list[bytes], manifest: bytes) -> None:
    for blob in blobs:
        _restarting(lambda blob=blob: client.push_blob(data=iter([blob]), digest=_sha256(blob)))
    _restarting(lambda: client.set_manifest(tag, manifest.decode()))


def _restarting(upload) -> None:
    """An upload whose body the HTTP layer cannot replay after a lost connection (a streamed blob):
    restart it from the beginning, a few times. Refusals (4xx but a digest mismatch) are final."""
    for attempt in range(retries.ATTEMPTS):
        try:
            return upload()
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            if attempt == retries.ATTEMPTS - 1:
                raise
        except requests.HTTPError as exc:
            truncated = exc.response is not None and exc.response.status_code == 400 and \
                "digest" in exc.response.text.lower()
            if not truncated or attempt == retries.ATTEMPTS - 1:
                raise


def run_checks(ctx: RunContext, *, plan: bool = False, timeout: float = DEFAULT_TIMEOUT) -> StepResult:
    """Pull and push through the device endpoint; raise StepFailed or StepTimeout when a check fails."""
    site = ctx.site
    checks, mode = site.checks, site.connected_registry.mode
    repository, pull_tag = checks.pull_image.rsplit(":", 1)
    push_tag = f"crlib-check-{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
    push_line = (f"push a generated image to {checks.push_repository}:{push_tag} through the device endpoint "
                 + ("and wait for it in the cloud registry" if mode == "ReadWrite" else "(expecting a refusal)"))
    if plan:
        return StepResult(STEP, Status.PLANNED, changes=[push_line],
                          details={"pull": checks.pull_image, "mode": mode})
    token, password = client_token(ctx)
    cr = fetch_connected_registry(ctx)
    endpoint = cr.login_server.host if cr is not None and cr.login_server else None
    if not endpoint:
        raise PreconditionFailed("connected_registry", f"'{site.connected_registry.name}' reports no device endpoint "
                                                       "(loginServer.host); run the deploy step first")
    # Check what the registry is, not what the parameters say it should be (a form edit in 03 may
    # have changed the mode for one notebook only); the difference is reported.
    actual = text(cr.mode)
    drift = {"mode_in_parameters": mode} if actual != mode else {}
    mode = actual

    def diagnose() -> list[str]:
        now = fetch_connected_registry(ctx)
        if now is None:
            return ["the connected registry no longer exists"]
        return [f"connected registry is {text(now.connection_state)}, last sync "
                f"{now.parent.sync_properties.last_sync_time}, schedule {now.parent.sync_properties.schedule}"] + [
            f"statusDetails {d.code}: {d.description}" for d in now.status_details or []]

    with ctx.clients.oci(endpoint, repository, username=token, password=password) as device:
        pulled = _until(f"pull {checks.pull_image} from {endpoint}", lambda: _pull(device, pull_tag), timeout,
                        diagnose)
    blobs, manifest = generated_image(site.site)
    pushed = {"repository": checks.push_repository, "tag": push_tag, "digest": _sha256(manifest),
              "bytes": sum(map(len, blobs)) + len(manifest)}
    started = time.monotonic()
    with ctx.clients.oci(endpoint, checks.push_repository, username=token, password=password) as device:
        try:
            _push(device, push_tag, blobs, manifest)
            refusal = None
        except (requests.HTTPError, dxf_errors.DXFUnauthorizedError) as exc:
            refusal = _refusal(exc)
            if mode == "ReadWrite":
                raise StepFailed(STEP, f"the push to {endpoint} was refused: {refusal[0]} {refusal[1]}",
                                 error=exc) from exc
    if mode == "ReadOnly":
        if refusal is None:
            raise StepFailed(STEP, f"the ReadOnly connected registry at {endpoint} accepted a push")
        # A token without content/write is refused too (401), but only the registry's own 403 shows the mode.
        pushed |= {"refused_with": refusal[0], "refusal": refusal[1],
                   "read_only_refusal": refusal == (403, READ_ONLY_REFUSAL)}
        return StepResult(STEP, Status.UNCHANGED, [cr.id], details={"endpoint": endpoint, "token": token,
                                                                    "mode": mode, "pull": pulled, "push": pushed,
                                                                    **drift})
    pushed["pushed_s"] = round(time.monotonic() - started, 3)
    registry = get_registry(ctx)
    if registry is None:
        raise PreconditionFailed("registry", f"'{site.registry.name}' no longer exists; cannot look for the push")

    def in_cloud() -> str:
        digest, _ = cloud.head_manifest_and_response(push_tag)
        if digest != pushed["digest"]:
            raise StepFailed(STEP, f"{checks.push_repository}:{push_tag} reached the cloud registry as {digest}, "
                                   f"not {pushed['digest']}")
        return digest

    with ctx.clients.oci(registry.login_server, checks.push_repository, username=token, password=password) as cloud:
        _until(f"{checks.push_repository}:{push_tag} in the cloud registry", in_cloud, timeout, diagnose)
    pushed |= {"arrived_in_cloud": True, "arrival_s": round(time.monotonic() - started, 3)}
    pushed_id = f"{registry.id}/repositories/{checks.push_repository}/tags/{push_tag}"  # where the push landed
    return StepResult(STEP, Status.CREATED, [cr.id, pushed_id], changes=[push_line],
                      details={"endpoint": endpoint, "token": token, "mode": mode, "pull": pulled, "push": pushed,
                               **drift})
