"""The OCI data plane. Its router serves every registry host; the login servers and data endpoints
of cloud registries (roles "login" and "data") are resolved here, the image source and device
endpoints by the services that open them (..image_source, ..edge_devices)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.service import Routes, Service
from . import responses, urls
from .cloud import CloudRegistryAuthority, authority_for

if TYPE_CHECKING:
    from ..core.http import Call
    from ..runtime import Sandbox


def _cloud(call: Call) -> tuple[str, CloudRegistryAuthority]:
    authority = authority_for(call.sandbox, call.host_key)
    return authority.namespace, authority


def register_resolvers(sandbox: Sandbox) -> None:
    responses.RESOLVERS["login"] = _cloud
    responses.RESOLVERS["data"] = _cloud


SERVICE = Service(name="registry_dataplane", routes=[Routes(urls.ROUTER, urls.URLS)], on_init=register_resolvers)
