"""ARM conventions shared by every resource provider: ids, api-versions, bearer auth, envelopes."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

import jwt
from aiohttp import web

from .errors import SandboxError
from .http import Call, Route, RouterSpec, json_response

_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")


def render_error(err: SandboxError) -> web.Response:
    """Azure's error envelope: {"error": {"code", "message"}}.

    A resource provider whose errors have a shape of their own (IoT Hub's flat ErrorDetails)
    raises a SandboxError subclass with a body() method; that body is sent instead.
    """
    own_body = getattr(err, "body", None)
    if callable(own_body):
        return json_response(own_body(), err.status, err.headers)
    error: dict[str, object] = {"code": err.code, "message": err.message}
    if err.details:
        error["details"] = err.details
    headers = {"x-ms-failure-cause": "gateway"} | err.headers if err.status == 401 else err.headers
    return json_response({"error": error}, err.status, headers)


def require_api_version(call: Call, supported: Iterable[str], resource_type: str) -> str:
    """Refuse a missing, malformed or unsupported api-version as ARM does."""
    version = call.api_version
    if not version:
        raise SandboxError(400, "MissingApiVersionParameter",
                           "The api-version query parameter (?api-version=) is required for all requests.")
    supported = list(supported)
    if not _API_VERSION.match(version):
        raise SandboxError(400, "InvalidApiVersionParameter",
                           f"The api-version '{version}' is invalid. The supported versions are "
                           f"'{','.join(supported)}'.")
    if version not in supported:
        raise SandboxError(
            400, "NoRegisteredProviderFound",
            f"No registered resource provider found for location '{call.sandbox.location}' and API version "
            f"'{version}' for type '{resource_type}'. The supported api-versions are '{', '.join(supported)}'.",
        )
    return version


def authenticate(call: Call) -> dict:
    """Check the bearer token every ARM call must carry; return its claims."""
    header = call.headers.get("Authorization", "")
    challenge = {
        "WWW-Authenticate": f'Bearer authorization_uri="{call.sandbox.authority}/{call.sandbox.identity.tenant_id}", '
        f'error="invalid_token", error_description="The authentication failed because of missing '
        f"'Authorization' header.\""
    }
    if not header:
        raise SandboxError(401, "AuthenticationFailed",
                           "Authentication failed. The 'Authorization' header is missing.", headers=challenge)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise SandboxError(401, "AuthenticationFailed",
                           "Authentication failed. The 'Authorization' header is provided in an invalid format.",
                           headers=challenge)
    try:
        return call.sandbox.tokens.verify(token, audiences=call.sandbox.arm_audiences)
    except jwt.ExpiredSignatureError as exc:
        raise SandboxError(401, "ExpiredAuthenticationToken",
                           "The access token expiry UTC time is earlier than current UTC time.",
                           headers=challenge) from exc
    except jwt.InvalidAudienceError as exc:
        raise SandboxError(401, "InvalidAuthenticationTokenAudience",
                           "The access token has been obtained for wrong audience or resource.",
                           headers=challenge) from exc
    except jwt.PyJWTError as exc:
        raise SandboxError(401, "InvalidAuthenticationToken",
                           f"The access token is invalid: {exc}.", headers=challenge) from exc


def arm_before(call: Call, route: Route) -> None:
    """Every ARM route needs a bearer token and the subscription it names."""
    call.state["claims"] = authenticate(call)
    sub = call.params.get("subscriptionId")
    if sub is not None and sub.lower() != call.sandbox.identity.subscription_id:
        raise SandboxError(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")


# The main port's two routers. OPEN serves what needs no ARM token (Entra ID, the admin API); a
# request on the main port whose path starts with subscriptions/, tenants/ or providers/ goes to
# ARM instead (runtime.Sandbox._handle). OPEN's name is "entra" for the request log and faults.
OPEN = RouterSpec("entra", render_error=render_error)
ARM = RouterSpec("arm", render_error=render_error, before=arm_before)


def resource_group_id(sub: str, rg: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}"


def split_id(resource_id: str) -> dict[str, str]:
    """Name the parts of an ARM id: subscription, resourceGroup, provider and type/name pairs."""
    parts = resource_id.strip("/").split("/")
    out: dict[str, str] = {}
    i = 0
    while i + 1 < len(parts):
        key, value = parts[i], parts[i + 1]
        if key.lower() == "providers":
            out["provider"] = value
        else:
            out[key] = value
        i += 2
    return out


def require_resource_group(call: Call, sub: str, rg: str) -> dict:
    group = call.sandbox.store.get(resource_group_id(sub, rg))
    if group is None:
        raise SandboxError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
    return group


_EQ_CLAUSE = re.compile(r"^\s*([\w./]+)\s+eq\s+'([^']*)'\s*$", re.I)


def eq_clauses(odata: str, fields: Iterable[str]) -> list[tuple[str, str]]:
    """Parse the OData subset ARM clients send: `field eq 'value'` clauses joined by `and`.

    Returns (field, value) pairs with the field spelled as in `fields` and the value lowercased
    (ARM compares case-insensitively); anything else is Azure's InvalidFilterInQueryString.
    """
    known = {f.lower(): f for f in fields}
    pairs = []
    for clause in re.split(r"\s+and\s+", odata, flags=re.I):
        m = _EQ_CLAUSE.match(clause)
        field = known.get(m.group(1).lower().replace("/", ".")) if m else None
        if m is None or field is None:
            raise SandboxError(400, "InvalidFilterInQueryString",
                               f"Invalid $filter '{odata}' specified in the query string. Supported: "
                               f"{', '.join(known.values())} with eq, joined by and.")
        pairs.append((field, m.group(2).lower()))
    return pairs


def new_operation_id() -> str:
    return str(uuid.uuid4())


def list_page(items: list[dict]) -> dict:
    return {"value": items}


def json_object_body(call: Call) -> dict:
    """A PUT or PATCH body, which ARM requires to be a JSON object."""
    body = call.json()
    if not isinstance(body, dict):
        raise SandboxError(400, "InvalidRequestContent", "The request content must be a JSON object.")
    return body


def without_nulls(value):
    """Clients may send null for an unset field; the stored resource simply omits it."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value if v is not None]
    return value
