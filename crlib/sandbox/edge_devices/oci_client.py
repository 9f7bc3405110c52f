"""How a device talks to registries: python-dxf (a maintained OCI client), run in worker threads.

The device and the registries it pulls from live in one process; the pulls still go over HTTPS
through the registries' token auth, so a wrong password or a closed endpoint fails here the way
it fails on a real device. Blob bytes land in the shared blob store; recording what a namespace
holds is left to the caller, on the event loop, where the store is safe to use.

Every request carries the User-Agent its caller names (`user_agent`, see device.user_agent), the
token exchange included, so the sandbox's request log tells which simulated device made it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import requests
from dxf import DXF, DXFBase
from dxf import exceptions as dxf_errors

from ..registry_dataplane.models import INDEX_MANIFESTS, NONDISTRIBUTABLE_LAYERS
from ..registry_dataplane.storage import BlobStore

_T = TypeVar("_T")


@dataclass(frozen=True)
class Credentials:
    username: str | None = None
    password: str | None = None


class PullError(Exception):
    """Why an image could not be pulled or pushed, in the words a device would log."""


@dataclass
class PulledManifest:
    digest: str
    media_type: str
    body: bytes
    blobs: list[tuple[str, int]]  # (digest, size) of config and layers
    children: list[PulledManifest]


class _AttributedDXF(DXF):
    """python-dxf sending one User-Agent on every registry request (its `authenticate` takes one
    for the token request; registry requests get it here, as a per-request header)."""

    user_agent: str | None = None

    def _base_request(self, method, path, **kwargs):
        if self.user_agent:
            kwargs["headers"] = {**kwargs.get("headers", {}), "User-Agent": self.user_agent}
        return super()._base_request(method, path, **kwargs)


def _client(host: str, repository: str, credentials: Credentials, ca_bundle: str,
            user_agent: str | None = None) -> DXF:
    def authenticate(dxf: DXFBase, response: requests.Response) -> None:
        if user_agent:
            dxf.authenticate(credentials.username, credentials.password, response=response, user_agent=user_agent)
        else:
            dxf.authenticate(credentials.username, credentials.password, response=response)

    client = _AttributedDXF(host, repository, auth=authenticate, tlsverify=ca_bundle, timeout=30)
    client.user_agent = user_agent
    return client


def _check_credentials(host: str, credentials: Credentials, ca_bundle: str, user_agent: str | None = None) -> None:
    """The challenge and token exchange done by hand, to keep the registry's reason for a refusal
    (python-dxf raises a bare DXFUnauthorizedError and drops the response)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = ca_bundle
    if user_agent:
        session.headers["User-Agent"] = user_agent
    try:
        challenge = session.get(f"https://{host}/v2/", timeout=30)
        if challenge.status_code != 401:
            return
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge.headers.get("WWW-Authenticate", "")))
        response = session.get(params.get("realm", f"https://{host}/oauth2/token"), timeout=30,
                               params={"service": params.get("service", host), "scope": "registry:catalog:*"},
                               auth=(credentials.username or "", credentials.password or ""))
    except requests.RequestException as exc:
        raise PullError(describe(exc, host)) from exc
    if response.status_code != 200:
        try:
            reason = response.json()["errors"][0]["message"]
        except (ValueError, KeyError, IndexError):
            reason = f"status {response.status_code}"
        raise PullError(f"unauthorized: {reason}")


async def check_credentials(host: str, credentials: Credentials, *, ca_bundle: str,
                            user_agent: str | None = None) -> None:
    """Sign in to a registry's token endpoint, as a connected registry does before activating."""
    await asyncio.to_thread(_check_credentials, host, credentials, ca_bundle, user_agent)


def describe(exc: Exception, host: str) -> str:
    if isinstance(exc, dxf_errors.DXFUnauthorizedError) or (
            isinstance(exc, requests.HTTPError) and exc.response is not None and exc.response.status_code == 401):
        detail = ""
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            try:
                detail = ": " + exc.response.json()["errors"][0]["message"]
            except (ValueError, KeyError, IndexError):
                detail = ""
        return f"unauthorized: authentication required at {host}{detail}"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        try:
            error = exc.response.json()["errors"][0]
            return f"{error['code'].lower()}: {error['message']}"
        except (ValueError, KeyError, IndexError):
            return f"{exc.response.status_code} from {host}"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS verification of {host} failed: its certificate is not issued by a CA this device trusts"
    if isinstance(exc, requests.ConnectionError):
        return f"could not connect to {host}: connection refused or host unreachable"
    return f"{type(exc).__name__}: {exc}"


def _pull_manifest(client: DXF, blobs: BlobStore, reference: str, *, fetch_blobs: bool) -> PulledManifest:
    text, response = client.get_manifest_and_response(reference)
    body = text.encode()
    digest = response.headers.get("Docker-Content-Digest") or blobs.put_bytes(body)
    parsed = json.loads(body)
    media_type = (response.headers.get("Content-Type") or parsed.get("mediaType", "")).split(";")[0]
    if media_type in INDEX_MANIFESTS:
        children = [_pull_manifest(client, blobs, m["digest"], fetch_blobs=fetch_blobs)
                    for m in parsed.get("manifests", [])]
        return PulledManifest(digest, media_type, body, [], children)
    # Non-distributable layers come from their distributor, never from a registry (image-spec,
    # layer.md): a registry may hold none of them, and no client asks it for one.
    wanted = [parsed["config"], *[layer for layer in parsed.get("layers", [])
                                  if layer.get("mediaType") not in NONDISTRIBUTABLE_LAYERS]]
    pulled = []
    for descriptor in wanted:
        blob_digest = descriptor["digest"]
        if fetch_blobs and not blobs.exists(blob_digest):
            blobs.write_chunks(_blob_chunks(client, blob_digest), blob_digest)  # checks the digest
        elif not fetch_blobs:
            for _ in _blob_chunks(client, blob_digest):
                pass
        pulled.append((blob_digest, descriptor.get("size", 0)))
    return PulledManifest(digest, media_type, body, pulled, [])


