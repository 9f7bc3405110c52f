"""Signing a run's SHA256SUMS, so that a record edited and re-summed no longer verifies.

A signature is ES256 (ECDSA on P-256 over SHA-256, the signature as JWS's 64-byte r||s) over a small
statement: the sha256 of SHA256SUMS, the run's name, when it was signed and which key signed. Two
kinds of key:

- **Key Vault** (`records.signing_key: keyvault:<name>`, required on Azure): an EC P-256 key made
  and used through azure-keyvault-keys; the private key never leaves the vault. Its id is the key's
  versioned URL (`https://<vault>/keys/<name>/<version>`).
- **local** (the default elsewhere): a P-256 key kept as PEM in the site's secret store under
  `crlib-records-signing-key`. Its id is `local:<entry>/<first 32 hex of the public key's sha256>`,
  so the id alone pins the key.

`SIGNATURE` (JSON) holds the statement, the signature, the key id and the public key (PEM). What
it proves, and what it does not, is in docs/records.md. The statement's format is crlib's own: no
well-kept library signs a file list with a Key Vault key, and the cryptography itself is done by
`cryptography` and Key Vault.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

from .errors import CrlibError

if TYPE_CHECKING:
    from .params import Site
    from .profiles import TargetProfile
    from .secrets import SecretStore

SIGNATURE = "SIGNATURE"
FORMAT = "crlib-signature/1"
ALGORITHM = "ES256"
LOCAL_KEY_ENTRY = "crlib-records-signing-key"
_LOCAL_KID = re.compile(r"^local:[A-Za-z0-9-]{1,127}/([0-9a-f]{32})$")
_KV_KID = re.compile(r"^(?P<vault>https://[^/]+)/keys/(?P<name>[A-Za-z0-9-]{1,127})/(?P<version>[A-Za-z0-9]+)$")


class SigningError(CrlibError):
    """The signing key could not be made, read or used."""


def fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """sha256 of the key's SubjectPublicKeyInfo (DER), hex: what `openssl pkey -pubin -outform DER | sha256sum` prints."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def public_pem(public_key: ec.EllipticCurvePublicKey) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public_key(data: bytes, source: str) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from PEM: a public key, or a certificate's."""
    try:
        key: Any = (x509.load_pem_x509_certificate(data).public_key() if b"CERTIFICATE" in data
                    else serialization.load_pem_public_key(data))
    except ValueError as exc:
        raise SigningError(f"{source}: holds no PEM public key or certificate ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise SigningError(f"{source}: is not a P-256 (ES256) key")
    return key


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _canonical(statement: dict) -> bytes:
    return json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


class Signer(Protocol):
    source: str  # how verify names where the key lives, e.g. "Key Vault https://..."

    @property
    def key_id(self) -> str: ...

    def public_key(self) -> ec.EllipticCurvePublicKey: ...

    def sign_digest(self, digest: bytes) -> bytes:
        """ES256 over a SHA-256 digest: 64 bytes, r||s."""
        ...


class LocalSigner:
    """A P-256 key kept (PEM, PKCS#8) in the secret store: made on first use when `create`."""

    def __init__(self, store: SecretStore, *, entry: str = LOCAL_KEY_ENTRY, create: bool = True, where: str = ""):
        self._store, self._entry, self._create = store, entry, create
        self._key: ec.EllipticCurvePrivateKey | None = None
        self.source = f"the secret store {where}".rstrip()

    def _private(self) -> ec.EllipticCurvePrivateKey:
        if self._key is None:
            pem = self._store.get(self._entry)
            if pem is None:
                if not self._create:
                    raise SigningError(f"no signing key '{self._entry}' in {self.source}")
                key = ec.generate_private_key(ec.SECP256R1())
                pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
                self._store.set(self._entry, pem)
            loaded = serialization.load_pem_private_key(pem.encode(), password=None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey) or loaded.curve.name != "secp256r1":
                raise SigningError(f"'{self._entry}' in {self.source} is not a P-256 private key")
            self._key = loaded
        return self._key

    @property
    def key_id(self) -> str:
        return f"local:{self._entry}/{fingerprint(self.public_key())[:32]}"

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._private().public_key()

    def sign_digest(self, digest: bytes) -> bytes:
        der = self._private().sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _jwk_public_key(jwk: Any) -> ec.EllipticCurvePublicKey:
    if (jwk.crv or "") != "P-256" or not jwk.x or not jwk.y:
        raise SigningError(f"Key Vault key {jwk.kid} is not an EC P-256 key")
    numbers = ec.EllipticCurvePublicNumbers(int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big"), ec.SECP256R1())
    return numbers.public_key()


class KeyVaultSigner:
    """An EC P-256 key in Key Vault, through azure-keyvault-keys: got, or made when `create` (the
    name soft-deleted by someone is recovered first, as the secret store does). Signing is the
    vault's `sign` operation; the private key never leaves it."""

    def __init__(self, vault_url: str, name: str, credential: Any, *, create: bool = True, **client_options: Any):
        from azure.keyvault.keys import KeyClient

        self._credential, self._options = credential, client_options
        self._client = KeyClient(vault_url, credential, **client_options)
        self._name, self._create = name, create
        self._key: Any = None
        self.source = f"Key Vault {vault_url.rstrip('/')}"

    def _vault_key(self) -> Any:
        if self._key is None:
            from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
            from azure.keyvault.keys import KeyCurveName

            try:
                self._key = self._client.get_key(self._name)
            except ResourceNotFoundError:
                if not self._create:
                    raise SigningError(f"no key '{self._name}' in {self.source}") from None
                try:
                    self._key = self._client.create_ec_key(self._name, curve=KeyCurveName.p_256,
                                                           key_operations=["sign", "verify"])
                except ResourceExistsError:  # deleted but recoverable: recovering keeps its history
                    self._client.begin_recover_deleted_key(self._name).wait()
                    self._key = self._client.get_key(self._name)
        return self._key

    @property
    def key_id(self) -> str:
        return str(self._vault_key().id)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return _jwk_public_key(self._vault_key().key)

    def sign_digest(self, digest: bytes) -> bytes:
        from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm

        client = CryptographyClient(self._vault_key(), self._credential, **self._options)
        return bytes(client.sign(SignatureAlgorithm.es256, digest).signature)

    def public_key_of(self, key_id: str) -> ec.EllipticCurvePublicKey:
        """The public key of one version of this key (a kid from a SIGNATURE)."""
        match = _KV_KID.match(key_id)
        if not match or match.group("name") != self._name:
            raise SigningError(f"{key_id} is not a version of the key '{self._name}' in {self.source}")
        return _jwk_public_key(self._client.get_key(self._name, match.group("version")).key)


def key_vault_public_key(key_id: str, profile: TargetProfile) -> ec.EllipticCurvePublicKey:
    """The public key of a Key Vault key version, read from its vault with the target's credential."""
    from azure.keyvault.keys import KeyClient

    match = _KV_KID.match(key_id)
    if not match:
        raise SigningError(f"{key_id} is not a Key Vault key id (https://<vault>/keys/<name>/<version>)")
    client = KeyClient(match.group("vault"), profile.credential, **key_vault_options(profile))
    return _jwk_public_key(client.get_key(match.group("name"), match.group("version")).key)


def key_vault_options(profile: TargetProfile) -> dict:
    """What every Key Vault client of a target is built with."""
    from . import retries

    return {"connection_verify": profile.connection_verify, **retries.azure_core_options(),
            **profile.key_vault_options}


def signer_for(site: Site, profile: TargetProfile | None, store: SecretStore | None, *,
               create: bool = True) -> Signer:
    """The site's signing key (records.signing_key). A local key needs only the secret store; a
    Key Vault key needs the target's profile."""
    name = site.records.key_vault_key
    if name is None:
        if store is None:
            raise SigningError("the secret store is out of reach")
        where = getattr(store, "directory", None) or site.secrets.vault_url or "the target's vault"
        return LocalSigner(store, create=create, where=f"({site.secrets.store}: {_home_relative(where)})")
    if profile is None:
        raise SigningError("the target is out of reach")
    vault_url = site.records.vault_url or site.secrets.vault_url or profile.default_vault_url
    if not vault_url:
        raise SigningError(f"records.vault_url: is required: target '{profile.kind}' supplies no Key Vault")
    return KeyVaultSigner(vault_url, name, profile.credential, create=create, **key_vault_options(profile))


def _home_relative(where: object) -> str:
    """A local folder as records show it: under the home folder as ~/..., so that a signed record
    names no user's absolute path."""
    text = str(where)
    home = str(Path.home())
    return "~" + text[len(home):] if len(home) > 1 and (text == home or text.startswith(home + "/")) else text


# -- the keys this account's crlib has signed with --------------------------------------------------
def signers_file() -> Path:
    """Where crlib lists the public keys (fingerprints) it has sealed runs with for this account:
    outside every run folder, so that whoever can write a folder cannot add their own key."""
    return Path(os.environ.get("XDG_STATE_HOME") or "~/.local/state").expanduser() / "crlib" / "signers"


def remember_signer(public_key: ec.EllipticCurvePublicKey) -> None:
    """Add a key crlib has just sealed a run with (0600 file in a 0700 folder)."""
    if remembered(public_key):
        return
    path = signers_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(fingerprint(public_key) + "\n")


def remembered(public_key: ec.EllipticCurvePublicKey) -> bool:
    try:
        return fingerprint(public_key) in signers_file().read_text().split()
    except OSError:
        return False


# -- the SIGNATURE file ---------------------------------------------------------------------------
def sign(sums: bytes, signer: Signer, *, run: str, now: Callable[[], dt.datetime] | None = None) -> bytes:
    """SIGNATURE's bytes for a SHA256SUMS's bytes."""
    public_key = signer.public_key()
    signed_at = (now or (lambda: dt.datetime.now(dt.UTC)))().isoformat(timespec="seconds")
    statement = {"format": FORMAT, "algorithm": ALGORITHM, "key_id": signer.key_id, "key_source": signer.source,
                 "public_key_sha256": fingerprint(public_key), "run": run, "signed_at": signed_at,
                 "sums_sha256": hashlib.sha256(sums).hexdigest()}
    signature = signer.sign_digest(hashlib.sha256(_canonical(statement)).digest())
    document = {"statement": statement, "signature": _b64url(signature), "public_key": public_pem(public_key)}
    return (json.dumps(document, indent=2) + "\n").encode()


@dataclass
class SignatureCheck:
    """What a SIGNATURE says and whether it holds: `problems` is empty when it does."""

    key_id: str = ""
    key_source: str = ""
    public_key_sha256: str = ""
    signed_at: str = ""
    run: str = ""
    public_key: ec.EllipticCurvePublicKey | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def signer(self) -> str:
        return f"{self.key_id} ({self.key_source}; public key sha256 {self.public_key_sha256[:16]}…)"


def check(signature: bytes, sums: bytes, *, trusted: ec.EllipticCurvePublicKey | None = None,
          trusted_name: str = "the given key") -> SignatureCheck:
    """Check a SIGNATURE against SHA256SUMS: the statement names these sums, and the signature
    verifies with the key it carries and, when given, with `trusted` too."""
    result = SignatureCheck()
    try:
        document = json.loads(signature)
        statement = document["statement"]
        result.key_id, result.key_source = str(statement["key_id"]), str(statement["key_source"])
        result.public_key_sha256, result.signed_at = str(statement["public_key_sha256"]), str(statement["signed_at"])
        result.run = str(statement.get("run", ""))
        if statement.get("format") != FORMAT or statement.get("algorithm") != ALGORITHM:
            result.problems.append(f"{SIGNATURE} is not {FORMAT} with {ALGORITHM}")
            return result
        carried = load_public_key(str(document["public_key"]).encode(), SIGNATURE)
        raw = _unb64url(str(document["signature"]))
        sums_sha256 = str(statement["sums_sha256"])
    except (ValueError, KeyError, TypeError, AttributeError, SigningError, UnsupportedAlgorithm) as exc:
        result.problems.append(f"{SIGNATURE} cannot be read ({type(exc).__name__})")
        return result
    result.public_key = carried
    if fingerprint(carried) != result.public_key_sha256:
        result.problems.append(f"{SIGNATURE}'s public key is not the one its statement names")
    if result.key_id.startswith("local:") and not names_its_key(result.key_id, carried):
        result.problems.append(f"{SIGNATURE}'s key id {result.key_id} does not name its public key")
    if sums_sha256 != hashlib.sha256(sums).hexdigest():
        result.problems.append(f"{SIGNATURE} does not match SHA256SUMS: the sums changed after they were signed")
    if not _verifies(carried, raw, hashlib.sha256(_canonical(statement)).digest()):
        result.problems.append("the signature does not verify with its own public key")
    if trusted is not None and fingerprint(trusted) != fingerprint(carried):
        result.problems.append(f"signed by {result.key_id} (public key sha256 {result.public_key_sha256[:16]}…), "
                               f"not by {trusted_name} (sha256 {fingerprint(trusted)[:16]}…)")
    return result


def names_its_key(key_id: str, public_key: ec.EllipticCurvePublicKey) -> bool:
    """Whether a local key id (`local:<entry>/<32 hex>`) names this public key's fingerprint."""
    local = _LOCAL_KID.match(key_id)
    return local is not None and fingerprint(public_key).startswith(local.group(1))


def _verifies(key: ec.EllipticCurvePublicKey, raw: bytes, digest: bytes) -> bool:
    if len(raw) != 64:
        return False
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        key.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    except InvalidSignature:
        return False
    return True


def read_key_file(path: Path) -> ec.EllipticCurvePublicKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SigningError(f"{path}: cannot be read ({exc.strerror})") from None
    return load_public_key(data, str(path))
