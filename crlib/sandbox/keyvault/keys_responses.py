"""Handlers for the vault's keys API, in Key Vault's wire shapes (KeyBundle, KeyItem, DeletedKeyBundle,
KeyOperationResult, KeyVerifyResult). Only a key's public members are ever sent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.errors import SandboxError
from ..core.http import empty, json_response
from . import keys_models, models
from .keys_models import KEYS
from .objects import common_members

if TYPE_CHECKING:
    from ..core.http import Call


def _kid(call: Call, doc: dict, entry: dict | None = None) -> str:
    base = f"{models.vault_url(call.sandbox)}/keys/{doc['name']}"
    return f"{base}/{entry['version']}" if entry else base


def _bundle(call: Call, doc: dict, entry: dict) -> dict:
    key = {"kid": _kid(call, doc, entry), "kty": entry["kty"], "key_ops": entry["key_ops"]} | entry["public"]
    return {"key": key} | common_members(entry)


def _item(call: Call, doc: dict, entry: dict, *, versioned: bool = False) -> dict:
    return {"kid": _kid(call, doc, entry if versioned else None)} | common_members(entry)


def _deletion(call: Call, doc: dict) -> dict:
    return {"recoveryId": f"{models.vault_url(call.sandbox)}/deletedkeys/{doc['name']}",
            "deletedDate": doc["deletedDate"], "scheduledPurgeDate": doc["scheduledPurgeDate"]}


def _body(call: Call) -> dict:
    body = call.json()
    if not isinstance(body, dict):
        raise SandboxError(400, "BadParameter", "The request body must be a JSON object.")
    return body


def create_key(call: Call):
    doc, entry = keys_models.create_key(call.sandbox, call.params["name"], _body(call))
    return json_response(_bundle(call, doc, entry))


def get_key(call: Call):
    doc = KEYS.get(call.sandbox, call.params["name"])
    return json_response(_bundle(call, doc, KEYS.version_of(doc, call.params.get("version"))))


def list_keys(call: Call):
    items = [_item(call, doc, KEYS.version_of(doc, None)) for doc in KEYS.list_all(call.sandbox)]
    return json_response({"value": items, "nextLink": None})


def list_versions(call: Call):
    doc = KEYS.get(call.sandbox, call.params["name"])
    return json_response({"value": [_item(call, doc, e, versioned=True) for e in doc["versions"]], "nextLink": None})


def delete_key(call: Call):
    doc = KEYS.delete(call.sandbox, call.params["name"])
    return json_response(_bundle(call, doc, KEYS.version_of(doc, None)) | _deletion(call, doc))


def get_deleted(call: Call):
    doc = KEYS.get_deleted(call.sandbox, call.params["name"])
    return json_response(_bundle(call, doc, KEYS.version_of(doc, None)) | _deletion(call, doc))


def list_deleted(call: Call):
    items = [_item(call, doc, KEYS.version_of(doc, None)) | _deletion(call, doc)
             for doc in KEYS.list_deleted(call.sandbox)]
    return json_response({"value": items, "nextLink": None})


def recover_deleted(call: Call):
    doc = KEYS.recover(call.sandbox, call.params["name"])
    return json_response(_bundle(call, doc, KEYS.version_of(doc, None)))


def purge_deleted(call: Call):
    KEYS.purge(call.sandbox, call.params["name"])
    return empty(204)


def _target(call: Call) -> tuple[dict, dict]:
    doc = KEYS.get(call.sandbox, call.params["name"])
    return doc, KEYS.version_of(doc, call.params.get("version"))


def sign(call: Call):
    """KeyOperationResult: the versioned kid and the signature, base64url."""
    doc, entry = _target(call)
    body = _body(call)
    signature = keys_models.sign(entry, body.get("alg"), keys_models.from_b64url(body.get("value"), "value"))
    return json_response({"kid": _kid(call, doc, entry), "value": keys_models.b64url(signature)})


def verify(call: Call):
    """KeyVerifyResult. `digest` is what was signed and `value` the signature (KeyVerifyParameters)."""
    _, entry = _target(call)
    body = _body(call)
    ok = keys_models.verify(entry, body.get("alg"), keys_models.from_b64url(body.get("digest"), "digest"),
                            keys_models.from_b64url(body.get("value"), "value"))
    return json_response({"value": ok})
