"""Repositories, manifests, tags, referrers and blob links of one OCI namespace.

A namespace is a cloud registry (keyed by its ARM id) or a connected registry on a device (keyed by
its connected registry's id). Its documents sit under `<namespace>/oci/...` in the store, so
deleting the registry deletes them too. Blob bytes live in storage.BlobStore, shared.

Spec decisions (OCI distribution-spec v1.1 and image-spec v1.1):

- Manifests are addressed by sha256 or sha512 digests. A manifest pushed by digest is hashed with
  that digest's algorithm, and stored under it; one pushed by tag under its sha256 digest.
- Referrers (distribution-spec, "Listing Referrers"): a manifest with a `subject` is indexed under
  its subject's digest when it is pushed, and dropped from that index when it is deleted, so a
  listing reads only that subject's referrers. The subject need not exist ("A registry MUST
  initially accept an otherwise valid manifest with a `subject` field that references a manifest
  that does not exist in the repository").
- Missing references: distribution-spec ("Push") lets a registry reject a manifest whose descriptors
  reference blobs or manifests it does not hold (MAY, with MANIFEST_BLOB_UNKNOWN); this one does,
  for the config, the layers and an index's manifests, as distribution does.
- Non-distributable layers are the exception: a layer whose media type is non-distributable
  (`application/vnd.oci.image.layer.nondistributable.v1.tar[+gzip|+zstd]`, or Docker's
  `application/vnd.docker.image.rootfs.foreign.diff.tar.gzip`) need not have been uploaded. The
  image-spec (layer.md, "Non-Distributable Layers") says such layers are "typically downloaded
  directly from a distributor but never uploaded" and "Implementations SHOULD NOT upload layers
  tagged with this media type"; a registry that required them would refuse every image a
  conforming client pushes with one, and the rejection it may make is only a MAY. The check goes by
  media type alone: "the presence of the `urls` field SHOULD NOT be used to determine whether or
  not a layer is non-distributable", so an ordinary layer with `urls` must still be uploaded. The
  `urls` are kept in the manifest as sent and never fetched; a GET of such a blob that nobody
  uploaded answers BLOB_UNKNOWN like any other. (distribution fails these conformance tests
  because it checks `urls` against an allow-list that is empty by default.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..clock import iso
from ..core.errors import SandboxError
from .storage import CANONICAL, algorithm_of, check_digest, digest_of

if TYPE_CHECKING:
    from ..runtime import Sandbox

REPO_NAME = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$")
TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
IMAGE_MANIFESTS = {"application/vnd.oci.image.manifest.v1+json",
                   "application/vnd.docker.distribution.manifest.v2+json"}
INDEX_MANIFESTS = {"application/vnd.oci.image.index.v1+json",
                   "application/vnd.docker.distribution.manifest.list.v2+json"}
MANIFEST_TYPES = IMAGE_MANIFESTS | INDEX_MANIFESTS
# Layers clients do not upload (image-spec layer.md, "Non-Distributable Layers"; Docker's foreign layers).
NONDISTRIBUTABLE_LAYERS = {"application/vnd.oci.image.layer.nondistributable.v1.tar",
                           "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                           "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                           "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"}

REPOSITORY = "oci.repository"
BLOB_LINK = "oci.blob"
MANIFEST = "oci.manifest"
TAG_DOC = "oci.tag"
REFERRER = "oci.referrer"


def check_repository(name: str) -> str:
    if not REPO_NAME.match(name) or len(name) > 256:
        raise SandboxError(400, "NAME_INVALID", f"invalid repository name: {name!r}")
    return name


def check_tag(tag: str) -> str:
    if not TAG.match(tag):
        raise SandboxError(400, "TAG_INVALID", f"invalid tag {tag!r}: a tag matches [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")
    return tag


def is_digest(reference: str) -> bool:
    """A reference is a digest or a tag; tags never hold a colon (distribution-spec, "Pulling manifests")."""
    return ":" in reference


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
        return self.store.delete(f"{self._repo_key(repo)}/blobs/{check_digest(digest)}")

    # -- manifests and tags --------------------------------------------------------------------
    def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str | None, *,
                     tags: Sequence[str] = ()) -> dict:
        """Check a manifest as a registry must, store it, and tag it when the reference is a tag (or,
        pushed by digest, with each of `tags`, the PUT's `?tag=` parameters)."""
        check_repository(repo)
        if tags and not is_digest(reference):
            raise SandboxError(400, "MANIFEST_INVALID", "the tag query parameter applies only to a manifest "
                                                        "pushed by digest")
        for tag in tags:
            check_tag(tag)
        digest = self._manifest_digest(reference, body)
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise SandboxError(400, "MANIFEST_INVALID", f"manifest invalid: {exc}") from exc
        if not isinstance(parsed, dict):
            raise SandboxError(400, "MANIFEST_INVALID", "manifest invalid: not a JSON object")
        media_type = (media_type or "").split(";")[0].strip() or parsed.get("mediaType")
        if media_type not in MANIFEST_TYPES:
            raise SandboxError(400, "MANIFEST_INVALID", f"manifest invalid: unsupported media type {media_type!r}")
        references = self._check_references(repo, parsed, media_type)
        subject = _subject_digest(parsed)
        self.blobs.put_bytes(body, algorithm_of(digest))
        self._touch_repository(repo)
        doc = {"digest": digest, "mediaType": media_type, "size": len(body), "references": references,
               "createdTime": iso(self.sandbox.clock.now())}
        if subject:
            doc["subject"] = subject
            self._add_referrer(repo, subject, _referrer_descriptor(parsed, doc))
        key = f"{self._repo_key(repo)}/manifests/{digest}"
        existing = self.store.get(key)
        if existing is None:
            self.store.put(key, MANIFEST, doc, parent=self._repo_key(repo))
        for tag in tags if is_digest(reference) else [reference]:
            self.tag(repo, tag, digest)
        return existing or doc

    @staticmethod
    def _manifest_digest(reference: str, body: bytes) -> str:
        """The manifest's digest, in the algorithm of a digest reference (sha256 for a tag)."""
        if not is_digest(reference):
            check_tag(reference)
            return digest_of(body, CANONICAL)
        digest = digest_of(body, algorithm_of(reference))
        if digest != reference:
            raise SandboxError(400, "DIGEST_INVALID", f"manifest digest did not match: the body's digest is "
                                                      f"{digest}, the reference {reference}")
        return digest

    def _check_references(self, repo: str, manifest: dict, media_type: str) -> list[str]:
        """The digests the manifest needs this repository to hold: an index's manifests, or an image's
        config and layers but for non-distributable layers nobody uploaded (see the module's docstring)."""
        if media_type in INDEX_MANIFESTS:
            children = [_descriptor_digest(m, f"manifests[{i}]") for i, m in enumerate(manifest.get("manifests") or [])]
            missing = [d for d in children if self.manifest(repo, d) is None]
            if missing:
                raise SandboxError(400, "MANIFEST_BLOB_UNKNOWN", f"manifest references unknown manifests: {missing}",
                                   details=[{"digest": d} for d in missing])
            return children
        config = _descriptor_digest(manifest.get("config"), "config")
        layers = [(layer, _descriptor_digest(layer, f"layers[{i}]"))
                  for i, layer in enumerate(manifest.get("layers") or [])]
        blobs = [config] + [d for layer, d in layers
                            if layer.get("mediaType") not in NONDISTRIBUTABLE_LAYERS or self.blob(repo, d)]
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
        """Delete a tag, or a manifest by digest with every tag pointing at it and its referrer entry."""
        if not is_digest(reference):
            return self.store.delete(f"{self._repo_key(repo)}/tags/{reference}")
        key = f"{self._repo_key(repo)}/manifests/{check_digest(reference)}"
        doc = self.store.get(key)
        if doc is None:
            return False
        self.store.delete(key)
        if doc.get("subject"):
            self.store.delete(f"{self._referrers_key(repo, doc['subject'])}/{reference}")
        for tag in self.store.children(self._repo_key(repo), TAG_DOC):
            if tag["digest"] == reference:
                self.store.delete(f"{self._repo_key(repo)}/tags/{tag['name']}")
        return True

    # -- referrers (distribution-spec v1.1, "Listing Referrers") ------------------------------
    def _referrers_key(self, repo: str, subject: str) -> str:
        return f"{self._repo_key(repo)}/referrers/{subject}"

    def _add_referrer(self, repo: str, subject: str, descriptor: dict) -> None:
        parent = self._referrers_key(repo, subject)
        self.store.put(f"{parent}/{descriptor['digest']}", REFERRER, descriptor, parent=parent)

    def referrers(self, repo: str, subject: str, artifact_types: list[str]) -> list[dict]:
        """Descriptors of the repository's manifests whose subject is `subject` (none for an unknown
        subject), only those of the given artifact types when any are given."""
        found = self.store.children(self._referrers_key(repo, check_digest(subject)), REFERRER)
        return [d for d in found if not artifact_types or d.get("artifactType") in artifact_types]

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


def _descriptor_digest(descriptor: object, where: str) -> str:
    if not isinstance(descriptor, dict) or not descriptor.get("digest"):
        raise SandboxError(400, "MANIFEST_INVALID", f"manifest invalid: {where} needs a descriptor with a digest")
    try:
        return check_digest(descriptor["digest"])
    except SandboxError as exc:
        raise SandboxError(400, "MANIFEST_INVALID", f"manifest invalid: {where}: {exc.message}") from exc


def _subject_digest(manifest: dict) -> str | None:
    subject = manifest.get("subject")
    return None if subject is None else _descriptor_digest(subject, "subject")


def _referrer_descriptor(manifest: dict, doc: dict) -> dict:
    """A referrer as the referrers list shows it: the artifactType is the manifest's, else (for an
    image manifest) its config's media type; the annotations are the manifest's."""
    descriptor = {"mediaType": doc["mediaType"], "digest": doc["digest"], "size": doc["size"]}
    artifact_type = manifest.get("artifactType")
    if not artifact_type and doc["mediaType"] in IMAGE_MANIFESTS:
        artifact_type = (manifest.get("config") or {}).get("mediaType")
    if artifact_type:
        descriptor["artifactType"] = artifact_type
    if manifest.get("annotations"):
        descriptor["annotations"] = manifest["annotations"]
    return descriptor
