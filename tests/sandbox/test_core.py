"""The sandbox's foundation: its process commands, TLS, Entra tokens, ARM basics, LROs and state."""

from __future__ import annotations

import ast
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential

from crlib.sandbox import control

STATUS_KEYS = {"arm_endpoint", "authority", "tenant_id", "subscription_id", "client_id", "client_secret",
               "ca_bundle", "state_dir", "image_source", "key_vault_url"}


def crlib(*args: str, env_dir: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "import sys; from crlib.cli import main; sys.exit(main(sys.argv[1:]))", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          env=None if env_dir is None else {"CRLIB_SANDBOX_DIR": str(env_dir), "PATH": "/usr/bin"})


@pytest.fixture
def private_sandbox(tmp_path):
    """A sandbox of the test's own, for tests that stop, restart or reconfigure it."""
    state_dir = tmp_path / "sb"
    yield state_dir
    control.stop(state_dir)


def test_status_json_has_every_key(private_sandbox):
    assert crlib("sandbox", "start", "--state-dir", str(private_sandbox)).returncode == 0
    out = crlib("sandbox", "status", "--json", "--state-dir", str(private_sandbox))
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status.keys() >= STATUS_KEYS
    assert status["arm_endpoint"].startswith("https://127.0.0.1:")
    assert Path(status["ca_bundle"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert status["state_dir"] == str(private_sandbox)
    # docs/sandbox.md promises both: the mcr.microsoft.com stand-in and the vault.
    assert status["image_source"].startswith("127.0.0.1:") and status["image_source"] != "127.0.0.1:None"
    assert status["key_vault_url"].startswith("https://127.0.0.1:")
    human = crlib("sandbox", "status", "--state-dir", str(private_sandbox)).stdout
    assert f"image_source     {status['image_source']}" in human and "key_vault_url" in human
    assert crlib("sandbox", "stop", "--state-dir", str(private_sandbox)).stdout.strip() == "stopped"
    stopped = crlib("sandbox", "status", "--json", "--state-dir", str(private_sandbox))
    assert stopped.returncode == 3 and json.loads(stopped.stdout)["running"] is False


def test_state_dir_comes_from_the_environment(tmp_path):
    state_dir = tmp_path / "from-env"
    try:
        assert crlib("sandbox", "start", env_dir=state_dir).returncode == 0
        status = json.loads(crlib("sandbox", "status", "--json", env_dir=state_dir).stdout)
        assert status["state_dir"] == str(state_dir)
    finally:
        control.stop(state_dir)


def test_tls_verifies_only_with_the_sandbox_ca(sandbox):
    url = sandbox["arm_endpoint"] + "/_sandbox/health"
    with pytest.raises(urllib.error.URLError) as err:
        urllib.request.urlopen(url, context=ssl.create_default_context(cafile="/etc/ssl/certs/ca-certificates.crt"),
                               timeout=5)
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError)
    ok = urllib.request.urlopen(urllib.request.Request(url, headers=control.admin_headers(sandbox)),
                                context=ssl.create_default_context(cafile=sandbox["ca_bundle"]), timeout=5)
    assert json.load(ok) == {"status": "ok"}


def test_client_secret_credential_gets_a_token(credential):
    token = credential.get_token("https://management.azure.com/.default")
    assert token.token.count(".") == 2 and token.expires_on > time.time() + 600


def test_wrong_client_secret_is_refused(sandbox):
    wrong = ClientSecretCredential(sandbox["tenant_id"], sandbox["client_id"], "not-the-secret",
                                   authority=sandbox["authority"], disable_instance_discovery=True,
                                   connection_verify=sandbox["ca_bundle"])
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        wrong.get_token("https://management.azure.com/.default")


@pytest.mark.parametrize(("header", "code"), [
    (None, "AuthenticationFailed"),
    ("Basic abc", "AuthenticationFailed"),
    ("Bearer not.a.jwt", "InvalidAuthenticationToken"),
])
def test_arm_refuses_requests_without_a_valid_bearer(sandbox, header, code):
    headers = {"Authorization": header} if header else {}
    response = requests.get(f"{sandbox['arm_endpoint']}/subscriptions?api-version=2022-12-01", headers=headers,
                            verify=sandbox["ca_bundle"])
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert response.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")


def test_token_for_another_audience_is_refused(sandbox, credential):
    token = credential.get_token("https://vault.azure.net/.default").token
    response = requests.get(f"{sandbox['arm_endpoint']}/subscriptions?api-version=2022-12-01",
                            headers={"Authorization": f"Bearer {token}"}, verify=sandbox["ca_bundle"])
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"


def test_subscriptions_and_tenants(arm, sandbox):
    subs = arm.request("GET", "/subscriptions", "2022-12-01").json()["value"]
    assert [s["subscriptionId"] for s in subs] == [sandbox["subscription_id"]]
    assert subs[0]["tenantId"] == sandbox["tenant_id"] and subs[0]["state"] == "Enabled"
    tenants = arm.request("GET", "/tenants", "2022-12-01").json()["value"]
    assert tenants[0]["tenantId"] == sandbox["tenant_id"]
    other = arm.request("GET", "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups", "2024-03-01")
    assert other.status_code == 404 and other.json()["error"]["code"] == "SubscriptionNotFound"


@pytest.mark.parametrize(("version", "code"), [
    (None, "MissingApiVersionParameter"),
    ("banana", "InvalidApiVersionParameter"),
    ("2099-01-01", "NoRegisteredProviderFound"),
])
def test_unknown_api_version_is_refused(arm, version, code):
    response = arm.request("GET", "/subscriptions/{sub}/resourcegroups", version)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_resource_group_lifecycle(arm):
    path = "/subscriptions/{sub}/resourceGroups/rg-core-lifecycle"
    created = arm.request("PUT", path, "2024-03-01", json={"location": "westus", "tags": {"a": "b"}})
    assert created.status_code == 201 and created.json()["properties"]["provisioningState"] == "Succeeded"
    again = arm.request("PUT", path, "2024-03-01", json={"location": "westus", "tags": {"a": "b"}})
    assert again.status_code == 200
    # ARM paths are case-insensitive.
    assert arm.request("GET", path.upper().replace("{SUB}", "{sub}"), "2024-03-01").json()["tags"] == {"a": "b"}
    assert arm.request("HEAD", path, "2024-03-01").status_code == 204
    moved = arm.request("PUT", path, "2024-03-01", json={"location": "eastus"})
    assert moved.status_code == 409
    names = [g["name"] for g in arm.request("GET", "/subscriptions/{sub}/resourcegroups", "2024-03-01").json()["value"]]
    assert "rg-core-lifecycle" in names
    deleting = arm.request("DELETE", path, "2024-03-01")
    assert deleting.status_code == 202 and "Location" in deleting.headers and "Retry-After-Ms" in deleting.headers
    result = arm.session.get(deleting.headers["Location"])
    assert result.status_code in (200, 204)
    gone = arm.request("GET", path, "2024-03-01")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "ResourceGroupNotFound"
    assert arm.request("DELETE", path, "2024-03-01").status_code == 404


def test_invalid_resource_group_name(arm):
    response = arm.request("PUT", "/subscriptions/{sub}/resourceGroups/bad%23name", "2024-03-01",
                           json={"location": "westus"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "InvalidResourceGroup"


def test_resource_list_filter(arm):
    ok = arm.request("GET", "/subscriptions/{sub}/resources", "2024-03-01",
                     params={"$filter": "resourceType eq 'Microsoft.ContainerRegistry/registries'"})
    assert ok.status_code == 200 and isinstance(ok.json()["value"], list)
    bad = arm.request("GET", "/subscriptions/{sub}/resources", "2024-03-01",
                      params={"$filter": "substringof('x', name)"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidFilterInQueryString"


def test_request_log_records_reads_and_writes(arm, request_log):
    arm.request("PUT", "/subscriptions/{sub}/resourceGroups/rg-core-log", "2024-03-01", json={"location": "westus"})
    arm.request("GET", "/subscriptions/{sub}/resourceGroups/rg-core-log", "2024-03-01")
    arm.request("GET", "/subscriptions/{sub}/resourceGroups/rg-core-log", "1999-01-01")
    logged = [r for r in request_log() if r["path"].endswith("/rg-core-log")]
    assert [(r["method"], r["status"], r["wrote"], r["api_version"]) for r in logged] == [
        ("PUT", 201, True, "2024-03-01"), ("GET", 200, False, "2024-03-01"), ("GET", 400, False, "1999-01-01")]
    assert all(r["service"] == "arm" and r["duration_ms"] >= 0 for r in logged)


def test_long_running_operation_takes_its_profiled_time(private_sandbox):
    status = control.start(private_sandbox, latency_profile="benchmark")
    cred = ClientSecretCredential(status["tenant_id"], status["client_id"], status["client_secret"],
                                  authority=status["authority"], disable_instance_discovery=True,
                                  connection_verify=status["ca_bundle"])
    session = requests.Session()
    session.trust_env = False
    session.verify = status["ca_bundle"]
    session.headers["Authorization"] = "Bearer " + cred.get_token("https://management.azure.com/.default").token
    group = f"{status['arm_endpoint']}/subscriptions/{status['subscription_id']}/resourceGroups/rg-lro"
    session.put(group, params={"api-version": "2024-03-01"}, json={"location": "westus"}).raise_for_status()
    deleting = session.delete(group, params={"api-version": "2024-03-01"})
    assert deleting.status_code == 202
    # The benchmark profile gives resource group deletion 1 s: under a whole second remains, so
    # only the millisecond header is sent (a Retry-After of 0 would make azure-core wait 30 s).
    assert 500 < int(deleting.headers["Retry-After-Ms"]) <= 1000 and "Retry-After" not in deleting.headers
    pending = session.get(deleting.headers["Location"])
    assert pending.status_code == 202
    assert session.get(group, params={"api-version": "2024-03-01"}).json()["properties"]["provisioningState"] == \
        "Deleting"
    time.sleep(int(pending.headers["Retry-After-Ms"]) / 1000)
    assert session.get(deleting.headers["Location"]).status_code == 204
    assert session.get(group, params={"api-version": "2024-03-01"}).status_code == 404


def test_state_survives_a_restart_and_two_sandboxes_run_at_once(private_sandbox, sandbox, tmp_path):
    first = control.start(private_sandbox)
    assert first["arm_endpoint"] != sandbox["arm_endpoint"]  # the session sandbox runs alongside
    cred = ClientSecretCredential(first["tenant_id"], first["client_id"], first["client_secret"],
                                  authority=first["authority"], disable_instance_discovery=True,
                                  connection_verify=first["ca_bundle"])

    def group(status):
        token = cred.get_token("https://management.azure.com/.default").token
        return requests.get(f"{status['arm_endpoint']}/subscriptions/{status['subscription_id']}"
                            "/resourceGroups/kept?api-version=2024-03-01", verify=status["ca_bundle"],
                            headers={"Authorization": f"Bearer {token}"})

    token = cred.get_token("https://management.azure.com/.default").token
    requests.put(f"{first['arm_endpoint']}/subscriptions/{first['subscription_id']}/resourceGroups/kept"
                 "?api-version=2024-03-01", json={"location": "westus"}, verify=first["ca_bundle"],
                 headers={"Authorization": f"Bearer {token}"}).raise_for_status()
    control.stop(private_sandbox)
    second = control.start(private_sandbox)
    assert second["arm_endpoint"] == first["arm_endpoint"] and second["pid"] != first["pid"]
    assert group(second).status_code == 200
    control.reset(private_sandbox)
    assert group(second).status_code == 404


def test_sandbox_never_imports_crlib_step_code():
    root = Path(__file__).resolve().parents[2] / "crlib" / "sandbox"
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                absolute = node.level == 0 and node.module.startswith("crlib") and \
                    not node.module.startswith("crlib.sandbox")
                relative_out = node.level > len(path.relative_to(root).parts)
                if absolute or relative_out:
                    offenders.append(f"{path.name}: {node.module}")
            elif isinstance(node, ast.Import):
                offenders += [f"{path.name}: {a.name}" for a in node.names
                              if a.name.startswith("crlib") and not a.name.startswith("crlib.sandbox")]
    assert offenders == []
