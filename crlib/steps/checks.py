"""End-to-end checks through the device's API proxy, as a client on the device's network would do.

Where the device is: `device.address` (host[:port]) and the CA it is trusted with, `device.ca_cert`
(the device's own IoT Edge root CA), which the operator knows because they provisioned the host;
the sandbox profile fills both in. ARM's `loginServer` of a connected registry is not a documented
route to the device and is never used. An address that is the cloud registry's login server or a
data endpoint is refused before any request (the checks would test the cloud), and a TLS
verification error fails at once, naming `device.ca_cert`, instead of being retried.

The client token is `checks.client_token`, or the first of `client_access.tokens`, with its
password from the secret store; client tokens are tokens of the cloud registry too.

1. Pull `checks.pull_image`: the manifest (its digest checked against Docker-Content-Digest),
   then the config and every layer, streamed; python-dxf verifies each blob's digest.
2. Push a small generated image (one gzip'd tar layer, an OCI config whose diff_id matches) to
   `checks.push_repository` under a unique `crlib-check-...` tag. ReadWrite: wait until the next
   sync brings it to the cloud registry with the same digest, then pull it back from there, blobs
   verified (with a dedicated data endpoint, each blob GET is redirected to it and followed).
   ReadOnly: the push must be refused.
3. With `checks.referrers: true`, between the two: list the pulled image's referrers (OCI 1.1
   `GET /v2/<name>/referrers/<digest>`: signatures, SBOMs) through the device and in the cloud
   registry, and wait until the device lists every one the cloud does (they come with a sync).

Checks that pass end `passed`, with `evidence`: one line in plain words per check ("pulled
hello-world:latest through <address>: digest sha256:...", "pushed <repo>:<tag> through the connected
registry at <address>; seen in the cloud registry at <UTC time> ...", or "push of ... refused by the
ReadOnly connected registry: 403 <ACR's message>"), which notebook 06 and `crlib archive show` print.
A check that does not pass raises (StepFailed, StepTimeout) with what it saw, and the step is failed.

The pull waits as well for the image to be synced and for the client token to be honoured: the
connected registry reads its client tokens at each sync. Each wait lasts until the next sync window
(the connected registry's schedule and window) has closed, and a timeout says when the next one opens.

With `checks.mode: on-device` crlib cannot reach the device: it writes a check script for the device
host (crlib/hosts/check_script.py) and the step ends `pending`, never as a success.

The plan reads the token's password, the connected registry (its endpoint and its actual mode)
and the registry once; its two changes are the pull and the push, run in that order. While the
password or the device endpoint is missing it is blocked (run the access or deploy step first).
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import isodate
import requests
from croniter import croniter
from dxf import exceptions as dxf_errors

from .. import progress, retries
from ..azure import names, readers
from ..context import RunContext
from ..errors import ParameterError, PreconditionFailed, StepFailed, StepTimeout
from ..hosts.check_script import on_device_check_script
from ..plans import Action, StepPlan
from ..profiles import DeviceAccess
from ..results import Status, StepResult

STEP = "checks"
READ_ONLY_REFUSAL = "This operation is not allowed on this registry."
# Time for a sync that starts at the end of its window (or on a schedule without one) to finish.
SYNC_GRACE = dt.timedelta(minutes=2)
ON_DEVICE_TOKEN_FILE = "/etc/crlib/client-token"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
NONDISTRIBUTABLE_LAYERS = frozenset({"application/vnd.oci.image.layer.nondistributable.v1.tar",
                                     "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                                     "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                                     "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"})
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
# Waits for a sync start short and back off: the sync that honours a token often comes within a second.
_FIRST_RETRY_S, _MAX_RETRY_S = 0.1, 2.0


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def client_token_name(ctx: RunContext) -> str:
    """The checks' client token: `checks.client_token`, or the first of `client_access.tokens`."""
    name = ctx.site.checks.client_token or next((t.name for t in ctx.site.client_access.tokens), None)
    if name is None:
        raise ParameterError("client_access.tokens", "the checks need a client token; define one")
    return name


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


_T = TypeVar("_T")


