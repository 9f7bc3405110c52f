"""The sandbox vault's keys, kept as store documents, and the signing done with them.

One document per key name (`keyvault/keys/<name>`) holds every version, each with its private key
as PKCS#8 PEM: the key is made here and never leaves the store, as in Key Vault, so callers sign
remotely. Deletion and versions are kept as for secrets (objects.py).
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature, encode_dss_signature

from ..core.errors import SandboxError
from .objects import Collection

if TYPE_CHECKING:
    from ..runtime import Sandbox

KEYS = Collection(kind="key", not_found_code="KeyNotFound")

# Key Vault's curves: (cryptography's curve, coordinate length in bytes).
CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "P-256": (ec.SECP256R1, 32), "P-256K": (ec.SECP256K1, 32), "P-384": (ec.SECP384R1, 48),
    "P-521": (ec.SECP521R1, 66),
}
RSA_SIZES = (2048, 3072, 4096)
# Signature algorithms (JWA): the key family, the hash whose digest is signed, and for EC the curve.
ALGORITHMS: dict[str, tuple[str, type[hashes.HashAlgorithm], str | None]] = {
    "ES256": ("EC", hashes.SHA256, "P-256"), "ES256K": ("EC", hashes.SHA256, "P-256K"),
    "ES384": ("EC", hashes.SHA384, "P-384"), "ES512": ("EC", hashes.SHA512, "P-521"),
    "RS256": ("RSA", hashes.SHA256, None), "RS384": ("RSA", hashes.SHA384, None),
    "RS512": ("RSA", hashes.SHA512, None), "PS256": ("RSA", hashes.SHA256, None),
    "PS384": ("RSA", hashes.SHA384, None), "PS512": ("RSA", hashes.SHA512, None),
}
KEY_OPS = {"EC": ["sign", "verify"], "RSA": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]}
ALL_KEY_OPS = {"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import", "export"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise SandboxError(400, "BadParameter", f"Property '{field}' is required and must be a base64url string.")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise SandboxError(400, "BadParameter", f"Property '{field}' is not valid base64url.") from exc


def _int_bytes(n: int, length: int | None = None) -> bytes:
    return n.to_bytes(length or (n.bit_length() + 7) // 8, "big")


def family(kty: str) -> str:
    """"EC" or "RSA" for a key type Key Vault names ("EC-HSM" is an EC key kept in an HSM)."""
    return kty.removesuffix("-HSM")


def _generate(kty: str, crv: str | None, key_size: int | None, exponent: int | None) -> tuple[str, dict]:
    """A new private key (PEM) and its public JWK members."""
    if family(kty) == "EC":
        curve, size = CURVES[crv or "P-256"]
        ec_key = ec.generate_private_key(curve())
        numbers = ec_key.public_key().public_numbers()
        public = {"crv": crv or "P-256", "x": b64url(_int_bytes(numbers.x, size)),
                  "y": b64url(_int_bytes(numbers.y, size))}
        private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = ec_key
    else:
        rsa_key = rsa.generate_private_key(exponent or 65537, key_size or 2048)
        rsa_numbers = rsa_key.public_key().public_numbers()
        public = {"n": b64url(_int_bytes(rsa_numbers.n)), "e": b64url(_int_bytes(rsa_numbers.e))}
        private = rsa_key
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return pem, public


def _check_create(kty: object, crv: object, key_size: object, exponent: object, key_ops: object) -> None:
    if kty not in ("EC", "EC-HSM", "RSA", "RSA-HSM"):
        raise SandboxError(400, "BadParameter", f"The key type (kty) '{kty}' is not supported by this vault; "
                                                "use EC, EC-HSM, RSA or RSA-HSM.")
    if family(str(kty)) == "EC" and crv is not None and crv not in CURVES:
        raise SandboxError(400, "BadParameter", f"The specified curve '{crv}' is not supported; "
                                                f"use one of {', '.join(CURVES)}.")
    if family(str(kty)) == "RSA":
        if key_size is not None and key_size not in RSA_SIZES:
            raise SandboxError(400, "BadParameter", f"The specified key size {key_size} is not supported for RSA "
                                                    "keys; use 2048, 3072 or 4096.")
        if exponent is not None and exponent not in (3, 65537):
            raise SandboxError(400, "BadParameter", "The public exponent must be 3 or 65537.")
    if key_ops is not None:
        if not isinstance(key_ops, list) or any(op not in ALL_KEY_OPS for op in key_ops):
            raise SandboxError(400, "BadParameter", f"Invalid key operations: {key_ops}.")
        if family(str(kty)) == "EC" and any(op not in ("sign", "verify", "import", "export") for op in key_ops):
            raise SandboxError(400, "BadParameter", "EC keys support only the sign and verify key operations.")


def create_key(sandbox: Sandbox, name: str, body: dict) -> tuple[dict, dict]:
    """Make a new key version (the key's first, or a later one); return the document and the version."""
    KEYS.check_name(name)
    kty, crv, key_ops = body.get("kty"), body.get("crv"), body.get("key_ops")
    _check_create(kty, crv, body.get("key_size"), body.get("public_exponent"), key_ops)
    tags = body.get("tags")
    if tags is not None and not isinstance(tags, dict):
        raise SandboxError(400, "BadParameter", "Property 'tags' must be an object.")
    attributes = body.get("attributes") or {}
    KEYS.refuse_deleted_name(sandbox, name)
    pem, public = _generate(str(kty), crv, body.get("key_size"), body.get("public_exponent"))
    return KEYS.add_version(sandbox, name, {
        "kty": kty, "key_ops": key_ops if key_ops is not None else KEY_OPS[family(str(kty))], "public": public,
        "private": pem, "tags": tags, "enabled": bool(attributes.get("enabled", True)),
        "nbf": attributes.get("nbf"), "exp": attributes.get("exp")})


def _usable(entry: dict, operation: str) -> None:
    if not entry["enabled"]:
        raise SandboxError(403, "Forbidden", f"Operation {operation} is not allowed on a disabled key.")
    if operation not in entry["key_ops"]:
        raise SandboxError(403, "Forbidden", f"Operation {operation} is not permitted for this key "
                                             f"(key_ops: {', '.join(entry['key_ops'])}).")
    now = time.time()
    if entry.get("nbf") and now < entry["nbf"]:
        raise SandboxError(403, "Forbidden", f"Operation {operation} is not allowed on a key that is not yet valid.")
    if entry.get("exp") and now >= entry["exp"]:
        raise SandboxError(403, "Forbidden", f"Operation {operation} is not allowed on an expired key.")


def _algorithm(entry: dict, alg: object, digest: bytes) -> hashes.HashAlgorithm:
    """The hash of a signature algorithm, once it fits the key and the digest."""
    if alg not in ALGORITHMS:
        raise SandboxError(400, "BadParameter", f"Invalid algorithm: {alg}.")
    kind, hash_type, curve = ALGORITHMS[str(alg)]
    if kind != family(entry["kty"]) or (curve is not None and curve != entry["public"].get("crv")):
        key = entry["kty"] + (f" {entry['public']['crv']}" if "crv" in entry["public"] else "")
        raise SandboxError(400, "BadParameter", f"The algorithm {alg} is not valid for a {key} key.")
    hash_alg = hash_type()
    if len(digest) != hash_alg.digest_size:
        raise SandboxError(400, "BadParameter", f"Invalid length of the digest: {alg} signs a {hash_alg.name} "
                                                f"digest of {hash_alg.digest_size} bytes, not {len(digest)}.")
    return hash_alg


def _rsa_padding(alg: str, hash_alg: hashes.HashAlgorithm) -> padding.AsymmetricPadding:
    if alg.startswith("PS"):
        return padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
    return padding.PKCS1v15()


def sign(entry: dict, alg: object, digest: bytes) -> bytes:
    """Sign a digest; EC signatures are JWS's raw r||s, each half the curve's coordinate length."""
    _usable(entry, "sign")
    hash_alg = _algorithm(entry, alg, digest)
    private = serialization.load_pem_private_key(entry["private"].encode(), None)
    if isinstance(private, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(private.sign(digest, ec.ECDSA(Prehashed(hash_alg))))
        size = CURVES[entry["public"]["crv"]][1]
        return _int_bytes(r, size) + _int_bytes(s, size)
    assert isinstance(private, rsa.RSAPrivateKey)
    return private.sign(digest, _rsa_padding(str(alg), hash_alg), Prehashed(hash_alg))


def verify(entry: dict, alg: object, digest: bytes, signature: bytes) -> bool:
    _usable(entry, "verify")
    hash_alg = _algorithm(entry, alg, digest)
    public = serialization.load_pem_private_key(entry["private"].encode(), None).public_key()
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            size = CURVES[entry["public"]["crv"]][1]
            if len(signature) != 2 * size:
                return False
            der = encode_dss_signature(int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big"))
            public.verify(der, digest, ec.ECDSA(Prehashed(hash_alg)))
        else:
            assert isinstance(public, rsa.RSAPublicKey)
            public.verify(signature, digest, _rsa_padding(str(alg), hash_alg), Prehashed(hash_alg))
    except InvalidSignature:
        return False
    return True
