"""Repositories, manifests, tags and blob links of one OCI namespace.

A namespace is a cloud registry (keyed by its ARM id) or a connected registry on a device (keyed by
its connected registry's id). Its documents sit under `<namespace>/oci/...` in the store, so
deleting the registry deletes them too. Blob bytes live in storage.BlobStore, shared.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from ..clock import iso
from ..core.errors import SandboxError
from .storage import check_digest

if TYPE_CHECKING:
    from ..runtime import Sandbox

REPO_NAME = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$")
TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
IMAGE_MANIFESTS = {"application/vnd.oci.image.manifest.v1+json",
                   "application/vnd.docker.distribution.manifest.v2+json"}
INDEX_MANIFESTS = {"application/vnd.oci.image.index.v1+json",
                   "application/vnd.docker.distribution.manifest.list.v2+json"}
MANIFEST_TYPES = IMAGE_MANIFESTS | INDEX_MANIFESTS

REPOSITORY = "oci.repository"
BLOB_LINK = "oci.blob"
MANIFEST = "oci.manifest"
TAG_DOC = "oci.tag"


def check_repository(name: str) -> str:
    if not REPO_NAME.match(name) or len(name) > 256:
        raise SandboxError(400, "NAME_INVALID", f"invalid repository name: {name!r}")
    return name


def is_digest(reference: str) -> bool:
    return reference.startswith("sha256:")


class Namespace:
    """The OCI content of one registry, cloud or connected."""

    def __init__(self, sandbox: Sandbox, key: str):
        self.sandbox = sandbox
        self.key = key.lower()
        self.store = sandbox.store
        self.blobs = sandbox.blobs

    def _repo_key(self, repo: str) -> str:
        return f"{self.key}/oci/repos/{repo}"

    # -- repositories ------------------------------------------------------------------------
    def repositories(self) -> list[str]:
        return sorted(doc["name"] for doc in self.store.by_type(REPOSITORY, under=f"{self.key}/oci/repos"))

    def _touch_repository(self, repo: str) -> None:
        key = self._repo_key(repo)
        if self.store.get(key) is None:
            self.store.put(key, REPOSITORY, {"name": repo, "createdTime": iso(self.sandbox.clock.now())},
                           parent=self.key)

    # -- blobs ---------------------------------------------------------------------------------
    def link_blob(self, repo: str, digest: str, size: int) -> None:
        self._touch_repository(repo)
        self.store.put(f"{self._repo_key(repo)}/blobs/{digest}", BLOB_LINK, {"digest": digest, "size": size},
                       parent=self._repo_key(repo))

    def blob(self, repo: str, digest: str) -> dict | None:
        check_digest(digest)
        link = self.store.get(f"{self._repo_key(repo)}/blobs/{digest}")
        return link if link is not None and self.blobs.exists(digest) else None

    def unlink_blob(self, repo: str, digest: str) -> bool:
        return self.store.delete(f"{self._repo_key(repo)}/blobs/{digest}")

    # -- manifests and tags --------------------------------------------------------------------
    def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str | None) -> dict:
        """Check a manifest as a registry must, store it, and tag it when the reference is a tag."""
        check_repository(repo)
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise SandboxError(400, "MANIFEST_INVALID", f"manifest invalid: {exc}") from exc
        media_type = (media_type or "").split(";")[0].strip() or parsed.get("mediaType")
        if media_type not in MANIFEST_TYPES:
            raise SandboxError(400, "MANIFEST_INVALID", f"manifest invalid: unsupported media type {media_type!r}")
        references = self._check_references(repo, parsed, media_type)
        digest = self.blobs.put_bytes(body)
        if is_digest(reference) and reference != digest:
            raise SandboxError(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        if not is_digest(reference) and not TAG.match(reference):
            raise SandboxError(400, "TAG_INVALID", f"manifest tag did not match URI: {reference!r}")
        self._touch_repository(repo)
        doc = {"digest": digest, "mediaType": media_type, "size": len(body), "references": references,
               "createdTime": iso(self.sandbox.clock.now())}
        key = f"{self._repo_key(repo)}/manifests/{digest}"
        existing = self.store.get(key)
        if existing is None:
            self.store.put(key, MANIFEST, doc, parent=self._repo_key(repo))
        if not is_digest(reference):
            self.tag(repo, reference, digest)
        return existing or doc

    def _check_references(self, repo: str, manifest: dict, media_type: str) -> list[str]:
        if media_type in INDEX_MANIFESTS:
            children = [m["digest"] for m in manifest.get("manifests", [])]
            missing = [d for d in children if self.manifest(repo, d) is None]
            if missing:
                raise SandboxError(400, "MANIFEST_BLOB_UNKNOWN", f"manifest references unknown manifests: {missing}")
            return children
        blobs = [manifest.get("config", {}).get("digest")] + [layer.get("digest") for layer in manifest.get("layers", [])]
        if None in blobs:
            raise SandboxError(400, "MANIFEST_INVALID", "manifest invalid: config and layers need digests")
        missing = [d for d in blobs if self.blob(repo, d) is None]
        if missing:
            raise SandboxError(400, "MANIFEST_BLOB_UNKNOWN", f"blob unknown to registry: {missing[0]}",
                               details=[{"digest": d} for d in missing])
        return blobs

    def tag(self, repo: str, tag: str, digest: str) -> None:
        self.store.put(f"{self._repo_key(repo)}/tags/{tag}", TAG_DOC,
                       {"name": tag, "digest": digest, "lastUpdateTime": iso(self.sandbox.clock.now())},
                       parent=self._repo_key(repo))

    def resolve(self, repo: str, reference: str) -> str | None:
        if is_digest(reference):
            check_digest(reference)
            return reference
        doc = self.store.get(f"{self._repo_key(repo)}/tags/{reference}")
        return doc["digest"] if doc else None

    def manifest(self, repo: str, reference: str) -> dict | None:
        digest = self.resolve(repo, reference)
        return self.store.get(f"{self._repo_key(repo)}/manifests/{digest}") if digest else None

    def tags(self, repo: str) -> list[str]:
        return sorted(doc["name"] for doc in self.store.children(self._repo_key(repo), TAG_DOC))

    def delete_manifest(self, repo: str, reference: str) -> bool:
        """Delete a tag, or a manifest by digest with every tag pointing at it."""
        if not is_digest(reference):
            return self.store.delete(f"{self._repo_key(repo)}/tags/{reference}")
        found = self.store.delete(f"{self._repo_key(repo)}/manifests/{reference}")
        for tag in self.store.children(self._repo_key(repo), TAG_DOC):
            if tag["digest"] == reference:
                self.store.delete(f"{self._repo_key(repo)}/tags/{tag['name']}")
        return found

    # -- copying between namespaces (import, sync) ---------------------------------------------
    def copy_from(self, source: Namespace, source_repo: str, reference: str, repo: str,
                  tag: str | None) -> str:
        """Copy an image (an index with its children) into this namespace; return its digest."""
        manifest = source.manifest(source_repo, reference)
        if manifest is None:
            raise SandboxError(404, "MANIFEST_UNKNOWN", f"manifest unknown: {source_repo}:{reference}")
        if manifest["mediaType"] in INDEX_MANIFESTS:
            for child in manifest["references"]:
                self.copy_from(source, source_repo, child, repo, None)
        else:
            for digest in manifest["references"]:
                self.link_blob(repo, digest, self.blobs.size(digest))
        self.put_manifest(repo, tag or manifest["digest"], self.blobs.read(manifest["digest"]), manifest["mediaType"])
        return manifest["digest"]

    def images(self) -> dict[str, dict[str, str]]:
        """{repository: {tag: digest}}: what sync and checks compare."""
        return {repo: {t: d for t in self.tags(repo) if (d := self.resolve(repo, t)) is not None}
                for repo in self.repositories()}