@dataclass(frozen=True)
class SyncWait:
    """How long a check waits: a fixed timeout, or until the next sync window has closed."""

    schedule: str
    window: dt.timedelta | None
    fixed: float | None = None

    def next_window(self, now: dt.datetime | None = None) -> dt.datetime:
        return croniter(self.schedule, now or dt.datetime.now(dt.UTC)).get_next(dt.datetime)

    def seconds(self, now: dt.datetime | None = None) -> float:
        if self.fixed is not None:
            return self.fixed
        now = now or dt.datetime.now(dt.UTC)
        closes = self.next_window(now) + (self.window or dt.timedelta()) + SYNC_GRACE
        return (closes - now).total_seconds()

    def next_window_note(self, now: dt.datetime | None = None) -> str:
        """"; the next sync window opens at 14:00 UTC (in 3 min)", or "" for a fixed wait."""
        if self.fixed is not None:
            return ""
        now = now or dt.datetime.now(dt.UTC)
        opens = self.next_window(now)
        minutes = max(0, round((opens - now).total_seconds() / 60))
        return f"; the next sync window opens at {opens:%H:%M} UTC (in {minutes} min)"

    def after_timeout(self, now: dt.datetime | None = None) -> str:
        return f"; the next sync window opens at {self.next_window(now):%Y-%m-%d %H:%M} UTC (schedule '{self.schedule}'" \
               + (f", window {isodate.duration_isoformat(self.window)})" if self.window else ")")


def _tls_refusal(what: str, device: DeviceAccess, exc: Exception) -> StepFailed:
    trusted = f"device.ca_cert '{device.ca_cert}'" if device.ca_cert else "no device.ca_cert"
    return StepFailed(STEP, f"{what}: TLS verification of the device at {device.address} failed with {trusted}; "
                            "set device.ca_cert to the device's IoT Edge root CA (see docs/real-devices.md)",
                      error=exc)


def _until(what: str, attempt: Callable[[], _T], wait: SyncWait, diagnose: Callable[[], list[str]],
           device: DeviceAccess | None = None) -> _T:
    """Call attempt() until it returns a value; refusals (401, 404) and lost connections are retried
    until the wait is over. A TLS verification error is final: retrying cannot fix a CA."""
    timeout = wait.seconds()
    deadline = time.monotonic() + timeout
    pause = _FIRST_RETRY_S
    while True:
        try:
            return attempt()
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            if retries.is_certificate_failure(exc):  # final: no retry makes a certificate trusted
                if device is None:
                    raise StepFailed(STEP, f"{what}: TLS verification failed ({exc})", error=exc) from exc
                raise _tls_refusal(what, device, exc) from exc
            # A connection lost mid-stream, after the client's own retries: start the attempt again.
            progress.note(STEP, f"{what}: the connection failed; retrying" + wait.next_window_note())
            if time.monotonic() >= deadline:
                raise StepTimeout(STEP, f"{what}: the connection kept failing for {timeout:.0f} s ({exc})"
                                  + wait.after_timeout(), diagnosis=diagnose()) from exc
        except _NotYet as exc:
            progress.note(STEP, f"{what}: {exc}; retrying until the sync window has closed" + wait.next_window_note())
            if time.monotonic() >= deadline:
                raise StepTimeout(STEP, f"{what}: still {exc} after {timeout:.0f} s" + wait.after_timeout(),
                                  diagnosis=diagnose()) from exc
        except (requests.HTTPError, dxf_errors.DXFUnauthorizedError) as exc:
            status, message = _refusal(exc)
            if status not in (401, 404):
                raise StepFailed(STEP, f"{what}: {status} {message}", error=exc) from exc
            progress.note(STEP, f"{what}: {status} {message}; retrying until the sync window has closed"
                          + wait.next_window_note())
            if time.monotonic() >= deadline:
                raise StepTimeout(STEP, f"{what}: still {status} {message} after {timeout:.0f} s"
                                  + wait.after_timeout(), diagnosis=diagnose()) from exc
        time.sleep(pause)
        pause = min(pause * 1.5, _MAX_RETRY_S)


