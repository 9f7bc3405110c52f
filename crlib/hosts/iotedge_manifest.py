"""The IoT Edge deployment manifest that runs the connected registry: composed from the parameters
and what Azure says, and validated before anything uses it.

The manifest follows Microsoft's quickstart (`az iot edge set-modules` content): `$edgeAgent`
(schemaVersion 1.1) with the docker runtime, the system modules edgeAgent and edgeHub, the
`connectedRegistry` module (its `ACR_REGISTRY_CONNECTION_STRING` from the settings step, its data
under /var/acr/data bound to the quickstart's host directory) and the `IoTEdgeAPIProxy` module on
port 8000 routing to it; `$edgeHub` (schemaVersion 1.2) with one upstream route and store and
forward. Every image is `<login server>/<repository:tag>` with the login server read from ARM. The
edge agent pulls them with the module pull token `<connected registry>-pull`, whose password the
manifest step keeps as the secret "module-pull-password" (crlib.azure.pull_access).

**A nested child** (`device.parent_device`) has no route to the cloud: as in Microsoft's nested
tutorial (tutorial-deploy-connected-registry-nested-iot-edge-cli.md, "Deployment manifest for the
lower layer"), every image is `$upstream:8000/<repository:tag>`, pulled through the parent device's
API proxy from the parent connected registry, which syncs the module repositories
(`connected_registry.sync_module_images`). The registry credential is for `$upstream:8000`, with the
same pull token, attached to the parent connected registry as a client token (its API proxy
accepts only those). The API proxy gets the tutorial's lower-layer settings too
(`NGINX_CONFIG_ENV_VAR_LIST`, `BLOB_UPLOAD_ROUTE_ADDRESS`).

**Validation.** Each part is checked against the IoT Edge JSON schema its schemaVersion names
(vendored in crlib/schemas), and every createOptions string (with its createOptions01..
continuations) must be a JSON object, which the schemas do not check.

**Records.** `build_manifest(ctx, record=True)` gives the same manifest with each secret value
replaced by `secret:<secret name>`; that copy, never the real one, is what results carry.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import TYPE_CHECKING, Any

from ..azure import names, readers
from ..errors import ManifestInvalid, PreconditionFailed
from ..fast_imports import without_format_grammars
from ..secrets import MASKER

if TYPE_CHECKING:
    from jsonschema import Draft4Validator

    from ..context import RunContext

EDGE_AGENT = "$edgeAgent"
EDGE_HUB = "$edgeHub"
CONNECTED_REGISTRY_MODULE = "connectedRegistry"
API_PROXY_MODULE = "IoTEdgeAPIProxy"
API_PROXY_PORT = "8000"
UPSTREAM = f"$upstream:{API_PROXY_PORT}"  # the parent device's API proxy, as a child's IoT Edge resolves it
# Microsoft's quickstart binds the connected registry's data to this host directory.
HOST_DATA_DIR = "/home/azureuser/connected-registry"
SCHEMAS = {
    (EDGE_AGENT, "1.1"): "azure-iot-edgeagent-deployment-1.1.json",
    (EDGE_HUB, "1.2"): "azure-iot-edgehub-deployment-1.2.json",
}
MODULE_GROUPS = ("systemModules", "modules")
_CREATE_OPTIONS = re.compile(r"^create[oO]ptions(\d*)$")

__all__ = ["ManifestInvalid", "build_manifest", "compose_manifest", "validate_manifest"]


def secret_reference(ctx: RunContext, purpose: str) -> str:
    return f"secret:{ctx.secret_name(purpose)}"


# -- composing -------------------------------------------------------------------------------------
def _json(value: dict) -> str:
    return json.dumps(value, separators=(",", ":"))


def compose_manifest(ctx: RunContext, registry: Any, *, pull_password: str, connection_string: str) -> dict:
    """The manifest from inputs already read: `registry` as ARM returns it (name, login_server)."""
    nested = ctx.site.device.parent_device is not None
    login = UPSTREAM if nested else registry.login_server
    images = ctx.site.images

    def image(reference: str) -> str:
        return f"{login}/{reference}"

    def module(reference: str, create_options: dict, env: dict[str, str]) -> dict:
        return {"type": "docker", "status": "running", "restartPolicy": "always", "version": "1.0",
                "settings": {"image": image(reference), "createOptions": _json(create_options)},
                "env": {k: {"value": v} for k, v in env.items()}}

    def ports(*numbers: str) -> dict:
        return {"HostConfig": {"PortBindings": {f"{n}/tcp": [{"HostPort": n}] for n in numbers}}}

    pull_user = names.pull_token_name(ctx.site.connected_registry.name)
    agent = {
        "schemaVersion": "1.1",
        "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25", "registryCredentials": {
            ("upstream" if nested else registry.name): {"address": login, "username": pull_user,
                                                        "password": pull_password}}}},
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
                 "CONNECTED_ACR_ROUTE_ADDRESS": f"{CONNECTED_REGISTRY_MODULE}:8080",
                 **({"NGINX_CONFIG_ENV_VAR_LIST": "NGINX_DEFAULT_PORT,BLOB_UPLOAD_ROUTE_ADDRESS,"
                                                  "CONNECTED_ACR_ROUTE_ADDRESS,IOTEDGE_PARENTHOSTNAME,"
                                                  "DOCKER_REQUEST_ROUTE_ADDRESS",
                     "BLOB_UPLOAD_ROUTE_ADDRESS": "AzureBlobStorageonIoTEdge:11002"} if nested else {})}),
        },
    }
    hub = {"schemaVersion": "1.2", "routes": {"upstream": "FROM /messages/* INTO $upstream"},
           "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}
    return {EDGE_AGENT: {"properties.desired": agent}, EDGE_HUB: {"properties.desired": hub}}


def _stored(ctx: RunContext, purpose: str, subject: str, remedy: str) -> str:
    value = ctx.get_secret(purpose)
    if value is None:
        raise PreconditionFailed(subject, f"no value is stored as secret '{ctx.secret_name(purpose)}'; {remedy}")
    return value


def build_manifest(ctx: RunContext, *, record: bool = False) -> dict:
    """The deployment manifest's modulesContent; with record=True, secrets are references.
    PreconditionFailed while an input is missing: the registry, or (for the real one) a secret."""
    registry = readers.registry(ctx)
    if registry is None:
        raise PreconditionFailed("registry", f"'{ctx.site.registry.name}' does not exist in resource group "
                                             f"'{ctx.site.resource_group}'; run the endpoint step first")
    if record:
        return compose_manifest(ctx, registry, pull_password=secret_reference(ctx, names.PULL_SECRET),
                                connection_string=secret_reference(ctx, names.CONNECTION_STRING_SECRET))
    return compose_manifest(
        ctx, registry, pull_password=_stored(ctx, names.PULL_SECRET, "manifest", "run the manifest step"),
        connection_string=_stored(ctx, names.CONNECTION_STRING_SECRET, "settings", "run the settings step"))


def images_of(manifest: dict) -> dict[str, str | None]:
    """Module name -> image, for every module (system modules too) the manifest names."""
    agent = (manifest.get(EDGE_AGENT) or {}).get("properties.desired") or {}
    return {name: (body.get("settings") or {}).get("image") for group in MODULE_GROUPS
            for name, body in (agent.get(group) or {}).items() if isinstance(body, dict)}


def module_names(manifest: dict) -> list[str]:
    """The custom modules (not edgeAgent and edgeHub) the manifest runs."""
    return sorted(((manifest.get(EDGE_AGENT) or {}).get("properties.desired") or {}).get("modules") or {})


# -- validation ----------------------------------------------------------------------------------
def import_validator() -> type[Draft4Validator]:
    with without_format_grammars():  # crlib checks no formats (crlib.fast_imports says why)
        from jsonschema import Draft4Validator
    return Draft4Validator


@functools.cache
def _validator(schema_file: str) -> Draft4Validator:
    schema = json.loads(resources.files("crlib").joinpath("schemas", schema_file).read_text())
    return import_validator()(schema)


def _create_options(settings: dict) -> str:
    """createOptions joined with its createOptions01.. continuations, in order."""
    chunks = sorted((int(m.group(1) or 0), value) for key, value in settings.items()
                    if (m := _CREATE_OPTIONS.match(key)) and isinstance(value, str))
    return "".join(value for _, value in chunks)


def _create_options_problems(part: str, desired: dict) -> list[str]:
    problems = []
    for group in MODULE_GROUPS:
        for name, body in (desired.get(group) or {}).items():
            settings = body.get("settings") if isinstance(body, dict) else None
            text = _create_options(settings or {})
            if not text:
                continue
            where = f"{part}: {group}.{name}.settings.createOptions"
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                problems.append(f"{where} is not JSON ({exc.msg} at character {exc.pos})")
                continue
            if not isinstance(parsed, dict):
                problems.append(f"{where} must be a JSON object")
    return problems


def _part_problems(manifest: dict, part: str) -> list[str]:
    desired = (manifest.get(part) or {}).get("properties.desired")
    if not isinstance(desired, dict):
        return [f"{part}: properties.desired is missing"]
    version = desired.get("schemaVersion")
    schema_file = SCHEMAS.get((part, version)) if isinstance(version, str) else None
    if schema_file is None:
        known = ", ".join(v for p, v in SCHEMAS if p == part)
        return [f"{part}: schemaVersion {version!r} is not one crlib validates ({known})"]
    problems = []
    errors = _validator(schema_file).iter_errors({part: manifest[part]})
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        path = ".".join(str(p) for p in list(error.absolute_path)[2:]) or "(properties.desired)"
        problems.append(f"{part}: {path}: {error.message}")
    return problems + _create_options_problems(part, desired)


def validate_manifest(manifest: dict) -> None:
    """Raise ManifestInvalid listing every problem; secret values never appear in the messages."""
    problems = [p for part in (EDGE_AGENT, EDGE_HUB) for p in _part_problems(manifest, part)]
    for module_id, content in manifest.items():
        if not isinstance(content, dict) or not any(k.startswith("properties.desired") for k in content):
            problems.append(f"{module_id}: needs properties.desired")
    if problems:
        raise ManifestInvalid([MASKER.redact(p) for p in problems])
