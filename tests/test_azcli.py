"""The official Azure CLI (azure-cli 2.91) against the sandbox, as docs/azure-cli.md describes.

Runs only with `-m azcli` (`make test-azcli`). az is taken from $CRLIB_AZ, else from .azcli/bin/az.
Every az call runs with its own AZURE_CONFIG_DIR and extension dir, telemetry and update checks
off, TLS verified against the sandbox CA, and an HTTP(S) proxy that records and refuses every
connection not bound for loopback: the last test checks that az tried to reach nothing else.
pytest-socket only guards this process, not the az subprocesses, hence the proxy.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from crlib.sandbox import control

pytestmark = pytest.mark.azcli

ROOT = Path(__file__).resolve().parents[1]
CLOUD = "CrlibSandbox"
AZ_VERSION = "2.91.0"
# The actions `connected-registry create --repository hello-world` gives its sync scope map.
READONLY_REPO_ACTIONS = ["content/read", "metadata/read"]
GATEWAY_ACTIONS = ["config/read", "config/write", "message/read", "message/write"]


def _az_path() -> Path:
    configured = os.environ.get("CRLIB_AZ")
    if configured:
        path = Path(configured)
        if not path.exists():
            pytest.fail(f"CRLIB_AZ={configured} does not exist")
        return path
    path = ROOT / ".azcli" / "bin" / "az"
    if not path.exists():
        pytest.skip("the Azure CLI is not installed: set CRLIB_AZ or run `make azcli`")
    return path


class RefusingProxy:
    """A proxy on loopback that records the first line of every request and refuses it."""

    def __init__(self):
        self.attempts: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    first = conn.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    first = "<unreadable>"
                self.attempts.append(first)

    def close(self) -> None:
        self._sock.close()


class Az:
    """Runs `az ... -o json` against the sandbox and returns the parsed output."""

    def __init__(self, exe: Path, sandbox: dict, config_dir: Path, extension_dir: Path, proxy: RefusingProxy):
        self.exe = str(exe)
        self.sandbox = sandbox
        self.proxy = proxy
        self.first_seq = self.last_seq()  # where this module's requests begin in the sandbox log
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AZURE_", "ARM_", "MSAL_")) and k.upper() not in {"HTTP_PROXY", "HTTPS_PROXY",
                                                                                     "NO_PROXY", "ALL_PROXY"}}
        env |= {
            "AZURE_CONFIG_DIR": str(config_dir),
            "AZURE_EXTENSION_DIR": str(extension_dir),
            "AZURE_CORE_COLLECT_TELEMETRY": "0",
            "AZURE_CORE_NO_COLOR": "1",
            "REQUESTS_CA_BUNDLE": sandbox["ca_bundle"],
            "HTTP_PROXY": proxy.url, "HTTPS_PROXY": proxy.url, "NO_PROXY": "127.0.0.1,localhost,::1",
        }
        self.env = env

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([self.exe, *args, "-o", "json"], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def __call__(self, *args: str):
        result = self.run(*args)
        if result.returncode != 0:
            pytest.fail(f"az {' '.join(args)} exited {result.returncode}:\n{result.stderr.strip()}", pytrace=False)
        return json.loads(result.stdout) if result.stdout.strip() else None

    def requests_since(self, seq: int) -> list[dict]:
        return control.admin(self.sandbox, "GET", f"/_sandbox/requests?since={seq}")["requests"]

    def last_seq(self) -> int:
        log = self.requests_since(0)
        return log[-1]["seq"] if log else 0


def _seed_version_check(config_dir: Path) -> None:
    """A fresh config dir makes az HEAD azcliprod.blob.core.windows.net once to look for updates
    (azure.cli.core.util.handle_version_update); a recent versionCheck.json skips that."""
    versions = {"azure-cli": {"local": AZ_VERSION}, "core": {"local": AZ_VERSION}, "telemetry": {"local": "1.1.0"}}
    (config_dir / "versionCheck.json").write_text(json.dumps(
        {"versions": versions, "update_time": str(datetime.datetime.now())}))


@pytest.fixture(scope="module")
def az(request, tmp_path_factory):
    """az with the sandbox registered as the active cloud, logged in as the sandbox's service principal."""
    exe = _az_path()  # before the sandbox starts, so that a missing az skips at once
    sandbox = request.getfixturevalue("sandbox")
    config_dir = tmp_path_factory.mktemp("azure-config")
    extension_dir = tmp_path_factory.mktemp("azure-extensions")
    _seed_version_check(config_dir)
    proxy = RefusingProxy()
    cli = Az(exe, sandbox, config_dir, extension_dir, proxy)
    version = cli("version")
    assert version["azure-cli"] == AZ_VERSION
    # Endpoints come from the sandbox's /metadata/endpoints document.
    cli("cloud", "register", "-n", CLOUD, "--endpoint-resource-manager", sandbox["arm_endpoint"])
    cli("cloud", "set", "-n", CLOUD)
    cli("config", "set", "core.instance_discovery=false", "core.collect_telemetry=false",
        "core.survey_message=false", "auto-upgrade.enable=false", "extension.use_dynamic_install=no")
    cli("login", "--service-principal", "-u", sandbox["client_id"], "-p", sandbox["client_secret"],
        "--tenant", sandbox["tenant_id"])
    cli("account", "set", "-s", sandbox["subscription_id"])
    yield cli
    proxy.close()


