"""The host provisioning script, run with bash on a fake device host (tests/stubs): a fresh device
waits for the deployment, no command line carries the connection string, the staging file is gone
and the written config.toml is root-only; after the deployment every check passes, and any other
check error still fails the script."""

from __future__ import annotations

import base64
import os
import secrets
import stat
from pathlib import Path

import pytest
from stubs.fakehost import FakeHost, shellcheck

from crlib import params
from crlib.context import RunContext, open_context
from crlib.secrets import LocalSecretStore
from crlib.steps.provisioning import CONFIG_FILE, CONNECTION_STRING_FILE, provisioning_script

PARAMETERS = Path(__file__).resolve().parents[2] / "parameters" / "sandbox.yaml"
# What the script may run for real (recorded); apt-get, dpkg, wget, iotedge, systemctl, id and stat are stubs.
REAL_COMMANDS = ("grep", "mkdir", "mktemp", "mv", "python3", "rm")
EDGEHUB_WAITING = ("waiting for the deployment: edge-hub-storage-mounted-from-host: "
                   "Could not check current state of edgeHub container")


def os_release(version: str) -> str:
    return f'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="{version}"\nPRETTY_NAME="Ubuntu {version} LTS"\n'


@pytest.fixture
def context(tmp_path) -> RunContext:
    """The sandbox lab's parameters aimed at Azure, as for real hardware: nothing to reach."""
    site = params.load_file(PARAMETERS, {"target.kind": "azure",
                                         "subscription_id": "00000000-0000-0000-0000-000000000000"})
    return open_context(site, secrets=LocalSecretStore(tmp_path / "secrets"))


@pytest.fixture
def host(tmp_path) -> FakeHost:
    host = FakeHost(tmp_path / "device", REAL_COMMANDS)
    host.write("/etc/os-release", os_release("22.04"))
    return host


@pytest.fixture
def key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def connection_string(context: RunContext, key: str, device_id: str | None = None) -> str:
    return (f"HostName={context.site.hub.name}.azure-devices.net;DeviceId={device_id or context.site.device.id};"
            f"SharedAccessKey={key}")


def stage(host: FakeHost, text: str, mode: int = 0o600) -> Path:
    """What the engineer puts on the device before running the script."""
    return host.write(CONNECTION_STRING_FILE, text + "\n", mode)


def test_a_fresh_device_is_provisioned_and_waits_for_the_deployment(context, host, key):
    staged = stage(host, connection_string(context, key))
    ran = host.run(provisioning_script(context))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert EDGEHUB_WAITING in ran.stdout
    assert "every check passed" not in ran.stdout
    assert not staged.exists()
    config = host.root / CONFIG_FILE.lstrip("/")
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    text = config.read_text()
    assert "[provisioning]\nsource = \"manual\"\n" in text
    assert f'connection_string = "{connection_string(context, key)}"' in text
    calls = host.calls()
    assert f"iotedge config apply -c {config}" in calls
    assert "iotedge check --output json" in calls
    assert "apt-get install -y aziot-edge=1.5.* aziot-identity-service=1.5.*" in calls
    # The staging file goes only once the configuration holds the connection string.
    assert calls.index(f"rm -f -- {staged}") > calls.index(f"iotedge config apply -c {config}")


def test_no_command_line_carries_the_connection_string(context, host, key):
    stage(host, connection_string(context, key))
    ran = host.run(provisioning_script(context))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    calls = host.calls()
    # The log holds the real commands too (mv, rm, python3), not only the stubs.
    assert any(call.startswith("mv ") for call in calls) and any(call.startswith("python3 ") for call in calls)
    leaks = [call for call in calls if key in call or "SharedAccessKey" in call]
    assert leaks == []


def test_a_second_run_after_the_deployment_reports_every_check_passed(context, host, key):
    stage(host, connection_string(context, key))
    script = provisioning_script(context)
    assert host.run(script).returncode == 0
    config = host.root / CONFIG_FILE.lstrip("/")
    written = config.read_text()
    (host.state / "edgehub-running").touch()  # the runbook's deployment: edgeHub runs
    host.log.unlink()

    again = host.run(script)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "iotedge check: every check passed" in again.stdout
    assert "waiting for the deployment" not in again.stdout
    assert "keeping it" in again.stdout and config.read_text() == written
    assert not any(call.startswith("iotedge config apply") for call in host.calls())


