"""HTTP layer of the OCI Distribution API (v1.1) and ACR's token endpoints.

The handlers that take blob bodies are async and stream them to disk; the rest are plain
functions that run inside one store transaction. Which namespace and authority a request meets
depends on the port it came in on (see `resolve`).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from ..core.errors import SandboxError
from ..core.http import Call, json_response
from . import auth, redirects
from .models import Namespace, check_repository
from .storage import CHUNK, check_digest

if TYPE_CHECKING:
    from .auth import Authority

API_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# role of a listener -> function giving the namespace key and authority it serves.
RESOLVERS: dict[str, Callable[[Call], tuple[str, Authority]]] = {}


def resolve(call: Call) -> tuple[Namespace, Authority]:
    resolver = RESOLVERS.get(call.host.role or "")
    if resolver is None:
        raise SandboxError(404, "NAME_UNKNOWN", "this endpoint serves no registry")
    key, authority = resolver(call)
    return Namespace(call.sandbox, key), authority


def _repo(call: Call) -> str:
    return check_repository(call.params["name"])


def _refuse_writes(authority: Authority) -> None:
    message = getattr(authority, "write_refusal", None)
    if message:
        # docker shows this as "denied: <message>", as it does for a ReadOnly connected registry.
        raise SandboxError(403, "DENIED", message)


# -- base, catalog and tags ---------------------------------------------------------------------
def base(call: Call) -> web.Response:
    _, authority = resolve(call)
    scheme, _, token = call.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        try:
            auth._decode(call.sandbox, authority, token)
            return json_response({}, headers=API_HEADERS)
        except Exception:
            pass
    raise auth.unauthorized(call, authority, "authentication required")


def _page(call: Call, items: list[str]) -> tuple[list[str], dict[str, str]]:
    last = call.query.get("last")
    if last:
        items = [i for i in items if i > last]
    headers = dict(API_HEADERS)
    n = _page_size(call.query.get("n"))
    if n is not None and n < len(items):
        items = items[:n]
        if items:  # n=0 asks for an empty page: nothing comes next from it
            headers["Link"] = f'<{call.request.path}?n={n}&last={items[-1]}>; rel="next"'
    return items, headers


def _page_size(n: str | None) -> int | None:
    if n is None:
        return None
    if not n.isdigit():  # distribution answers a bad `n` with PAGINATION_NUMBER_INVALID
        raise SandboxError(400, "PAGINATION_NUMBER_INVALID", f"invalid number of results requested: {n!r}")
    return int(n)


def catalog(call: Call) -> web.Response:
    namespace, authority = resolve(call)
    principal = auth.require(call, authority, repository=None, action="*")
    visible = [r for r in namespace.repositories()
               if authority.permitted(principal, r) & {"metadata_read", "pull"}]
    items, headers = _page(call, visible)
    return json_response({"repositories": items}, headers=headers)


def tags_list(call: Call) -> web.Response:
    namespace, authority = resolve(call)
    repo = _repo(call)
    auth.require(call, authority, repository=repo, action="metadata_read")
    tags = namespace.tags(repo)
    if not tags and repo not in namespace.repositories():
        raise SandboxError(404, "NAME_UNKNOWN", f"repository name not known to registry: {repo}")
    items, headers = _page(call, tags)
    return json_response({"name": repo, "tags": items}, headers=headers)


# -- manifests --------------------------------------------------------------------------------------
def get_manifest(call: Call) -> web.Response:
    namespace, authority = resolve(call)
    repo = _repo(call)
    auth.require(call, authority, repository=repo, action="pull")
    manifest = namespace.manifest(repo, call.params["reference"])
    if manifest is None:
        raise SandboxError(404, "MANIFEST_UNKNOWN", f"manifest unknown: {repo}:{call.params['reference']}")
    headers = API_HEADERS | {"Docker-Content-Digest": manifest["digest"], "Content-Type": manifest["mediaType"],
                             "ETag": f'"{manifest["digest"]}"'}
    if call.method == "HEAD":
        return web.Response(status=200, headers=headers | {"Content-Length": str(manifest["size"])})
    return web.Response(status=200, body=call.sandbox.blobs.read(manifest["digest"]), headers=headers)


def put_manifest(call: Call) -> web.Response:
    namespace, authority = resolve(call)
    repo = _repo(call)
    auth.require(call, authority, repository=repo, action="push", challenge=_push_scope(repo))
    _refuse_writes(authority)
    # Distribution-spec (main), "Pushing Manifests": a PUT by digest may name tags with `?tag=`; the
    # registry tags the manifest with each and lists them in OCI-Tag.
    tags = call.query.getall("tag", [])
    manifest = namespace.put_manifest(repo, call.params["reference"], call.body, call.headers.get("Content-Type"),
                                      tags=tags)
    headers = API_HEADERS | {"Location": f"/v2/{repo}/manifests/{manifest['digest']}",
                             "Docker-Content-Digest": manifest["digest"]}
    if tags:
        headers["OCI-Tag"] = ", ".join(tags)
    if manifest.get("subject"):
        # Distribution-spec v1.1, "Pushing Manifests with Subject": the registry processed the subject.
        headers["OCI-Subject"] = manifest["subject"]
    return web.Response(status=201, headers=headers)


def delete_manifest(call: Call) -> web.Response:
    namespace, authority = resolve(call)
    repo = _repo(call)
    auth.require(call, authority, repository=repo, action="delete")
    _refuse_writes(authority)
    if not namespace.delete_manifest(repo, call.params["reference"]):
        raise SandboxError(404, "MANIFEST_UNKNOWN", f"manifest unknown: {repo}:{call.params['reference']}")
    return web.Response(status=202, headers=API_HEADERS)


def referrers(call: Call) -> web.Response:
    """GET /v2/<name>/referrers/<digest> (distribution-spec v1.1, "Listing Referrers"): an image index
    of the manifests whose subject is that digest; 200 with an empty one for an unknown subject."""
    namespace, authority = resolve(call)
    repo = _repo(call)
    auth.require(call, authority, repository=repo, action="pull")
    artifact_types = call.query.getall("artifactType", [])
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": namespace.referrers(repo, call.params["digest"], artifact_types)}
    headers = API_HEADERS | {"Content-Type": OCI_INDEX}
    if artifact_types:
        headers["OCI-Filters-Applied"] = "artifactType"
    return web.Response(status=200, body=json.dumps(index).encode(), headers=headers)


# -- blobs ------------------------------------------------------------------------------------------
def get_blob(call: Call) -> web.StreamResponse:
    namespace, authority = resolve(call)
    repo = _repo(call)
    auth.require(call, authority, repository=repo, action="pull")
    digest = call.params["digest"]
    link = namespace.blob(repo, digest)
    if link is None:
        raise SandboxError(404, "BLOB_UNKNOWN", f"blob unknown to registry: {digest}")
    headers = API_HEADERS | {"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream",
                             "ETag": f'"{digest}"'}
    redirect = redirects.redirect_to_data_endpoint(call, digest)
    if redirect is not None:
        return redirect
    if call.method == "HEAD":
        return web.Response(status=200, headers=headers | {"Content-Length": str(link["size"])})
    return BlobResponse(call.sandbox.blobs.path(digest), link["size"], call.headers.get("Range"), headers)


def get_signed_blob(call: Call) -> web.StreamResponse:
    """A blob at the signed URL a login server redirected to (see redirects.py): no bearer token."""
    digest = redirects.check_signed_blob(call)
    if not call.sandbox.blobs.exists(digest):
        raise SandboxError(404, "BLOB_UNKNOWN", f"blob unknown to registry: {digest}")
    size = call.sandbox.blobs.size(digest)
    headers = {"Content-Type": "application/octet-stream", "ETag": f'"{digest}"', "Docker-Content-Digest": digest}
    if call.method == "HEAD":
        return web.Response(status=200, headers=headers | {"Content-Length": str(size)})
    return BlobResponse(call.sandbox.blobs.path(digest), size, call.headers.get("Range"), headers)


_BYTE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class BlobResponse(web.StreamResponse):
    """A blob streamed from disk CHUNK by CHUNK, so memory stays flat whatever its size; one byte
    Range is honoured. Not FileResponse: over TLS, the asyncio sendfile fallback it relies on
    moves about a tenth of the bytes per second (17 s against 1.5 s for 1 GiB on loopback)."""

    def __init__(self, path: Path, size: int, range_header: str | None, headers: dict[str, str]):
        wanted = _byte_range(range_header, size)
        start, end = wanted or (0, size)
        headers = headers | {"Accept-Ranges": "bytes"}
        if wanted:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        super().__init__(status=206 if wanted else 200, headers=headers)
        self.content_length = end - start
        self._blob_path, self._blob_offset = path, start

    async def prepare(self, request: web.BaseRequest):
        if self.prepared:
            return await super().prepare(request)
        writer = await super().prepare(request)
        with open(self._blob_path, "rb") as fh:
            fh.seek(self._blob_offset)
            remaining = self.content_length
            while remaining and (chunk := fh.read(min(CHUNK, remaining))):
                await self.write(chunk)  # waits while the client is slower than the disk
                remaining -= len(chunk)
        return writer


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) of `bytes=a-b`, `bytes=a-` or `bytes=-n`; None (the whole blob) without a
    single range to honour."""
    match = _BYTE_RANGE.match((header or "").strip())
    if not match or not any(match.groups()):
        return None
    first, last = match.groups()
    if first:
        start, end = int(first), min(int(last) + 1, size) if last else size
    else:
        start, end = max(size - int(last), 0), size
    if start >= end:
        raise SandboxError(416, "SIZE_INVALID", f"requested range not satisfiable: {header}",
                           headers={"Content-Range": f"bytes */{size}"})
    return start, end