def _pull(client: Any, tag: str) -> dict:
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
    # Non-distributable layers come from their distributor, never from a registry (OCI image-spec,
    # layer.md): a registry may not hold them, and a client does not ask it for them.
    blobs = [image_manifest["config"], *[layer for layer in image_manifest.get("layers", [])
                                         if layer.get("mediaType") not in NONDISTRIBUTABLE_LAYERS]]
    for blob in blobs:
        try:
            for chunk in _blob_chunks(client, blob["digest"]):
                size += len(chunk)
        except dxf_errors.DXFDigestMismatchError as exc:
            raise StepFailed(STEP, f"blob {blob['digest']} of :{tag} arrived with another digest", error=exc) from exc
    return {"digest": digest, "blobs": len(blobs), "bytes": size + len(body),
            "duration_s": round(time.monotonic() - started, 3)}


def _blob_chunks(client: Any, digest: str) -> Iterator[bytes]:
    """A blob's bytes in 1 MiB reads (35 % faster than python-dxf's default), its digest checked as
    the last one arrives. python-dxf checks sha256 only; other algorithms (sha512) are checked here."""
    if digest.startswith("sha256:"):
        yield from client.pull_blob(digest, chunk_size=1 << 20)
        return
    algorithm = digest.split(":", 1)[0]
    if algorithm not in hashlib.algorithms_available:
        raise StepFailed(STEP, f"blob {digest}: unsupported digest algorithm {algorithm!r}")
    hasher = hashlib.new(algorithm)
    for chunk in client._request("get", f"blobs/{digest}", stream=True).iter_content(1 << 20):
        hasher.update(chunk)
        yield chunk
    if f"{algorithm}:{hasher.hexdigest()}" != digest:
        raise dxf_errors.DXFDigestMismatchError(f"{algorithm}:{hasher.hexdigest()}", digest)


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


def _push_blob(client: Any, blob: bytes) -> Any:
    return client.push_blob(data=iter([blob]), digest=_sha256(blob))  # a fresh body each attempt


def _push(client: Any, tag: str, blobs: list[bytes], manifest: bytes) -> None:
    for blob in blobs:
        _restarting(partial(_push_blob, client, blob))
    _restarting(lambda: client.set_manifest(tag, manifest.decode()))


def _restarting(upload: Callable[[], Any]) -> None:
    """An upload whose body the HTTP layer cannot replay after a lost connection (a streamed blob):
    restart it from the beginning, a few times. Refusals (4xx but a digest mismatch) are final."""
    for attempt in range(retries.ATTEMPTS):
        try:
            return upload()
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            if attempt == retries.ATTEMPTS - 1 or retries.is_certificate_failure(exc):
                raise
        except requests.HTTPError as exc:
            truncated = exc.response is not None and exc.response.status_code == 400 and \
                "digest" in exc.response.text.lower()
            if not truncated or attempt == retries.ATTEMPTS - 1:
                raise


# -- the step ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Target:
    """What the checks run against, read once while planning."""

    token: str
    password: str | None
    connected: Any  # the connected registry as ARM shows it, or None
    registry: Any  # the cloud registry, or None
    mode: str  # the connected registry's own mode (the parameters' while it does not exist)
    push_tag: str
    access: DeviceAccess | None  # where the device's API proxy answers, and its CA
    wait: SyncWait

    @property
    def endpoint(self) -> str | None:
        return self.access.address if self.access else None

    @property
    def device(self) -> DeviceAccess:
        """The device, which a plan that can be applied has (else it is blocked)."""
        assert self.access is not None
        return self.access


def _missing(ctx: RunContext, target: _Target, access_missing: PreconditionFailed | None) -> PreconditionFailed | None:
    """What an earlier step has not made yet: the token's password, the device, the registry."""
    if target.password is None:
        secret = ctx.secret_name(names.client_token_secret(target.token))
        return PreconditionFailed(f"client token '{target.token}'", f"no password is stored (secret '{secret}'); "
                                                                    "run the access step first")
    if access_missing is not None:
        return access_missing
    if target.connected is None:
        return PreconditionFailed("connected_registry", f"'{ctx.site.connected_registry.name}' does not exist; "
                                                        "run the definition and deploy steps first")
    activation = target.connected.activation.status if target.connected.activation else None
    if readers.text(activation) != "Active":
        return PreconditionFailed("connected_registry", f"'{ctx.site.connected_registry.name}' has not been "
                                                        "activated on the device; run the deploy step first")
    if (target.mode == "ReadWrite" or ctx.site.checks.referrers) and target.registry is None:
        return PreconditionFailed("registry", f"'{ctx.site.registry.name}' no longer exists; cannot look for the push")
    return None


