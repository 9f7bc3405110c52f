"""Routes of registry hosts: the OCI Distribution API and ACR's token endpoints."""

from __future__ import annotations

from aiohttp import web

from ..core.errors import SandboxError
from ..core.http import RouterSpec
from . import responses

_NAME = "/v2/{name:path}"

URLS = [
    ("GET", "/v2", responses.base),
    ("GET", "/v2/_catalog", responses.catalog),
    ("GET", _NAME + "/tags/list", responses.tags_list),
    ("GET", _NAME + "/manifests/{reference}", responses.get_manifest),
    ("PUT", _NAME + "/manifests/{reference}", responses.put_manifest),
    ("DELETE", _NAME + "/manifests/{reference}", responses.delete_manifest),
    ("GET", _NAME + "/referrers/{digest}", responses.referrers),
    ("POST", _NAME + "/blobs/uploads", responses.start_upload),
    ("GET", _NAME + "/blobs/uploads/{uuid}", responses.upload_status),
    ("PATCH", _NAME + "/blobs/uploads/{uuid}", responses.patch_upload),
    ("PUT", _NAME + "/blobs/uploads/{uuid}", responses.finish_upload),
    ("DELETE", _NAME + "/blobs/uploads/{uuid}", responses.cancel_upload),
    ("GET", _NAME + "/blobs/{digest}", responses.get_blob),
    ("DELETE", _NAME + "/blobs/{digest}", responses.delete_blob),
    # The data endpoint's signed blob URLs (redirects.py); the `//` is in ACR's own.
    ("GET", "/{registry}//docker/registry/v2/blobs/{algorithm}/{prefix}/{hexdigest}/data", responses.get_signed_blob),
    ("GET", "/oauth2/token", responses.token_get),
    ("POST", "/oauth2/token", responses.token_post, False),
    ("POST", "/oauth2/exchange", responses.exchange, False),
]


def render_error(err: SandboxError) -> web.Response:
    """The Distribution spec's error format."""
    body = {"errors": [{"code": err.code, "message": err.message, "detail": err.details}]}
    return web.json_response(body, status=err.status, headers=err.headers)


# Every registry host: a registry's login server ("login") and data endpoint ("data"), the image
# source ("source") and each simulated device's endpoint ("device"). A listener's role says which
# resolver in responses.RESOLVERS finds the namespace and authority it serves.
ROUTER = RouterSpec("registry", render_error=render_error)
