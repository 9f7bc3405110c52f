"""importImage: the request checks ACR makes, and the one interface that copies an image.

The request is validated when it arrives; the copy happens when the import operation
completes, through `importer`. The default RecordingImporter only records what was imported
(one "acr.import" document per target tag or untagged repository), so the registry's content
can later be swapped in by assigning another ImageImporter to `imports.importer`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Protocol

from ..clock import iso
from ..core.errors import SandboxError
from .common import NAMESPACE
from .validation import enum, image_reference, invalid, obj, repository, required, string, string_list

if TYPE_CHECKING:
    from ..runtime import Sandbox

IMPORT_TYPE = "acr.import"
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


class RecordingImporter:
    """Records each imported tag or untagged repository and its source; copies no content."""

    def import_image(self, sandbox: Sandbox, registry_doc: dict, request: dict) -> None:
        source = {k: v for k, v in request["source"].items() if k != "credentials"}
        targets = [(f"{registry_doc['id']}/imports/{t}", t.partition(":")[0], t.partition(":")[2])
                   for t in request["targetTags"]]
        targets += [(f"{registry_doc['id']}/imports/{r}@{source['sourceImage']}", r, None)
                    for r in request["untaggedTargetRepositories"]]
        if request["mode"] == "NoForce":
            taken = [f"{repo}:{tag}" for key, repo, tag in targets if tag and sandbox.store.get(key) is not None]
            if taken:
                raise SandboxError(409, "TagAlreadyExists",
                                   f"The target tags {', '.join(taken)} already exist in registry "
                                   f"'{registry_doc['name']}'. Import with mode Force to overwrite them.")
        now = iso(sandbox.clock.now())
        for key, repo, tag in targets:
            record = {"registryId": registry_doc["id"], "repository": repo, "tag": tag, "source": source,
                      "importedAt": now}
            sandbox.store.put(key, IMPORT_TYPE, record, parent=registry_doc["id"])


importer: ImageImporter = RecordingImporter()


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
    if registry is None:
        raise SandboxError(404, "ResourceNotFound", "The target registry of this import no longer exists.")
    importer.import_image(sandbox, registry, job["request"])