def _host_port(address: str) -> str:
    """'Host:443' -> 'host': HTTPS's default port named or not, the same endpoint."""
    return address.lower().removesuffix(":443").rstrip(".")


def refuse_cloud_address(access: DeviceAccess, registry: Any) -> None:
    """The checks must reach the device, not the cloud registry: refuse its login server and data
    endpoints, before any request is sent."""
    if registry is None:
        return
    cloud = {_host_port(registry.login_server): "login server"} if registry.login_server else {}
    cloud |= {_host_port(h): "data endpoint" for h in registry.data_endpoint_host_names or []}
    what = cloud.get(_host_port(access.address))
    if what is not None:
        raise ParameterError("device.address", f"'{access.address}' is the cloud registry's {what} "
                                               f"({registry.login_server if what == 'login server' else access.address}"
                                               f"), not the device: checks through it would test registry "
                                               f"'{registry.name}' in the cloud; give the address of the device's "
                                               "API proxy")


def _device_access(ctx: RunContext) -> tuple[DeviceAccess | None, PreconditionFailed | None]:
    try:
        access = ctx.profile.device_access(ctx.site)
    except PreconditionFailed as exc:
        return None, exc
    if access is None:
        raise ParameterError("device.address", "the checks need the address of the device's API proxy, as "
                                               "reachable from here (and device.ca_cert); or set checks.mode: "
                                               "on-device to run them on the device host")
    return access, None


def _diagnose(ctx: RunContext) -> list[str]:
    now = readers.connected_registry(ctx)
    if now is None:
        return ["the connected registry no longer exists"]
    sync = now.parent.sync_properties
    return [f"connected registry is {readers.text(now.connection_state)}, last sync {sync.last_sync_time}, "
            f"schedule {sync.schedule}"] + [f"statusDetails {d.code}: {d.description}" for d in now.status_details or []]


def _pull_check(ctx: RunContext, target: _Target, plan: StepPlan) -> None:
    image = ctx.site.checks.pull_image
    repository, tag = image.rsplit(":", 1)
    device = target.device
    with ctx.clients.oci(device.address, repository, username=target.token, password=target.password,
                         ca_cert=device.ca_cert) as client:
        plan.made["pull"] = _until(f"pull {image} from {device.address}", lambda: _pull(client, tag), target.wait,
                                   partial(_diagnose, ctx), device)


class _NotYet(Exception):
    """A check's condition does not hold yet; retried until the sync window has closed."""


def _referrer_list(client: Any, digest: str) -> list[dict]:
    """`GET /v2/<name>/referrers/<digest>` (OCI distribution spec 1.1): the manifests whose subject
    is `digest`, every page (a registry that pages says so in `Link: <...>; rel="next"`). python-dxf
    has no call for it; its `_request` adds the auth and retries."""
    accept = {"Accept": "application/vnd.oci.image.index.v1+json"}
    response = client._request("get", f"referrers/{digest}", headers=accept)
    manifests = list(response.json().get("manifests") or [])
    while (following := response.links.get("next", {}).get("url")):
        response = client._base_request("get", following, headers=accept)  # the Link's own path
        manifests += response.json().get("manifests") or []
    return manifests


