"""TLS for the connected registry service of a cluster, as the extension's cert-manager issues it,
or the operator's own certificate (BYOC, `tls.crt`/`tls.key` protected settings).

cert-manager: one CA per cluster (`<state dir>/arc-clusters/<cluster>-<hash>/ca.pem`, the one a
client trusts), and per extension a server certificate it issues whose SANs are the service's
clusterIP (as data: nothing ever connects to it), plus IP 127.0.0.1 and DNS localhost, because the
sandbox's stand-in for the service is the operator's `kubectl port-forward`, reached on loopback.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import shutil
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .. import tls

ROOT = "arc-clusters"
CA_CERT, CA_KEY = "ca.pem", "ca.key"
LIFETIME_DAYS = 90  # cert-manager's default Certificate duration
FORWARD_NAMES = ["127.0.0.1", "localhost"]


class CertificateError(ValueError):
    pass


def _folder(name: str, key: str) -> str:
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)[:40]}-{hashlib.sha256(key.lower().encode()).hexdigest()[:12]}"


def cluster_directory(state_dir: Path, cluster_id: str) -> Path:
    return Path(state_dir) / ROOT / _folder(cluster_id.rsplit("/", 1)[-1], cluster_id)


def _cluster_ca(directory: Path, cluster_name: str):
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if not cert_path.exists() or not key_path.exists():
        key = tls.new_key()
        cert = tls.issue(f"{cluster_name} connected-registry CA", key, days=LIFETIME_DAYS * 4, ca_path_length=0)
        tls.write_private_key(key_path, key)
        cert_path.write_bytes(tls.pem(cert))
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{key_path} is not the cluster CA's key")
    return cert, loaded


def issue_for_extension(state_dir: Path, cluster_id: str, ext_id: str, cluster_ip: str) -> tuple[Path, Path, Path]:
    """(server chain, server key, CA to trust) issued by the cluster's CA for this extension."""
    directory = cluster_directory(state_dir, cluster_id)
    ca, ca_key = _cluster_ca(directory, cluster_id.rsplit("/", 1)[-1])
    stem = _folder(ext_id.rsplit("/", 1)[-1], ext_id)
    chain, key_path = directory / f"{stem}-server.pem", directory / f"{stem}-server.key"
    key = tls.new_key()
    server = tls.issue("connected-registry", key, days=LIFETIME_DAYS, issuer=(ca, ca_key),
                       server_names=[cluster_ip, *FORWARD_NAMES])
    tls.write_private_key(key_path, key)
    chain.write_bytes(tls.pem(server))
    return chain, key_path, directory / CA_CERT


def _decode(value: str, what: str) -> bytes:
    """The tutorial's protected settings hold base64 of the PEM files; plain PEM is taken too."""
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return text.encode()
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CertificateError(f"{what} is neither base64 nor PEM") from exc


def store_user_certificate(state_dir: Path, cluster_id: str, ext_id: str, crt: str, key: str,
                           cacrt: str | None) -> tuple[Path, Path, Path]:
    """The operator's certificate (BYOC): (chain, key, CA to trust: tls.cacrt, else tls.crt itself)."""
    cert_pem, key_pem = _decode(crt, "tls.crt"), _decode(key, "tls.key")
    ca_pem = _decode(cacrt, "tls.cacrt") if cacrt else cert_pem
    directory = cluster_directory(state_dir, cluster_id)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    stem = _folder(ext_id.rsplit("/", 1)[-1], ext_id)
    chain, key_path, ca_path = (directory / f"{stem}-byoc.pem", directory / f"{stem}-byoc.key",
                                directory / f"{stem}-byoc-ca.pem")
    chain.write_bytes(cert_pem)
    key_path.touch(mode=0o600)
    key_path.write_bytes(key_pem)
    ca_path.write_bytes(ca_pem)
    try:
        server_context(chain, key_path)
        x509.load_pem_x509_certificate(ca_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise CertificateError(f"tls.crt/tls.key are not a certificate and its private key: {exc}") from exc
    return chain, key_path, ca_path


def server_context(chain: Path, key: Path) -> ssl.SSLContext:
    return tls.chain_ssl_context(chain, key)


def prune(state_dir: Path, keep: set[Path]) -> None:
    """Remove the CA folders of clusters that are gone."""
    root = Path(state_dir) / ROOT
    if root.is_dir():
        for directory in root.iterdir():
            if directory.is_dir() and directory not in keep:
                shutil.rmtree(directory, ignore_errors=True)
