"""The IoT Edge deployment manifest that runs the connected registry, and the credential its edge
agent pulls the module images with.

The manifest follows Microsoft's quickstart (`az iot edge set-modules` content): `$edgeAgent`
(schemaVersion 1.1) with the docker runtime, the system modules edgeAgent and edgeHub, the
`connectedRegistry` module (its `ACR_REGISTRY_CONNECTION_STRING` from the settings step, its data
under /var/acr/data bound to the quickstart's host directory) and the `IoTEdgeAPIProxy` module on
port 8000 routing to it; `$edgeHub` (schemaVersion 1.2) with one upstream route and store and
forward. Every image is `<login server>/<repository:tag>` with the login server read from ARM.

**Pull credential.** The module images come from the cloud registry (the imports step puts them
there), so the edge agent needs a credential for it. The sync token cannot serve: its scope is the
synced repositories only. crlib keeps a dedicated token `<connected registry>-pull`, bound to a
scope map of the same name with content/read on the five module repositories (edge agent, edge
hub, connected registry, API proxy, diagnostics); its password is the secret
"module-pull-password". The hyphen keeps it apart from sync tokens, which are named after
connected registries (letters and digits only).

**Validation.** Before anything uses a manifest, each part is checked against the IoT Edge JSON
schema its schemaVersion names (vendored in crlib/schemas), and every createOptions string
(with its createOptions01.. continuations) must be a JSON object, which the schemas do not check.

**Records.** `build_manifest(ctx, record=True)` gives the same manifest with each secret value
replaced by `secret:<secret name>`; that copy, never the real one, goes to ctx.state["manifest"].
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from importlib import resources

import requests
from azure.core.exceptions import HttpResponseError
from azure.mgmt.containerregistry import models as acr
from dxf import exceptions as dxf_errors

from ..context import RunContext
from ..errors import PreconditionFailed, StepFailed
from ..results import Status, StepResult
from ..secrets import MASKER
from .definition import get_usable, name_of, text
from .endpoint import get_registry

STEP = "manifest"
PULL_SECRET = "module-pull-password"
CONNECTION_STRING_SECRET = "connected-registry-connection-string"
PASSWORD_NAME = "password1"
CONNECTED_REGISTRY_MODULE = "connectedRegistry"
API_PROXY_MODULE = "IoTEdgeAPIProxy"
API_PROXY_PORT = "8000"
# Microsoft's quickstart binds the connected registry's data to this host directory.
HOST_DATA_DIR = "/home/azureuser/connected-registry"
SCHEMAS = {
    ("$edgeAgent", "1.1"): "azure-iot-edgeagent-deployment-1.1.json",
    ("$edgeHub", "1.2"): "azure-iot-edgehub-deployment-1.2.json",
}
_CREATE_OPTIONS = re.compile(r"^create[oO]ptions(\d*)$")


class ManifestInvalid(PreconditionFailed):
    """A manifest failed validation; nothing was applied. `problems` lists every finding."""

    def __init__(self, problems: list[str]):
        super().__init__("manifest", "invalid: " + "; ".join(problems))
        self.problems = problems


# -- names and inputs ----------------------------------------------------------------------------
def pull_token_name(ctx: RunContext) -> str:
    return f"{ctx.site.connected_registry.name}-pull"


def module_repositories(ctx: RunContext) -> list[str]:
    """The repositories of the five module images, each once."""
    return sorted({ref.rsplit(":", 1)[0] for ref in ctx.site.images.all().values()})


def secret_reference(ctx: RunContext, purpose: str) -> str:
    return f"secret:{ctx.secret_name(purpose)}"


def _no_registry(ctx: RunContext) -> PreconditionFailed:
    return PreconditionFailed("registry", f"'{ctx.site.registry.name}' does not exist in resource group "
                                          f"'{ctx.site.resource_group}'; run the endpoint step first")


# -- the manifest --------------------------------------------------------------------------------
def _json(value: dict) -> str:
    return json.dumps(value, separators=(",", ":"))


def compose_manifest(ctx: RunContext, registry, *, pull_password: str, connection_string: str) -> dict:
    """The manifest from inputs already read: `registry` as ARM returns it (name, login_server)."""
    login = registry.login_server
    images = ctx.site.images

    def image(reference: str) -> str:
        return f"{login}/{reference}"

    def module(reference: str, create_options: dict, env: dict[str, str]) -> dict:
        return {"type": "docker", "status": "running", "restartPolicy": "always", "version": "1.0",
                "settings": {"image": image(reference), "createOptions": _json(create_options)},
                "env": {k: {"value": v} for k, v in env.items()}}

    def ports(*numbers: str) -> dict:
        return {"HostConfig": {"PortBindings": {f"{n}/tcp": [{"HostPort": n}] for n in numbers}}}

    agent = {
        "schemaVersion": "1.1",
        "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25", "registryCredentials": {
            registry.name: {"address": login, "username": pull_token_name(ctx), "password": pull_password}}}},
        "systemModules": {
            "edgeAgent": {"type": "docker", "settings": {"image": image(images.edge_agent), "createOptions": ""},
                          "env": {"SendRuntimeQualityTelemetry": {"value": "false"}}},
            "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                        "settings": {"image": image(images.edge_hub),
                                     "createOptions": _json(ports("443", "5671", "8883"))}},
        },
        "modules": {
            CONNECTED_REGISTRY_MODULE: module(
                images.connected_registry, {"HostConfig": {"Binds": [f"{HOST_DATA_DIR}:/var/acr/data"]}},
                {"ACR_REGISTRY_CONNECTION_STRING": connection_string}),
            API_PROXY_MODULE: module(
                images.api_proxy, ports(API_PROXY_PORT),
                {"NGINX_DEFAULT_PORT": API_PROXY_PORT,
                 "CONNECTED_ACR_ROUTE_ADDRESS": f"{CONNECTED_REGISTRY_MODULE}:8080"}),
        },
    }
    hub = {"schemaVersion": "1.2", "routes": {"upstream": "FROM /messages/* INTO $upstream"},
           "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}
    return {"$edgeAgent": {"properties.desired": agent}, "$edgeHub": {"properties.desired": hub}}


def _stored(ctx: RunContext, purpose: str, subject: str, remedy: str) -> str:
    value = ctx.get_secret(purpose)
    if value is None:
        raise PreconditionFailed(subject, f"no value is stored as secret '{ctx.secret_name(purpose)}'; {remedy}")
    return value


def _record(ctx: RunContext, registry) -> dict:
    return compose_manifest(ctx, registry, pull_password=secret_reference(ctx, PULL_SECRET),
                            connection_string=secret_reference(ctx, CONNECTION_STRING_SECRET))


def _real(ctx: RunContext, registry) -> dict:
    return compose_manifest(
        ctx, registry, pull_password=_stored(ctx, PULL_SECRET, "manifest", "run ensure_manifest"),
        connection_string=_stored(ctx, CONNECTION_STRING_SECRET, "settings", "run the settings step"))


def build_manifest(ctx: RunContext, *, record: bool = False) -> dict:
    """The deployment manifest's modulesContent; with record=True, secrets are references."""
    registry = get_registry(ctx)
    if registry is None:
        raise _no_registry(ctx)
    return _record(ctx, registry) if record else _real(ctx, registry)


