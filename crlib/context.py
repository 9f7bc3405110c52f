"""What every step receives: the site's parameters, its clients, its secret store, and what
earlier steps found out (host names, ids), so that nothing downstream is hand-typed."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import retries
from .params import Site
from .profiles import Clients, TargetProfile, profile_for
from .secrets import KeyVaultSecretStore, LocalSecretStore, SecretStore


@dataclass
class RunContext:
    site: Site
    profile: TargetProfile
    clients: Clients
    secrets: SecretStore
    # Outputs of earlier steps, by step: e.g. state["registry"]["login_server"].
    state: dict[str, dict] = field(default_factory=dict)

    def secret_name(self, purpose: str) -> str:
        """Secret names are per site, e.g. crlib-lab1-sync-password."""
        return f"crlib-{self.site.site}-{purpose}"

    def secret_reference(self, purpose: str) -> str:
        """What records carry instead of the secret's value."""
        return f"{self.site.secrets.store}:{self.secret_name(purpose)}"

    def get_secret(self, purpose: str) -> str | None:
        return self.secrets.get(self.secret_name(purpose))

    def set_secret(self, purpose: str, value: str) -> str:
        """Store a secret; return the reference that records may carry instead of the value."""
        name = self.secret_name(purpose)
        self.secrets.set(name, value)
        return f"{self.site.secrets.store}:{name}"


def secret_store_for(site: Site, profile: TargetProfile) -> SecretStore:
    if site.secrets.store == "keyvault":
        options = {"connection_verify": profile.connection_verify, **retries.azure_core_options()}
        options |= profile.key_vault_options
        vault_url = site.secrets.vault_url or profile.default_vault_url
        return KeyVaultSecretStore(vault_url, profile.credential, **options)
    return LocalSecretStore(site.secrets.local_dir)


def open_context(site: Site, *, secrets: SecretStore | None = None) -> RunContext:
    profile = profile_for(site)
    return RunContext(site, profile, Clients(profile), secrets or secret_store_for(site, profile))
