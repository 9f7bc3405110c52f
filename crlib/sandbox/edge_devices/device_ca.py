"""Each simulated device's own IoT Edge CA chain, as IoT Edge 1.5 makes one when no Edge CA is
configured (its "quickstart" Edge CA): a root, the Edge CA it issues, and the API proxy's server
certificate issued by the Edge CA. The device endpoint serves that chain, never the sandbox's
own certificate, so a client must trust the device's root, as it must on a real device.

Files live in the state directory under devices/<name>/: `root-ca.pem` (the certificate an
operator trusts), the Edge CA, the server chain, and their keys (mode 0600). The chain is kept
across restarts, renewed once a certificate is within a day of its end (IoT Edge renews its
auto-generated certificates too), and removed with the device's record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shutil
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from .. import tls

DEVICES_DIR = "devices"
ROOT_CERT, ROOT_KEY = "root-ca.pem", "root-ca.key"
EDGE_CA_CERT, EDGE_CA_KEY = "edge-ca.pem", "edge-ca.key"
SERVER_CHAIN, SERVER_KEY = "server-chain.pem", "server.key"
TRUST_BUNDLE = "trust-bundle.pem"
# IoT Edge 1.5's auto-generated Edge CA lasts 90 days ([edge_ca] auto_generated_edge_ca_expiry_days).
LIFETIME_DAYS = 90
RENEW_BEFORE = dt.timedelta(days=1)
# The device host is reached on loopback, which stands in for its address on the LAN.
SERVER_NAMES = ["127.0.0.1", "localhost"]


@dataclass(frozen=True)
class DeviceCA:
    directory: Path

    @property
    def root_cert(self) -> Path:
        return self.directory / ROOT_CERT

    @property
    def trust_bundle(self) -> Path:
        return self.directory / TRUST_BUNDLE

    def server_context(self) -> ssl.SSLContext:
        return tls.chain_ssl_context(self.directory / SERVER_CHAIN, self.directory / SERVER_KEY)


def directory_for(state_dir: Path, device_key: str, device_id: str) -> Path:
    """A readable, unique folder name for a device record's key."""
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", device_id)[:40]
    return Path(state_dir) / DEVICES_DIR / f"{readable}-{hashlib.sha256(device_key.encode()).hexdigest()[:12]}"


def _needs_new_chain(directory: Path) -> bool:
    files = [directory / n for n in (ROOT_CERT, ROOT_KEY, EDGE_CA_CERT, EDGE_CA_KEY, SERVER_CHAIN, SERVER_KEY)]
    if not all(f.exists() for f in files):
        return True
    deadline = dt.datetime.now(dt.UTC) + RENEW_BEFORE
    for name in (ROOT_CERT, EDGE_CA_CERT, SERVER_CHAIN):
        cert = x509.load_pem_x509_certificate((directory / name).read_bytes())
        if cert.not_valid_after_utc <= deadline:
            return True
    return False


def ensure(directory: Path, device_id: str) -> DeviceCA:
    """The device's chain, created when missing or about to expire."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if _needs_new_chain(directory):
        root_key, edge_key, server_key = tls.new_key(), tls.new_key(), tls.new_key()
        root = tls.issue(f"{device_id} IoT Edge root CA", root_key, days=LIFETIME_DAYS, ca_path_length=1)
        edge = tls.issue(f"{device_id} Edge CA", edge_key, days=LIFETIME_DAYS, issuer=(root, root_key),
                         ca_path_length=0)
        server = tls.issue("localhost", server_key, days=LIFETIME_DAYS, issuer=(edge, edge_key),
                           server_names=SERVER_NAMES)
        tls.write_private_key(directory / ROOT_KEY, root_key)
        tls.write_private_key(directory / EDGE_CA_KEY, edge_key)
        tls.write_private_key(directory / SERVER_KEY, server_key)
        (directory / ROOT_CERT).write_bytes(tls.pem(root))
        (directory / EDGE_CA_CERT).write_bytes(tls.pem(edge))
        # The server sends its certificate and the Edge CA; the client holds the root.
        (directory / SERVER_CHAIN).write_bytes(tls.pem(server) + tls.pem(edge))
    return DeviceCA(directory)


def write_trust_bundle(ca: DeviceCA, pems: list[Path]) -> Path:
    """The CAs this device trusts (its config.toml trust_bundle_cert plus the host's own CAs),
    rewritten only when they changed."""
    content = b"".join(p.read_bytes() for p in pems if p.exists())
    if not ca.trust_bundle.exists() or ca.trust_bundle.read_bytes() != content:
        ca.trust_bundle.write_bytes(content)
    return ca.trust_bundle


def prune(state_dir: Path, keep: set[Path]) -> None:
    """Remove the chains of devices whose records are gone."""
    root = Path(state_dir) / DEVICES_DIR
    if not root.is_dir():
        return
    for directory in root.iterdir():
        if directory.is_dir() and directory not in keep:
            shutil.rmtree(directory, ignore_errors=True)