@pytest.fixture(scope="module")
def names() -> dict:
    suffix = uuid.uuid4().hex[:8]
    return {"rg": f"azcli-{suffix}", "registry": f"crlibazcli{suffix}", "connected": f"edge{suffix}",
            "scope_map": "client-pull", "token": "client-token"}


def _writes(requests: list[dict]) -> list[tuple[str, str]]:
    """(method, last two path segments) of every ARM write, e.g. ('PUT', 'tokens/edge1234')."""
    return [(r["method"], "/".join(r["path"].rstrip("/").split("/")[-2:]))
            for r in requests if r["method"] in {"PUT", "PATCH", "POST", "DELETE"} and r["service"] == "arm"]


def test_login_reaches_the_sandbox_cloud(az, sandbox):
    cloud = az("cloud", "show")
    assert cloud["name"] == CLOUD and cloud["isActive"]
    assert cloud["endpoints"]["resourceManager"].rstrip("/") == sandbox["arm_endpoint"]
    assert cloud["endpoints"]["activeDirectory"].rstrip("/") == sandbox["authority"]
    account = az("account", "show")
    assert account["environmentName"] == CLOUD
    assert account["id"] == sandbox["subscription_id"]
    assert account["tenantId"] == sandbox["tenant_id"]
    assert account["user"] == {"name": sandbox["client_id"], "type": "servicePrincipal"}


def test_group_create(az, names):
    group = az("group", "create", "-n", names["rg"], "-l", "westus")
    assert group["name"] == names["rg"]
    assert group["properties"]["provisioningState"] == "Succeeded"


def test_acr_create_premium(az, names):
    registry = az("acr", "create", "-n", names["registry"], "-g", names["rg"], "--sku", "Premium")
    assert registry["name"] == names["registry"]
    assert registry["sku"]["name"] == "Premium"
    assert registry["provisioningState"] == "Succeeded"
    assert registry["loginServer"].startswith("127.0.0.1:")
    assert registry["dataEndpointEnabled"] is False


def test_acr_show(az, names):
    registry = az("acr", "show", "-n", names["registry"])
    assert registry["resourceGroup"] == names["rg"]
    assert registry["sku"]["name"] == "Premium"


def test_acr_update_enables_the_data_endpoint(az, names):
    registry = az("acr", "update", "-n", names["registry"], "--data-endpoint-enabled", "true")
    assert registry["dataEndpointEnabled"] is True
    assert registry["dataEndpointHostNames"]
    assert all(host.startswith("127.0.0.1:") for host in registry["dataEndpointHostNames"])


def test_connected_registry_create_makes_sync_scope_map_and_token(az, names):
    name, registry = names["connected"], names["registry"]
    since = az.last_seq()
    connected = az("acr", "connected-registry", "create", "-r", registry, "-n", name, "--repository", "hello-world")
    assert connected["name"] == name
    assert connected["mode"].lower() == "readonly"
    assert connected["provisioningState"] == "Succeeded"
    assert connected["parent"]["id"] is None  # synchronises with the cloud registry itself
    assert connected["parent"]["syncProperties"]["tokenId"].endswith(f"/tokens/{name}")
    writes = _writes(az.requests_since(since))
    assert ("PUT", f"scopeMaps/{name}") in writes
    assert ("PUT", f"tokens/{name}") in writes
    assert writes[-1] == ("PUT", f"connectedRegistries/{name}")

    scope_map = az("acr", "scope-map", "show", "-r", registry, "-n", name)
    assert sorted(scope_map["actions"]) == sorted(
        [f"repositories/hello-world/{a}" for a in READONLY_REPO_ACTIONS]
        + [f"gateway/{name}/{a}" for a in GATEWAY_ACTIONS])
    token = az("acr", "token", "show", "-r", registry, "-n", name)
    assert token["scopeMapId"].endswith(f"/scopeMaps/{name}")
    assert token["status"] == "enabled"


