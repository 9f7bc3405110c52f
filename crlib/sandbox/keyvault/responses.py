"""Handlers for the vault's secrets API, in Key Vault's wire shapes (SecretBundle, SecretItem,
DeletedSecretBundle) and error envelope."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.errors import SandboxError
from ..core.http import empty, json_response
from . import models
from .models import SECRETS
from .objects import common_members

if TYPE_CHECKING:
    from ..core.http import Call


def _secret_id(call: Call, doc: dict, entry: dict | None = None) -> str:
    base = f"{models.vault_url(call.sandbox)}/secrets/{doc['name']}"
    return f"{base}/{entry['version']}" if entry else base


def _bundle(call: Call, doc: dict, entry: dict) -> dict:
    return {"value": entry["value"], "id": _secret_id(call, doc, entry)} | common_members(entry)


def _item(call: Call, doc: dict, entry: dict, *, versioned: bool = False) -> dict:
    return {"id": _secret_id(call, doc, entry if versioned else None)} | common_members(entry)


def _deleted(call: Call, doc: dict) -> dict:
    entry = SECRETS.version_of(doc, None)
    return {"id": _secret_id(call, doc, entry),
            "recoveryId": f"{models.vault_url(call.sandbox)}/deletedsecrets/{doc['name']}",
            "deletedDate": doc["deletedDate"], "scheduledPurgeDate": doc["scheduledPurgeDate"]} | common_members(entry)


def set_secret(call: Call):
    body = call.json()
    if not isinstance(body, dict) or not isinstance(body.get("value"), str):
        raise SandboxError(400, "BadParameter", "Property 'value' is required and must be a string.")
    tags = body.get("tags")
    if tags is not None and not isinstance(tags, dict):
        raise SandboxError(400, "BadParameter", "Property 'tags' must be an object.")
    enabled = (body.get("attributes") or {}).get("enabled", True)
    doc, entry = models.set_secret(call.sandbox, call.params["name"], body["value"],
                                   content_type=body.get("contentType"), tags=tags, enabled=bool(enabled))
    return json_response(_bundle(call, doc, entry))


def get_secret(call: Call):
    doc = SECRETS.get(call.sandbox, call.params["name"])
    entry = SECRETS.version_of(doc, call.params.get("version"))
    if not entry["enabled"]:
        raise SandboxError(403, "Forbidden", "Operation get is not allowed on a disabled secret.")
    return json_response(_bundle(call, doc, entry))


def list_secrets(call: Call):
    items = [_item(call, doc, SECRETS.version_of(doc, None)) for doc in SECRETS.list_all(call.sandbox)]
    return json_response({"value": items, "nextLink": None})


def list_versions(call: Call):
    doc = SECRETS.get(call.sandbox, call.params["name"])
    return json_response({"value": [_item(call, doc, e, versioned=True) for e in doc["versions"]], "nextLink": None})


def delete_secret(call: Call):
    return json_response(_deleted(call, SECRETS.delete(call.sandbox, call.params["name"])))


def get_deleted(call: Call):
    return json_response(_deleted(call, SECRETS.get_deleted(call.sandbox, call.params["name"])))


def list_deleted(call: Call):
    items = []
    for doc in SECRETS.list_deleted(call.sandbox):
        deleted = _deleted(call, doc)
        items.append(_item(call, doc, SECRETS.version_of(doc, None)) | {
            k: deleted[k] for k in ("recoveryId", "deletedDate", "scheduledPurgeDate")})
    return json_response({"value": items, "nextLink": None})


def recover_deleted(call: Call):
    """A SecretBundle of the recovered secret's latest version, without its value (as in the spec's example)."""
    doc = SECRETS.recover(call.sandbox, call.params["name"])
    entry = SECRETS.version_of(doc, None)
    return json_response({"id": _secret_id(call, doc, entry)} | common_members(entry))


def purge_deleted(call: Call):
    SECRETS.purge(call.sandbox, call.params["name"])
    return empty(204)