def delete_blob(call: Call) -> web.Response:
    namespace, authority = resolve(call)
    repo = _repo(call)
    auth.require(call, authority, repository=repo, action="delete")
    _refuse_writes(authority)
    if not namespace.unlink_blob(repo, call.params["digest"]):
        raise SandboxError(404, "BLOB_UNKNOWN", f"blob unknown to registry: {call.params['digest']}")
    return web.Response(status=202, headers=API_HEADERS)


def _upload_key(namespace: Namespace, upload_id: str) -> str:
    return f"{namespace.key}/oci/uploads/{upload_id}"


def _upload(call: Call, namespace: Namespace, repo: str) -> str:
    upload_id = call.params["uuid"]
    doc = call.sandbox.store.get(_upload_key(namespace, upload_id))
    if doc is None or doc["repository"] != repo:
        raise SandboxError(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
    return upload_id


def _upload_headers(repo: str, upload_id: str, size: int) -> dict[str, str]:
    return API_HEADERS | {"Location": f"/v2/{repo}/blobs/uploads/{upload_id}", "Docker-Upload-UUID": upload_id,
                          "Range": f"0-{max(size - 1, 0)}"}


def _upload_response(status: int, repo: str, upload_id: str, size: int) -> web.Response:
    return web.Response(status=status, headers=_upload_headers(repo, upload_id, size))


_CONTENT_RANGE = re.compile(r"^(\d+)-(\d+)$")


def _check_chunk_start(call: Call, repo: str, upload_id: str) -> None:
    """A chunk (PATCH, or the closing PUT) whose Content-Range does not start where the upload ends
    is refused with 416 and the upload's current Range (distribution-spec, "Pushing a blob in
    chunks": "If a chunk is uploaded out of order, the registry MUST respond with a 416")."""
    content_range = call.headers.get("Content-Range")
    if not content_range:
        return
    match = _CONTENT_RANGE.match(content_range.strip())
    if match is None:
        raise SandboxError(400, "BLOB_UPLOAD_INVALID",
                           f"invalid Content-Range {content_range!r}: expected <start>-<end>, inclusive")
    current = call.sandbox.blobs.upload_size(upload_id)
    start = int(match.group(1))
    if start != current:
        raise SandboxError(416, "BLOB_UPLOAD_INVALID",
                           f"chunk out of order: it starts at byte {start}, the upload holds {current} bytes",
                           headers=_upload_headers(repo, upload_id, current))


def _push_scope(repo: str) -> str:
    # A push needs pull and push: what distribution's challenge names, and what docker asks for.
    return auth.scope(repo, "pull,push")


async def _finish(call: Call, namespace: Namespace, repo: str, upload_id: str, digest: str) -> web.Response:
    # Off the event loop: a digest other than the running sha256 re-reads the whole upload.
    size = await asyncio.to_thread(call.sandbox.blobs.finish_upload, upload_id, digest)
    call.sandbox.store.delete(_upload_key(namespace, upload_id))
    namespace.link_blob(repo, digest, size)
    return web.Response(status=201, headers=API_HEADERS | {"Location": f"/v2/{repo}/blobs/{digest}",
                                                           "Docker-Content-Digest": digest})


async def start_upload(call: Call) -> web.Response:
    namespace, authority = resolve(call)
    repo = _repo(call)
    mount, source = call.query.get("mount"), call.query.get("from")
    if mount and source:
        mounted = _mount(call, namespace, authority, repo, check_digest(mount), check_repository(source))
        if mounted is not None:
            return mounted
    else:
        auth.require(call, authority, repository=repo, action="push", challenge=_push_scope(repo))
        _refuse_writes(authority)
    digest = call.query.get("digest")
    if digest:
        check_digest(digest)  # before the body is read
    upload_id = call.sandbox.blobs.start_upload()
    call.sandbox.store.put(_upload_key(namespace, upload_id), "oci.upload", {"repository": repo},
                           parent=namespace.key)
    if digest:  # monolithic upload: POST with the whole blob
        await call.sandbox.blobs.append(upload_id, call.request.content)
        return await _finish(call, namespace, repo, upload_id, digest)
    return _upload_response(202, repo, upload_id, 0)


def _mount(call: Call, namespace: Namespace, authority: Authority, repo: str, digest: str,
           source: str) -> web.Response | None:
    """A cross-repository mount (201), or None where an upload session should start instead.

    It needs push on the target and pull on the source, and a refusal challenges for both scopes,
    as distribution does. A token issued for the source scope without pull on it (the token service
    did not grant it) falls back to an upload session, as does a blob the source does not hold
    (distribution-spec, "Mounting a blob from another repository": 202 then)."""
    challenge = f"{_push_scope(repo)} {auth.scope(source, 'pull')}"
    auth.require(call, authority, repository=repo, action="push", challenge=challenge)
    _refuse_writes(authority)
    if not _may_pull(call, authority, source):
        if not auth.token_was_asked_for(call, authority, source):
            raise auth.unauthorized(call, authority, f"authentication required: mounting from {source} "
                                                     "needs pull on it", challenge)
        return None
    link = namespace.blob(source, digest)
    if link is None:
        return None
    namespace.link_blob(repo, digest, link["size"])
    return web.Response(status=201, headers=API_HEADERS | {"Location": f"/v2/{repo}/blobs/{digest}",
                                                           "Docker-Content-Digest": digest})


def _may_pull(call: Call, authority: Authority, source: str) -> bool:
    try:
        auth.require(call, authority, repository=source, action="pull")
    except SandboxError:
        return False
    return True


def upload_status(call: Call) -> web.Response:
    namespace, authority = resolve(call)
    repo = _repo(call)
    auth.require(call, authority, repository=repo, action="push", challenge=_push_scope(repo))
    upload_id = _upload(call, namespace, repo)
    return _upload_response(204, repo, upload_id, call.sandbox.blobs.upload_size(upload_id))


async def patch_upload(call: Call) -> web.Response:
    namespace, authority = resolve(call)
    repo = _repo(call)
    auth.require(call, authority, repository=repo, action="push", challenge=_push_scope(repo))
    upload_id = _upload(call, namespace, repo)
    _check_chunk_start(call, repo, upload_id)
    size = await call.sandbox.blobs.append(upload_id, call.request.content)
    return _upload_response(202, repo, upload_id, size)


async def finish_upload(call: Call) -> web.Response:
    namespace, authority = resolve(call)
    repo = _repo(call)
    auth.require(call, authority, repository=repo, action="push", challenge=_push_scope(repo))
    upload_id = _upload(call, namespace, repo)
    digest = call.query.get("digest")
    if not digest:
        raise SandboxError(400, "DIGEST_INVALID", "digest query parameter is required")
    check_digest(digest)
    _check_chunk_start(call, repo, upload_id)  # the final chunk may come with the PUT
    await call.sandbox.blobs.append(upload_id, call.request.content)
    return await _finish(call, namespace, repo, upload_id, digest)


def cancel_upload(call: Call) -> web.Response:
    namespace, authority = resolve(call)
    repo = _repo(call)
    auth.require(call, authority, repository=repo, action="push", challenge=_push_scope(repo))
    upload_id = _upload(call, namespace, repo)
    call.sandbox.blobs.cancel_upload(upload_id)
    call.sandbox.store.delete(_upload_key(namespace, upload_id))
    return web.Response(status=204, headers=API_HEADERS)


# -- token endpoints ------------------------------------------------------------------------------
def token_get(call: Call) -> web.Response:
    return auth.token_get(call, resolve(call)[1])


def token_post(call: Call) -> web.Response:
    return auth.token_post(call, resolve(call)[1])


def exchange(call: Call) -> web.Response:
    return auth.exchange(call, resolve(call)[1])
