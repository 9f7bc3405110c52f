"""What the vault's secrets and keys share, so both keep one bookkeeping and one set of messages.

Each kind of object is a collection of store documents, one per name (`keyvault/<kind>s/<name>`)
holding every version. Deletion is soft, as in a vault with soft-delete on: the document moves to
`keyvault/deleted<kind>s/<name>` until purged or recovered. Names are case-insensitive, as in Key Vault.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.errors import SandboxError, not_found

if TYPE_CHECKING:
    from ..runtime import Sandbox

RECOVERY_LEVEL = "Recoverable+Purgeable"
RECOVERABLE_DAYS = 90
DELETED_BUT_RECOVERABLE = "ObjectIsDeletedButRecoverable"  # the inner error code of a create on a deleted name
_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")


@dataclass(frozen=True)
class Collection:
    """One kind of vault object: `kind` ("secret", "key") names its store documents and its messages."""

    kind: str
    not_found_code: str

    @property
    def capitalized_kind(self) -> str:
        return self.kind.capitalize()

    @property
    def store_type(self) -> str:
        return f"keyvault.{self.kind}"

    @property
    def deleted_store_type(self) -> str:
        return f"keyvault.deleted{self.kind}"

    def _path(self, name: str) -> str:
        return f"keyvault/{self.kind}s/{name}"

    def _deleted_path(self, name: str) -> str:
        return f"keyvault/deleted{self.kind}s/{name}"

    def check_name(self, name: str) -> str:
        if not _NAME.match(name):
            raise SandboxError(400, "BadParameter",
                               f"The request URI contains an invalid name: {name}. {self.capitalized_kind} names may "
                               "only contain alphanumeric characters and dashes, 1-127 characters long.")
        return name

    def get(self, sandbox: Sandbox, name: str) -> dict:
        doc = sandbox.store.get(self._path(self.check_name(name)))
        if doc is None:
            raise not_found(self.not_found_code,
                            f"A {self.kind} with (name/id) {name} was not found in this key vault. If you recently "
                            f"deleted this {self.kind} you may be able to recover it using the correct recovery "
                            "command.")
        return doc

    def version_of(self, doc: dict, version: str | None) -> dict:
        """One version of an object: the current one when `version` is empty."""
        wanted = (version or doc["current"]).lower()
        for entry in doc["versions"]:
            if entry["version"].lower() == wanted:
                return entry
        raise not_found(self.not_found_code,
                        f"A {self.kind} with (name/id) {doc['name']}/{version} was not found in this key vault.")

    def refuse_deleted_name(self, sandbox: Sandbox, name: str) -> None:
        """Key Vault's answer to a create on a deleted name: 409, code "Conflict", the reason in the inner error."""
        if sandbox.store.get(self._deleted_path(name)) is not None:
            raise SandboxError(409, "Conflict",
                               f"{self.capitalized_kind} {name} is currently in a deleted but recoverable state, and "
                               f"its name cannot be reused; in this state, the {self.kind} can only be recovered or "
                               "purged.",
                               details={"code": DELETED_BUT_RECOVERABLE})

    def add_version(self, sandbox: Sandbox, name: str, fields: dict) -> tuple[dict, dict]:
        """Store `fields` as the object's new current version (its first, or a later one); return the
        document and the version."""
        now = int(time.time())
        entry = {"version": uuid.uuid4().hex} | fields | {"created": now, "updated": now}
        doc = sandbox.store.get(self._path(name)) or {"name": name, "versions": []}
        doc["versions"].append(entry)
        doc["current"] = entry["version"]
        sandbox.store.put(self._path(name), self.store_type, doc)
        return doc, entry

    def list_all(self, sandbox: Sandbox) -> list[dict]:
        return sandbox.store.by_type(self.store_type)

    def delete(self, sandbox: Sandbox, name: str) -> dict:
        doc = self.get(sandbox, name)
        now = int(time.time())
        doc["deletedDate"] = now
        doc["scheduledPurgeDate"] = now + RECOVERABLE_DAYS * 86400
        sandbox.store.delete(self._path(name))
        sandbox.store.put(self._deleted_path(name), self.deleted_store_type, doc)
        return doc

    def get_deleted(self, sandbox: Sandbox, name: str) -> dict:
        doc = sandbox.store.get(self._deleted_path(self.check_name(name)))
        if doc is None:
            raise not_found(self.not_found_code, f"Deleted {self.capitalized_kind} not found: {name}")
        return doc

    def list_deleted(self, sandbox: Sandbox) -> list[dict]:
        return sandbox.store.by_type(self.deleted_store_type)

    def purge(self, sandbox: Sandbox, name: str) -> None:
        self.get_deleted(sandbox, name)
        sandbox.store.delete(self._deleted_path(name))

    def recover(self, sandbox: Sandbox, name: str) -> dict:
        """Move a deleted object, every version, back (Recover Deleted Secret / Key)."""
        doc = self.get_deleted(sandbox, name)
        doc.pop("deletedDate", None)
        doc.pop("scheduledPurgeDate", None)
        sandbox.store.delete(self._deleted_path(name))
        sandbox.store.put(self._path(name), self.store_type, doc)
        return doc


def attributes(entry: dict) -> dict:
    """A version's `attributes` member, as in every bundle and item (`nbf`/`exp` only where set)."""
    members = {"enabled": entry["enabled"], "created": entry["created"], "updated": entry["updated"],
               "recoveryLevel": RECOVERY_LEVEL, "recoverableDays": RECOVERABLE_DAYS}
    return members | {k: entry[k] for k in ("nbf", "exp") if entry.get(k) is not None}


def common_members(entry: dict) -> dict:
    """The members a bundle or item of any kind carries besides its id: attributes, contentType, tags."""
    body = {"attributes": attributes(entry)}
    if entry.get("contentType") is not None:
        body["contentType"] = entry["contentType"]
    if entry.get("tags") is not None:
        body["tags"] = entry["tags"]
    return body
