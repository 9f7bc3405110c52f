"""Image imports: the five module images and the checks' image, copied from the source registry
into the cloud registry under the same repository and tag, concurrently, in NoForce mode.

Before anything is imported, every image is looked at on both sides. The target's digest is read
through the registry's data plane (an Entra token exchanged for an ACR refresh token); the
source's with an anonymous manifest HEAD. An image whose target tag holds the source's digest is
left alone; one whose target tag holds other content is refused before any import (NoForce would
fail on it, and moving a tag is the owner's call). When the source cannot be reached from here, an
existing target tag counts as present, and the result says it was not verified.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import requests
from azure.core.exceptions import HttpResponseError
from azure.mgmt.containerregistry import models as acr
from dxf.exceptions import DXFError
from tqdm.auto import tqdm

from ..context import RunContext
from ..errors import PreconditionFailed, StepFailed
from ..results import Status, StepResult
from .endpoint import get_registry

# ACR's user name for a refresh token used as a password.
REFRESH_TOKEN_USER = "00000000-0000-0000-0000-000000000000"
DOCKER_HUB = ("docker.io", "registry-1.docker.io", "registry.hub.docker.com")


@dataclass
class Look:
    """One image, seen from both sides before anything is written."""

    image: str  # repository:tag
    field: str  # the parameter that names it
    source_digest: str | None = None
    source_unknown: str | None = None  # why the source digest could not be read
    target_digest: str | None = None


def wanted_images(ctx: RunContext) -> dict[str, str]:
    """repository:tag -> the parameter naming it: the module images, then the checks' pull image."""
    wanted: dict[str, str] = {}
    for key, image in ctx.site.images.all().items():
        wanted.setdefault(image, f"images.{key}")
    wanted.setdefault(ctx.site.checks.pull_image, "checks.pull_image")
    return wanted


def _head(client, tag: str) -> str | None:
    """The manifest digest of a tag, or None when the registry does not have it."""
    try:
        digest, _ = client.head_manifest_and_response(tag)
    except requests.HTTPError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            return None
        raise
    return digest


def read_source(ctx: RunContext, look: Look) -> None:
    registry = ctx.site.images.source_registry
    repository, tag = look.image.rsplit(":", 1)
    host = ctx.profile.registry_hosts.get(registry, registry)
    if registry in DOCKER_HUB:
        # Docker Hub serves its registry API at registry-1.docker.io, official images under library/.
        host = ctx.profile.registry_hosts.get(registry, "registry-1.docker.io")
        repository = repository if "/" in repository else f"library/{repository}"
    try:
        look.source_digest = _head(ctx.clients.oci(host, repository), tag)
    except (requests.RequestException, DXFError) as exc:
        look.source_unknown = f"{registry} could not be read from here ({type(exc).__name__})"
        return
    if look.source_digest is None:
        raise PreconditionFailed(look.field, f"'{look.image}' does not exist in {registry}")


def _refresh_token(ctx: RunContext, login_server: str) -> str:
    """ACR's token exchange: an Entra access token for the ARM audience becomes a refresh token."""
    access = ctx.profile.credential.get_token(*ctx.profile.credential_scopes).token
    form = {"grant_type": "access_token", "service": login_server, "access_token": access}
    if ctx.profile.tenant_id:
        form["tenant"] = ctx.profile.tenant_id
    response = ctx.clients.http_session().post(f"https://{login_server}/oauth2/exchange", data=form, timeout=60)
    if not response.ok:
        raise PreconditionFailed("registry.name", f"{login_server} refused the Entra token exchange "
                                                  f"({response.status_code}): {response.text[:200]}")
    return response.json()["refresh_token"]


def _read_target(ctx: RunContext, login_server: str, refresh_token: str, look: Look) -> None:
    repository, tag = look.image.rsplit(":", 1)
    client = ctx.clients.oci(login_server, repository, username=REFRESH_TOKEN_USER, password=refresh_token)
    try:
        look.target_digest = _head(client, tag)
    except (requests.RequestException, DXFError) as exc:
        # Reading needs pull rights on the registry for the signed-in identity (AcrPull or more).
        raise PreconditionFailed("registry.name", f"could not read '{look.image}' from {login_server} as the "
                                                  f"signed-in identity: {exc!r}") from exc


def _look(ctx: RunContext, registry, max_workers: int) -> list[Look]:
    looks = [Look(image, field) for image, field in wanted_images(ctx).items()]
    refresh_token = _refresh_token(ctx, registry.login_server) if registry is not None else None
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        reads = [pool.submit(read_source, ctx, look) for look in looks]
        if refresh_token:
            reads += [pool.submit(_read_target, ctx, registry.login_server, refresh_token, look) for look in looks]
        for read in reads:
            read.result()
    return looks


def _import(ctx: RunContext, image: str) -> None:
    ctx.clients.acr.registries.begin_import_image(ctx.site.resource_group, ctx.site.registry.name,
                                                  acr.ImportImageParameters(
        source=acr.ImportSource(registry_uri=ctx.site.images.source_registry, source_image=image),
        target_tags=[image], mode="NoForce")).result()


def _run_imports(ctx: RunContext, images: list[str], max_workers: int) -> None:
    failures: dict[str, HttpResponseError] = {}
    with ThreadPoolExecutor(max_workers=max_workers) as pool, \
            tqdm(total=len(images), desc="importing images", unit="image") as progress:
        running = {pool.submit(_import, ctx, image): image for image in images}
        for done in as_completed(running):
            try:
                done.result()
            except HttpResponseError as exc:
                failures[running[done]] = exc
            progress.update(1)
    if failures:
        listed = "; ".join(f"{image}: {exc.message}" for image, exc in failures.items())
        raise StepFailed("imports", f"{len(failures)} of {len(images)} imports failed ({listed})",
                         error=next(iter(failures.values())))


def ensure_imports(ctx: RunContext, *, plan: bool = False, max_workers: int = 4) -> StepResult:
    """Every image the device needs, in the cloud registry at the source's digest."""
    site = ctx.site
    registry = get_registry(ctx)
    if registry is None and not plan:
        raise PreconditionFailed("registry.name", f"registry '{site.registry.name}' does not exist in resource group "
                                                  f"'{site.resource_group}'; run ensure_endpoint first")
    looks = _look(ctx, registry, max_workers)
    moved = [look for look in looks if look.target_digest and look.source_digest
             and look.target_digest != look.source_digest]
    if moved:
        listed = "; ".join(f"'{m.image}' is {m.target_digest} there, {m.source_digest} in "
                           f"{site.images.source_registry}" for m in moved)
        raise PreconditionFailed(moved[0].field, f"registry '{site.registry.name}' holds other content under the "
                                                 f"same tag ({listed}). Imports never move a tag: delete the tag, or "
                                                 "import the image yourself with mode Force")
    todo = [look.image for look in looks if look.target_digest is None]
    changes = [f"import {site.images.source_registry}/{image} into registry '{site.registry.name}'" for image in todo]
    details: dict[str, object] = {
        "present": sorted(look.image for look in looks if look.target_digest),
        "unverified": {look.image: look.source_unknown for look in looks if look.target_digest and look.source_unknown},
    }
    resource_ids = [registry.id] if registry is not None else []
    if registry is not None:
        ctx.state["images"] = {look.image: f"{registry.login_server}/{look.image}" for look in looks}
    if plan or not todo:
        return StepResult("imports", Status.PLANNED if todo else Status.UNCHANGED, resource_ids, changes=changes,
                          details=details)
    _run_imports(ctx, todo, max_workers)
    return StepResult("imports", Status.CREATED, resource_ids, changes=changes, details=details | {"imported": todo})
