"""importImage: the request checks ACR makes, and the copy it makes when the operation completes.

The request is validated when it arrives; the image is copied when the import operation
completes, through `importer` (one ImageImporter). The default, RegistryImporter, copies with
ACR's semantics from the image source (mcr.microsoft.com, Docker Hub) or another sandbox registry.
A refusal then fails the operation, with nothing copied.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Protocol

from ..core.errors import SandboxError
from ..image_source import models as image_source
from ..registry_dataplane.cloud import CloudRegistryAuthority
from ..registry_dataplane.models import Namespace
from .common import NAMESPACE, REGISTRY_TYPE
from .validation import enum, image_reference, invalid, obj, repository, required, string, string_list

if TYPE_CHECKING:
    from ..runtime import Sandbox

IMPORT_JOB_TYPE = "acr.importjob"
MODES = ("NoForce", "Force")
# A registry host as ACR accepts it: DNS labels (or an IPv4 address), with an optional port.
_REGISTRY_HOST = re.compile(r"^(?=.{1,253}(:\d{1,5})?$)[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
                            r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::\d{1,5})?$")
_REGISTRY_ID = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ContainerRegistry/"
                          r"registries/[^/]+$", re.I)


class ImageImporter(Protocol):
    def import_image(self, sandbox: Sandbox, registry_doc: dict, request: dict) -> None:
        """Copy one image into the registry as `request` (validated, see parse_request) says.
        Raise SandboxError to fail the import operation."""


class RegistryImporter:
    """Copies the source image's manifest and blobs into the target registry, as ACR does: every
    target tag (NoForce refuses to move a tag to another digest; Force moves it), and every
    untagged target repository gets the manifest without a tag."""

    def import_image(self, sandbox: Sandbox, registry_doc: dict, request: dict) -> None:
        source, repo, reference = _source(sandbox, request["source"])
        manifest = source.manifest(repo, reference) if repo else None
        if repo is None or manifest is None:
            raise SandboxError(404, "InvalidParameters", f"The source image {_describe(request['source'])} was "
                                                         "not found in the source registry.")
        digest = manifest["digest"]
        target = Namespace(sandbox, registry_doc["id"])
        tags = [tuple(t.split(":", 1)) for t in request["targetTags"]]
        if request["mode"] == "NoForce":
            taken = [f"{r}:{t}" for r, t in tags if target.resolve(r, t) not in (None, digest)]
            if taken:
                raise SandboxError(409, "TagAlreadyExists",
                                   f"The target tags {', '.join(taken)} already exist in registry "
                                   f"'{registry_doc['name']}' with other content. Import with mode Force to "
                                   "overwrite them.")
        for target_repo, tag in tags:
            if target.resolve(target_repo, tag) != digest:  # a tag already on this digest stays as it is
                target.copy_from(source, repo, digest, target_repo, tag)
        for target_repo in request["untaggedTargetRepositories"]:
            target.copy_from(source, repo, digest, target_repo, None)


importer: ImageImporter = RegistryImporter()


def _describe(source: dict) -> str:
    registry = source.get("registryUri") or source["resourceId"].rsplit("/", 1)[-1]
    return f"{registry}/{source['sourceImage']}"


def _source(sandbox: Sandbox, source: dict) -> tuple[Namespace, str | None, str]:
    """The namespace to copy from, the repository there (None when it cannot hold the image) and
    the tag or digest to copy."""
    repo, tag, digest = image_reference(source["sourceImage"], "source.sourceImage", fold_case=True)
    reference = digest or tag or "latest"
    if "resourceId" in source:
        registry = sandbox.store.get(source["resourceId"])
        if registry is None:
            raise SandboxError(404, "InvalidParameters", f"The source registry {source['resourceId']} no longer exists.")
        return Namespace(sandbox, registry["id"]), repo, reference
    uri = source["registryUri"]
    if image_source.is_public_registry(uri):
        return image_source.ensure_seeded(sandbox), image_source.source_repository(uri, repo), reference
    registry = next((r for r in sandbox.store.by_type(REGISTRY_TYPE)
                     if r["properties"]["loginServer"].lower() == uri.lower()), None)
    if registry is None:
        hosts = ", ".join(sorted(image_source.REGISTRY_HOSTS))
        raise SandboxError(400, "InvalidParameters",
                           f"The source registry '{uri}' cannot be reached from the sandbox, which stands in for "
                           f"{hosts} and its own registries' login servers.")
    _check_credentials(sandbox, registry, source, repo)
    return Namespace(sandbox, registry["id"]), repo, reference


def _check_credentials(sandbox: Sandbox, registry: dict, source: dict, repo: str) -> None:
    """A registry named by its login server is reached like any registry: with a token's password."""
    credentials = source.get("credentials") or {}
    if "username" not in credentials:
        raise SandboxError(401, "Unauthorized", f"The source registry {source['registryUri']} requires credentials; "
                                                "give a token's username and password, or its resourceId.")
    authority = CloudRegistryAuthority(sandbox, registry)
    try:
        principal = authority.check_password(credentials["username"], credentials["password"])
    except SandboxError as err:
        raise SandboxError(401, "Unauthorized", f"The source registry {source['registryUri']} refused the "
                                                f"credentials: {err.message}") from err
    if "pull" not in authority.permitted(principal, repo):
        raise SandboxError(401, "Unauthorized", f"The token '{principal.name}' may not pull repository '{repo}' "
                                                f"of {source['registryUri']}.")


