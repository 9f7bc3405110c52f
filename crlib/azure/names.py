"""The table of names: every secret, token, scope map and password slot crlib names, in one place.

Naming follows Azure CLI 2.91 (`az acr connected-registry create`): a connected registry's sync
token and sync scope map are named after it. crlib's own module pull token adds `-pull`, which no
connected registry name can contain (letters and digits only), so the two never collide.
"""

from __future__ import annotations

# Secret store purposes; the store's entry is `crlib-<site>-<purpose>` (RunContext.secret_name).
HUB_SECRET = "hub-connection-string"
DEVICE_SECRET = "device-connection-string"
SYNC_PASSWORD_SECRET = "sync-password"
SYNC_PASSWORD_CREATED_SECRET = "sync-password-created"
CONNECTION_STRING_SECRET = "connected-registry-connection-string"
PULL_SECRET = "module-pull-password"
# The sha256 of the protected settings crlib last sent to the Arc extension: ARM never returns
# them, so this is how a re-run knows they are unchanged (kept in the store, never in a record).
ARC_PROTECTED_DIGEST_SECRET = "arc-extension-protected-sha256"
SYNC_SECRETS = (SYNC_PASSWORD_SECRET, SYNC_PASSWORD_CREATED_SECRET, CONNECTION_STRING_SECRET)

# The token password slot crlib generates (az acr token credential generate --password1).
PASSWORD_SLOT = "password1"

# IoT Hub's shared access policy with RegistryWrite + ServiceConnect (+ DeviceConnect).
HUB_OWNER_POLICY = "iothubowner"

GATEWAY_ACTIONS = ("config/read", "config/write", "message/read", "message/write")
REPOSITORY_ACTIONS = {
    "ReadOnly": ("content/read", "metadata/read"),
    "ReadWrite": ("content/read", "content/write", "content/delete", "metadata/read", "metadata/write"),
}


def client_token_secret(token_name: str) -> str:
    return f"client-token-{token_name}"


def sync_token_name(connected_registry: str) -> str:
    return connected_registry


def sync_scope_map_name(connected_registry: str) -> str:
    return connected_registry


def pull_token_name(connected_registry: str) -> str:
    return f"{connected_registry}-pull"


def sync_actions(name: str, mode: str, repositories: list[str]) -> list[str]:
    """The CLI's sync scope map actions: gateway actions for the (lowercased) name, then each
    repository's actions for the mode."""
    gateway = [f"gateway/{name.lower()}/{action}" for action in GATEWAY_ACTIONS]
    return gateway + [f"repositories/{repo.lower()}/{action}"
                      for repo in repositories for action in REPOSITORY_ACTIONS[mode]]
