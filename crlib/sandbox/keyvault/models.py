"""The sandbox vault's secrets, kept as store documents.

One document per secret name (`keyvault/secrets/<name>`) holds every version; deleting a secret
moves that document to `keyvault/deletedsecrets/<name>`, where it stays until purged, as in a
vault with soft-delete on. Names are case-insensitive, as in Key Vault.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import TYPE_CHECKING

from ..core.errors import SandboxError, not_found

if TYPE_CHECKING:
    from ..runtime import Sandbox

PORT_SETTING = "key_vault_port"
SECRET_TYPE = "keyvault.secret"
DELETED_TYPE = "keyvault.deletedsecret"
RECOVERY_LEVEL = "Recoverable+Purgeable"
RECOVERABLE_DAYS = 90
DELETED_BUT_RECOVERABLE = "ObjectIsDeletedButRecoverable"  # the inner error code of a set on a deleted name
_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")


def vault_url(sandbox: Sandbox) -> str | None:
    """The vault's URL, without the trailing slash; None before the vault's port is known."""
    port = sandbox.settings.extra.get(PORT_SETTING)
    return f"https://127.0.0.1:{port}" if port else None


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise SandboxError(400, "BadParameter",
                           f"The request URI contains an invalid name: {name}. Secret names may only contain "
                           "alphanumeric characters and dashes, 1-127 characters long.")
    return name


def _key(name: str) -> str:
    return f"keyvault/secrets/{name}"


def _deleted_key(name: str) -> str:
    return f"keyvault/deletedsecrets/{name}"


def get_secret(sandbox: Sandbox, name: str) -> dict:
    doc = sandbox.store.get(_key(check_name(name)))
    if doc is None:
        raise not_found("SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault. "
                                          "If you recently deleted this secret you may be able to recover it "
                                          "using the correct recovery command.")
    return doc


def version_of(doc: dict, version: str | None) -> dict:
    """One version of a secret: the current one when `version` is empty."""
    wanted = (version or doc["current"]).lower()
    for entry in doc["versions"]:
        if entry["version"].lower() == wanted:
            return entry
    raise not_found("SecretNotFound", f"A secret with (name/id) {doc['name']}/{version} was not found in this "
                                      "key vault.")


def set_secret(sandbox: Sandbox, name: str, value: str, *, content_type: str | None = None,
               tags: dict | None = None, enabled: bool = True) -> tuple[dict, dict]:
    """Add a new version (the secret's first, or a later one); return the document and the version."""
    check_name(name)
    if sandbox.store.get(_deleted_key(name)) is not None:
        # Key Vault's answer: 409, code "Conflict", and the reason in the inner error's code.
        raise SandboxError(409, "Conflict", f"Secret {name} is currently in a deleted but recoverable state, and its "
                                            "name cannot be reused; in this state, the secret can only be recovered "
                                            "or purged.", details={"code": DELETED_BUT_RECOVERABLE})
    now = int(time.time())
    entry = {"version": uuid.uuid4().hex, "value": value, "contentType": content_type, "tags": tags,
             "enabled": enabled, "created": now, "updated": now}
    doc = sandbox.store.get(_key(name)) or {"name": name, "versions": []}
    doc["versions"].append(entry)
    doc["current"] = entry["version"]
    sandbox.store.put(_key(name), SECRET_TYPE, doc)
    return doc, entry


def list_secrets(sandbox: Sandbox) -> list[dict]:
    return sandbox.store.by_type(SECRET_TYPE)


def delete_secret(sandbox: Sandbox, name: str) -> dict:
    doc = get_secret(sandbox, name)
    now = int(time.time())
    doc["deletedDate"] = now
    doc["scheduledPurgeDate"] = now + RECOVERABLE_DAYS * 86400
    sandbox.store.delete(_key(name))
    sandbox.store.put(_deleted_key(name), DELETED_TYPE, doc)
    return doc


def get_deleted(sandbox: Sandbox, name: str) -> dict:
    doc = sandbox.store.get(_deleted_key(check_name(name)))
    if doc is None:
        raise not_found("SecretNotFound", f"Deleted Secret not found: {name}")
    return doc


def purge(sandbox: Sandbox, name: str) -> None:
    get_deleted(sandbox, name)
    sandbox.store.delete(_deleted_key(name))


def list_deleted(sandbox: Sandbox) -> list[dict]:
    return sandbox.store.by_type(DELETED_TYPE)


def recover(sandbox: Sandbox, name: str) -> dict:
    """Move a deleted secret, every version, back under /secrets (Recover Deleted Secret)."""
    doc = get_deleted(sandbox, name)
    doc.pop("deletedDate", None)
    doc.pop("scheduledPurgeDate", None)
    sandbox.store.delete(_deleted_key(name))
    sandbox.store.put(_key(name), SECRET_TYPE, doc)
    return doc