def manifest_digest(manifest: dict) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


# -- validation ----------------------------------------------------------------------------------
@functools.cache
def _validator(schema_file: str):
    from jsonschema import Draft4Validator

    schema = json.loads(resources.files("crlib").joinpath("schemas", schema_file).read_text())
    return Draft4Validator(schema)


def _create_options_problems(part: str, desired: dict) -> list[str]:
    problems = []
    groups = [("systemModules", desired.get("systemModules")), ("modules", desired.get("modules"))]
    for group, modules in groups:
        for name, body in (modules or {}).items():
            settings = body.get("settings") if isinstance(body, dict) else None
            chunks = sorted((int(m.group(1) or 0), value) for key, value in (settings or {}).items()
                            if (m := _CREATE_OPTIONS.match(key)) and isinstance(value, str))
            text = "".join(value for _, value in chunks)
            if not text:
                continue
            where = f"{part}: {group}.{name}.settings.createOptions"
            try:
                parsed = json.loads(text)
            except ValueError as exc:
                problems.append(f"{where} is not JSON ({exc.msg} at character {exc.pos})")
                continue
            if not isinstance(parsed, dict):
                problems.append(f"{where} must be a JSON object")
    return problems


def validate_manifest(manifest: dict) -> None:
    """Raise ManifestInvalid listing every problem; secret values never appear in the messages."""
    problems = []
    for part in ("$edgeAgent", "$edgeHub"):
        desired = (manifest.get(part) or {}).get("properties.desired")
        if not isinstance(desired, dict):
            problems.append(f"{part}: properties.desired is missing")
            continue
        version = desired.get("schemaVersion")
        schema_file = SCHEMAS.get((part, version))
        if schema_file is None:
            known = ", ".join(v for p, v in SCHEMAS if p == part)
            problems.append(f"{part}: schemaVersion {version!r} is not one crlib validates ({known})")
            continue
        errors = _validator(schema_file).iter_errors({part: manifest[part]})
        for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
            path = ".".join(str(p) for p in list(error.absolute_path)[2:]) or "(properties.desired)"
            problems.append(f"{part}: {path}: {error.message}")
        problems += _create_options_problems(part, desired)
    for module_id, content in manifest.items():
        if not isinstance(content, dict) or not any(k.startswith("properties.desired") for k in content):
            problems.append(f"{module_id}: needs properties.desired")
    if problems:
        raise ManifestInvalid([MASKER.redact(p) for p in problems])