def test_connected_registry_show(az, names):
    connected = az("acr", "connected-registry", "show", "-r", names["registry"], "-n", names["connected"])
    assert connected["name"] == names["connected"]
    assert connected["mode"].lower() == "readonly"
    assert connected["connectionState"] == "Offline"  # no device has connected yet
    assert connected["parent"]["syncProperties"]["gatewayEndpoint"].startswith("127.0.0.1:")


def test_connected_registry_list(az, names):
    listed = az("acr", "connected-registry", "list", "-r", names["registry"])
    assert [c["name"] for c in listed] == [names["connected"]]


def test_connected_registry_get_settings_generates_a_password(az, names):
    name = names["connected"]
    since = az.last_seq()
    settings = az("acr", "connected-registry", "get-settings", "-r", names["registry"], "-n", name,
                  "--generate-password", "1", "--parent-protocol", "https", "--yes")
    connection = settings["ACR_REGISTRY_CONNECTION_STRING"]
    assert f"ConnectedRegistryName={name};" in connection
    assert f"SyncTokenName={name};" in connection
    assert "ParentGatewayEndpoint=127.0.0.1:" in connection
    assert connection.endswith("ParentEndpointProtocol=https")
    password = settings["SYNC_TOKEN_PASSWORD"]
    assert password and not password.startswith("<")
    assert f"SyncTokenPassword={password};" in connection
    assert settings["SYNC_TOKEN_USER"] == name
    assert any(m == "POST" and p.endswith("generateCredentials") for m, p in _writes(az.requests_since(since)))


def test_scope_map_create(az, names):
    scope_map = az("acr", "scope-map", "create", "-r", names["registry"], "-n", names["scope_map"],
                   "--repository", "hello-world", "content/read", "metadata/read", "--description", "client pulls")
    assert scope_map["name"] == names["scope_map"]
    assert sorted(scope_map["actions"]) == ["repositories/hello-world/content/read",
                                            "repositories/hello-world/metadata/read"]
    assert scope_map["description"] == "client pulls"


def test_token_create_returns_two_passwords(az, names):
    token = az("acr", "token", "create", "-r", names["registry"], "-n", names["token"],
               "--scope-map", names["scope_map"])
    assert token["name"] == names["token"]
    assert token["status"] == "enabled"
    assert token["scopeMapId"].endswith(f"/scopeMaps/{names['scope_map']}")
    passwords = token["credentials"]["passwords"]
    assert sorted(p["name"] for p in passwords) == ["password1", "password2"]
    assert all(p["value"] for p in passwords)
    assert token["credentials"]["username"] == names["token"]


def test_connected_registry_update_adds_a_client_token(az, names):
    connected = az("acr", "connected-registry", "update", "-r", names["registry"], "-n", names["connected"],
                   "--add-client-tokens", names["token"])
    assert [t.rsplit("/", 1)[-1] for t in connected["clientTokenIds"]] == [names["token"]]
    assert connected["parent"]["syncProperties"]["tokenId"].endswith(f"/tokens/{names['connected']}")


def test_connected_registry_deactivate(az, names):
    since = az.last_seq()
    az("acr", "connected-registry", "deactivate", "-r", names["registry"], "-n", names["connected"], "--yes")
    assert any(m == "POST" and p.endswith("/deactivate") for m, p in _writes(az.requests_since(since)))
    connected = az("acr", "connected-registry", "show", "-r", names["registry"], "-n", names["connected"])
    assert connected["activation"]["status"] == "Inactive"


def test_connected_registry_delete_cleans_up_token_and_scope_map(az, names):
    registry, name = names["registry"], names["connected"]
    az("acr", "connected-registry", "delete", "-r", registry, "-n", name, "--cleanup", "--yes")
    assert az("acr", "connected-registry", "list", "-r", registry) == []
    assert [t["name"] for t in az("acr", "token", "list", "-r", registry)] == [names["token"]]
    # ACR's built-in scope maps (_repositories_pull ...) stay; the sync scope map is gone.
    assert [s["name"] for s in az("acr", "scope-map", "list", "-r", registry)
            if not s["name"].startswith("_")] == [names["scope_map"]]


def test_group_delete(az, names):
    az("group", "delete", "-n", names["rg"], "--yes")
    assert az("group", "exists", "-n", names["rg"]) is False


def test_az_contacted_only_the_sandbox(az):
    """Everything az sent went to the sandbox on 127.0.0.1; nothing tried another host."""
    assert az.proxy.attempts == []
    hosts = {r["host"].rsplit(":", 1)[0] for r in az.requests_since(az.first_seq)}
    assert hosts <= {"127.0.0.1"}, hosts
