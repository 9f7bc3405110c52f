"""The image source: the sandbox's read-only stand-in for mcr.microsoft.com and Docker Hub.

Its images (images.IMAGES) are seeded into one OCI namespace at start, and again whenever
the namespace is found missing or out of date (after a reset, or when the table changes).
importImage copies from it; a listener of its own (role "source", `image_source` in the status)
serves it anonymously and read-only through the registry data plane's router, so any OCI client
can inspect it (service.py opens it).
"""

from __future__ import annotations

import functools
import hashlib
from typing import TYPE_CHECKING

from ..registry_dataplane.auth import Principal
from ..registry_dataplane.models import Namespace
from .images import DOCKER_HUB, IMAGES, MCR, build

if TYPE_CHECKING:
    from ..runtime import Sandbox

NAMESPACE = "image-source"
ROLE = "source"
PORT_SETTING = "image_source_port"
SEED_TYPE = "oci.source"
# Host names importImage accepts for the registries the source stands in for.
REGISTRY_HOSTS = {MCR: MCR, DOCKER_HUB: DOCKER_HUB, "registry.hub.docker.com": DOCKER_HUB,
                  "registry-1.docker.io": DOCKER_HUB}
PUBLIC_PULL = {"pull", "metadata_read"}


@functools.cache
def _fingerprint() -> str:
    """Names the seed: which images, at which digests, under which tags."""
    rows = sorted(f"{i.registry}/{i.repository}:{','.join(i.tags)}@{build(i).digest}" for i in IMAGES)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def ensure_seeded(sandbox: Sandbox) -> Namespace:
    """The source's namespace, seeded first if it is missing or holds an older seed."""
    namespace = Namespace(sandbox, NAMESPACE)
    fingerprint = _fingerprint()
    marker = sandbox.store.get(NAMESPACE)
    if marker is not None and marker["fingerprint"] == fingerprint:
        return namespace
    with sandbox.store.transaction():
        sandbox.store.delete_tree(NAMESPACE)
        for image in IMAGES:
            built = build(image)
            for digest, data in built.blobs.items():
                sandbox.blobs.put_bytes(data)
                namespace.link_blob(image.repository, digest, len(data))
            for tag in image.tags:
                namespace.put_manifest(image.repository, tag, built.manifest, None)
        sandbox.store.put(NAMESPACE, SEED_TYPE, {"fingerprint": fingerprint, "images": len(IMAGES)})
    return namespace


def is_public_registry(registry_uri: str) -> bool:
    return registry_uri.lower() in REGISTRY_HOSTS


def source_repository(registry_uri: str, repository: str) -> str | None:
    """Where the source keeps `repository` of the public registry `registry_uri`, or None when that
    registry has no such repository here. Docker Hub's one-word names mean library/<name>."""
    registry = REGISTRY_HOSTS[registry_uri.lower()]
    if registry == DOCKER_HUB and "/" not in repository:
        repository = "library/" + repository
    served = any(i.registry == registry and i.repository == repository for i in IMAGES)
    return repository if served else None


# -- serving ---------------------------------------------------------------------------------------
class SourceAuthority:
    """Public registries: anyone may pull, with or without credentials; no token grants more."""

    namespace = NAMESPACE
    anonymous = Principal("anonymous", "anonymous")

    def __init__(self, service: str):
        self.service = service

    def check_password(self, username: str, password: str) -> Principal:
        return self.anonymous

    def repository_rules(self, principal: Principal) -> list[tuple[str, set[str]]]:
        return [("*", set(PUBLIC_PULL))]

    def permitted(self, principal: Principal, repository: str) -> set[str]:
        return set(PUBLIC_PULL)


def host(sandbox: Sandbox) -> str:
    return f"127.0.0.1:{sandbox.settings.extra[PORT_SETTING]}"