def _referrers_check(ctx: RunContext, target: _Target, plan: StepPlan) -> None:
    """List the pulled image's referrers through the device; pass once it lists every referrer the
    cloud registry lists (they arrive with the next sync)."""
    image, digest = ctx.site.checks.pull_image, plan.made["pull"]["digest"]
    repository, device = image.rsplit(":", 1)[0], target.device

    with ctx.clients.oci(target.registry.login_server, repository, username=target.token,
                         password=target.password) as cloud, \
            ctx.clients.oci(device.address, repository, username=target.token, password=target.password,
                            ca_cert=device.ca_cert) as local:
        def synced() -> dict:
            wanted = {r["digest"]: r for r in _referrer_list(cloud, digest)}
            listed = {r["digest"]: r for r in _referrer_list(local, digest)}
            missing = sorted(set(wanted) - set(listed))
            if missing:
                raise _NotYet(f"{len(missing)} of the cloud's {len(wanted)} referrers not listed yet")
            return {"digest": digest, "listed": [{"digest": d, "artifactType": r.get("artifactType")}
                                                 for d, r in sorted(listed.items())], "in_cloud": len(wanted)}

        plan.made["referrers"] = _until(f"referrers of {image}@{digest} at {device.address}", synced, target.wait,
                                        partial(_diagnose, ctx), device)


def _pushed(ctx: RunContext, target: _Target, blobs: list[bytes], manifest: bytes) -> tuple[int | None, str] | None:
    """Push through the device endpoint: None when accepted, else the refusal (fatal for ReadWrite)."""
    repository, device = ctx.site.checks.push_repository, target.device
    with ctx.clients.oci(device.address, repository, username=target.token, password=target.password,
                         ca_cert=device.ca_cert) as client:
        try:
            _push(client, target.push_tag, blobs, manifest)
        except requests.exceptions.SSLError as exc:
            if retries.is_certificate_failure(exc):
                raise _tls_refusal(f"push to {device.address}", device, exc) from exc
            raise
        except (requests.HTTPError, dxf_errors.DXFUnauthorizedError) as exc:
            refused = _refusal(exc)
            if target.mode == "ReadWrite":
                raise StepFailed(STEP, f"the push to {device.address} was refused: {refused[0]} {refused[1]}",
                                 error=exc) from exc
            return refused
    return None


def _arrival(ctx: RunContext, target: _Target, digest: str) -> dict:
    """Wait until the next sync brings the pushed image to the cloud registry, with the same digest,
    then pull it back from there: its digest, blob count and bytes."""
    repository, tag = ctx.site.checks.push_repository, target.push_tag

    def in_cloud() -> str:
        found, _ = cloud.head_manifest_and_response(tag)
        if found != digest:
            raise StepFailed(STEP, f"{repository}:{tag} reached the cloud registry as {found}, not {digest}")
        return found

    with ctx.clients.oci(target.registry.login_server, repository, username=target.token,
                         password=target.password) as cloud:
        _until(f"{repository}:{tag} in the cloud registry", in_cloud, target.wait, partial(_diagnose, ctx))
        # Its blobs too, pulled back and verified: the bytes arrived, not only the manifest. With a
        # dedicated data endpoint the login server redirects each blob GET there (python-dxf follows).
        return _until(f"pull {repository}:{tag} back from the cloud registry", lambda: _pull(cloud, tag),
                      target.wait, partial(_diagnose, ctx))


def _push_check(ctx: RunContext, target: _Target, plan: StepPlan) -> None:
    blobs, manifest = generated_image(ctx.site.site)
    pushed: dict[str, object] = {"repository": ctx.site.checks.push_repository, "tag": target.push_tag,
                                 "digest": _sha256(manifest), "bytes": sum(map(len, blobs)) + len(manifest)}
    started = time.monotonic()
    refused = _pushed(ctx, target, blobs, manifest)
    plan.made["push"] = pushed
    if target.mode == "ReadOnly":
        if refused is None:
            raise StepFailed(STEP, f"the ReadOnly connected registry at {target.endpoint} accepted a push")
        # A token without content/write is refused too (401), but only the registry's own 403 shows the mode.
        pushed |= {"refused_with": refused[0], "refusal": refused[1],
                   "read_only_refusal": refused == (403, READ_ONLY_REFUSAL)}
        return
    pushed["pushed_s"] = round(time.monotonic() - started, 3)
    pulled_back = _arrival(ctx, target, _sha256(manifest))
    pushed |= {"arrived_in_cloud": True, "arrival_s": round(time.monotonic() - started, 3),
               "seen_in_cloud_at": f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}",
               "pulled_back_blobs": pulled_back["blobs"], "pulled_back_bytes": pulled_back["bytes"]}


