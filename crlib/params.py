"""The parameters of one site, as pydantic models.

Unknown keys are errors. Values that papermill passes as strings are coerced explicitly: a bool
field accepts only true/false/yes/no/1/0, and a string field keeps "0012" as it is. Secrets never
appear here, only references to a secret store. Every refusal is a ParameterError naming the field.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import isodate
import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.functional_validators import BeforeValidator

from .errors import ParameterError

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

_REPO_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY = re.compile(rf"^{_REPO_COMPONENT}(?:/{_REPO_COMPONENT})*$")
IMAGE = re.compile(rf"^{_REPO_COMPONENT}(?:/{_REPO_COMPONENT})*:[\w][\w.-]{{0,127}}$")
SECRET_LOOKING = re.compile(r"(SharedAccessKey=|SyncTokenPassword=|AccountKey=|password\s*[:=]|-----BEGIN)", re.I)
SCOPE_ACTIONS = ("content/read", "content/write", "content/delete", "metadata/read", "metadata/write")


def _strict_bool(value: object) -> object:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
        raise ValueError(f"'{value}' is not a boolean (true/false)")
    return value


Bool = Annotated[bool, BeforeValidator(_strict_bool)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_secret_values(cls, data: object) -> object:
        def strings(value: object) -> Iterator[str]:
            if isinstance(value, str):
                yield value
            elif isinstance(value, dict):
                for item in value.values():
                    yield from strings(item)
            elif isinstance(value, list | tuple):
                for item in value:
                    yield from strings(item)

        if isinstance(data, dict):
            for key, value in data.items():
                if any(SECRET_LOOKING.search(text) for text in strings(value)):
                    raise ValueError(f"{key}: looks like a secret value; parameters hold secret references only")
        return data


class Target(_Model):
    kind: Literal["azure", "sandbox"] = "sandbox"
    cloud: Literal["AzureCloud", "AzureChinaCloud", "AzureUSGovernment"] = "AzureCloud"
    sandbox_state_dir: str | None = Field(None, description="sandbox state directory (default: the per-user one)")


class Hub(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9-]{3,50}$")
    sku: Literal["F1", "B1", "B2", "B3", "S1", "S2", "S3"] = "S1"
    capacity: int = Field(1, ge=1, le=200)
    reuse: Bool = Field(False, description="true: the hub must exist already; false: create it when missing")
    disable_local_auth: Bool = Field(False, description="true: the hub refuses its shared access policies; crlib "
                                                        "reaches it with Entra ID (IoT Hub Data Contributor)")


# IoT Edge runtime (aziot-edge) -> the edgeAgent/edgeHub/diagnostics versions Microsoft supports
# with it: the modules' major.minor is the runtime's (IoT Edge docs, "version-history" and
# "how-to-update-iot-edge": update the runtime modules to the same version as the runtime).
IOTEDGE_MODULE_VERSIONS = {"1.5": "1.5"}
_HOST_PORT = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")


class Device(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9\-:.+%_#*?!(),=@$']{1,128}$")
    host_os: Literal["ubuntu22.04", "ubuntu24.04"] = "ubuntu22.04"
    iotedge_version: Literal["1.5"] = Field("1.5", description="the IoT Edge runtime the host provisioning script "
                                                               "installs")
    parent_device: str | None = None
    address: str | None = Field(None, description="host[:port] of the device's API proxy, as reachable from "
                                                  "where the checks run (the sandbox fills it in)")
    ca_cert: str | None = Field(None, description="PEM file of the device's IoT Edge root CA, which the checks "
                                                  "trust for the device (the sandbox fills it in)")
    parent_address: str | None = Field(None, description="host[:port] of the parent device's API proxy, as this "
                                                         "device reaches it (nested devices; the sandbox fills it in)")

    @field_validator("address", "parent_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not _HOST_PORT.match(value):
            raise ValueError(f"'{value}' is not host[:port]")
        return value

    @field_validator("ca_cert")
    @classmethod
    def _ca_cert(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        if not path.is_file():
            raise ValueError(f"'{value}' is not a file")
        if b"-----BEGIN CERTIFICATE-----" not in path.read_bytes()[:1 << 20]:
            raise ValueError(f"'{value}' holds no PEM certificate")
        return str(path)


class Registry(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9]{5,50}$")
    sku: str = "Premium"

    @field_validator("sku")
    @classmethod
    def _premium(cls, value: str) -> str:
        if value != "Premium":
            raise ValueError(f"connected registries need the Premium SKU, not '{value}'")
        return value


class Images(_Model):
    source_registry: str = Field("mcr.microsoft.com", pattern=r"^[a-z0-9.-]+(:\d+)?$")
    connected_registry: str = "acr/connected-registry:0.8.0"
    edge_agent: str = "azureiotedge-agent:1.5"
    edge_hub: str = "azureiotedge-hub:1.5"
    api_proxy: str = "azureiotedge-api-proxy:1.1.2"
    diagnostics: str = "azureiotedge-diagnostics:1.5"

    @field_validator("connected_registry", "edge_agent", "edge_hub", "api_proxy", "diagnostics")
    @classmethod
    def _image(cls, value: str) -> str:
        if not IMAGE.match(value):
            raise ValueError(f"'{value}' is not repository:tag")
        return value

    def all(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in ("connected_registry", "edge_agent", "edge_hub", "api_proxy",
                                               "diagnostics")}


class GarbageCollection(_Model):
    enabled: Bool = False
    schedule: str = "0 0 * * *"


def _duration(value: str, field: str) -> dt.timedelta:
    try:
        parsed = isodate.parse_duration(value)
    except (isodate.ISO8601Error, ValueError) as exc:
        raise ValueError(f"{field} '{value}' is not an ISO 8601 duration such as PT3H or P2D") from exc
    if not isinstance(parsed, dt.timedelta):
        raise ValueError(f"{field} '{value}' must be in days, hours or minutes, not months or years")
    return parsed


def _cron(value: str) -> str:
    if len(value.split()) != 5 or not croniter.is_valid(value):
        raise ValueError(f"'{value}' is not a five-field cron expression")
    return value


class ConnectedRegistry(_Model):
    name: str = Field(description="5-40 letters and digits, starting with a letter")
    mode: Literal["ReadWrite", "ReadOnly"] = "ReadOnly"
    repositories: list[str] = Field(min_length=1)
    sync_schedule: str = "* * * * *"
    sync_window: str | None = None
    message_ttl: str = "P2D"
    log_level: Literal["Debug", "Information", "Warning", "Error", "None"] = "Information"
    notifications: list[str] = Field(default_factory=list)
    garbage_collection: GarbageCollection = GarbageCollection()
    parent: str | None = Field(None, description="name of the parent connected registry, for a nested device")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z][A-Za-z0-9]{4,39}$", value):
            raise ValueError(f"'{value}' must be 5-40 letters and digits, starting with a letter")
        return value

    @field_validator("repositories")
    @classmethod
    def _repositories(cls, values: list[str]) -> list[str]:
        for value in values:
            if not REPOSITORY.match(value):
                raise ValueError(f"'{value}' is not a repository name (lowercase, digits, '.', '_', '-', '/')")
        if len(set(values)) != len(values):
            raise ValueError("repositories are listed twice")
        return values

    @field_validator("sync_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        return _cron(value)

    @field_validator("message_ttl")
    @classmethod
    def _ttl(cls, value: str) -> str:
        ttl = _duration(value, "message_ttl")
        if not dt.timedelta(days=1) <= ttl <= dt.timedelta(days=90):
            raise ValueError(f"message_ttl '{value}' must be between 1 and 90 days")
        return value

    @field_validator("sync_window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is None:
            return None
        window = _duration(value, "sync_window")
        if not dt.timedelta(hours=1) <= window <= dt.timedelta(days=7):
            raise ValueError(f"sync_window '{value}' must be between 1 hour and 7 days")
        return value

    @field_validator("notifications")
    @classmethod
    def _notifications(cls, values: list[str]) -> list[str]:
        for value in values:
            if not re.match(r"^[^:\s]+:[^:\s]+:[^:\s]+$", value):
                raise ValueError(f"'{value}' is not repository:tag:action (wildcards allowed)")
        return values

    @model_validator(mode="after")
    def _parent(self) -> ConnectedRegistry:
        if self.parent is not None and self.parent.lower() == self.name.lower():
            raise ValueError("parent: a connected registry cannot be its own parent")
        return self


class ClientToken(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9-]{5,50}$")
    scope_map: str
    expiry_days: int | None = Field(None, ge=1, le=3650)


class ClientAccess(_Model):
    scope_maps: dict[str, dict[str, list[str]]] = Field(default_factory=dict,
                                                         description="scope map -> repository -> actions")
    tokens: list[ClientToken] = Field(default_factory=list)

    @field_validator("scope_maps")
    @classmethod
    def _scope_maps(cls, value: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
        for name, repos in value.items():
            if not re.match(r"^[A-Za-z0-9-]{5,50}$", name):
                raise ValueError(f"scope map name '{name}' must be 5-50 letters, digits or '-'")
            for repo, actions in repos.items():
                if not REPOSITORY.match(repo.removesuffix("/*")) and repo != "*":
                    raise ValueError(f"'{repo}' in scope map '{name}' is not a repository name")
                bad = [a for a in actions if a not in SCOPE_ACTIONS]
                if bad or not actions:
                    raise ValueError(f"actions {bad or actions} in scope map '{name}' must be some of "
                                     f"{', '.join(SCOPE_ACTIONS)}")
        return value

    @model_validator(mode="after")
    def _tokens_name_maps(self) -> ClientAccess:
        for token in self.tokens:
            if token.scope_map not in self.scope_maps:
                raise ValueError(f"token '{token.name}' names scope map '{token.scope_map}', which is not defined")
        return self


class Checks(_Model):
    mode: Literal["remote", "on-device"] = Field("remote", description="remote: crlib runs the checks against "
                                                 "device.address; on-device: crlib writes a script to run there")
    pull_image: str = "hello-world:latest"
    push_repository: str = "hello-world"
    client_token: str | None = Field(None, description="client token used for the checks (default: the first)")

    @field_validator("pull_image")
    @classmethod
    def _pull(cls, value: str) -> str:
        if not IMAGE.match(value):
            raise ValueError(f"'{value}' is not repository:tag")
        return value


class Secrets(_Model):
    store: Literal["local", "keyvault"] = "local"
    local_dir: str = "~/.local/state/crlib/secrets"
    vault_url: str | None = Field(None, pattern=r"^https://[a-z0-9-]+\.vault\.(azure\.net|azure\.cn|usgovcloudapi\.net)/?$")
    # vault_url is required for keyvault on Azure (Site checks it); the sandbox supplies its own vault.


class Site(_Model):
    site: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")
    target: Target = Target()
    subscription_id: str | None = Field(None, pattern=r"^[0-9a-fA-F-]{36}$",
                                        description="default: the sandbox's, or the credential's only one")
    resource_group: str = Field(pattern=r"^[-\w._()]{1,90}$")
    location: str = Field("westus", pattern=r"^[a-z0-9]+$")
    hub: Hub
    device: Device
    registry: Registry
    images: Images = Images()
    connected_registry: ConnectedRegistry
    client_access: ClientAccess = ClientAccess()
    checks: Checks = Checks()
    secrets: Secrets = Secrets()

    @model_validator(mode="after")
    def _cross_checks(self) -> Site:
        if self.secrets.store == "keyvault" and not self.secrets.vault_url and self.target.kind != "sandbox":
            raise ValueError("secrets.vault_url: is required when secrets.store is keyvault and target.kind is azure")
        if self.checks.client_token and self.checks.client_token not in {t.name for t in self.client_access.tokens}:
            raise ValueError(f"checks.client_token: '{self.checks.client_token}' is not one of client_access.tokens")
        self._runtime_matches_modules()
        cr = self.connected_registry
        if self.checks.pull_image.split(":")[0] not in cr.repositories:
            raise ValueError(f"checks.pull_image: '{self.checks.pull_image}' is not in connected_registry.repositories")
        if cr.mode == "ReadWrite" and self.checks.push_repository not in cr.repositories:
            raise ValueError(f"checks.push_repository: '{self.checks.push_repository}' is not in "
                             "connected_registry.repositories")
        return self


    def _runtime_matches_modules(self) -> None:
        runtime = self.device.iotedge_version
        wanted = IOTEDGE_MODULE_VERSIONS[runtime]
        for field in ("edge_agent", "edge_hub", "diagnostics"):
            image = getattr(self.images, field)
            tag = image.rsplit(":", 1)[1]
            if tag != wanted and not tag.startswith(wanted + "."):
                raise ValueError(f"images.{field}: '{image}' does not run with device.iotedge_version {runtime}; "
                                 f"Microsoft supports {wanted}.x modules with the IoT Edge {runtime} runtime")


def _field_of(error: ErrorDetails) -> str:
    return ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-")) or "(site)"


def load(data: dict) -> Site:
    """Validate a parameter mapping; raise ParameterError naming the first bad field."""
    try:
        return Site.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        field = _field_of(first)
        if first["type"] == "extra_forbidden":
            message = "unknown parameter"
        # Validators that look across fields name the one at fault: "field: message", relative to
        # where the validator sits ("(site)" for the whole site).
        named = re.match(r"^([a-z_]+(?:\.[a-z_]+)*): (.*)$", message, re.S)
        if named:
            field = named.group(1) if field == "(site)" else f"{field}.{named.group(1)}"
            message = named.group(2)
        raise ParameterError(field, message) from None


def load_file(path: Path | str, overrides: dict | None = None) -> Site:
    """A parameter file, with overrides given as dotted keys: {"connected_registry.mode": "ReadWrite"}."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    for dotted, value in (overrides or {}).items():
        target = data
        *parents, last = dotted.split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ParameterError(dotted, "overrides a value that is not a mapping")
        target[last] = value
    return load(data)
