"""The parameters of one site, as pydantic models.

Unknown keys are errors. Values that papermill passes as strings are coerced explicitly: a bool
field accepts only true/false/yes/no/1/0, and a string field keeps "0012" as it is. Secrets never
appear here, only references to a secret store. Every refusal is a ParameterError naming the field.
"""

from __future__ import annotations

import datetime as dt
import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

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

# --- Azure names (issue 15): each is checked before any client exists, against Azure's rules ---
# Sources: Microsoft Learn "Naming rules and restrictions for Azure resources"
# (azure-resource-manager/management/resource-name-rules, "rules" below); the ARM REST specs
# (azure-rest-api-specs, Microsoft.ContainerRegistry path parameters, "spec"); the IoT Hub docs.
# crlib is stricter than Azure only where it says why.

# rules, resource groups; the ARM common types (resourceGroupName ^[-\w\._\(\)]+$, 1-90); the .NET
# SDK: "alphanumeric characters (Char.IsLetterOrDigit()) and '-', '_', '(', ')' and '.'. Note that
# the name cannot end with '.'". So '.' and '..' are refused: in a URL path they would end the path.
_RESOURCE_GROUP = re.compile(r"^[-\w.()]{1,90}$")
# rules, Microsoft.Devices IotHubs: 3-50 alphanumerics and hyphens; can't end with a hyphen. The
# IoT Hub ARM spec (iothub.json 2023-06-30, Resource.name) adds: not starting with one, not all digits.
_IOT_HUB = re.compile(r"^(?![0-9]+$)(?!-)[A-Za-z0-9-]{2,49}[A-Za-z0-9]$")
# IoT Hub docs (iot-hub-devguide-identity-registry, "Device identity properties", deviceId): a
# case-sensitive string of up to 128 ASCII 7-bit alphanumerics and - : . + % _ # * ? ! ( ) , = @ ; $ '.
# crlib refuses ';' (it ends a connection string's DeviceId=) and the ids '.' and '..' (they are
# path segments in /devices/{id}, and would address something else).
_DEVICE_ID = re.compile(r"^[A-Za-z0-9\-:.+%_#*?!(),=@$']{1,128}$")
# rules and spec (containerregistry.json 2025-11-01, registryName ^[a-zA-Z0-9]*$, 5-50): 5-50 alphanumerics.
_REGISTRY = re.compile(r"^[A-Za-z0-9]{5,50}$")
# spec, connectedRegistryName: ^[a-zA-Z0-9]*$, 5-50; crlib keeps its earlier, stricter rule, 5-40
# starting with a letter, as the sandbox and the CLI want it (the name is lowercased into the sync
# scope map's gateway/<name>/ actions, and <name>-pull must stay within a token name's 50).
_CONNECTED_REGISTRY = re.compile(r"^[A-Za-z][A-Za-z0-9]{4,39}$")
# spec, registries/tokens/{tokenName}: ^[a-zA-Z0-9-]*$, 5-50. A token's name is also part of the
# secret name crlib keeps its password under (crlib-<site>-client-token-<name>), which Key Vault
# limits to alphanumerics and hyphens (rules, Microsoft.KeyVault vaults/secrets: 1-127).
_TOKEN = re.compile(r"^[A-Za-z0-9-]{5,50}$")
# spec, registries/scopeMaps/{scopeMapName}: ^[a-zA-Z0-9-_]*$, 5-50.
_SCOPE_MAP = re.compile(r"^[A-Za-z0-9_-]{5,50}$")
# rules, Microsoft.KeyVault vaults: 3-24 alphanumerics and hyphens, starting with a letter, ending
# with a letter or digit, no consecutive hyphens (lowercase here: it is the host of vault_url).
_KEY_VAULT = re.compile(r"^(?!.*--)[a-z][a-z0-9-]{1,22}[a-z0-9]$")
# A subscription id is a GUID (8-4-4-4-12 hex digits).
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _resource_group_name(value: str) -> str:
    if not _RESOURCE_GROUP.match(value) or value.endswith("."):
        raise ValueError(f"'{value}' is not a resource group name (1-90 letters, digits, '-', '_', '.', '(' "
                         "and ')', not ending in '.')")
    return value


def _device_id(value: str) -> str:
    if not _DEVICE_ID.match(value) or value in (".", ".."):
        raise ValueError(f"'{value}' is not an IoT Hub device id (1-128 ASCII letters, digits and "
                         "- : . + % _ # * ? ! ( ) , = @ $ '; not '.' or '..')")
    return value


