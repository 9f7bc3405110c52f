"""Target profiles and the one client factory every step uses.

A profile says where Azure is (the ARM endpoint, the credential, the CA to trust) and how the
physical device gets provisioned. Steps only ever see `Clients` and `DeviceProvisioner`: they
never know whether they talk to Azure or to the sandbox. Host names of registries, data
endpoints, hubs and gateways always come from service responses, never from these settings.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import retries
from .errors import ParameterError, PreconditionFailed, SignInFailed
from .extras import sandbox_control
from .params import Site

if TYPE_CHECKING:
    import requests
    from azure.core.credentials import TokenCredential
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient
    from azure.mgmt.iothub import IotHubClient

# Cloud endpoints (not resource host names): where ARM and Entra ID live for each cloud.
CLOUDS = {
    "AzureCloud": ("https://management.azure.com", "login.microsoftonline.com"),
    "AzureChinaCloud": ("https://management.chinacloudapi.cn", "login.chinacloudapi.cn"),
    "AzureUSGovernment": ("https://management.usgovcloudapi.net", "login.microsoftonline.us"),
}

# Public registries the sandbox's image source stands in for.
PUBLIC_REGISTRIES = ("mcr.microsoft.com", "docker.io", "registry-1.docker.io", "registry.hub.docker.com")


@dataclass(frozen=True)
class DeviceAccess:
    """Where the checks reach the device's API proxy (host[:port]) and the CA file they trust it
    with (None: the profile's). The operator knows both because they provisioned the host."""

    address: str
    ca_cert: str | None
    source: str  # "parameters", or the profile that filled them in ("sandbox")


class DeviceProvisioner(Protocol):
    """How the edge device learns its connection string (`iotedge config mp` + `apply`).
    Returns what it did, or None when it can do nothing itself (real hardware)."""

    def provision(self, connection_string: str, *, parent_hostname: str | None = None) -> str | None: ...


class ManualProvisioner:
    """Real hardware: an engineer runs the generated host provisioning script; crlib cannot."""

    def provision(self, connection_string: str, *, parent_hostname: str | None = None) -> str | None:
        return None


class SandboxProvisioner:
    """The sandbox's simulated device, provisioned through its admin API."""

    def __init__(self, status: dict):
        self._status = status

    def provision(self, connection_string: str, *, parent_hostname: str | None = None) -> str:
        sandbox_control().provision_device(self._status, connection_string, parent_hostname=parent_hostname)
        return "provisioned the sandbox's simulated device"


@dataclass
class TargetProfile:
    kind: str
    arm_endpoint: str
    credential: TokenCredential
    subscription_id: str
    tenant_id: str | None
    connection_verify: str | bool  # a CA bundle path, or True for the system store
    provisioner: DeviceProvisioner
    # Key Vault client options and a vault to use when the parameters name none.
    key_vault_options: dict = field(default_factory=dict)
    default_vault_url: str | None = None
    extra: dict = field(default_factory=dict, repr=False)  # the sandbox status holds its client secret
    # Where this machine reaches public registries (an image source's host name -> host[:port]).
    # Empty for Azure; the sandbox's image source stands in for MCR and Docker Hub.
    registry_hosts: dict[str, str] = field(default_factory=dict)

    @property
    def credential_scopes(self) -> list[str]:
        return [f"{self.arm_endpoint}/.default"]

    def store_scope(self) -> str:
        """The target's identity, which the default secret store folder is named after: the sandbox's
        own tenant (new for every sandbox state folder), or Azure's tenant and subscription. One site
        name on two targets then never shares a store."""
        tenant = self.tenant_id
        if tenant is None:
            with sign_in_errors(self.kind):
                token = self.credential.get_token(*self.credential_scopes).token
            tenant = _token_claims(token).get("tid") or "unknown-tenant"
        return f"{self.kind}-{tenant}-{self.subscription_id}"

    def now(self) -> dt.datetime:
        """The time by the clock the service keeps, in UTC: Azure's is the wall clock; the sandbox's is
        its simulated clock (faster than the wall clock with --clock-speed), which its devices' syncs,
        activity times and token expiries follow. Compare service timestamps with this."""
        if self.kind != "sandbox":
            return dt.datetime.now(dt.UTC)
        return sandbox_control("target.kind sandbox").clock_now(self.extra["sandbox"])

    def device_access(self, site: Site) -> DeviceAccess | None:
        """The parameters' device.address and device.ca_cert; without an address, what the sandbox
        knows of its simulated device (None on Azure: only the operator knows a real device).
        A device the sandbox has not provisioned yet raises PreconditionFailed."""
        if site.device.address:
            return DeviceAccess(site.device.address, site.device.ca_cert, "parameters")
        if site.host.kind == "arc":
            return self._sandbox_forward(site)
        shown = self._sandbox_device(site.device.id, site.hub.name, "device.id")
        if shown is None:
            return None
        return DeviceAccess(shown["address"], site.device.ca_cert or shown.get("ca_cert"), "sandbox")

    def parent_address(self, site: Site) -> str | None:
        """A nested device's parent as the device reaches it: device.parent_address, or the
        sandbox's simulated parent device (None on Azure without the parameter)."""
        if site.device.parent_address:
            return site.device.parent_address
        if site.device.parent_device is None:
            return None
        shown = self._sandbox_device(site.device.parent_device, site.hub.name, "device.parent_device")
        return shown["address"] if shown else None

    def _sandbox_forward(self, site: Site) -> DeviceAccess | None:
        """An Arc host: the in-cluster service as `kubectl port-forward svc/connected-registry`
        exposes it to this machine (the sandbox's forward), with the CA that signs its certificate."""
        arc = site.host.arc
        if self.kind != "sandbox" or arc is None:
            return None
        import urllib.error

        control = sandbox_control("target.kind sandbox")
        try:
            shown = control.cluster_forward(self.extra["sandbox"], arc.cluster, arc.extension_name,
                                            resource_group=arc.cluster_resource_group)
        except urllib.error.HTTPError as exc:
            raise PreconditionFailed("host.arc.extension_name", f"the sandbox cannot forward extension "
                                                                f"'{arc.extension_name}' on cluster '{arc.cluster}' "
                                                                f"yet ({exc.code}); run the deploy step first") from exc
        return DeviceAccess(shown["address"], site.device.ca_cert or shown.get("ca_cert"), "sandbox")

    def _sandbox_device(self, device_id: str, hub: str, field_name: str) -> dict | None:
        if self.kind != "sandbox":
            return None
        control = sandbox_control("target.kind sandbox")
        try:
            shown = control.device_show(self.extra["sandbox"], device_id, hub=hub)
        except control.DeviceNotFound as exc:
            raise PreconditionFailed(field_name, f"the sandbox has no device '{device_id}' yet; run the provision "
                                                 "step first") from exc
        if not shown.get("address"):
            raise PreconditionFailed(field_name, f"the sandbox's device '{device_id}' has no address yet")
        return shown


def sandbox_profile(site: Site) -> TargetProfile:
    from azure.identity import ClientSecretCredential

    control = sandbox_control("target.kind sandbox")  # the sandbox extra, or one clear line
    try:
        status = control.read_status(site.target.sandbox_state_dir)
    except control.SandboxNotRunning as exc:
        raise PreconditionFailed("target.sandbox", f"{exc}; start it with `crlib sandbox start`") from exc
    credential = ClientSecretCredential(status["tenant_id"], status["client_id"], status["client_secret"],
                                        authority=status["authority"], disable_instance_discovery=True,
                                        connection_verify=status["ca_bundle"])
    # The sandbox's vault is 127.0.0.1:<port>, not a *.vault.azure.net host: the SDK's check that
    # the challenge's resource matches the vault's domain cannot pass there.
    return TargetProfile("sandbox", status["arm_endpoint"], credential,
                         site.subscription_id or status["subscription_id"], status["tenant_id"],
                         status["ca_bundle"], SandboxProvisioner(status),
                         key_vault_options={"verify_challenge_resource": False},
                         default_vault_url=status.get("key_vault_url"), extra={"sandbox": status},
                         registry_hosts=dict.fromkeys(PUBLIC_REGISTRIES, status["image_source"]))


# The common name of the sandbox's CA, as subject and issuer (crlib/sandbox/tls.py CA_NAME).
SANDBOX_CA_NAME = "crlib sandbox CA"
# Where requests (and the Azure SDK through it) and OpenSSL read a CA bundle from the environment.
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _holds_sandbox_ca(path: Path) -> bool:
    """Whether the CA bundle file (or a directory of them) at `path` holds a certificate issued to or
    by the sandbox's CA. Unreadable files and blocks that do not parse count as not holding it."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    files = [f for f in path.iterdir() if f.is_file()] if path.is_dir() else [path]
    for file in files:
        try:
            data = file.read_bytes()
        except OSError:
            continue
        for block in _PEM_CERT.findall(data):
            try:
                with warnings.catch_warnings():  # some public roots have odd serials; not our business
                    warnings.simplefilter("ignore")
                    cert = x509.load_pem_x509_certificate(block)
            except ValueError:
                continue
            names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME) + \
                cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
            if any(a.value == SANDBOX_CA_NAME for a in names):
                return True
    return False


def refuse_sandbox_ca(environ: Mapping[str, str] | None = None) -> None:
    """Raise PreconditionFailed when REQUESTS_CA_BUNDLE or SSL_CERT_FILE holds the sandbox's CA: with
    it, requests to Azure would trust a CA any local sandbox key can sign with."""
    environ = os.environ if environ is None else environ
    for variable in CA_BUNDLE_VARIABLES:
        value = environ.get(variable)
        if value and _holds_sandbox_ca(Path(value)):
            raise PreconditionFailed(variable, f"{value} holds the crlib sandbox CA, which the azure target "
                                               f"must not trust; unset {variable} for azure runs")


SIGN_IN_HINT = ("sign in with `az login`, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET "
                "(or use a managed identity)")


@contextlib.contextmanager
def sign_in_errors(kind: str) -> Iterator[None]:
    """A credential that cannot get a token, as SignInFailed in one line naming what to run or set
    (instead of azure-identity's account of every credential it tried)."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import CredentialUnavailableError

    quiet = logging.getLogger("azure.identity")  # it logs every credential it tried, as a warning
    level = quiet.level
    quiet.setLevel(max(level, logging.ERROR))
    try:
        yield
    except ClientAuthenticationError as exc:
        text = str(exc.message if getattr(exc, "message", None) else exc)
        if kind == "sandbox":
            raise SignInFailed("the sandbox refused crlib's sign-in; is it the one the parameters name "
                               "(target.sandbox_state_dir)? crlib sandbox status shows it") from None
        if isinstance(exc, CredentialUnavailableError) or "failed to retrieve a token from the included" in text:
            raise SignInFailed(f"no Azure credentials: {SIGN_IN_HINT}") from None
        first = (text.strip().splitlines() or [type(exc).__name__])[0]
        raise SignInFailed(f"Azure refused the sign-in ({first}); sign in again with `az login`, or check "
                           "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET") from None
    finally:
        quiet.setLevel(level)


def azure_profile(site: Site) -> TargetProfile:
    from azure.identity import DefaultAzureCredential

    if not site.subscription_id:
        raise ParameterError("subscription_id", "is required when target.kind is azure")
    refuse_sandbox_ca()
    arm, authority = CLOUDS[site.target.cloud]
    credential = DefaultAzureCredential(authority=authority)
    return TargetProfile("azure", arm, credential, site.subscription_id, None, True, ManualProvisioner())


def _token_claims(token: str) -> dict:
    """An access token's claims, read without checking its signature (only to name a folder)."""
    import base64
    import json

    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


def profile_for(site: Site) -> TargetProfile:
    return sandbox_profile(site) if site.target.kind == "sandbox" else azure_profile(site)


def user_agent() -> str:
    """What crlib's own requests-based clients (plain sessions, python-dxf) send as User-Agent, so a
    registry's or proxy's log tells crlib apart (the Azure SDKs send their own `azsdk-python-...`)."""
    import requests

    from . import __version__

    return f"crlib/{__version__} {requests.utils.default_user_agent()}"


def profile_session() -> requests.Session:
    """A requests session that takes proxies from the environment but keeps its own `verify`.

    With `trust_env` (as requests, azure-core and msrest run by default) requests reads HTTPS_PROXY,
    NO_PROXY and friends per request and on each redirect. It would also let REQUESTS_CA_BUNDLE or
    CURL_CA_BUNDLE replace the session's `verify` whenever a request brings none of its own. So the
    session's `verify` is passed as the request's, which is what azure-core (`connection_verify`) and
    python-dxf (`tlsverify`) do: a CA bundle the profile names always wins, and only the system store
    (`True`, real Azure) gives way to the environment's bundle, as it does in every Azure SDK.
    """
    import requests

    class ProfileSession(requests.Session):
        def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                       cert: Any) -> Any:
            return super().merge_environment_settings(url, proxies, stream,
                                                      self.verify if verify is None else verify, cert)

    return ProfileSession()


class Clients:
    """Every Azure client a step needs, built one way for every target."""

    def __init__(self, profile: TargetProfile):
        self.profile = profile
        self._acr: ContainerRegistryManagementClient | None = None
        self._hubs: IotHubClient | None = None
        self._extensions: Any = None
        self._clusters: Any = None

    @property
    def arm_pacer(self) -> Any:
        """The process's ARM budget for this endpoint and subscription (crlib/azure/pacing.py)."""
        from .azure.pacing import pacer_for

        return pacer_for(self.profile.arm_endpoint, self.profile.subscription_id or "")

    def _common(self) -> dict:
        from .azure.pacing import pacing_policy

        return {"base_url": self.profile.arm_endpoint, "credential_scopes": self.profile.credential_scopes,
                "connection_verify": self.profile.connection_verify, **retries.azure_core_options(),
                "custom_hook_policy": pacing_policy(self.arm_pacer)}

    @property
    def acr(self) -> ContainerRegistryManagementClient:
        if self._acr is None:
            from azure.mgmt.containerregistry import ContainerRegistryManagementClient

            self._acr = ContainerRegistryManagementClient(self.profile.credential, self.profile.subscription_id,
                                                          **self._common())
        return self._acr

    @property
    def hubs(self) -> IotHubClient:
        if self._hubs is None:
            from azure.mgmt.iothub import IotHubClient

            self._hubs = IotHubClient(self.profile.credential, self.profile.subscription_id, **self._common())
        return self._hubs

    @property
    def extensions(self) -> Any:
        """Cluster extensions (azure-mgmt-kubernetesconfiguration-extensions, api 2025-03-01)."""
        if self._extensions is None:
            from azure.mgmt.kubernetesconfiguration.extensions import KubernetesConfigurationExtensionsMgmtClient

            self._extensions = KubernetesConfigurationExtensionsMgmtClient(
                self.profile.credential, self.profile.subscription_id, **self._common())
        return self._extensions

    @property
    def connected_clusters(self) -> Any:
        """Arc-enabled Kubernetes clusters (azure-mgmt-hybridkubernetes 2.x)."""
        if self._clusters is None:
            from azure.mgmt.hybridkubernetes import ConnectedKubernetesClient

            self._clusters = ConnectedKubernetesClient(self.profile.credential, self.profile.subscription_id,
                                                       **self._common())
        return self._clusters

    def _verify(self, manager):
        # azure-iot-hub is msrest-based: the CA and the retry policy go in its documented settings,
        # whichever way the manager signs in (SAS from a connection string, or Entra ID tokens).
        manager.protocol.config.connection.verify = self.profile.connection_verify
        retries.configure_msrest(manager.protocol._client)
        return manager

    def _hub_manager(self, cls, hub):
        """`cls` (an azure-iot-hub manager) for a `crlib.azure.readers.HubAccess`: its owner connection
        string, or, for a hub with local auth disabled, the profile's credential (Entra ID tokens for
        https://iothubs.azure.net, which the SDK asks for)."""
        if hub.connection_string is None:
            return self._verify(cls.from_token_credential(hub.host_name, self.profile.credential))
        return self._verify(cls.from_connection_string(hub.connection_string))

    def registry_manager(self, hub):
        """An IoTHubRegistryManager for the hub a `HubAccess` describes."""
        from azure.iot.hub import IoTHubRegistryManager

        return self._hub_manager(IoTHubRegistryManager, hub)

    def configuration_manager(self, hub):
        """An IoTHubConfigurationManager for the hub a `HubAccess` describes."""
        from azure.iot.hub import IoTHubConfigurationManager

        return self._hub_manager(IoTHubConfigurationManager, hub)

    def oci(self, host: str, repository: str, *, username: str | None = None, password: str | None = None,
            ca_cert: str | None = None):
        """A python-dxf client for one repository, signing in with a token's name and password.
        `ca_cert` replaces the profile's CA (a device's own IoT Edge CA)."""
        agent = user_agent()

        def authenticate(dxf, response):
            dxf.authenticate(username, password, response=response, user_agent=agent)

        return retries.retrying_dxf(agent)(host, repository, auth=authenticate,
                                           tlsverify=ca_cert or self.profile.connection_verify, timeout=60)

    def http_session(self):
        """A requests session for the few calls no SDK covers: the profile's CA, crlib's retries, and
        the environment's proxies (HTTPS_PROXY, NO_PROXY), as the Azure SDKs take them."""
        session = retries.mount(profile_session())
        session.verify = self.profile.connection_verify
        session.headers["User-Agent"] = user_agent()
        return session

    def arm_session(self):
        """Plain ARM calls for what no SDK here covers (resource groups): a session with a token."""
        from .azure.pacing import pace_session

        session = pace_session(self.http_session(), self.arm_pacer)
        token = self.profile.credential.get_token(*self.profile.credential_scopes).token
        session.headers["Authorization"] = f"Bearer {token}"
        return session
