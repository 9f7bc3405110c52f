"""Tokens: repository-scoped credentials, their passwords, and the password check the registry
data plane uses.

Only SHA-256 hashes of token passwords are kept, with their creation time and expiry, in the
private part of the token's document. A password's value is shown once, in the result of the
generateCredentials operation that made it; regenerating a password replaces the old one, whose
hash is kept a while so that the data plane can tell a rotated password from a wrong one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ..clock import iso
from .common import NAMESPACE, PRIVATE, TOKEN_TYPE, find_child, new_secret, public, save
from .validation import TOKEN_NAME, check_name, enum, invalid, obj, required, timestamp

if TYPE_CHECKING:
    from ..runtime import Sandbox

PASSWORD_NAMES = ("password1", "password2")
CERTIFICATE_NAMES = ("certificate1", "certificate2")
STATUSES = ("enabled", "disabled")
# How many replaced password hashes a token remembers, to explain refusals of rotated passwords.
RETIRED_KEPT = 8
NAME_RULE = "Token names may contain only alphanumeric characters and '-' and must be 5 to 50 characters long."


def _hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def render_token(doc: dict) -> dict:
    """The token as ARM shows it: password names, creation times and expiries, never values."""
    body = public(doc)
    private = doc[PRIVATE]
    passwords = [{"name": name} | {k: v for k, v in entry.items() if k != "hash"}
                 for name, entry in sorted(private["passwords"].items())]
    credentials: dict = {"passwords": passwords}
    if private["certificates"]:
        credentials["certificates"] = private["certificates"]
    body["properties"]["credentials"] = credentials
    return body


def _scope_map_id(sandbox: Sandbox, registry: dict, value: object) -> str:
    if value is None:
        raise required("properties.scopeMapId")
    scope_map = find_child(sandbox, registry, "scopeMaps", value)
    if scope_map is None:
        raise invalid("properties.scopeMapId", f"'{value}' is not a scope map of registry '{registry['name']}'.")
    return scope_map["id"]


def _apply_credentials(private: dict, credentials: dict) -> None:
    """Passwords named in a request are kept and the others removed (values only ever come from
    generateCredentials); certificates are replaced."""
    field = "properties.credentials"
    if credentials.get("passwords") is not None:
        if not isinstance(credentials["passwords"], list):
            raise invalid(f"{field}.passwords", "expected a list.")
        keep = {enum(obj(p, f"{field}.passwords[{i}]").get("name"), PASSWORD_NAMES, f"{field}.passwords[{i}].name")
                for i, p in enumerate(credentials["passwords"])}
        private["passwords"] = {n: entry for n, entry in private["passwords"].items() if n in keep}
    if credentials.get("certificates") is not None:
        if not isinstance(credentials["certificates"], list):
            raise invalid(f"{field}.certificates", "expected a list.")
        private["certificates"] = [_certificate(c, f"{field}.certificates[{i}]")
                                   for i, c in enumerate(credentials["certificates"])]


def _certificate(value: object, field: str) -> dict:
    cert = obj(value, field)
    name = enum(cert.get("name"), CERTIFICATE_NAMES, f"{field}.name")
    encoded = cert.get("encodedPemCertificate")
    if not encoded:
        raise required(f"{field}.encodedPemCertificate")
    try:
        parsed = x509.load_pem_x509_certificate(base64.b64decode(encoded, validate=True))
    except (TypeError, ValueError, binascii.Error) as exc:
        raise invalid(f"{field}.encodedPemCertificate", "expected a base64-encoded PEM certificate.") from exc
    # ACR identifies certificates by their SHA-1 thumbprint.
    return {"name": name, "thumbprint": parsed.fingerprint(hashes.SHA1()).hex(),
            "expiry": iso(parsed.not_valid_after_utc)}


def put_token(sandbox: Sandbox, registry: dict, name: str, body: object) -> tuple[dict, bool]:
    check_name("token", name, TOKEN_NAME, NAME_RULE)
    existing = sandbox.store.get(f"{registry['id']}/tokens/{name}")
    props = obj(obj(body, "body").get("properties"), "properties")
    scope_map_id = _scope_map_id(sandbox, registry, props.get("scopeMapId"))
    status = enum(props["status"], STATUSES, "properties.status") if props.get("status") is not None else "enabled"
    private = existing[PRIVATE] if existing else {"passwords": {}, "certificates": []}
    _apply_credentials(private, obj(props.get("credentials"), "properties.credentials"))
    doc = {
        "id": existing["id"] if existing else f"{registry['id']}/tokens/{name}",
        "name": existing["name"] if existing else name,
        "type": f"{NAMESPACE}/registries/tokens",
        "properties": {
            "creationDate": existing["properties"]["creationDate"] if existing else iso(sandbox.clock.now()),
            "provisioningState": "Creating",
            "scopeMapId": scope_map_id,
            "status": status,
        },
        PRIVATE: private,
    }
    return doc, existing is None


def patch_token(sandbox: Sandbox, registry: dict, doc: dict, body: object) -> dict:
    props = obj(obj(body, "body").get("properties"), "properties")
    if props.get("scopeMapId") is not None:
        doc["properties"]["scopeMapId"] = _scope_map_id(sandbox, registry, props["scopeMapId"])
    if props.get("status") is not None:
        doc["properties"]["status"] = enum(props["status"], STATUSES, "properties.status")
    _apply_credentials(doc[PRIVATE], obj(props.get("credentials"), "properties.credentials"))
    return doc


def generate_credentials(sandbox: Sandbox, registry: dict, body: object) -> dict:
    """Make new passwords for a token: the one named, or both. Returns GenerateCredentialsResult."""
    body = obj(body, "body")
    if body.get("tokenId") is None:
        raise required("tokenId")
    token = find_child(sandbox, registry, "tokens", body["tokenId"])
    if token is None:
        raise invalid("tokenId", f"'{body['tokenId']}' is not a token of registry '{registry['name']}'.")
    names = [enum(body["name"], PASSWORD_NAMES, "name")] if body.get("name") is not None else list(PASSWORD_NAMES)
    now = sandbox.clock.now()
    entry = {"creationTime": iso(now)}
    if body.get("expiry") is not None:
        # A past expiry is accepted, as Microsoft's example does: the password is born expired.
        entry["expiry"] = iso(timestamp(body["expiry"], "expiry"))
    passwords = []
    private = token[PRIVATE]
    for name in names:
        value = new_secret()
        if name in private["passwords"]:
            retired = private.setdefault("retiredPasswordHashes", [])
            retired.append(private["passwords"][name]["hash"])
            del retired[:-RETIRED_KEPT]
        private["passwords"][name] = entry | {"hash": _hash(value)}
        passwords.append({"name": name} | entry | {"value": value})
    save(sandbox, TOKEN_TYPE, token)
    return {"username": token["name"], "passwords": passwords}


def verify_token_password(sandbox: Sandbox, registry_id: str, token_name: str,
                          password: str) -> tuple[bool, str | None]:
    """Check a token's password for the data plane: (True, None), or (False, reason) with reason
    "disabled", "expired", "rotated" (a password since regenerated) or "wrong" (an unknown token
    reads as a wrong password)."""
    token = sandbox.store.get(f"{registry_id}/tokens/{token_name}")
    if token is None:
        return False, "wrong"
    if token["properties"]["status"] == "disabled":
        return False, "disabled"
    digest = _hash(password)
    for entry in token[PRIVATE]["passwords"].values():
        if hmac.compare_digest(entry["hash"], digest):
            if "expiry" in entry and timestamp(entry["expiry"], "expiry") <= sandbox.clock.now():
                return False, "expired"
            return True, None
    if any(hmac.compare_digest(old, digest) for old in token[PRIVATE].get("retiredPasswordHashes", [])):
        return False, "rotated"
    return False, "wrong"
