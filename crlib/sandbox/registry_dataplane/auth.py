"""ACR's token auth for the OCI data plane.

A client that calls /v2/ without a bearer token gets the challenge
`WWW-Authenticate: Bearer realm="https://<host>/oauth2/token",service="<login server>",scope=...`.
The token endpoint takes Basic credentials (an ACR token's name and password), an ACR refresh
token, or, through /oauth2/exchange, an Entra access token, and issues a short-lived access token
whose `access` claims are what was asked for, cut down to what the caller's scope map allows.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qs

import jwt
from aiohttp import web

from ..core.errors import SandboxError
from ..core.http import Call, json_response

if TYPE_CHECKING:
    from ..runtime import Sandbox

ACCESS_TOKEN_LIFETIME = 300
# The user name ACR takes with an ACR refresh token as the password (`docker login` after
# `az acr login --expose-token`).
REFRESH_TOKEN_USER = "00000000-0000-0000-0000-000000000000"
REFRESH_TOKEN_LIFETIME = 3 * 3600
# Scope map actions, and the Distribution actions they allow.
SCOPE_MAP_ACTIONS = {
    "content/read": "pull",
    "content/write": "push",
    "content/delete": "delete",
    "metadata/read": "metadata_read",
    "metadata/write": "metadata_write",
}
ALL_ACTIONS = set(SCOPE_MAP_ACTIONS.values()) | {"*"}
# Why a token's password was refused (containerregistry.tokens.verify_token_password), as users read it.
REFUSALS = {
    "disabled": "The token is disabled; enable it (status 'enabled') to use its passwords.",
    "expired": "The token's password has expired; generate a new one with generateCredentials.",
    "rotated": "The password has been regenerated; use the token's current password.",
    "wrong": "The username or password is incorrect.",
}


@dataclass(frozen=True)
class Principal:
    kind: str  # "token" for an ACR token, "entra" for a service principal
    name: str


class Authority(Protocol):
    """Who may do what in one OCI namespace (a cloud registry, a connected registry, the image
    source). Optional attributes: `anonymous`, the Principal a caller without credentials gets
    (absent: anonymous pull is disabled), and `write_refusal`, why writes are refused."""

    namespace: str
    service: str

    def check_password(self, username: str, password: str) -> Principal: ...

    def permitted(self, principal: Principal, repository: str) -> set[str]: ...

    def repository_rules(self, principal: Principal) -> list[tuple[str, set[str]]]: ...


def unauthorized(call: Call, authority: Authority, message: str, scope: str | None = None,
                 code: str = "UNAUTHORIZED") -> SandboxError:
    realm = f"https://{call.request.host}/oauth2/token"
    challenge = f'Bearer realm="{realm}",service="{authority.service}"'
    if scope:
        challenge += f',scope="{scope}"'
    return SandboxError(401, code, message, headers={"WWW-Authenticate": challenge})


def repository_matches(pattern: str, repository: str) -> bool:
    """Scope map repositories: an exact name, '*', or a prefix ending in '/*'."""
    if pattern == "*":
        return True
    if pattern.endswith("/*"):
        return repository.startswith(pattern[:-1])
    return pattern == repository


def rules_from_actions(actions: list[str]) -> list[tuple[str, set[str]]]:
    """['repositories/a/content/read', ...] -> [('a', {'pull'}), ...]."""
    rules: dict[str, set[str]] = {}
    for action in actions:
        kind, _, rest = action.partition("/")
        if kind != "repositories":
            continue
        for verb, allowed in SCOPE_MAP_ACTIONS.items():
            if rest.endswith("/" + verb):
                rules.setdefault(rest[: -len(verb) - 1], set()).add(allowed)
    return list(rules.items())


def permitted_by_rules(rules: list[tuple[str, set[str]]], repository: str) -> set[str]:
    allowed: set[str] = set()
    for pattern, actions in rules:
        if repository_matches(pattern, repository):
            allowed |= actions
    return allowed


# -- issuing tokens -----------------------------------------------------------------------------
def _parse_scopes(scopes: list[str]) -> list[tuple[str, str, list[str]]]:
    parsed = []
    for scope in scopes:
        for item in scope.split():
            kind, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind in ("repository", "registry") and name:
                parsed.append((kind, name, [a for a in actions.split(",") if a]))
    return parsed


def _grant(authority: Authority, principal: Principal, scopes: list[str]) -> list[dict]:
    access = []
    for kind, name, actions in _parse_scopes(scopes):
        if kind == "registry":
            # The catalog is open to anyone who may read some repository's metadata.
            readable = any("metadata_read" in acts for _, acts in authority.repository_rules(principal))
            if name == "catalog" and readable:
                access.append({"type": "registry", "name": "catalog", "actions": ["*"]})
            continue
        allowed = authority.permitted(principal, name)
        wanted = allowed if "*" in actions else set(actions)
        if "pull" in wanted:
            # Standard clients ask only for pull before listing tags; a scope map with
            # metadata/read lets that pull token list them too.
            wanted.add("metadata_read")
        granted = sorted(wanted & allowed)
        access.append({"type": "repository", "name": name, "actions": granted})
    return access


def issue_access_token(sandbox: Sandbox, authority: Authority, principal: Principal, scopes: list[str]) -> str:
    now = int(time.time())
    return sandbox.tokens.sign({
        "aud": authority.service, "iss": "crlib-sandbox-acr", "sub": principal.name, "iat": now, "nbf": now,
        "exp": now + ACCESS_TOKEN_LIFETIME, "ns": authority.namespace, "principal": principal.kind,
        "access": _grant(authority, principal, scopes),
    })


def issue_refresh_token(sandbox: Sandbox, authority: Authority, principal: Principal) -> str:
    now = int(time.time())
    return sandbox.tokens.sign({
        "aud": authority.service, "iss": "crlib-sandbox-acr", "sub": principal.name, "iat": now, "nbf": now,
        "exp": now + REFRESH_TOKEN_LIFETIME, "ns": authority.namespace, "principal": principal.kind,
        "grant_type": "refresh_token",
    })


def _decode(sandbox: Sandbox, authority: Authority, token: str) -> dict:
    claims = sandbox.tokens.verify(token, audiences=[authority.service])
    if claims.get("ns") != authority.namespace:
        raise jwt.InvalidTokenError("the token was issued for another registry")
    return claims


def _basic(call: Call) -> tuple[str, str] | None:
    header = call.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, _, password = base64.b64decode(value).decode().partition(":")
    except ValueError:
        return None
    return username, password


def _refresh_principal(call: Call, authority: Authority, refresh_token: str) -> Principal:
    try:
        claims = _decode(call.sandbox, authority, refresh_token)
    except jwt.PyJWTError as exc:
        raise unauthorized(call, authority, f"invalid refresh token: {exc}") from exc
    if claims.get("grant_type") != "refresh_token":
        raise unauthorized(call, authority, "invalid refresh token: an access token was given")
    return Principal(claims["principal"], claims["sub"])


def token_get(call: Call, authority: Authority) -> web.Response:
    """GET /oauth2/token with Basic credentials (what docker, skopeo and python-dxf send): a
    token's name and password, or the null GUID and an ACR refresh token; or without any where
    the registry allows anonymous pull."""
    credentials = _basic(call)
    if credentials is not None and credentials[0] == REFRESH_TOKEN_USER:
        principal = _refresh_principal(call, authority, credentials[1])
    elif credentials is not None:
        principal = authority.check_password(*credentials)
    else:
        # Registries that allow anonymous pull name the principal an anonymous caller gets.
        anonymous: Principal | None = getattr(authority, "anonymous", None)
        if anonymous is None:
            raise unauthorized(call, authority, "authentication required: anonymous pull is disabled on this registry")
        principal = anonymous
    token = issue_access_token(call.sandbox, authority, principal, call.query.getall("scope", []))
    return json_response({"access_token": token, "token": token, "expires_in": ACCESS_TOKEN_LIFETIME})


def token_post(call: Call, authority: Authority) -> web.Response:
    """POST /oauth2/token: refresh_token or password grants (ACR's data-plane spec)."""
    form = {k: v for k, v in parse_qs(call.body.decode()).items()}
    grant = (form.get("grant_type") or [""])[0]
    scopes = form.get("scope", [])
    if grant == "password":
        principal = authority.check_password((form.get("username") or [""])[0], (form.get("password") or [""])[0])
    elif grant == "refresh_token":
        principal = _refresh_principal(call, authority, (form.get("refresh_token") or [""])[0])
    else:
        raise SandboxError(400, "UNSUPPORTED", f"unsupported grant_type {grant!r}")
    token = issue_access_token(call.sandbox, authority, principal, scopes)
    return json_response({"access_token": token})


def exchange(call: Call, authority: Authority) -> web.Response:
    """POST /oauth2/exchange: an Entra access token becomes an ACR refresh token."""
    form = {k: v[0] for k, v in parse_qs(call.body.decode()).items()}
    if form.get("grant_type") != "access_token":
        raise SandboxError(400, "UNSUPPORTED", "grant_type must be access_token")
    audiences = [*call.sandbox.arm_audiences, "https://containerregistry.azure.net",
                 "https://containerregistry.azure.net/"]
    try:
        claims = call.sandbox.tokens.verify(form.get("access_token", ""), audiences=audiences)
    except jwt.PyJWTError as exc:
        raise unauthorized(call, authority, f"invalid Entra access token: {exc}") from exc
    principal = Principal("entra", claims.get("appid", "unknown"))
    return json_response({"refresh_token": issue_refresh_token(call.sandbox, authority, principal)})


def scope(repository: str, actions: str) -> str:
    """A challenge's resource scope, e.g. repository:app:pull,push."""
    return f"repository:{repository}:{actions}"


def _bearer_claims(call: Call, authority: Authority, challenge: str) -> dict:
    """The claims of the request's access token; a 401 challenging for `challenge` without one."""
    scheme, _, token = call.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise unauthorized(call, authority, "authentication required", challenge)
    try:
        return _decode(call.sandbox, authority, token)
    except jwt.ExpiredSignatureError as exc:
        raise unauthorized(call, authority, "authentication required: the access token has expired",
                           challenge) from exc
    except jwt.PyJWTError as exc:
        raise unauthorized(call, authority, f"authentication required: {exc}", challenge) from exc


def _granted(claims: dict, repository: str | None, action: str) -> bool:
    for entry in claims.get("access", []):
        if repository is None and entry["type"] == "registry" and entry["name"] == "catalog":
            return True
        if entry["type"] == "repository" and entry["name"] == repository and (
                action in entry["actions"] or "*" in entry["actions"]):
            return True
    return False


def require(call: Call, authority: Authority, *, repository: str | None, action: str,
            challenge: str | None = None) -> Principal:
    """Check the request's bearer token allows `action` on `repository` (None: the catalog).

    A refusal challenges for `challenge`: every action the request needs, space-separated scopes in
    one `scope` parameter, as distribution's token auth names them (a push needs `pull,push`, a
    cross-repository mount also `pull` on its source); by default `action` alone."""
    challenge = challenge or (scope(repository, action) if repository else "registry:catalog:*")
    claims = _bearer_claims(call, authority, challenge)
    if _granted(claims, repository, action):
        return Principal(claims["principal"], claims["sub"])
    raise unauthorized(call, authority, "authentication required", challenge)


def token_was_asked_for(call: Call, authority: Authority, repository: str) -> bool:
    """Whether the request's access token was issued for a scope naming `repository`, whatever the
    token service granted on it (it records every scope asked for, granted actions or none)."""
    try:
        claims = _bearer_claims(call, authority, "")
    except SandboxError:
        return False
    return any(entry["type"] == "repository" and entry["name"] == repository for entry in claims.get("access", []))