def _connected_registry_name(value: str) -> str:
    if not _CONNECTED_REGISTRY.match(value):
        raise ValueError(f"'{value}' must be 5-40 letters and digits, starting with a letter")
    return value


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
    name: str
    sku: Literal["F1", "B1", "B2", "B3", "S1", "S2", "S3"] = "S1"
    capacity: int = Field(1, ge=1, le=200)
    reuse: Bool = Field(False, description="true: the hub must exist already; false: create it when missing")
    disable_local_auth: Bool = Field(False, description="true: the hub refuses its shared access policies; crlib "
                                                        "reaches it with Entra ID (IoT Hub Data Contributor)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _IOT_HUB.match(value):
            raise ValueError(f"'{value}' is not an IoT hub name (3-50 letters, digits and '-', not starting or "
                             "ending with '-', not only digits)")
        return value


# IoT Edge runtime (aziot-edge) -> the edgeAgent/edgeHub/diagnostics versions Microsoft supports
# with it: the modules' major.minor is the runtime's (IoT Edge docs, "version-history" and
# "how-to-update-iot-edge": update the runtime modules to the same version as the runtime).
IOTEDGE_MODULE_VERSIONS = {"1.5": "1.5"}
_HOST_PORT = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")


class Device(_Model):
    """The device identity and where the checks reach its registry.

    `address` and `ca_cert` mean the same on both hosts: where the checks reach the connected
    registry, and the CA they trust for it. On IoT Edge that is the device's API proxy; with
    `host.kind: arc` it is the in-cluster service (`host.arc.service_cluster_ip`) as forwarded to
    the operator's machine, trusted with the CA that signs its certificate (cert-manager's, or
    `host.arc.tls.ca_cert`). `iotedge_version`, `host_os`, `parent_device`, `parent_address`,
    `gateway`, `hostname`, `edge_ca_cert`, `edge_ca_key` and `trust_bundle_cert` mean something on
    IoT Edge only; Site refuses them with `host.kind: arc`.

    A nested hierarchy (IoT Edge docs "how-to-connect-downstream-iot-edge-device"): a parent device
    is a gateway (`gateway: true`) with the `hostname` its children reach it by and its own edge CA
    (`edge_ca_cert`, `edge_ca_key`); a child (`parent_device`) trusts the root CA that signed its
    parent's edge CA (`trust_bundle_cert`; the host provisioning script requires it). A middle
    layer is both. The certificate paths are on the device, referenced by config.toml as file URIs;
    crlib never reads them.
    """

    id: str
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
    gateway: Bool = Field(False, description="true: the device is a parent (gateway) for child devices; needs "
                                             "hostname, edge_ca_cert and edge_ca_key")
    hostname: str | None = Field(None, description="FQDN or IP address the child devices reach this device by "
                                                   "(config.toml hostname; shorter than 64 characters)")
    edge_ca_cert: str | None = Field(None, description="absolute path ON THE DEVICE of its edge CA certificate (PEM, "
                                                       "signed by the hierarchy's root CA); config.toml [edge_ca] cert")
    edge_ca_key: str | None = Field(None, description="absolute path ON THE DEVICE of the edge CA's private key "
                                                      "(PEM); config.toml [edge_ca] pk")
    trust_bundle_cert: str | None = Field(None, description="absolute path ON THE DEVICE of the root CA certificate "
                                                            "(PEM) that signed the parent's edge CA; config.toml "
                                                            "trust_bundle_cert (required on a child device)")

    @field_validator("id", "parent_device")
    @classmethod
    def _ids(cls, value: str | None) -> str | None:
        return None if value is None else _device_id(value)

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

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        # IoT Edge docs (configure-device, how-to-connect-downstream-iot-edge-device): an FQDN or IP
        # address, shorter than 64 characters (a server certificate's common name limit).
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
        label = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
        if len(value) >= 64 or not re.fullmatch(rf"{label}(?:\.{label})*", value):
            raise ValueError(f"{value!r} is not an FQDN or IP address shorter than 64 characters (the name the "
                             "child devices reach this device by)")
        return value

    @field_validator("edge_ca_cert", "edge_ca_key", "trust_bundle_cert")
    @classmethod
    def _device_path(cls, value: str | None) -> str | None:
        # A path on the device, written into config.toml as a file URI as it is (nothing to escape
        # in TOML or the URI): absolute, no spaces, quotes or control characters. Not read here.
        if value is not None and not re.fullmatch(r"(?:/[A-Za-z0-9._+@-]+)+", value):
            raise ValueError(f"{value!r} is not an absolute path on the device (/ followed by letters, digits, "
                             "'.', '_', '-', '+', '@' and '/'; no spaces or quotes)")
        return value

    @model_validator(mode="after")
    def _gateway_fields(self) -> Device:
        if self.gateway:
            for field, what in (("hostname", "the FQDN or IP address its children reach it by"),
                                ("edge_ca_cert", "the path on the device of its edge CA certificate"),
                                ("edge_ca_key", "the path on the device of its edge CA private key")):
                if getattr(self, field) is None:
                    raise ValueError(f"{field}: is required with gateway: true ({what})")
        for field, other in (("edge_ca_cert", "edge_ca_key"), ("edge_ca_key", "edge_ca_cert")):
            if getattr(self, field) is not None and getattr(self, other) is None:
                raise ValueError(f"{other}: is required with {field} (an edge CA is a certificate and its key)")
        return self


class Registry(_Model):
    name: str
    sku: str = "Premium"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _REGISTRY.match(value):
            raise ValueError(f"'{value}' is not a container registry name (5-50 letters and digits)")
        return value

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
    sync_module_images: Bool | None = Field(None, description="sync the IoT Edge module repositories (connected "
                                            "registry, edgeAgent, edgeHub, API proxy) down the layers so children "
                                            "pull their modules from $upstream; default: true for a nested child "
                                            "(its ancestors get them), false otherwise")

    @field_validator("name", "parent")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _connected_registry_name(value)

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
    name: str
    scope_map: str
    expiry_days: int | None = Field(None, ge=1, le=3650)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _TOKEN.match(value):
            raise ValueError(f"'{value}' is not a registry token name (5-50 letters, digits and '-')")
        return value

    @field_validator("scope_map")
    @classmethod
    def _scope_map(cls, value: str) -> str:
        if not _SCOPE_MAP.match(value):
            raise ValueError(f"'{value}' is not a scope map name (5-50 letters, digits, '-' and '_')")
        return value


class ClientAccess(_Model):
    scope_maps: dict[str, dict[str, list[str]]] = Field(default_factory=dict,
                                                         description="scope map -> repository -> actions")
    tokens: list[ClientToken] = Field(default_factory=list)

    @field_validator("scope_maps")
    @classmethod
    def _scope_maps(cls, value: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
        for name, repos in value.items():
            if not _SCOPE_MAP.match(name):
                raise ValueError(f"scope map name '{name}' must be 5-50 letters, digits, '-' or '_'")
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
    referrers: bool = Field(False, description="also list the referrers (signatures, SBOMs) of the pulled image "
                            "through the device, and wait until it lists every one the cloud registry lists")

    @field_validator("pull_image")
    @classmethod
    def _pull(cls, value: str) -> str:
        if not IMAGE.match(value):
            raise ValueError(f"'{value}' is not repository:tag")
        return value

    @model_validator(mode="after")
    def _referrers_are_listed_remotely(self) -> Checks:
        if self.referrers and self.mode == "on-device":
            raise ValueError("referrers: true needs mode: remote; the on-device check script does not list "
                             "referrers")
        return self


# The package's directory, and the checkout holding it when crlib runs from one (its runs/ too).
_PACKAGE_DIR = Path(__file__).resolve().parent
_VAULT_URL = re.compile(r"^https://(?P<name>[^./]+)\.vault\.(azure\.net|azure\.cn|usgovcloudapi\.net)/?$")


def _places_a_store_cannot_be() -> list[tuple[str, Path]]:
    """The folders a secret store must stay out of, the narrowest first."""
    checkout = _PACKAGE_DIR.parent
    in_checkout = (checkout / ".git").exists() or (checkout / "pyproject.toml").is_file()
    # `crlib run --runs-dir` defaults to runs/ under the working directory.
    places = [("a runs folder", Path.cwd() / "runs")]
    if in_checkout:
        places.append(("a runs folder", checkout / "runs"))
    places.append(("crlib's package", _PACKAGE_DIR))
    if in_checkout:
        places.append(("the repository", checkout))
    return [(what, Path(os.path.realpath(where))) for what, where in places]


def _key_vault_url(value: str | None) -> str | None:
    if value is None:
        return None
    match = _VAULT_URL.match(value)
    if not match:
        raise ValueError(f"'{value}' is not a Key Vault URL (https://<vault>.vault.azure.net, .vault.azure.cn "
                         "or .vault.usgovcloudapi.net)")
    if not _KEY_VAULT.match(match.group("name")):
        raise ValueError(f"'{match.group('name')}' is not a Key Vault name (3-24 lowercase letters, digits and "
                         "'-', starting with a letter, ending with a letter or digit, no '--')")
    return value


class Secrets(_Model):
    store: Literal["local", "keyvault"] = "local"
    local_dir: str | None = Field(None, description="an absolute path (~ allowed) outside the repository and every "
                                  "runs folder, which are archived or shared; default: a folder per target under "
                                  "~/.local/state/crlib/secrets (one site name on two targets never shares secrets)")
    vault_url: str | None = None
    # vault_url is required for keyvault on Azure (Site checks it); the sandbox supplies its own vault.

    @field_validator("local_dir")
    @classmethod
    def _local_dir(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        if not path.is_absolute():
            raise ValueError(f"'{value}' is a relative path; give an absolute one (or ~/...) outside the repository "
                             "and every runs folder (a relative one depends on where each kernel runs)")
        real = Path(os.path.realpath(path))
        for what, place in _places_a_store_cannot_be():
            if real == place or place in real.parents:
                raise ValueError(f"'{value}' is inside {what} ({place}); keep the secret store outside the "
                                 "repository and every runs folder, e.g. ~/.local/state/crlib/secrets")
        for folder in (real, *real.parents):
            if (folder / "run.json").is_file():
                raise ValueError(f"'{value}' is inside a run folder ({folder}), which is archived; keep the secret "
                                 "store outside every runs folder, e.g. ~/.local/state/crlib/secrets")
        return value

    @field_validator("vault_url")
    @classmethod
    def _vault_url(cls, value: str | None) -> str | None:
        return _key_vault_url(value)


# A Key Vault key name: 1-127 letters, digits and '-' (Key Vault's object names).
_KEY_NAME = re.compile(r"^[A-Za-z0-9-]{1,127}$")


class Records(_Model):
    """How a run's change record is signed when it is sealed (docs/records.md)."""

    signing_key: str = Field("local", description="local: a P-256 key kept in the secret store; "
                             "keyvault:<key name>: an EC P-256 key in Key Vault, which never leaves it (required "
                             "when target.kind is azure)")
    vault_url: str | None = Field(None, description="the signing key's vault (default: secrets.vault_url; the "
                                  "sandbox supplies its own)")

    @field_validator("signing_key")
    @classmethod
    def _signing_key(cls, value: str) -> str:
        kind, _, name = value.partition(":")
        if value == "local" or (kind == "keyvault" and _KEY_NAME.match(name)):
            return value
        raise ValueError(f"'{value}' is neither 'local' nor 'keyvault:<key name>' (a key name is 1-127 letters, "
                         "digits and '-')")

    @field_validator("vault_url")
    @classmethod
    def _vault(cls, value: str | None) -> str | None:
        return _key_vault_url(value)

    @property
    def key_vault_key(self) -> str | None:
        """The Key Vault key's name, or None for the local key."""
        return self.signing_key.partition(":")[2] or None


# --- The Arc host (issue 13): the cluster extension Microsoft.ContainerRegistry.ConnectedRegistry ---
# Sources (MicrosoftDocs/azure-management-docs): container-registry/quickstart-connected-registry-arc-cli.md
# ("quickstart"), tutorial-connected-registry-arc.md ("tutorial"), troubleshoot-connected-registry-arc.md
# ("glossary"), azure-arc/kubernetes/extensions.md ("extensions doc").

# The connectedClusters REST spec sets no name pattern (NamePattern ""); the glossary says
# "alphanumeric". crlib takes the rule resource-name-rules gives Kubernetes clusters (AKS): 1-63
# letters, digits, '-' and '_', starting and ending with a letter or digit.
_ARC_CLUSTER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$")
# The extension is a Helm 3 release of that name (glossary: "released as a Helm chart and installed
# by Helm V3"; "can't reuse a name that is still in use" is Helm's): Helm's release name rule,
# lowercase DNS labels joined by '.', at most 53 characters.
_HELM_RELEASE = re.compile(r"^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$")
# Kubernetes object names (StorageClass, Secret): DNS-1123 subdomains, at most 253 characters.
_K8S_NAME = re.compile(r"^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$")
# Kubernetes resource.Quantity (kubernetes.io, "Quantity"): a number and a binary SI, decimal SI
# or decimal exponent suffix. A storage request takes no sign: it must be more than zero.
_QUANTITY = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
                       r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[mkMGTPE]|[eE][+-]?[0-9]+)?$")
# semver.org 2.0.0: MAJOR.MINOR.PATCH, with an optional pre-release and build.
_SEMVER = re.compile(r"^(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)"
                     r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$")


def _pem_file(value: str, marker: bytes, what: str) -> str:
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"'{value}' is not a file")
    if marker not in path.read_bytes()[:1 << 20]:
        raise ValueError(f"'{value}' holds no PEM {what}")
    return str(path)


class ArcTls(_Model):
    """How the connected registry's HTTPS certificate is made (tutorial; glossary "Cert-manager.*").

    cert-manager (the default, the quickstart's secure-by-default deployment): cert-manager issues
    it; `cert_manager_install: false` uses a cert-manager already on the cluster. `secret`: a
    Kubernetes TLS secret (protected setting `tls.secret`). `files`: PEM files crlib passes as the
    protected settings `tls.crt`, `tls.key` and `tls.cacrt` (BYOC); the tutorial makes the
    certificate with the service IP as a subjectAltName. With `secret` and `files` the tutorial turns
    cert-manager off (`cert-manager.enabled=false`, `cert-manager.install=false`).
    """

    mode: Literal["cert-manager", "secret", "files"] = "cert-manager"
    cert_manager_install: Bool = Field(True, description="cert-manager mode: true installs cert-manager with "
                                                         "the extension; false uses the cluster's own")
    secret: str | None = Field(None, description="secret mode: name of a kubernetes.io/tls secret")
    cert: str | None = Field(None, description="files mode: PEM certificate (subjectAltName: the service IP)")
    key: str | None = Field(None, description="files mode: PEM private key of the certificate")
    ca_cert: str | None = Field(None, description="files mode: PEM CA certificate (the certificate itself "
                                                  "when self-signed); needed for trust distribution")

    @model_validator(mode="before")
    @classmethod
    def _cert_manager_off_without_it(cls, data: object) -> object:
        # Outside cert-manager mode the extension runs without cert-manager: an absent
        # cert_manager_install means false there, and an explicit true is refused below.
        if isinstance(data, dict) and data.get("mode") in ("secret", "files") and "cert_manager_install" not in data:
            return {**data, "cert_manager_install": False}
        return data

    @field_validator("secret")
    @classmethod
    def _secret_name(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 253 or not _K8S_NAME.match(value)):
            raise ValueError(f"'{value}' is not a Kubernetes secret name (lowercase letters, digits, '-' and "
                             "'.', at most 253)")
        return value

    @field_validator("cert", "ca_cert")
    @classmethod
    def _certificate(cls, value: str | None) -> str | None:
        return None if value is None else _pem_file(value, b"-----BEGIN CERTIFICATE-----", "certificate")

    @field_validator("key")
    @classmethod
    def _private_key(cls, value: str | None) -> str | None:
        return None if value is None else _pem_file(value, b"PRIVATE KEY-----", "private key")

    @model_validator(mode="after")
    def _mode_fields(self) -> ArcTls:
        if self.mode != "cert-manager" and self.cert_manager_install:
            raise ValueError(f"cert_manager_install: must be false with tls.mode {self.mode}; the extension runs "
                             "without cert-manager when it brings its own certificate")
        if self.mode == "secret" and self.secret is None:
            raise ValueError("secret: is required with tls.mode secret (the name of a kubernetes.io/tls secret)")
        if self.mode == "files":
            for field in ("cert", "key"):
                if getattr(self, field) is None:
                    raise ValueError(f"{field}: is required with tls.mode files (a PEM file)")
        owned = {"secret": ("secret",), "files": ("cert", "key", "ca_cert")}
        for mode, fields in owned.items():
            for field in fields:
                if self.mode != mode and getattr(self, field) is not None:
                    raise ValueError(f"{field}: only with tls.mode {mode}, not {self.mode}; remove it or set "
                                     f"tls.mode: {mode}")
        return self


class Arc(_Model):
    """An Azure Arc-enabled Kubernetes cluster running the connected-registry cluster extension.

    The Arc host (crlib.hosts.arc) makes the extension from these. `cluster_resource_group`
    defaults to the site's `resource_group` and `extension_name` to the connected registry's name in
    lowercase (the quickstart names the extension after the connected registry).
    """

    cluster: str = Field(description="the connectedClusters resource (az k8s-extension --cluster-name)")
    cluster_resource_group: str = Field(description="its resource group (default: the site's resource_group)")
    extension_name: str = Field(description="the extension instance, a Helm release name "
                                            "(default: the connected registry's name, lowercase)")
    service_cluster_ip: str = Field(description="service.clusterIP: a free address in the cluster's service "
                                                "CIDR, where pods reach the registry")
    storage_class: str | None = Field(None, description="pvc.storageClassName (default: the cluster's default "
                                                        "storage class)")
    storage_request: str = Field("500Gi", description="pvc.storageRequest, a Kubernetes quantity")
    tls: ArcTls = ArcTls()
    trust_distribution: Bool = Field(True, description="trustDistribution.enabled: configure every node's "
                                                       "containerd to trust the registry's CA")
    trust_distribution_node_selector: Bool = Field(False, description="trustDistribution.useNodeSelector: only "
                                                   "nodes labelled containerd-configured-by=connected-registry")
    version: str | None = Field(None, description="pin the extension to this version (needs "
                                                  "auto_upgrade_minor_version: false)")
    auto_upgrade_minor_version: Bool = True

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str) -> str:
        if not _ARC_CLUSTER.match(value):
            raise ValueError(f"'{value}' is not an Arc cluster name (1-63 letters, digits, '-' and '_', starting "
                             "and ending with a letter or digit)")
        return value

    @field_validator("cluster_resource_group")
    @classmethod
    def _cluster_group(cls, value: str) -> str:
        return _resource_group_name(value)

    @field_validator("extension_name")
    @classmethod
    def _extension_name(cls, value: str) -> str:
        if len(value) > 53 or not _HELM_RELEASE.match(value):
            raise ValueError(f"'{value}' is not an extension name (a Helm release name: lowercase letters, "
                             "digits, '-' and '.', at most 53)")
        return value

    @field_validator("service_cluster_ip")
    @classmethod
    def _service_ip(cls, value: str) -> str:
        # Glossary "Service.ClusterIP": IPv4 or IPv6, within the cluster's service IP range.
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            hint = "; give one address, not a network" if "/" in value else ""
            raise ValueError(f"'{value}' is not an IPv4 or IPv6 address{hint} (a free address in the "
                             "cluster's service CIDR)") from None
        if address.is_unspecified or address.is_loopback or address.is_multicast or address.is_link_local:
            raise ValueError(f"'{value}' cannot be a service cluster IP; give a free address in the cluster's "
                             "service CIDR")
        return str(address)

    @field_validator("storage_class")
    @classmethod
    def _storage_class(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 253 or not _K8S_NAME.match(value)):
            raise ValueError(f"'{value}' is not a Kubernetes storage class name (lowercase letters, digits, '-' "
                             "and '.'); see kubectl get storageclass")
        return value

    @field_validator("storage_request")
    @classmethod
    def _storage_request(cls, value: str) -> str:
        match = _QUANTITY.match(value)
        if not match or float(match.group("number")) <= 0:
            raise ValueError(f"'{value}' is not a Kubernetes storage quantity such as 500Gi")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is not None and not _SEMVER.match(value):
            raise ValueError(f"'{value}' is not an extension version such as 0.11.0 (semver)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Arc:
        # Extensions doc: "You can't set the version parameter if auto-upgrade-minor-version is set
        # to true" (the quickstart's rollback example does both; the extensions doc is the rule).
        if self.version is not None and self.auto_upgrade_minor_version:
            raise ValueError(f"version: '{self.version}' cannot be pinned while auto_upgrade_minor_version is "
                             "true; set auto_upgrade_minor_version: false to pin, or remove version")
        # Tutorial, "What is trust distribution?": a CA signs the certificates it distributes.
        if self.trust_distribution and self.tls.mode == "files" and self.tls.ca_cert is None:
            raise ValueError("tls.ca_cert: is required with trust_distribution on and tls.mode files (the CA the "
                             "nodes will trust); or set trust_distribution: false")
        if self.trust_distribution_node_selector and not self.trust_distribution:
            raise ValueError("trust_distribution_node_selector: only with trust_distribution: true")
        return self


class Status(_Model):
    """`crlib status` (day 2): when a site counts as unhealthy. It reads and never writes."""

    expiry_warning_days: int = Field(14, ge=0, le=3650, description="a sync password or client token that "
                                     "expires within this many days makes the site unhealthy")
    sync_grace: str = Field("PT10M", description="ISO 8601 duration a sync may run late: the last sync must be "
                            "no older than the schedule's last due time (its window's end) less this")

    @field_validator("sync_grace")
    @classmethod
    def _grace(cls, value: str) -> str:
        _duration(value, "status.sync_grace")
        return value

    @property
    def sync_grace_delta(self) -> dt.timedelta:
        return _duration(self.sync_grace, "status.sync_grace")


class Host(_Model):
    """Where the connected registry runs: an IoT Edge device (today) or an Arc-enabled cluster."""

    kind: Literal["iotedge", "arc"] = "iotedge"
    arc: Arc | None = None

    @model_validator(mode="after")
    def _block_matches_kind(self) -> Host:
        if self.kind == "arc" and self.arc is None:
            raise ValueError("arc: is required when host.kind is arc (cluster, service_cluster_ip, ...)")
        if self.kind != "arc" and self.arc is not None:
            raise ValueError(f"arc: only with host.kind arc, not {self.kind}; set host.kind: arc or remove host.arc")
        return self


class Site(_Model):
    site: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")
    target: Target = Target()
    subscription_id: str | None = Field(None, description="default: the sandbox's, or the credential's only one")
    resource_group: str
    location: str = Field("westus", pattern=r"^[a-z0-9]+$")
    hub: Hub
    device: Device
    registry: Registry
    images: Images = Images()
    connected_registry: ConnectedRegistry
    client_access: ClientAccess = ClientAccess()
    checks: Checks = Checks()
    secrets: Secrets = Secrets()
    records: Records = Records()
    host: Host = Host()
    status: Status = Status()

    @field_validator("subscription_id")
    @classmethod
    def _subscription(cls, value: str | None) -> str | None:
        if value is not None and not _GUID.match(value):
            raise ValueError(f"'{value}' is not a subscription id (a GUID: 8-4-4-4-12 hexadecimal digits)")
        return value

    @field_validator("resource_group")
    @classmethod
    def _resource_group(cls, value: str) -> str:
        return _resource_group_name(value)

    @model_validator(mode="before")
    @classmethod
    def _arc_defaults(cls, data: object) -> object:
        # host.arc's defaults come from elsewhere in the site: the resource group and the name.
        if not isinstance(data, dict) or not isinstance(data.get("host"), dict):
            return data
        arc = data["host"].get("arc")
        if not isinstance(arc, dict):
            return data
        arc = dict(arc)
        if arc.get("cluster_resource_group") is None and isinstance(data.get("resource_group"), str):
            arc["cluster_resource_group"] = data["resource_group"]
        registry = data.get("connected_registry")
        if arc.get("extension_name") is None and isinstance(registry, dict) and isinstance(registry.get("name"), str):
            arc["extension_name"] = registry["name"].strip().lower()
        return {**data, "host": {**data["host"], "arc": arc}}

    @model_validator(mode="after")
    def _cross_checks(self) -> Site:
        if self.secrets.store == "keyvault" and not self.secrets.vault_url and self.target.kind != "sandbox":
            raise ValueError("secrets.vault_url: is required when secrets.store is keyvault and target.kind is azure")
        if self.target.kind == "azure" and self.records.key_vault_key is None:
            raise ValueError("records.signing_key: the azure target signs its change records with a Key Vault key; "
                             "give keyvault:<key name>")
        if self.records.key_vault_key and not (self.records.vault_url or self.secrets.vault_url) \
                and self.target.kind != "sandbox":
            raise ValueError("records.vault_url: is required for a Key Vault signing key when secrets.vault_url "
                             "is not set")
        if self.checks.client_token and self.checks.client_token not in {t.name for t in self.client_access.tokens}:
            raise ValueError(f"checks.client_token: '{self.checks.client_token}' is not one of client_access.tokens")
        self._runtime_matches_modules()
        self._arc_host()
        cr = self.connected_registry
        if self.checks.pull_image.split(":")[0] not in cr.repositories:
            raise ValueError(f"checks.pull_image: '{self.checks.pull_image}' is not in connected_registry.repositories")
        if cr.mode == "ReadWrite" and self.checks.push_repository not in cr.repositories:
            raise ValueError(f"checks.push_repository: '{self.checks.push_repository}' is not in "
                             "connected_registry.repositories")
        return self


    def _arc_host(self) -> None:
        """With host.kind arc, refuse what means something on IoT Edge only.

        Microsoft's Arc docs deploy a connected registry that syncs with the cloud registry; none
        nests one under a parent, so a parent (device or connected registry) is refused. The IoT
        Edge runtime version and host OS choose the IoT Edge provisioning script: set to anything but
        their defaults, they are refused.
        """
        if self.host.kind != "arc":
            return
        for field in ("parent_device", "parent_address"):
            if getattr(self.device, field) is not None:
                raise ValueError(f"device.{field}: nested connected registries are not in Microsoft's Arc docs; "
                                 "remove it, or use host.kind iotedge")
        for field in ("gateway", "hostname", "edge_ca_cert", "edge_ca_key", "trust_bundle_cert"):
            if getattr(self.device, field) not in (None, False):
                raise ValueError(f"device.{field}: means nothing on an Arc host (it configures an IoT Edge "
                                 "gateway or child); remove it, or use host.kind iotedge")
        if self.connected_registry.parent is not None:
            raise ValueError("connected_registry.parent: nested connected registries are not in Microsoft's Arc "
                             "docs; remove it, or use host.kind iotedge")
        if self.connected_registry.sync_module_images:
            raise ValueError("connected_registry.sync_module_images: syncs IoT Edge module images for nested "
                             "devices, which an Arc host has none of; remove it, or use host.kind iotedge")
        for field in ("iotedge_version", "host_os"):
            # The default is let through, so that a dumped site (model_dump) loads again.
            if getattr(self.device, field) != Device.model_fields[field].default:
                raise ValueError(f"device.{field}: means nothing on an Arc host (it picks the IoT Edge "
                                 "provisioning script); remove it")

    def _runtime_matches_modules(self) -> None:
        runtime = self.device.iotedge_version
        wanted = IOTEDGE_MODULE_VERSIONS[runtime]
        for field in ("edge_agent", "edge_hub", "diagnostics"):
            image = getattr(self.images, field)
            tag = image.rsplit(":", 1)[1]
            if tag != wanted and not tag.startswith(wanted + "."):
                raise ValueError(f"images.{field}: '{image}' does not run with device.iotedge_version {runtime}; "
                                 f"Microsoft supports {wanted}.x modules with the IoT Edge {runtime} runtime")


# Plain words for every Field(pattern=...) above, so that a refusal never shows a regular
# expression (tests/steps/test_params.py checks that each pattern has its words).
PATTERN_WORDS = {
    r"^[a-z0-9.-]+(:\d+)?$": "is not a registry host (lowercase letters, digits, '.' and '-', then an optional "
                             ":port, such as mcr.microsoft.com)",
    r"^[a-z0-9][a-z0-9-]{0,40}$": "is not a site name (1-41 lowercase letters, digits and '-', starting with a "
                                  "letter or digit)",
    r"^[a-z0-9]+$": "is not an Azure region name (lowercase letters and digits, such as westus)",
}


def _field_of(error: ErrorDetails) -> str:
    return ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-")) or "(site)"


def _inner_model(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((found for arg in get_args(annotation) if (found := _inner_model(arg)) is not None), None)


def _model_at(parts: list[str]) -> type[BaseModel] | None:
    """The model a dotted field's parts lead to from Site (list indexes skipped), if any."""
    model: type[BaseModel] | None = Site
    for part in parts:
        if part.isdigit() or model is None:
            continue
        field = model.model_fields.get(part)
        model = _inner_model(field.annotation) if field is not None else None
    return model


def _keys(model: type[BaseModel]) -> str:
    names = list(model.model_fields)
    return ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")


def _plain(error: ErrorDetails, field: str) -> str:
    """pydantic's message in plain words: what was expected, never a regex or a class name."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    parts = [] if field == "(site)" else field.split(".")
    shown = repr(value) if not isinstance(value, dict | list) else "a " + type(value).__name__
    if kind == "extra_forbidden":
        parent = _model_at(parts[:-1])
        names = list(parent.model_fields) if parent is not None else []
        close = difflib.get_close_matches(parts[-1], names, n=1, cutoff=0.6) if parts else []
        if close:
            return f"unknown parameter (did you mean '{close[0]}'?)"
        return f"unknown parameter ({'.'.join(parts[:-1]) or 'a site'} takes {', '.join(names)})" if names \
            else "unknown parameter"
    if kind == "missing":
        return "Field required"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        model = _model_at(parts)
        return f"expected a mapping with {_keys(model)}, not {shown}" if model is not None else \
            f"expected a mapping, not {shown}"
    if kind == "string_pattern_mismatch":
        return f"{shown} {PATTERN_WORDS.get(str(ctx.get('pattern')), 'does not have the expected form')}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}, not {shown}"
    plain = {"string_type": "expected a valid string", "list_type": "expected a list", "bool_type": "expected true or false",
             "bool_parsing": "expected true or false", "int_type": "expected a whole number",
             "int_parsing": "expected a whole number", "int_from_float": "expected a whole number",
             "float_type": "expected a number", "float_parsing": "expected a number"}
    if kind in plain:
        return f"{plain[kind]}, not {shown}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {"greater_than_equal": ("at least", "ge"), "greater_than": ("more than", "gt"),
                 "less_than_equal": ("at most", "le"), "less_than": ("less than", "lt")}[kind]
        return f"must be {bound[0]} {ctx.get(bound[1])}, not {shown}"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"takes at most {ctx.get('max_length')} item(s)"
    return error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ").replace(
        "Input should be", "should be")


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    """Every finding as (field, message), in pydantic's order; a "required" finding that an unknown
    key at the same level explains (a typo) is left out: that key's finding names it."""
    found: list[tuple[str, str]] = []
    for error in exc.errors():
        field = _field_of(error)
        message = _plain(error, field)
        # Validators that look across fields name the one at fault: "field: message", relative to
        # where the validator sits ("(site)" for the whole site).
        named = re.match(r"^([a-z_]+(?:\.[a-z_]+)*): (.*)$", message, re.S)
        if named and error["type"] == "value_error":
            field = named.group(1) if field == "(site)" else f"{field}.{named.group(1)}"
            message = named.group(2)
        found.append((field, message))
    meant = set()
    for field, message in found:
        typo = re.match(r"unknown parameter \(did you mean '(\w+)'\?\)", message)
        if typo:
            meant.add(".".join([*field.split(".")[:-1], typo.group(1)]))
    return [(f, m) for f, m in found if not (m == "Field required" and f in meant)]


def load(data: dict, *, where: Callable[[str], str | None] | None = None) -> Site:
    """Validate a parameter mapping; raise ParameterError listing every bad field (the first one
    is its `field`). `where` names the place of a field ("file:line", "-p key"), when known."""
    try:
        return Site.model_validate(data)
    except ValidationError as exc:
        problems = [((where(field) if where else None), field, message) for field, message in _problems(exc)]
        raise ParameterError(problems[0][1], problems[0][2], problems=problems) from None


# Secret shapes a parameter file must never hold, in values or comments (issue 15). Each is
# specific enough not to match a reference, a name or a path:
SECRET_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    # Azure SAS tokens: a service SAS's signature, and IoT Hub's "SharedAccessSignature sr=...".
    ("a SAS token", re.compile(r"SharedAccessSignature\s+sr=", re.I)),
    ("a SAS signature (sig=)", re.compile(r"(?<![A-Za-z0-9_])sig=[A-Za-z0-9%+/=_-]{16,}")),
    # A JWT (RFC 7519 compact form): base64url header '{"...' (eyJ), payload, signature.
    ("a JWT", re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")),
    ("a SharedAccessKey", re.compile(r"SharedAccessKey\s*=\s*[^\s;'\"]", re.I)),
    ("an AccountKey", re.compile(r"AccountKey\s*=\s*[^\s;'\"]", re.I)),
    ("a SyncTokenPassword", re.compile(r"SyncTokenPassword\s*=\s*[^\s;'\"]", re.I)),
    ("a PEM block", re.compile(r"-----BEGIN [A-Z0-9 ]+-----")),
    # ACR's identifiable passwords (Microsoft security-utilities, AzureContainerRegistryIdentifiableKey,
    # SEC101/176): 42 base64 characters, the signature "+ACR", one of A-D, 5 base64 characters.
    ("an ACR password", re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{42}\+ACR[A-D][A-Za-z0-9+/]{5}(?![A-Za-z0-9+/])")),
    # "password: <something>" that is not a secret reference (local:..., keyvault:...).
    ("a password", re.compile(r"password\s*[:=]\s*['\"]?(?!(?:local|keyvault):)[^\s'\"#]{6,}", re.I)),
)


def refuse_secrets(text: str, source: str) -> None:
    """Refuse a parameter file that holds anything secret-shaped, comments included, naming the line
    and the kind of secret, never the value."""
    for number, line in enumerate(text.splitlines(), start=1):
        for kind, shape in SECRET_SHAPES:
            if shape.search(line):
                raise ParameterError(f"{source}:{number}", f"{kind} looks like a secret; parameter files hold "
                                                           "references only")


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """The line (1-based) of every key and list item of a YAML document, by its path of keys."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                lines[(*path, str(key.value))] = key.start_mark.line + 1
                walk(value, (*path, str(key.value)))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[(*path, str(index))] = item.start_mark.line + 1
                walk(item, (*path, str(index)))

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return lines


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise ParameterError(str(path), "no such parameter file (crlib notebooks copy DIR writes examples to "
                                        "start from)") from None
    except IsADirectoryError:
        raise ParameterError(str(path), "is a folder, not a parameter file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError(str(path), f"cannot be read ({getattr(exc, 'strerror', None) or exc})") from None


def read_document(path: Path) -> tuple[Any, dict[tuple[str, ...], int]]:
    """A parameter file or inventory: refused if it holds anything secret-shaped (comments too), then
    parsed; returns the document and the line of every key. Bad YAML is refused naming file:line."""
    text = _read(path)
    refuse_secrets(text, str(path))
    try:
        return yaml.safe_load(text) or {}, _key_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        raise ParameterError(at, f"not valid YAML: {what}" + (f" ({context})" if context else "")) from None


def load_file(path: Path | str, overrides: dict | None = None, *, flag: str = "-p") -> Site:
    """A parameter file, with overrides given as dotted keys: {"connected_registry.mode": "ReadWrite"}.

    The raw text is checked for secrets first (comments too): a file holding one is refused. Every
    refusal names the file and line (or the override, as `flag key`) of each field at fault."""
    path = Path(path)
    data, lines = read_document(path)
    if not isinstance(data, dict):
        raise ParameterError(str(path), f"holds {type(data).__name__}, not a mapping of parameters "
                                        "(site: ..., resource_group: ..., ...)")
    keys = {dotted: tuple(dotted.split(".")) for dotted in overrides or {}}
    for dotted, value in (overrides or {}).items():
        target = data
        *parents, last = dotted.split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ParameterError(dotted, "overrides a value that is not a mapping", where=f"{flag} {dotted}")
        target[last] = value

    def where(field: str) -> str | None:
        parts = tuple(field.split("."))
        for dotted, key in sorted(keys.items(), key=lambda item: -len(item[1])):
            if parts[:len(key)] == key:
                return f"{flag} {dotted}"
        known = next((lines[parts[:n]] for n in range(len(parts), 0, -1) if parts[:n] in lines), None)
        return f"{path}:{known}" if known else str(path)

    return load(data, where=where)