@pytest.mark.parametrize(("failing_check", "deployed"), [
    ("host-connect-iothub-amqp", False),
    # The edgeHub check failing for another reason than a missing container is a real problem.
    ("edge-hub-storage-mounted-from-host", True),
])
def test_any_other_check_error_fails_the_script(context, host, key, failing_check, deployed):
    stage(host, connection_string(context, key))
    if deployed:
        (host.state / "edgehub-running").touch()
    ran = host.run(provisioning_script(context), CRLIB_STUB_CHECK_ERROR=failing_check)
    assert ran.returncode != 0
    assert f"error: {failing_check}: " in ran.stdout
    assert "iotedge check found problems" in ran.stderr
    assert "is provisioned" not in ran.stdout


@pytest.mark.parametrize(("mode", "owner", "refusal"), [
    (0o644, None, "must be owned by root:root with mode 600, not root:root 644"),
    (0o600, "nobody:nogroup", "must be owned by root:root with mode 600, not nobody:nogroup 600"),
])
def test_a_staging_file_others_could_read_is_refused_before_any_install(context, host, key, mode, owner, refusal):
    stage(host, connection_string(context, key), mode)
    ran = host.run(provisioning_script(context), **({"CRLIB_STUB_OWNER": owner} if owner else {}))
    assert ran.returncode == 1 and refusal in ran.stderr
    assert not any(call.startswith("apt-get") for call in host.calls())


@pytest.mark.parametrize("text", ["HostName=hub.azure-devices.net;DeviceId=another-device;SharedAccessKey=a2V5",
                                  "HostName=hub.azure-devices.net;DeviceId=lab-edge-01;SharedAccessKey=a\"b",
                                  "not a connection string"])
def test_a_staging_file_without_this_devices_connection_string_is_refused(context, host, text):
    stage(host, text)
    ran = host.run(provisioning_script(context))
    assert ran.returncode == 1
    assert f"does not hold the connection string of device {context.site.device.id}" in ran.stderr
    assert not (host.root / CONFIG_FILE.lstrip("/")).exists()


def test_a_missing_staging_file_on_an_unprovisioned_device_is_refused(context, host):
    ran = host.run(provisioning_script(context))
    assert ran.returncode == 1 and f"{CONNECTION_STRING_FILE} is missing" in ran.stderr


def test_another_ubuntu_release_is_refused(context, host, key):
    host.write("/etc/os-release", os_release("24.04"))
    stage(host, connection_string(context, key))
    ran = host.run(provisioning_script(context))
    assert ran.returncode == 1 and "this script is for Ubuntu 22.04" in ran.stderr


def test_a_nested_device_names_its_parent_in_the_config(context, host, key):
    stage(host, connection_string(context, key))
    ran = host.run(provisioning_script(context, parent_hostname="parent-device.contoso.local"))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    text = (host.root / CONFIG_FILE.lstrip("/")).read_text()
    # A top-level key: before the first table.
    assert text.index('parent_hostname = "parent-device.contoso.local"') < text.index("[provisioning]")


@pytest.mark.parametrize("host_os", ["ubuntu22.04", "ubuntu24.04"])
@pytest.mark.parametrize("parent_hostname", [None, "parent-device.contoso.local"])
def test_the_provisioning_script_passes_shellcheck(context, tmp_path, host_os, parent_hostname):
    site = params.load(context.site.model_dump() | {"device": {"id": "edge-$(id)'x", "host_os": host_os}})
    script = provisioning_script(open_context(site, secrets=context.secrets), parent_hostname=parent_hostname)
    checked = shellcheck(script, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_fake_host_runs_no_command_it_was_not_given(context, host, key):
    """The guard the leak test relies on: a command outside the stubs and REAL_COMMANDS is not found."""
    stage(host, connection_string(context, key))
    (host.bin / "mv").unlink()
    ran = host.run(provisioning_script(context))
    assert ran.returncode != 0 and "mv: command not found" in ran.stderr
    assert os.environ.get("HOST_ROOT") is None  # the tests' own environment is left alone