# -- the pull credential ---------------------------------------------------------------------------
def _password_refusal(ctx: RunContext, registry, token) -> str | None:
    """Why the stored pull password cannot be used (None when it works): checked at the registry's
    token endpoint, which is a read."""
    password = ctx.get_secret(PULL_SECRET)
    if password is None:
        return "no password is stored"
    if not any(text(p.name) == PASSWORD_NAME for p in (token.credentials.passwords if token.credentials else None) or []):
        return f"the token has no {PASSWORD_NAME}"
    client = ctx.clients.oci(registry.login_server, module_repositories(ctx)[0], username=token.name,
                             password=password)
    try:
        client.authenticate(token.name, password, actions=["pull"])
    except dxf_errors.DXFUnauthorizedError:
        return "the registry refuses the stored password"
    except requests.HTTPError as exc:
        if exc.response is not None and exc.response.status_code in (401, 403):
            return "the registry refuses the stored password"
        raise
    return None


def ensure_pull_access(ctx: RunContext, registry, *, plan: bool = False) -> StepResult:
    """Scope map and token `<cr>-pull` with content/read on the module repositories, and a
    working password in the secret store; generated only when none works."""
    acr_ops, rg = ctx.clients.acr, ctx.site.resource_group
    name = pull_token_name(ctx)
    repositories = module_repositories(ctx)
    actions = [f"repositories/{r}/content/read" for r in repositories]
    scope_map = get_usable(lambda: acr_ops.scope_maps.get(rg, registry.name, name)) if registry else None
    token = get_usable(lambda: acr_ops.tokens.get(rg, registry.name, name)) if registry else None
    if token is not None and name_of(token.scope_map_id or "").lower() != name.lower():
        raise PreconditionFailed(f"token '{name}'", f"is bound to scope map '{token.scope_map_id}', not to "
                                                    f"'{name}'; crlib does not rebind a token it may not own")
    refusal = _password_refusal(ctx, registry, token) if token is not None else "the token is new"
    changes = []
    if scope_map is None:
        changes.append(f"create scope map '{name}' (content/read on {', '.join(repositories)})")
    elif sorted(scope_map.actions or []) != sorted(actions):
        changes.append(f"update scope map '{name}' to content/read on {', '.join(repositories)}")
    if token is None:
        changes.append(f"create token '{name}' bound to scope map '{name}'")
    elif text(token.status) != "enabled":
        changes.append(f"enable token '{name}'")
    if refusal:
        changes.append(f"generate {PASSWORD_NAME} of token '{name}' and store it as secret "
                       f"'{ctx.secret_name(PULL_SECRET)}' ({refusal})")
    reference = f"{ctx.site.secrets.store}:{ctx.secret_name(PULL_SECRET)}"
    if plan:
        return StepResult(STEP, Status.PLANNED if changes else Status.UNCHANGED, changes=changes)
    try:
        if scope_map is None:
            scope_map = acr_ops.scope_maps.begin_create(rg, registry.name, name, acr.ScopeMap(
                actions=actions, description=f"crlib: IoT Edge module image pulls for connected registry "
                                             f"{ctx.site.connected_registry.name}")).result()
        elif sorted(scope_map.actions or []) != sorted(actions):
            scope_map = acr_ops.scope_maps.begin_update(rg, registry.name, name, acr.ScopeMapUpdateParameters(
                actions=actions)).result()
        if token is None:
            token = acr_ops.tokens.begin_create(rg, registry.name, name, acr.Token(
                scope_map_id=scope_map.id, status="enabled")).result()
        elif text(token.status) != "enabled":
            token = acr_ops.tokens.begin_update(rg, registry.name, name, acr.TokenUpdateParameters(
                status="enabled")).result()
        if refusal:
            generated = acr_ops.registries.begin_generate_credentials(
                rg, registry.name, acr.GenerateCredentialsParameters(token_id=token.id, name=PASSWORD_NAME)).result()
            value = next(p.value for p in generated.passwords if text(p.name) == PASSWORD_NAME)
            reference = ctx.set_secret(PULL_SECRET, value)
    except HttpResponseError as exc:
        raise StepFailed(STEP, f"the module pull token '{name}' could not be set up: {exc.message}",
                         error=exc) from exc
    created = any(c.startswith("create token") for c in changes)
    status = Status.CREATED if created else Status.UPDATED if changes else Status.UNCHANGED
    return StepResult(STEP, status, resource_ids=[scope_map.id, token.id], changes=changes,
                      secrets={PULL_SECRET: reference})


