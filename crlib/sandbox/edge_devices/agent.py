"""What the edge agent checks in a deployment, and what it reports in `$edgeAgent`.

The codes are the agent's own: 417 while the device has no deployment, 400 for a malformed one,
412 for a schema version it does not know, 406 while modules are not all running, 500 when a
module fails (an image that cannot be pulled), 200 once everything runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..clock import iso

AGENT_VERSION = "1.5.21"
SCHEMA_VERSIONS = ("1.0", "1.1")
RESTART_POLICIES = ("never", "on-failure", "on-unhealthy", "always")
MODULE_STATUSES = ("running", "stopped")


class DeploymentError(Exception):
    def __init__(self, code: int, description: str):
        super().__init__(description)
        self.code = code
        self.description = description


@dataclass
class ModuleSpec:
    name: str
    image: str
    system: bool
    env: dict[str, str] = field(default_factory=dict)
    status: str = "running"
    create_options: dict = field(default_factory=dict)


@dataclass
class Deployment:
    version: int | None  # the desired properties' $version
    schema_version: str
    registry_credentials: dict[str, dict]
    modules: list[ModuleSpec]


def _require(mapping: object, key: str, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise DeploymentError(400, f"Deployment is malformed: {where}.{key} is missing.")
    return mapping[key]


def _create_options(settings: dict, where: str) -> dict:
    raw = settings.get("createOptions")
    if raw in (None, ""):
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise DeploymentError(400, f"Deployment is malformed: {where}.settings.createOptions is not JSON: "
                                   f"{exc}.") from exc
    if not isinstance(parsed, dict):
        raise DeploymentError(400, f"Deployment is malformed: {where}.settings.createOptions must be an object.")
    return parsed


def _module(name: str, body: object, *, system: bool, where: str) -> ModuleSpec:
    if not isinstance(body, dict):
        raise DeploymentError(400, f"Deployment is malformed: {where} must be an object.")
    if _require(body, "type", where) != "docker":
        raise DeploymentError(400, f"Deployment is malformed: {where}.type must be 'docker'.")
    settings = _require(body, "settings", where)
    image = _require(settings, "image", f"{where}.settings")
    if not isinstance(image, str) or not image:
        raise DeploymentError(400, f"Deployment is malformed: {where}.settings.image must be a string.")
    status = body.get("status", "running")
    if not system and status not in MODULE_STATUSES:
        raise DeploymentError(400, f"Deployment is malformed: {where}.status '{status}' is not running/stopped.")
    if not system and body.get("restartPolicy", "always") not in RESTART_POLICIES:
        raise DeploymentError(400, f"Deployment is malformed: {where}.restartPolicy is not one of "
                                   f"{', '.join(RESTART_POLICIES)}.")
    env = {}
    for key, value in (body.get("env") or {}).items():
        if not isinstance(value, dict) or "value" not in value:
            raise DeploymentError(400, f"Deployment is malformed: {where}.env.{key} needs a 'value'.")
        env[key] = str(value["value"])
    return ModuleSpec(name, image, system, env, status, _create_options(settings, where))


def parse(desired: dict) -> Deployment | None:
    """Read `$edgeAgent`'s desired properties; None when there is no deployment yet."""
    content = {k: v for k, v in desired.items() if not k.startswith("$")}
    if not content:
        return None
    schema = content.get("schemaVersion")
    if schema is None:
        raise DeploymentError(400, "Deployment is malformed: schemaVersion is missing.")
    if str(schema) not in SCHEMA_VERSIONS:
        raise DeploymentError(412, f"Unsupported schema version '{schema}'. This agent supports "
                                   f"{', '.join(SCHEMA_VERSIONS)}.")
    runtime = _require(content, "runtime", "properties.desired")
    if runtime.get("type") != "docker":
        raise DeploymentError(400, "Deployment is malformed: runtime.type must be 'docker'.")
    credentials = (runtime.get("settings") or {}).get("registryCredentials") or {}
    for name, cred in credentials.items():
        for key in ("address", "username", "password"):
            _require(cred, key, f"runtime.settings.registryCredentials.{name}")
    system = _require(content, "systemModules", "properties.desired")
    modules = [_module(name, _require(system, name, "systemModules"), system=True, where=f"systemModules.{name}")
               for name in ("edgeAgent", "edgeHub")]
    modules += [_module(name, body, system=False, where=f"modules.{name}")
                for name, body in (content.get("modules") or {}).items()]
    return Deployment(desired.get("$version", 0), str(schema), credentials, modules)


@dataclass
class ModuleState:
    """One module as the agent reports it."""

    image: str
    runtime_status: str = "unknown"
    status_description: str = ""
    exit_code: int = 0
    restart_count: int = 0
    last_start: float | None = None
    last_exit: float | None = None
    image_hash: str | None = None

    def report(self, *, system: bool) -> dict:
        body = {
            "runtimeStatus": self.runtime_status,
            "statusDescription": self.status_description,
            "exitCode": self.exit_code,
            "restartCount": self.restart_count,
            "lastStartTimeUtc": iso(self.last_start) if self.last_start else "0001-01-01T00:00:00Z",
            "lastExitTimeUtc": iso(self.last_exit) if self.last_exit else "0001-01-01T00:00:00Z",
            "settings": {"image": self.image} | ({"imageHash": self.image_hash} if self.image_hash else {}),
            "type": "docker",
        }
        if not system:
            body["status"] = "running"
            body["version"] = "1.0"
        return body


def reported(*, deployment: Deployment | None, code: int, description: str,
             modules: dict[str, ModuleState]) -> dict:
    """`$edgeAgent` reported properties in the documented shape."""
    body: dict[str, Any] = {
        "schemaVersion": "1.1",
        "version": {"version": AGENT_VERSION, "build": "sandbox", "commit": "sandbox"},
        "lastDesiredStatus": {"code": code, "description": description},
        "runtime": {"type": "docker", "platform": {"os": "linux", "architecture": "x86_64",
                                                   "version": AGENT_VERSION}},
    }
    if deployment is not None:
        body["lastDesiredVersion"] = deployment.version
    system = {n: m.report(system=True) for n, m in modules.items() if n in ("edgeAgent", "edgeHub")}
    if system:
        body["systemModules"] = system
    body["modules"] = {n: m.report(system=False) for n, m in modules.items() if n not in ("edgeAgent", "edgeHub")}
    return body
