"""The sandbox vault's secrets, kept as store documents (`keyvault/secrets/<name>`, every version in
one), with the vault's soft delete and version bookkeeping shared with keys (objects.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .objects import Collection

if TYPE_CHECKING:
    from ..runtime import Sandbox

PORT_SETTING = "key_vault_port"
SECRETS = Collection(kind="secret", not_found_code="SecretNotFound")


def vault_url(sandbox: Sandbox) -> str | None:
    """The vault's URL, without the trailing slash; None before the vault's port is known."""
    port = sandbox.settings.extra.get(PORT_SETTING)
    return f"https://127.0.0.1:{port}" if port else None


def set_secret(sandbox: Sandbox, name: str, value: str, *, content_type: str | None = None,
               tags: dict | None = None, enabled: bool = True) -> tuple[dict, dict]:
    """Add a new version (the secret's first, or a later one); return the document and the version."""
    SECRETS.check_name(name)
    SECRETS.refuse_deleted_name(sandbox, name)
    return SECRETS.add_version(sandbox, name, {"value": value, "contentType": content_type, "tags": tags,
                                               "enabled": enabled})