# -- the step --------------------------------------------------------------------------------------
def ensure_manifest(ctx: RunContext, *, plan: bool = False) -> StepResult:
    """Ensure the pull credential, then build and validate the manifest; ctx.state["manifest"]
    gets its record (secret references only) and the record's sha256."""
    registry = get_registry(ctx)
    if not plan:  # everything that can be checked is checked before the first write
        if registry is None:
            raise _no_registry(ctx)
        _stored(ctx, CONNECTION_STRING_SECRET, "settings", "run the settings step")
    if registry is not None:
        validate_manifest(_record(ctx, registry))
    result = ensure_pull_access(ctx, registry, plan=plan)
    if plan and not (registry and ctx.get_secret(PULL_SECRET) and ctx.get_secret(CONNECTION_STRING_SECRET)):
        result.changes.append("build and validate the deployment manifest once its inputs exist")
        result.status = Status.PLANNED
        return result
    validate_manifest(_real(ctx, registry))
    record = _record(ctx, registry)
    digest = manifest_digest(record)
    agent = record["$edgeAgent"]["properties.desired"]
    images = {name: body["settings"]["image"] for group in ("systemModules", "modules")
              for name, body in agent[group].items()}
    ctx.state[STEP] = {"record": record, "sha256": digest}
    result.details |= {"sha256": digest, "modules": sorted(agent["modules"]), "images": images,
                       "pull_token": pull_token_name(ctx)}
    return result
