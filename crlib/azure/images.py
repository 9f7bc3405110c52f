"""The images the runbook imports, seen at their source and in the cloud registry.

Shared by the prerequisites step, which refuses a version its source does not have before the
first write, and the imports step, which compares both sides before importing. The source is read
with an anonymous manifest HEAD; the cloud registry through its data plane, as the signed-in
identity (an Entra token exchanged for an ACR refresh token).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import requests
from dxf.exceptions import DXFError

from ..errors import PreconditionFailed
from .errors import get_or_none

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from ..context import RunContext

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
    """repository:tag -> the parameter naming it: the module images, then the checks' pull image.
    An Arc host needs no module image in the cloud registry: the extension's chart brings its own."""
    wanted: dict[str, str] = {}
    for key, image in ctx.site.images.all().items() if ctx.site.host.kind == "iotedge" else ():
        wanted.setdefault(image, f"images.{key}")
    wanted.setdefault(ctx.site.checks.pull_image, "checks.pull_image")
    return wanted


def _head(client: Any, tag: str) -> str | None:
    """The manifest digest of a tag, or None when the registry does not have it."""
    found = get_or_none(lambda: client.head_manifest_and_response(tag))
    return found[0] if found else None


def read_source(ctx: RunContext, look: Look) -> None:
    """The source's digest of `look.image`; a tag the source does not have is PreconditionFailed naming
    the parameter. An unreachable source leaves the digest unknown (`look.source_unknown` says why)."""
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


def refresh_token(ctx: RunContext, login_server: str) -> str:
    """ACR's token exchange: an Entra access token for the ARM audience becomes a refresh token."""
    credential = cast("TokenCredential", ctx.profile.credential)  # TargetProfile.credential is typed object
    access = credential.get_token(*ctx.profile.credential_scopes).token
    form = {"grant_type": "access_token", "service": login_server, "access_token": access}
    if ctx.profile.tenant_id:
        form["tenant"] = ctx.profile.tenant_id
    response = ctx.clients.http_session().post(f"https://{login_server}/oauth2/exchange", data=form, timeout=60)
    if not response.ok:
        raise PreconditionFailed("registry.name", f"{login_server} refused the Entra token exchange "
                                                  f"({response.status_code}): {response.text[:200]}")
    return str(response.json()["refresh_token"])


def read_target(ctx: RunContext, login_server: str, token: str, look: Look) -> None:
    """The cloud registry's digest of `look.image` (None when the tag is not there)."""
    repository, tag = look.image.rsplit(":", 1)
    client = ctx.clients.oci(login_server, repository, username=REFRESH_TOKEN_USER, password=token)
    try:
        look.target_digest = _head(client, tag)
    except (requests.RequestException, DXFError) as exc:
        # Reading needs pull rights on the registry for the signed-in identity (AcrPull or more).
        raise PreconditionFailed("registry.name", f"could not read '{look.image}' from {login_server} as the "
                                                  f"signed-in identity: {exc!r}") from exc


def look_both_sides(ctx: RunContext, registry: Any, max_workers: int) -> list[Look]:
    """Every wanted image at its source and (when `registry` exists) in the registry, concurrently."""
    looks = [Look(image, field) for image, field in wanted_images(ctx).items()]
    token = refresh_token(ctx, registry.login_server) if registry is not None else None
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        reads = [pool.submit(read_source, ctx, look) for look in looks]
        if token:
            reads += [pool.submit(read_target, ctx, registry.login_server, token, look) for look in looks]
        for read in reads:
            read.result()
    return looks
