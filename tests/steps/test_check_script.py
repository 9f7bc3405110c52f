"""The on-device check script (checks.mode: on-device), run with bash and a stub `docker` on a fake
device host (tests/stubs): ReadWrite passes when the push is accepted, ReadOnly when the registry
refuses it; the token's password reaches docker on stdin only."""

from __future__ import annotations

import secrets

import pytest
from stubs.fakehost import FakeHost, shellcheck

from crlib.errors import ParameterError
from crlib.hosts.check_script import on_device_check_script

REAL_COMMANDS = ("grep", "mktemp", "rm")  # docker, id and stat are stubs
ENDPOINT = "192.168.0.20:8443"
TOKEN_FILE = "/etc/crlib/client-token"


def script(mode: str, *, token_file: str, device_id: str = "lab-edge-01") -> str:
    return on_device_check_script(site_name="sandbox-lab", device_id=device_id, endpoint=ENDPOINT,
                                  pull_image="hello-world:latest", push_repository="hello-world",
                                  push_tag="crlib-check-20250101", mode=mode, token_name="lab-client",
                                  token_file=token_file)


@pytest.fixture
def password() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture
def host(tmp_path, password) -> FakeHost:
    host = FakeHost(tmp_path / "device", REAL_COMMANDS)
    host.write(TOKEN_FILE, password + "\n", 0o600)
    return host


def run(host: FakeHost, mode: str, push: str):
    return host.run(script(mode, token_file=str(host.root / TOKEN_FILE.lstrip("/"))), CRLIB_STUB_PUSH=push)


def test_readwrite_passes_and_the_password_is_on_no_command_line(host, password):
    ran = run(host, "ReadWrite", "accept")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "PASS: every check passed" in ran.stdout
    assert f"PASS  push {ENDPOINT}/hello-world:crlib-check-20250101 accepted" in ran.stdout
    calls = host.calls()
    assert [call for call in calls if password in call] == []
    assert f"docker login --username lab-client --password-stdin {ENDPOINT}" in calls
    assert f"docker pull {ENDPOINT}/hello-world:latest" in calls
    assert f"docker push {ENDPOINT}/hello-world:crlib-check-20250101" in calls
    # docker had it, on stdin; its client configuration went with the script.
    assert (host.state / "docker-login-password").read_text().strip() == password
    assert list(host.tmp.iterdir()) == []


@pytest.mark.parametrize(("mode", "push", "verdict"), [
    ("ReadWrite", "deny", "a ReadWrite connected registry must accept it"),
    ("ReadOnly", "accept", "a ReadOnly connected registry must refuse it"),
    # No answer from the registry is no refusal.
    ("ReadOnly", "unreachable", "failed without the registry refusing it"),
])
def test_a_push_against_the_mode_fails(host, mode, push, verdict):
    ran = run(host, mode, push)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert verdict in ran.stdout and "FAIL: 1 check(s) failed" in ran.stdout


def test_readonly_passes_when_the_registry_refuses_the_push(host):
    ran = run(host, "ReadOnly", "deny")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "refused (ReadOnly): denied: This operation is not allowed on this registry." in ran.stdout
    assert "PASS: every check passed" in ran.stdout


@pytest.mark.parametrize(("mode", "owner"), [(0o644, None), (0o600, "nobody:nogroup")])
def test_a_token_file_others_could_read_is_refused_before_login(host, mode, owner):
    (host.root / TOKEN_FILE.lstrip("/")).chmod(mode)
    token_file = str(host.root / TOKEN_FILE.lstrip("/"))
    ran = host.run(script("ReadWrite", token_file=token_file), **({"CRLIB_STUB_OWNER": owner} if owner else {}))
    assert ran.returncode != 0 and "must be owned by root:root with mode 600" in ran.stderr
    assert not any(call.startswith("docker ") for call in host.calls())


@pytest.mark.parametrize("mode", ["ReadWrite", "ReadOnly"])
def test_the_check_script_passes_shellcheck(tmp_path, mode):
    checked = shellcheck(script(mode, token_file=TOKEN_FILE, device_id="edge-$(id)'x"), tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(("field", "overrides"), [
    ("device.address", {"endpoint": ""}),
    ("device.address", {"endpoint": "host; rm -rf /"}),
    ("connected_registry.mode", {"mode": "ReadMostly"}),
    ("token_file", {"token_file": "relative/token"}),
])
def test_values_a_script_cannot_use_are_refused(field, overrides):
    values = {"site_name": "s", "device_id": "d", "endpoint": ENDPOINT, "pull_image": "hello-world:latest",
              "push_repository": "hello-world", "push_tag": "t", "mode": "ReadWrite", "token_name": "lab-client"}
    with pytest.raises(ParameterError) as refused:
        on_device_check_script(**(values | overrides))
    assert refused.value.field == field
