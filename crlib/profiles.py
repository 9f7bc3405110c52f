"""Target profiles and the one client factory every step uses.

A profile says where Azure is (the ARM endpoint, the credential, the CA to trust) and how the
physical device gets provisioned. Steps only ever see `Clients` and `DeviceProvisioner`: they
never know whether they talk to Azure or to the sandbox. Host names of registries, data
endpoints, hubs and gateways always come from service responses, never from these settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from . import retries
from .errors import ParameterError, PreconditionFailed
from .extras import sandbox_control
from .params import Site

if TYPE_CHECKING:
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


def azure_profile(site: Site) -> TargetProfile:
    from azure.identity import DefaultAzureCredential

    if not site.subscription_id:
        raise ParameterError("subscription_id", "is required when target.kind is azure")
    arm, authority = CLOUDS[site.target.cloud]
    credential = DefaultAzureCredential(authority=authority)
    return TargetProfile("azure", arm, credential, site.subscription_id, None, True, ManualProvisioner())


def profile_for(site: Site) -> TargetProfile:
    return sandbox_profile(site) if site.target.kind == "sandbox" else azure_profile(site)


class Clients:
    """Every Azure client a step needs, built one way for every target."""

    def __init__(self, profile: TargetProfile):
        self.profile = profile
        self._acr: ContainerRegistryManagementClient | None = None
        self._hubs: IotHubClient | None = None

    def _common(self) -> dict:
        return {"base_url": self.profile.arm_endpoint, "credential_scopes": self.profile.credential_scopes,
                "connection_verify": self.profile.connection_verify, **retries.azure_core_options()}

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

    def _verify(self, manager):
        # azure-iot-hub is msrest-based: the CA and the retry policy go in its documented settings.
        manager.protocol.config.connection.verify = self.profile.connection_verify
        retries.configure_msrest(manager.protocol._client)
        return manager

    def registry_manager(self, connection_string: str):
        from azure.iot.hub import IoTHubRegistryManager

        return self._verify(IoTHubRegistryManager.from_connection_string(connection_string))

    def configuration_manager(self, connection_string: str):
        from azure.iot.hub import IoTHubConfigurationManager

        return self._verify(IoTHubConfigurationManager.from_connection_string(connection_string))

    def oci(self, host: str, repository: str, *, username: str | None = None, password: str | None = None):
        """A python-dxf client for one repository, signing in with a token's name and password."""
        def authenticate(dxf, response):
            dxf.authenticate(username, password, response=response)

        return retries.retrying_dxf()(host, repository, auth=authenticate, tlsverify=self.profile.connection_verify,
                                      timeout=60)

    def http_session(self):
        """A requests session for the few calls no SDK covers: the profile's CA, crlib's retries, and
        no proxy or CA settings from the environment (they would replace the CA per request)."""
        import requests

        session = retries.mount(requests.Session())
        session.trust_env = False
        session.verify = self.profile.connection_verify
        return session

    def arm_session(self):
        """Plain ARM calls for what no SDK here covers (resource groups): a session with a token."""
        session = self.http_session()
        token = self.profile.credential.get_token(*self.profile.credential_scopes).token
        session.headers["Authorization"] = f"Bearer {token}"
        return session