def parse_request(sandbox: Sandbox, body: object) -> dict:
    """Validate an ImportImageParameters body; return it normalized: exactly one source, target
    tags as repo:tag, the mode spelled as the spec does."""
    body = obj(body, "body")
    if body.get("source") is None:
        raise required("source")
    given = obj(body["source"], "source")
    if given.get("sourceImage") is None:
        raise required("source.sourceImage")
    source_repo, source_tag, _ = image_reference(given["sourceImage"], "source.sourceImage", fold_case=True)
    source = {"sourceImage": given["sourceImage"]}
    has_uri, has_id = given.get("registryUri") is not None, given.get("resourceId") is not None
    if has_uri == has_id:
        raise invalid("source", "give exactly one of 'registryUri' and 'resourceId'.")
    if has_uri:
        uri = string(given["registryUri"], "source.registryUri")
        if not _REGISTRY_HOST.match(uri):
            raise invalid("source.registryUri", f"'{uri}' is not a registry host name such as mcr.microsoft.com.")
        source["registryUri"] = uri
    else:
        source["resourceId"] = _source_registry(sandbox, given["resourceId"])
    if given.get("credentials") is not None:
        credentials = obj(given["credentials"], "source.credentials")
        if credentials.get("password") is None:
            raise required("source.credentials.password")
        source["credentials"] = {k: string(credentials[k], f"source.credentials.{k}")
                                 for k in ("username", "password") if credentials.get(k) is not None}
    target_tags = [_target_tag(t, i, source_tag) for i, t in
                   enumerate(string_list(body.get("targetTags") or [], "targetTags"))]
    untagged = [repository(r, f"untaggedTargetRepositories[{i}]", fold_case=True) for i, r in
                enumerate(string_list(body.get("untaggedTargetRepositories") or [], "untaggedTargetRepositories"))]
    if not target_tags and not untagged:
        # Like the Azure CLI: with no target named, the image keeps its repository and tag.
        target_tags = [f"{source_repo}:{source_tag or 'latest'}"]
    mode = enum(body["mode"], MODES, "mode") if body.get("mode") is not None else "NoForce"
    return {"source": source, "targetTags": target_tags, "untaggedTargetRepositories": untagged, "mode": mode}


def _source_registry(sandbox: Sandbox, value: object) -> str:
    resource_id = string(value, "source.resourceId")
    doc = sandbox.store.get(resource_id) if _REGISTRY_ID.match(resource_id) else None
    if doc is None:
        raise invalid("source.resourceId", f"'{resource_id}' is not an existing {NAMESPACE}/registries resource.")
    return doc["id"]


def _target_tag(value: str, index: int, source_tag: str | None) -> str:
    """repo[:tag]; a target without a tag takes the source's tag, or latest."""
    repo, tag, digest = image_reference(value, f"targetTags[{index}]", fold_case=True)
    if digest:
        raise invalid(f"targetTags[{index}]", f"'{value}' names a digest; target tags take the form repo[:tag].")
    return f"{repo}:{tag or source_tag or 'latest'}"


# -- the operation -------------------------------------------------------------------------
def _job_key(op_id: str) -> str:
    return f"acr-import-job:{op_id}"


def record_job(sandbox: Sandbox, op: dict, registry: dict, request: dict) -> None:
    """Keep the validated request until the import operation completes (it survives a restart)."""
    sandbox.store.put(_job_key(op["id"]), IMPORT_JOB_TYPE, {"registryId": registry["id"], "request": request})


def finish_import(sandbox: Sandbox, op: dict) -> None:
    job = sandbox.store.get(_job_key(op["id"]))
    sandbox.store.delete(_job_key(op["id"]))
    registry = sandbox.store.get(job["registryId"]) if job else None
    if job is None or registry is None:
        raise SandboxError(404, "ResourceNotFound", "The target registry of this import no longer exists.")
    importer.import_image(sandbox, registry, job["request"])