def _blob_chunks(client: DXF, digest: str):
    """A blob's bytes, 1 MiB at a time. python-dxf's pull_blob checks sha256 digests only, so others
    (sha512) are streamed as they come; BlobStore.write_chunks checks any algorithm."""
    if digest.startswith("sha256:"):
        return client.pull_blob(digest, chunk_size=1024 * 1024)
    return client._request("get", f"blobs/{digest}", stream=True).iter_content(1024 * 1024)


def _pull(host: str, repository: str, reference: str, credentials: Credentials, ca_bundle: str,
          blobs: BlobStore, fetch_blobs: bool, user_agent: str | None) -> PulledManifest:
    try:
        return _pull_manifest(_client(host, repository, credentials, ca_bundle, user_agent), blobs, reference,
                              fetch_blobs=fetch_blobs)
    except (requests.RequestException, dxf_errors.DXFError) as exc:
        raise PullError(describe(exc, host)) from exc


async def pull(host: str, repository: str, reference: str, credentials: Credentials, *, ca_bundle: str,
               blobs: BlobStore, keep: bool, user_agent: str | None = None) -> PulledManifest:
    """Pull an image; with keep, its blobs are stored so a namespace can link them."""
    return await asyncio.to_thread(_pull, host, repository, reference, credentials, ca_bundle, blobs, keep,
                                   user_agent)


def _unless_missing(read: Callable[[], _T], host: str, missing: _T) -> _T:
    """read(), or `missing` when the registry answers 404; any other failure is a PullError."""
    try:
        return read()
    except requests.HTTPError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            return missing
        raise PullError(describe(exc, host)) from exc
    except (requests.RequestException, dxf_errors.DXFError) as exc:
        raise PullError(describe(exc, host)) from exc


def _tags(host: str, repository: str, credentials: Credentials, ca_bundle: str,
          user_agent: str | None) -> list[str]:
    client = _client(host, repository, credentials, ca_bundle, user_agent)
    return _unless_missing(lambda: list(client.list_aliases()), host, [])


async def tags(host: str, repository: str, credentials: Credentials, *, ca_bundle: str,
               user_agent: str | None = None) -> list[str]:
    return await asyncio.to_thread(_tags, host, repository, credentials, ca_bundle, user_agent)


def _digest_of(host: str, repository: str, tag: str, credentials: Credentials, ca_bundle: str,
               user_agent: str | None) -> str | None:
    client = _client(host, repository, credentials, ca_bundle, user_agent)
    return _unless_missing(lambda: client.head_manifest_and_response(tag)[1].headers.get("Docker-Content-Digest"),
                           host, None)


async def digest_of(host: str, repository: str, tag: str, credentials: Credentials, *, ca_bundle: str,
                    user_agent: str | None = None) -> str | None:
    return await asyncio.to_thread(_digest_of, host, repository, tag, credentials, ca_bundle, user_agent)


def _referrers(host: str, repository: str, digest: str, credentials: Credentials, ca_bundle: str,
               user_agent: str | None) -> list[dict]:
    """The descriptors of the manifests whose subject is `digest` (OCI distribution spec 1.1,
    "Listing Referrers"). A parent without the referrers API (404) has none to give."""
    client = _client(host, repository, credentials, ca_bundle, user_agent)

    def listed() -> list[dict]:
        accept = {"Accept": "application/vnd.oci.image.index.v1+json"}
        response = client._request("get", f"referrers/{digest}", headers=accept)
        manifests = list(response.json().get("manifests") or [])
        while (following := response.links.get("next", {}).get("url")):  # a parent that pages the list
            response = client._base_request("get", following, headers=accept)
            manifests += response.json().get("manifests") or []
        return manifests

    return _unless_missing(listed, host, [])


async def referrers(host: str, repository: str, digest: str, credentials: Credentials, *, ca_bundle: str,
                    user_agent: str | None = None) -> list[dict]:
    return await asyncio.to_thread(_referrers, host, repository, digest, credentials, ca_bundle, user_agent)


def _push(host: str, repository: str, tag: str, manifests: list[tuple[bytes, list[str]]], credentials: Credentials,
          ca_bundle: str, blobs: BlobStore, user_agent: str | None) -> None:
    """Push blobs then manifests (children first, the tagged one last)."""
    client = _client(host, repository, credentials, ca_bundle, user_agent)
    try:
        for index, (body, blob_digests) in enumerate(manifests):
            for digest in blob_digests:
                client.push_blob(filename=str(blobs.path(digest)), digest=digest)
            last = index == len(manifests) - 1
            reference = tag if last else "sha256:" + hashlib.sha256(body).hexdigest()
            client.set_manifest(reference, body.decode())
    except (requests.RequestException, dxf_errors.DXFError) as exc:
        raise PullError(describe(exc, host)) from exc


async def push(host: str, repository: str, tag: str, manifests: list[tuple[bytes, list[str]]],
               credentials: Credentials, *, ca_bundle: str, blobs: BlobStore, user_agent: str | None = None) -> None:
    await asyncio.to_thread(_push, host, repository, tag, manifests, credentials, ca_bundle, blobs, user_agent)