def _sync_wait(ctx: RunContext, connected: Any, timeout: float | None) -> SyncWait:
    """The connected registry's own schedule and window (the parameters' while it does not exist)."""
    sync = connected.parent.sync_properties if connected is not None else None
    schedule = (sync.schedule if sync else None) or ctx.site.connected_registry.sync_schedule
    window = sync.sync_window if sync else None
    if window is None and ctx.site.connected_registry.sync_window:
        window = isodate.parse_duration(ctx.site.connected_registry.sync_window)
    return SyncWait(schedule, window, timeout)


def plan_checks(ctx: RunContext, *, timeout: float | None = None) -> StepPlan:
    """Pull, then push, through the device's API proxy; apply raises StepFailed or StepTimeout when a
    check fails. `timeout` replaces the wait for the next sync window (seconds)."""
    site, checks = ctx.site, ctx.site.checks
    token = client_token_name(ctx)
    connected = readers.connected_registry(ctx)
    # Check what the registry is, not what the parameters say it should be (a form edit in 03 may
    # have changed the mode for one notebook only); the difference is reported.
    mode = readers.text(connected.mode) if connected is not None else site.connected_registry.mode
    push_tag = f"crlib-check-{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
    if checks.mode == "on-device":
        return _plan_on_device(ctx, token, connected, mode, push_tag)
    access, access_missing = _device_access(ctx)
    registry = readers.registry(ctx)
    if access is not None:
        refuse_cloud_address(access, registry)
    target = _Target(token, ctx.get_secret(names.client_token_secret(token)), connected, registry, mode, push_tag,
                     access, _sync_wait(ctx, connected, timeout))
    plan = StepPlan(STEP, details={"pull": checks.pull_image, "mode": mode, "device": target.endpoint},
                    blocked_by=_missing(ctx, target, access_missing), finish=partial(_checked, ctx, target))
    via = "the device's API proxy" if site.host.kind == "iotedge" else "the connected registry's service"
    plan.add(Action.RUN, "image pull", checks.pull_image, f"pull {checks.pull_image} through {via}",
             call=partial(_pull_check, ctx, target, plan))
    if checks.referrers:
        plan.add(Action.RUN, "referrers", checks.pull_image,
                 f"list the referrers of {checks.pull_image} through {via} and in the cloud registry",
                 call=partial(_referrers_check, ctx, target, plan))
    plan.add(Action.RUN, "image push", f"{checks.push_repository}:{push_tag}",
             f"push a generated image to {checks.push_repository}:{push_tag} through {via} "
             + ("and wait for it in the cloud registry" if mode == "ReadWrite" else "(expecting a refusal)"),
             call=partial(_push_check, ctx, target, plan))
    return plan


def evidence(image: str, endpoint: str | None, mode: str, pull: dict, push: dict,
             referrers: dict | None = None) -> list[str]:
    """What the checks saw, in plain words: one line for the pull, one for the referrers when
    checked, one for the push."""
    lines = [f"pulled {image} through {endpoint}: digest {pull['digest']} ({pull['blobs']} blobs, "
             f"{pull['bytes']} bytes, checked)"]
    if referrers is not None:
        kinds = ", ".join(f"{r['artifactType']} {r['digest']}" for r in referrers["listed"]) or "none"
        lines.append(f"listed {len(referrers['listed'])} referrers of {image} through {endpoint}, every one of the "
                     f"{referrers['in_cloud']} the cloud registry lists: {kinds}")
    pushed = f"{push['repository']}:{push['tag']}"
    if mode == "ReadWrite":
        back = (f"; pulled back from there: {push['pulled_back_blobs']} blobs, {push['pulled_back_bytes']} bytes, "
                "checked") if "pulled_back_blobs" in push else ""
        lines.append(f"pushed {pushed} through the connected registry at {endpoint}; seen in the cloud registry at "
                     f"{push.get('seen_in_cloud_at')} with the same digest {push['digest']}{back}")
    elif push.get("read_only_refusal"):
        lines.append(f"push of {pushed} refused by the ReadOnly connected registry: {push['refused_with']} "
                     f"{push['refusal']}")
    else:  # refused, but not in the words of a ReadOnly registry: say so rather than claim the mode
        lines.append(f"push of {pushed} refused by the connected registry: {push['refused_with']} {push['refusal']} "
                     "(the client token may lack write permission; this does not show the ReadOnly mode)")
    return lines


