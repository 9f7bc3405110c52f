"""The sandbox's admin API is its owner's alone, and its CA vouches for loopback names only.

- Every `/_sandbox/` route (enumerated from the sandbox's routers) answers 401 without the admin
  token or with a wrong one, tried as another local user (nobody, through setpriv) who also cannot
  read the state folder's status file, token, settings or keys.
- The CA carries critical name constraints (127.0.0.0/8, ::1, localhost), lasts at most a year,
  and `crlib sandbox reset` replaces it.
- The azure profile refuses a REQUESTS_CA_BUNDLE or SSL_CERT_FILE holding the sandbox CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from crlib.errors import PreconditionFailed
from crlib.profiles import azure_profile
from crlib.sandbox import control, tls
from crlib.sandbox.config import ADMIN_TOKEN_FILE, RUNTIME_FILE

NOBODY = 65534
SECRET_FILES = (RUNTIME_FILE, ADMIN_TOKEN_FILE, "settings.json", "ca.key", "server.key", "state.db")


def admin_routes(tmp_path: Path) -> list[tuple[str, str]]:
    """(method, path) of every route under /_sandbox/, from the routers a sandbox mounts, with
    each {param} filled in."""
    from crlib.sandbox.runtime import Sandbox

    sandbox = Sandbox(tmp_path / "routes")
    try:
        routes = [(route.method, re.sub(r"\{\w+(:path)?\}", "x", route.template))
                  for router in sandbox.routers.values() for route in router.routes
                  if route.template.lower().startswith("/_sandbox/")]
    finally:
        sandbox.store.close()
    assert len(routes) >= 15 and ("GET", "/_sandbox/status") in routes and ("POST", "/_sandbox/faults") in routes
    return routes


@pytest.fixture(scope="module")
def shared_root():
    """A folder every user may traverse, so that only the state folder's own mode keeps others out."""
    root = Path(tempfile.mkdtemp(prefix="crlib-admin-auth-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def own_sandbox(shared_root):
    state_dir = shared_root / "state"
    status = control.start(state_dir)
    yield status
    control.stop(state_dir)


def call(status: dict, method: str, path: str, headers: dict | None = None) -> int:
    req = urllib.request.Request(status["arm_endpoint"] + path, method=method, headers=headers or {},
                                 data=b"{}" if method in ("POST", "PUT", "PATCH") else None)
    try:
        with urllib.request.urlopen(req, context=_context(status), timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _context(status: dict):
    import ssl

    return ssl.create_default_context(cafile=status["ca_bundle"])


# -- the admin token ---------------------------------------------------------------------------
def test_the_state_folder_and_its_secrets_are_owner_only(own_sandbox):
    state_dir = Path(own_sandbox["state_dir"])
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    for name in SECRET_FILES:
        if (state_dir / name).exists():
            assert stat.S_IMODE((state_dir / name).stat().st_mode) & 0o077 == 0, name
    assert stat.S_IMODE((state_dir / RUNTIME_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE((state_dir / ADMIN_TOKEN_FILE).stat().st_mode) == 0o600
    assert len(control.admin_token(own_sandbox)) >= 32
    assert "admin_token" not in json.dumps(own_sandbox)  # the status holds the secret, not the token


def test_every_admin_route_needs_the_token(own_sandbox, tmp_path):
    good = control.admin_headers(own_sandbox)
    assert call(own_sandbox, "GET", "/_sandbox/health", good) == 200
    for method, path in admin_routes(tmp_path):
        for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": good["Authorization"] + "x"},
                        {"Authorization": good["Authorization"].replace("Bearer", "Basic")}):
            assert call(own_sandbox, method, path, headers) == 401, (method, path, headers)
    for odd in ("/_SANDBOX/status", "//_sandbox/status", "/_sandbox/status/", "/_sandbox/nothing-here"):
        assert call(own_sandbox, "GET", odd) == 401, odd
    # Azure's own routes do not take the admin token: they answer as Azure does.
    assert call(own_sandbox, "GET", "/metadata/endpoints?api-version=2022-09-01") == 200
    assert call(own_sandbox, "GET", f"/subscriptions/{own_sandbox['subscription_id']}/resourcegroups"
                                    "?api-version=2024-03-01", good) == 401  # an admin token is no ARM token


NOBODY_SCRIPT = r"""
import json, ssl, sys, urllib.error, urllib.request
args = json.load(sys.stdin)
ctx = ssl.create_default_context(cafile=args["ca"])
answers = {}
for method, path in args["routes"]:
    req = urllib.request.Request(args["base"] + path, method=method,
                                 data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            answers[method + " " + path] = resp.status
    except urllib.error.HTTPError as exc:
        answers[method + " " + path] = exc.code
readable = {}
for path in args["files"]:
    try:
        open(path, "rb").read(1)
        readable[path] = True
    except OSError:
        readable[path] = False
try:
    listing = __import__("os").listdir(args["state_dir"])
except OSError:
    listing = None
print(json.dumps({"uid": __import__("os").getuid(), "answers": answers, "readable": readable, "listing": listing}))
"""


def test_another_local_user_gets_401_everywhere_and_reads_nothing(own_sandbox, shared_root, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to run a request as another local user (setpriv --reuid)")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    public_ca = shared_root / "public-ca.pem"  # the CA is public; nobody cannot read the state folder
    shutil.copyfile(own_sandbox["ca_bundle"], public_ca)
    public_ca.chmod(0o644)
    state_dir = Path(own_sandbox["state_dir"])
    routes = admin_routes(tmp_path)
    args = {"ca": str(public_ca), "base": own_sandbox["arm_endpoint"], "routes": routes,
            "files": [str(state_dir / n) for n in SECRET_FILES], "state_dir": str(state_dir)}
    done = subprocess.run([setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", python, "-I",
                           "-c", NOBODY_SCRIPT], input=json.dumps(args), capture_output=True, text=True,
                          timeout=120, cwd="/", env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["uid"] == NOBODY
    assert seen["answers"] == {f"{m} {p}": 401 for m, p in routes}
    assert not any(seen["readable"].values()), seen["readable"]
    assert seen["listing"] is None


# -- the CA ------------------------------------------------------------------------------------
def _ca(status: dict) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(status["ca_bundle"]).read_bytes())


def test_the_ca_is_name_constrained_to_loopback_and_lasts_a_year(own_sandbox):
    ca = _ca(own_sandbox)
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert set(constraints.value.permitted_subtrees or []) == {
        x509.IPAddress(ipaddress.ip_network("127.0.0.0/8")), x509.IPAddress(ipaddress.ip_network("::1/128")),
        x509.DNSName("localhost")}
    assert not constraints.value.excluded_subtrees
    assert ca.not_valid_after_utc - ca.not_valid_before_utc <= dt.timedelta(days=366)
    server = x509.load_pem_x509_certificate((Path(own_sandbox["state_dir"]) / tls.SERVER_CERT).read_bytes())
    assert server.not_valid_after_utc <= ca.not_valid_after_utc


def test_a_leaf_for_another_name_does_not_verify(tmp_path):
    tls.ensure_certificates(tmp_path)
    ca = x509.load_pem_x509_certificate((tmp_path / tls.CA_CERT).read_bytes())
    ca_key = tls.load_private_key(tmp_path / tls.CA_KEY)

    def leaf(name: str) -> x509.Certificate:
        return tls.issue(name, tls.new_key(), days=30, issuer=(ca, ca_key), server_names=[name])

    def verify(cert: x509.Certificate, name: x509.GeneralName) -> None:
        PolicyBuilder().store(Store([ca])).build_server_verifier(name).verify(cert, [])

    verify(leaf("127.0.0.1"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    verify(leaf("localhost"), x509.DNSName("localhost"))
    for name, general in [("management.azure.com", x509.DNSName("management.azure.com")),
                          ("login.microsoftonline.com", x509.DNSName("login.microsoftonline.com")),
                          ("10.0.0.1", x509.IPAddress(ipaddress.ip_address("10.0.0.1")))]:
        with pytest.raises(VerificationError):
            verify(leaf(name), general)


def test_an_old_unconstrained_ca_is_replaced_at_start(tmp_path):
    tls.ensure_certificates(tmp_path)
    key = tls.load_private_key(tmp_path / tls.CA_KEY)
    old = tls.issue(tls.CA_NAME, key, days=3650, ca_path_length=0)  # as made before: no constraints
    (tmp_path / tls.CA_CERT).write_bytes(old.public_bytes(serialization.Encoding.PEM))
    tls.ensure_certificates(tmp_path)
    new = x509.load_pem_x509_certificate((tmp_path / tls.CA_CERT).read_bytes())
    assert new.fingerprint(hashes.SHA256()) != old.fingerprint(hashes.SHA256())
    new.extensions.get_extension_for_class(x509.NameConstraints)


def test_reset_rotates_the_ca(shared_root):
    from crlib.cli import main as crlib_main

    state_dir = shared_root / "rotated"
    first = control.start(state_dir)
    try:
        before = _ca(first).fingerprint(hashes.SHA256())
        assert crlib_main(["sandbox", "reset", "--state-dir", str(state_dir)]) == 0  # running: in place
        running = _ca(first).fingerprint(hashes.SHA256())
        assert running != before
        assert control.admin(first, "GET", "/_sandbox/health") == {"status": "ok"}  # served with the new CA
    finally:
        control.stop(state_dir)
    assert crlib_main(["sandbox", "reset", "--state-dir", str(state_dir)]) == 0  # stopped: at the next start
    second = control.start(state_dir)
    try:
        assert _ca(second).fingerprint(hashes.SHA256()) not in (before, running)
        assert control.admin(second, "GET", "/_sandbox/health") == {"status": "ok"}
    finally:
        control.stop(state_dir)


# -- the azure profile -------------------------------------------------------------------------
def _azure_site() -> SimpleNamespace:
    return SimpleNamespace(subscription_id="00000000-0000-0000-0000-000000000000",
                           target=SimpleNamespace(kind="azure", cloud="AzureCloud"))


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_the_azure_profile_refuses_a_sandbox_ca_in_the_environment(variable, tmp_path, monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    tls.ensure_certificates(tmp_path / "sb")
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    mixed = tmp_path / "mixed.pem"  # the sandbox CA appended to the system's bundle
    mixed.write_bytes((system.read_bytes() if system.exists() else b"") + (tmp_path / "sb" / tls.CA_CERT).read_bytes())
    for bundle in (tmp_path / "sb" / tls.CA_CERT, mixed, tmp_path / "sb"):
        monkeypatch.setenv(variable, str(bundle))
        with pytest.raises(PreconditionFailed) as refused:
            azure_profile(_azure_site())  # type: ignore[arg-type]
        assert refused.value.subject == variable
        assert variable in str(refused.value) and "\n" not in str(refused.value)
    if system.exists():
        monkeypatch.setenv(variable, str(system))
        assert azure_profile(_azure_site()).kind == "azure"  # type: ignore[arg-type]
    monkeypatch.delenv(variable)
    assert azure_profile(_azure_site()).kind == "azure"  # type: ignore[arg-type]
