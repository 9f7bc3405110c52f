"""The sandbox's own certificate authority and its server certificate, and the certificate
helpers the simulated devices build their own IoT Edge CA chains with.

The CA is generated on first start and kept in the state directory, so that clients can
verify every sandbox endpoint with it. The server certificate names 127.0.0.1, ::1 and
localhost, which is every host name the sandbox hands out. The CA lasts at most a year
(CA_DAYS), carries critical X.509 name constraints that permit only those names (127.0.0.0/8,
::1 and localhost: a leaf it signed for any other host fails verification), and is replaced by
`crlib sandbox reset` (rotate_ca). A CA without the constraints, or one about to expire, is
replaced at start. A simulated device's endpoint is
not served with it: each device has a chain of its own (edge_devices/device_ca.py).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
CA_NAME = "crlib sandbox CA"  # the subject and issuer common name; crlib/profiles.py detects it by this
CA_DAYS = 365
SERVER_DAYS = 825  # capped at the CA's own end
# Every name the sandbox's own server certificate may carry.
PERMITTED_NAMES: list[x509.GeneralName] = [
    x509.IPAddress(ipaddress.ip_network("127.0.0.0/8")),
    x509.IPAddress(ipaddress.ip_network("::1/128")),
    x509.DNSName("localhost"),
]


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    write_private_key(path, key)


def _create_ca(state_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.NameConstraints(permitted_subtrees=PERMITTED_NAMES, excluded_subtrees=None),
                       critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(state_dir / CA_KEY, key)
    (state_dir / CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _create_server_cert(state_dir: Path, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=SERVER_DAYS), ca.not_valid_after_utc))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(state_dir / SERVER_KEY, key)
    (state_dir / SERVER_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _outdated(ca_path: Path) -> bool:
    """Whether the CA at `ca_path` must be replaced: unreadable, without name constraints (made
    before they were added), or ending within a day."""
    try:
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
        ca.extensions.get_extension_for_class(x509.NameConstraints)
    except (ValueError, x509.ExtensionNotFound):
        return True
    return ca.not_valid_after_utc - dt.datetime.now(dt.UTC) < dt.timedelta(days=1)


def rotate_ca(state_dir: Path) -> Path:
    """Replace the CA and the server certificate with new ones; return the CA bundle path.
    Clients must verify with the new CA from then on (its path does not change)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _create_ca(state_dir)
    _create_server_cert(state_dir, ca, ca_key)
    return state_dir / CA_CERT


def ensure_certificates(state_dir: Path) -> Path:
    """Create the CA and server certificate once; return the CA bundle path."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ca_path = state_dir / CA_CERT
    if not ca_path.exists() or not (state_dir / CA_KEY).exists() or _outdated(ca_path):
        ca, ca_key = _create_ca(state_dir)
        _create_server_cert(state_dir, ca, ca_key)
    elif not (state_dir / SERVER_CERT).exists():
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
        loaded = serialization.load_pem_private_key((state_dir / CA_KEY).read_bytes(), None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{state_dir / CA_KEY} is not an EC private key")
        _create_server_cert(state_dir, ca, loaded)
    return ca_path


def server_ssl_context(state_dir: Path) -> ssl.SSLContext:
    return chain_ssl_context(state_dir / SERVER_CERT, state_dir / SERVER_KEY)


def chain_ssl_context(cert_chain: Path, key: Path) -> ssl.SSLContext:
    """A server context for a PEM chain (leaf first) and its key."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_chain, key)
    return ctx


# -- building chains (the simulated devices' own CAs) ------------------------------------------
def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a key readable by its owner only (created 0600, never briefly wider)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    loaded = serialization.load_pem_private_key(path.read_bytes(), None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC private key")
    return loaded


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def issue(subject: str, key: ec.EllipticCurvePrivateKey, *, days: int,
          issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
          ca_path_length: int | None = None, server_names: list[str] | None = None) -> x509.Certificate:
    """One certificate: self-signed when `issuer` is None; a CA when `ca_path_length` is given
    (0 or more), otherwise a TLS server certificate for `server_names` (IP addresses or DNS names)."""
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    is_ca = ca_path_length is not None
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=ca_path_length if is_ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=not is_ca, key_cert_sign=is_ca, crl_sign=is_ca,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), critical=False)
    )
    if not is_ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(n) for n in server_names or []]),
                                        critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)