def _checked(ctx: RunContext, target: _Target, plan: StepPlan) -> StepResult:
    """Passed, with the evidence: the pull's digest, and the push seen in the cloud (ReadWrite) or
    refused (ReadOnly). A check that does not pass has raised before this."""
    wanted = ctx.site.connected_registry.mode
    details = {"evidence": evidence(ctx.site.checks.pull_image, target.endpoint, target.mode, plan.made["pull"],
                                    plan.made["push"], plan.made.get("referrers")),
               **({"referrers": plan.made["referrers"]} if "referrers" in plan.made else {}),
               "endpoint": target.endpoint, "ca_cert_sha256": _fingerprint(target.device.ca_cert), "token": target.token,
               "mode": target.mode, "pull": plan.made["pull"], "push": plan.made["push"],
               **({"mode_in_parameters": wanted} if wanted != target.mode else {})}
    if target.mode == "ReadOnly":
        return StepResult(STEP, Status.PASSED, [target.connected.id], plan.summaries, details=details)
    # Where the push landed.
    pushed_id = f"{target.registry.id}/repositories/{ctx.site.checks.push_repository}/tags/{target.push_tag}"
    return StepResult(STEP, Status.PASSED, [target.connected.id, pushed_id], plan.summaries, details=details)


def _fingerprint(ca_cert: str | None) -> str | None:
    """The trusted CA file's SHA-256: what the record keeps (a path names this machine)."""
    return _sha256(Path(ca_cert).read_bytes()) if ca_cert else None


# -- on the device host --------------------------------------------------------------------------------
def check_script_path(ctx: RunContext) -> Path:
    """Where the on-device check script goes: the working directory, which `crlib run` archives."""
    return Path.cwd() / f"check-on-device-{ctx.site.site}.sh"


def _plan_on_device(ctx: RunContext, token: str, connected: Any, mode: str, push_tag: str) -> StepPlan:
    """Write the check script for the device host; the checks are pending until someone runs it."""
    site, checks = ctx.site, ctx.site.checks
    # The script logs in where the device's clients do: the host name its API proxy's certificate names.
    access, missing = _device_access(ctx)
    if access is None:
        raise missing or ParameterError("device.address", "on-device checks need the address clients on the "
                                                          "device's network use (its host name and port 8000)")
    script = on_device_check_script(
        site_name=site.site, device_id=site.device.id, endpoint=access.address,
        pull_image=checks.pull_image, push_repository=checks.push_repository, push_tag=push_tag, mode=mode,
        token_name=token, token_file=ON_DEVICE_TOKEN_FILE)
    path = check_script_path(ctx)
    blocked = None if connected is not None else PreconditionFailed(
        "connected_registry", f"'{site.connected_registry.name}' does not exist; run the definition step first")

    def write() -> None:
        path.write_text(script)
        path.chmod(0o644)

    def pending(plan: StepPlan) -> StepResult:
        return StepResult(STEP, Status.PENDING, [connected.id], plan.summaries, details={
            "pending": "run the script on the device", "script": path.name, "script_sha256": _sha256(script.encode()),
            "token": token, "token_file": ON_DEVICE_TOKEN_FILE, "mode": mode, "pull": checks.pull_image,
            "push": f"{checks.push_repository}:{push_tag}"})

    plan = StepPlan(STEP, details={"pull": checks.pull_image, "mode": mode, "on_device": True}, blocked_by=blocked,
                    finish=pending)
    plan.add(Action.RUN, "check script", path.name, f"write {path.name}: pull {checks.pull_image} and push "
             f"{checks.push_repository}:{push_tag} on the device host (run it there as root)", call=write)
    return plan


def run_checks(ctx: RunContext, *, plan: bool = False, timeout: float | None = None) -> StepResult:
    return plan_checks(ctx, timeout=timeout).outcome(plan=plan)
