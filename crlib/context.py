"""What every step receives: the site's parameters, its clients, its secret store, and the read
cache through which later steps reuse what earlier ones read in the same process."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from .errors import ParameterError
from .params import Site
from .profiles import Clients, TargetProfile, profile_for
from .secrets import KeyVaultSecretStore, LocalSecretStore, SecretStore
from .signing import key_vault_options

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


@dataclass
class RunContext:
    site: Site
    profile: TargetProfile
    clients: Clients
    secrets: SecretStore
    # What crlib.azure.readers read in this process, by key ("registry", "hub_access", ...): the
    # resources that only crlib's own writes change during a run. Readers return it; writers replace it.
    cache: dict[str, object] = field(default_factory=dict)

    def secret_name(self, purpose: str) -> str:
        """Secret names are per site, e.g. crlib-lab1-sync-password."""
        return f"crlib-{self.site.site}-{purpose}"

    @property
    def secrets_location(self) -> str:
        """Where the site's secrets are kept, as messages and the host scripts name it."""
        if self.site.secrets.store == "keyvault":
            return f"Key Vault {self.site.secrets.vault_url or self.profile.default_vault_url}"
        directory = getattr(self.secrets, "directory", None)  # the store this context was given
        return str(directory or local_store_dir(self.site, self.profile))

    def secret_reference(self, purpose: str) -> str:
        """What records carry instead of the secret's value."""
        return f"{self.site.secrets.store}:{self.secret_name(purpose)}"

    def get_secret(self, purpose: str) -> str | None:
        return self.secrets.get(self.secret_name(purpose))

    def keep_secret(self, purpose: str, value: str) -> str:
        """Store a secret unless the store already holds that value; return its reference."""
        if self.get_secret(purpose) == value:
            return self.secret_reference(purpose)
        return self.set_secret(purpose, value)

    def set_secret(self, purpose: str, value: str) -> str:
        """Store a secret; return the reference that records may carry instead of the value."""
        name = self.secret_name(purpose)
        self.secrets.set(name, value)
        return f"{self.site.secrets.store}:{name}"


def secret_store_for(site: Site, profile: TargetProfile) -> SecretStore:
    if site.secrets.store == "keyvault":
        options = key_vault_options(profile)
        vault_url = site.secrets.vault_url or profile.default_vault_url
        if not vault_url:  # Site requires one on Azure; the sandbox's status names its own
            raise ParameterError("secrets.vault_url", f"is required: target '{profile.kind}' supplies no Key Vault")
        credential = cast("TokenCredential", profile.credential)  # TargetProfile.credential is typed object
        return KeyVaultSecretStore(vault_url, credential, **options)
    return LocalSecretStore(local_store_dir(site, profile))


# Where local secret stores go when the parameters name no folder: one folder per target inside.
DEFAULT_STORE_ROOT = "~/.local/state/crlib/secrets"


def local_store_dir(site: Site, profile: TargetProfile) -> Path:
    """secrets.local_dir, or by default a folder named after the target (`<kind>-<tenant>-<subscription>`)."""
    if site.secrets.local_dir:
        return Path(site.secrets.local_dir).expanduser()
    return Path(DEFAULT_STORE_ROOT).expanduser() / profile.store_scope()


def open_context(site: Site, *, secrets: SecretStore | None = None) -> RunContext:
    profile = profile_for(site)
    return RunContext(site, profile, Clients(profile), secrets or secret_store_for(site, profile))
