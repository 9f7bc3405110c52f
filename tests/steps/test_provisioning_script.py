"""The host provisioning script, run with bash on a fake device host (tests/stubs): a fresh device
waits for the deployment, no command line carries the connection string, the staging file is gone
and the written config.toml is root-only; after the deployment every check passes, and any other
check error still fails the script. Nested IoT Edge: a gateway's config.toml names its hostname
and edge CA, a child's its parent, the root CA it trusts and the edgeAgent it pulls through its
parent, with the module pull token whose password comes from a second root-only staging file (never
in the script or on a command line, refused when others could read it); parent_hostname is the
parent's host without the API proxy's port; a middle layer's all of them; missing or malformed
fields are refused, naming the field."""

from __future__ import annotations

import base64
import os
import secrets
import stat
import tomllib
from pathlib import Path

import pytest
from stubs.fakehost import FakeHost, shellcheck

from crlib import params
from crlib.azure import names
from crlib.context import RunContext, open_context
from crlib.errors import ParameterError
from crlib.secrets import LocalSecretStore
from crlib.steps.provisioning import (
    CONFIG_FILE,
    CONNECTION_STRING_FILE,
    PULL_PASSWORD_FILE,
    bare_host,
    provisioning_script,
)

PARAMETERS = Path(__file__).resolve().parents[2] / "parameters" / "sandbox.yaml"
# What the script may run for real (recorded); apt-get, dpkg, wget, iotedge, systemctl, id and stat are stubs.
REAL_COMMANDS = ("grep", "mkdir", "mktemp", "mv", "python3", "rm")
EDGEHUB_WAITING = ("waiting for the deployment: edge-hub-storage-mounted-from-host: "
                   "Could not check current state of edgeHub container")
PARAMETERS_ARC = PARAMETERS.with_name("sandbox-arc.yaml")
# Nested IoT Edge, with the file names of Microsoft's how-to (how-to-connect-downstream-iot-edge-device).
ROOT_CA = "/var/aziot/certs/azure-iot-test-only.root.ca.cert.pem"
GATEWAY = {"gateway": True, "hostname": "gateway.contoso.local",
           "edge_ca_cert": "/var/aziot/certs/iot-edge-device-ca-gateway.cert.pem",
           "edge_ca_key": "/var/aziot/secrets/iot-edge-device-ca-gateway.key.pem", "trust_bundle_cert": ROOT_CA}
CHILD = {"parent_device": "gateway-device", "parent_address": "gateway.contoso.local", "trust_bundle_cert": ROOT_CA}
MIDDLE = {**CHILD, "gateway": True, "hostname": "10.1.0.4",
          "edge_ca_cert": "/var/aziot/certs/iot-edge-device-ca-middle.cert.pem",
          "edge_ca_key": "/var/aziot/secrets/iot-edge-device-ca-middle.key.pem"}
# A child pulls edgeAgent through its parent's API proxy (crlib's manifest: port 8000), as the
# connected registry tutorial's default_edge_agent does.
CHILD_AGENT = "$upstream:8000/azureiotedge-agent:1.5"
# ... with its module pull token (the connected registry tutorial's lower layer container_auth).
UPSTREAM = "$upstream:8000"


def os_release(version: str) -> str:
    return f'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="{version}"\nPRETTY_NAME="Ubuntu {version} LTS"\n'


@pytest.fixture
def context(tmp_path) -> RunContext:
    """The sandbox lab's parameters aimed at Azure, as for real hardware: nothing to reach."""
    site = params.load_file(PARAMETERS, {"target.kind": "azure",
                                         "subscription_id": "00000000-0000-0000-0000-000000000000",
                                         "records.signing_key": "keyvault:crlib-records",
                                         "records.vault_url": "https://lab-crlib-kv.vault.azure.net/"})
    return open_context(site, secrets=LocalSecretStore(tmp_path / "secrets"))


@pytest.fixture
def host(tmp_path) -> FakeHost:
    host = FakeHost(tmp_path / "device", REAL_COMMANDS)
    host.write("/etc/os-release", os_release("22.04"))
    return host


@pytest.fixture
def key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def pull_password() -> str:
    """Shaped like an ACR token password (base64 characters, '+' and '/' included)."""
    return "Pu11+/" + base64.b64encode(secrets.token_bytes(30)).decode()


def connection_string(context: RunContext, key: str, device_id: str | None = None) -> str:
    return (f"HostName={context.site.hub.name}.azure-devices.net;DeviceId={device_id or context.site.device.id};"
            f"SharedAccessKey={key}")


def stage(host: FakeHost, text: str, mode: int = 0o600) -> Path:
    """What the engineer puts on the device before running the script."""
    return host.write(CONNECTION_STRING_FILE, text + "\n", mode)


def stage_pull_password(host: FakeHost, password: str, mode: int = 0o600) -> Path:
    """A child's second staging file: its module pull token's password."""
    return host.write(PULL_PASSWORD_FILE, password + "\n", mode)


def nested(context: RunContext, device: dict) -> RunContext:
    """The site with these device fields; a child's connected registry is nested under its parent's."""
    data = context.site.model_dump()
    data["device"] = {**data["device"], **device}
    if device.get("parent_device"):
        data["connected_registry"] = {**data["connected_registry"], "mode": "ReadOnly", "parent": "gatewayregistry"}
    return open_context(params.load(data), secrets=context.secrets)


def place_certificates(host: FakeHost, device: dict) -> None:
    """What the engineer copies onto the device with the connection string."""
    for field in ("trust_bundle_cert", "edge_ca_cert"):
        if field in device:
            host.write(device[field], "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    if "edge_ca_key" in device:
        host.write(device["edge_ca_key"], "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n", 0o600)


def provisioned_config(context: RunContext, host: FakeHost, key: str, device: dict,
                       pull_password: str = "pull+Pass/word=") -> tuple[str, dict]:
    """Provision a nested device on the fake host: config.toml as text and as TOML."""
    ctx = nested(context, device)
    stage(host, connection_string(ctx, key))
    if device.get("parent_device"):
        stage_pull_password(host, pull_password)
    place_certificates(host, device)
    ran = host.run(provisioning_script(ctx))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert EDGEHUB_WAITING in ran.stdout
    text = (host.root / CONFIG_FILE.lstrip("/")).read_text()
    return text, tomllib.loads(text)


def globals_first(text: str, *keys: str) -> bool:
    """configure-device: the global parameters come before any table."""
    first_table = text.index("\n[")
    return all(-1 < text.find(f"\n{k} = ") < first_table for k in keys)


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


def test_a_plain_device_gets_no_gateway_or_child_settings(context, host, key):
    stage(host, connection_string(context, key))
    assert host.run(provisioning_script(context)).returncode == 0
    config = tomllib.loads((host.root / CONFIG_FILE.lstrip("/")).read_text())
    assert set(config) == {"provisioning"}


def test_a_gateway_names_its_hostname_edge_ca_and_trust_bundle(context, host, key):
    text, config = provisioned_config(context, host, key, GATEWAY)
    assert config["hostname"] == "gateway.contoso.local"
    assert config["trust_bundle_cert"] == f"file://{ROOT_CA}"
    assert config["edge_ca"] == {"cert": "file:///var/aziot/certs/iot-edge-device-ca-gateway.cert.pem",
                                 "pk": "file:///var/aziot/secrets/iot-edge-device-ca-gateway.key.pem"}
    assert globals_first(text, "hostname", "trust_bundle_cert")
    # A top-level gateway has no parent and pulls edgeAgent from where IoT Edge's default says.
    assert "parent_hostname" not in config and "agent" not in config
    assert config["provisioning"]["source"] == "manual"


def test_a_child_names_its_parent_trust_bundle_and_upstream_agent(context, host, key, pull_password):
    text, config = provisioned_config(context, host, key, CHILD, pull_password)
    # The parent host defaults to device.parent_address (the parent's device endpoint).
    assert config["parent_hostname"] == "gateway.contoso.local"
    assert config["trust_bundle_cert"] == f"file://{ROOT_CA}"
    assert f'[agent.config]\nimage = "{CHILD_AGENT}"' in text
    user = names.pull_token_name(context.site.connected_registry.name)
    assert config["agent"] == {"name": "edgeAgent", "type": "docker", "config": {
        "image": CHILD_AGENT, "auth": {"serveraddress": UPSTREAM, "username": user, "password": pull_password}}}
    assert globals_first(text, "parent_hostname", "trust_bundle_cert")
    assert "hostname" not in config and "edge_ca" not in config


def test_a_middle_layer_is_both_gateway_and_child(context, host, key):
    text, config = provisioned_config(context, host, key, MIDDLE)
    assert config["hostname"] == "10.1.0.4" and config["parent_hostname"] == "gateway.contoso.local"
    assert config["trust_bundle_cert"] == f"file://{ROOT_CA}"
    assert config["edge_ca"] == {"cert": "file:///var/aziot/certs/iot-edge-device-ca-middle.cert.pem",
                                 "pk": "file:///var/aziot/secrets/iot-edge-device-ca-middle.key.pem"}
    assert config["agent"]["config"]["image"] == CHILD_AGENT
    assert config["agent"]["config"]["auth"]["serveraddress"] == UPSTREAM
    assert globals_first(text, "hostname", "parent_hostname", "trust_bundle_cert")


def test_a_child_pulls_edge_agent_with_its_pull_token_from_a_staging_file(context, host, key, pull_password):
    ctx = nested(context, CHILD)
    script = provisioning_script(ctx)
    # The script names the secret and where it goes, never the value.
    secret = ctx.secret_name(names.PULL_SECRET)
    assert f"# Put that token's password (secret '{secret}'\n# in {ctx.secrets_location}," in script
    assert f"#   sudo sh -c 'umask 077; cat > {PULL_PASSWORD_FILE}'" in script
    assert pull_password not in script
    _, config = provisioned_config(context, host, key, CHILD, pull_password)
    staged = host.root / PULL_PASSWORD_FILE.lstrip("/")
    assert config["agent"]["config"]["auth"] == {
        "serveraddress": UPSTREAM, "username": f"{ctx.site.connected_registry.name}-pull", "password": pull_password}
    assert stat.S_IMODE((host.root / CONFIG_FILE.lstrip("/")).stat().st_mode) == 0o600
    assert not staged.exists()
    calls = host.calls()
    assert [call for call in calls if pull_password in call] == []
    apply = next(i for i, call in enumerate(calls) if call.startswith("iotedge config apply"))
    assert calls.index(f"rm -f -- {staged}") > apply
    # A second run, both staging files gone, keeps the configuration that holds them.
    again = host.run(script)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "keeping it" in again.stdout


@pytest.mark.parametrize(("mode", "refusal"), [
    (0o644, "must be owned by root:root with mode 600, not root:root 644"),
    (0o640, "must be owned by root:root with mode 600, not root:root 640"),
])
def test_a_pull_password_file_others_could_read_is_refused_before_any_install(context, host, key, pull_password,
                                                                              mode, refusal):
    ctx = nested(context, CHILD)
    stage(host, connection_string(ctx, key))
    place_certificates(host, CHILD)
    stage_pull_password(host, pull_password, mode)
    ran = host.run(provisioning_script(ctx))
    assert ran.returncode == 1 and f"{PULL_PASSWORD_FILE} {refusal}" in ran.stderr
    assert not any(call.startswith("apt-get") for call in host.calls())
    assert not (host.root / CONFIG_FILE.lstrip("/")).exists()


def test_a_child_without_its_pull_password_file_is_refused_before_any_install(context, host, key):
    ctx = nested(context, CHILD)
    staged = stage(host, connection_string(ctx, key))
    place_certificates(host, CHILD)
    ran = host.run(provisioning_script(ctx))
    assert ran.returncode == 1 and f"{PULL_PASSWORD_FILE} is missing" in ran.stderr
    assert not any(call.startswith("apt-get") for call in host.calls())
    assert staged.exists()  # nothing applied, nothing removed


@pytest.mark.parametrize("password", ['pass"word', "pass\\word", "pass word", ""])
def test_a_pull_password_file_a_toml_string_cannot_hold_is_refused(context, host, key, password):
    ctx = nested(context, CHILD)
    stage(host, connection_string(ctx, key))
    place_certificates(host, CHILD)
    stage_pull_password(host, password)
    ran = host.run(provisioning_script(ctx))
    assert ran.returncode == 1 and "does not hold a token password" in ran.stderr
    assert not any(call.startswith("apt-get") for call in host.calls())


def test_a_pull_password_without_a_connection_string_is_refused(context, host, key, pull_password):
    """A provisioned child keeps its config.toml, which would not take a newly staged password."""
    provisioned_config(context, host, key, CHILD, pull_password)
    staged = stage_pull_password(host, pull_password)
    host.log.unlink()
    ran = host.run(provisioning_script(nested(context, CHILD)))
    assert ran.returncode == 1 and f"{PULL_PASSWORD_FILE} is there but " in ran.stderr
    assert f"{CONNECTION_STRING_FILE} is not: this run keeps" in ran.stderr
    assert not any(call.startswith("apt-get") for call in host.calls())
    assert staged.exists()


def test_only_a_child_reads_a_pull_password_file(context, host, key, pull_password):
    staged = stage_pull_password(host, pull_password, 0o644)  # left over: not this device's business
    _, config = provisioned_config(context, host, key, GATEWAY)
    assert "agent" not in config and staged.exists()


@pytest.mark.parametrize(("parent_address", "parent_hostname"), [
    ("gateway.contoso.local:8000", "gateway.contoso.local"),
    ("10.1.0.4:8000", "10.1.0.4"),
    ("[fd00::1]:8000", "fd00::1"),
    ("[fd00::1]", "fd00::1"),
])
def test_parent_hostname_is_the_parent_address_without_its_port(context, host, key, parent_address,
                                                                parent_hostname):
    text, config = provisioned_config(context, host, key, {**CHILD, "parent_address": parent_address})
    assert config["parent_hostname"] == parent_hostname
    assert f'parent_hostname = "{parent_hostname}"\n' in text


@pytest.mark.parametrize(("given", "host_name"), [
    ("parent-device.contoso.local", "parent-device.contoso.local"),
    ("10.1.0.4", "10.1.0.4"),
    ("fd00::1", "fd00::1"),
    ("parent-device.contoso.local:443", "parent-device.contoso.local"),
])
def test_a_given_parent_hostname_keeps_its_host(given, host_name):
    assert bare_host(given) == host_name


@pytest.mark.parametrize("given", ["gw_1.local", "gw.local:port", "[gw.local]:8000", "fe80::1%eth0", "fd00::1::2",
                                   'gw.local"\nx = "y', ""])
def test_a_parent_hostname_that_is_no_host_is_refused(context, given):
    with pytest.raises(ParameterError) as refused:
        provisioning_script(context, parent_hostname=given) if given else bare_host(given)
    assert refused.value.field == "parent_hostname"


def test_the_agent_image_follows_the_sites_edge_agent_tag(context):
    ctx = nested(context, CHILD)
    data = ctx.site.model_dump()
    data["images"] = {**data["images"], "edge_agent": "azureiotedge-agent:1.5.21"}
    script = provisioning_script(open_context(params.load(data), secrets=context.secrets))
    assert "readonly AGENT_IMAGE='$upstream:8000/azureiotedge-agent:1.5.21'" in script


def test_the_edge_ca_key_is_only_referenced(context, host, key):
    """The key stays in its file on the device: not in the script, not on a command line."""
    script = provisioning_script(nested(context, GATEWAY))
    assert "PRIVATE KEY" not in script
    provisioned_config(context, host, key, GATEWAY)
    assert not any("PRIVATE KEY" in call or "MIIE" in call for call in host.calls())


@pytest.mark.parametrize("missing", ["trust_bundle_cert", "edge_ca_cert", "edge_ca_key"])
def test_a_certificate_missing_on_the_device_is_refused_before_any_install(context, host, key, missing):
    ctx = nested(context, MIDDLE)
    stage(host, connection_string(ctx, key))
    place_certificates(host, {k: v for k, v in MIDDLE.items() if k != missing})
    ran = host.run(provisioning_script(ctx))
    assert ran.returncode == 1 and f"{MIDDLE[missing]} is missing" in ran.stderr
    assert not any(call.startswith("apt-get") for call in host.calls())


@pytest.mark.parametrize(("device", "field", "words"), [
    ({"gateway": True, "edge_ca_cert": "/a/ca.pem", "edge_ca_key": "/a/ca.key"}, "device.hostname",
     "is required with gateway: true"),
    ({"gateway": True, "hostname": "gw.local", "edge_ca_key": "/a/ca.key"}, "device.edge_ca_cert",
     "is required with gateway: true"),
    ({"gateway": True, "hostname": "gw.local", "edge_ca_cert": "/a/ca.pem"}, "device.edge_ca_key",
     "is required with gateway: true"),
    ({"gateway": "maybe"}, "device.gateway", "is not a boolean"),
    ({"edge_ca_cert": "/a/ca.pem"}, "device.edge_ca_key", "is required with edge_ca_cert"),
    ({"edge_ca_key": "/a/ca.key"}, "device.edge_ca_cert", "is required with edge_ca_key"),
    ({"trust_bundle_cert": "certs/root.pem"}, "device.trust_bundle_cert", "is not an absolute path"),
    ({"trust_bundle_cert": "/var/aziot/my certs/root.pem"}, "device.trust_bundle_cert", "is not an absolute path"),
    ({"edge_ca_cert": '/a/ca".pem', "edge_ca_key": "/a/ca.key"}, "device.edge_ca_cert", "is not an absolute path"),
    ({"edge_ca_cert": "/a/ca.pem", "edge_ca_key": "/a/ca.key\n[x]"}, "device.edge_ca_key",
     "is not an absolute path"),
    ({"edge_ca_cert": "C:\\certs\\ca.pem", "edge_ca_key": "/a/ca.key"}, "device.edge_ca_cert",
     "is not an absolute path"),
    ({"hostname": "gw_1.local"}, "device.hostname", "is not an FQDN or IP address"),
    ({"hostname": "gw.local:443"}, "device.hostname", "is not an FQDN or IP address"),
    ({"hostname": "a" * 60 + ".com"}, "device.hostname", "shorter than 64 characters"),
    ({"hostname": "gw.local\nhostname"}, "device.hostname", "is not an FQDN or IP address"),
])
def test_missing_or_malformed_nested_fields_are_refused_naming_the_field(context, device, field, words):
    data = context.site.model_dump()
    data["device"] = {**data["device"], **device}
    with pytest.raises(ParameterError) as refused:
        params.load(data)
    assert refused.value.field == field and words in refused.value.message
    assert "\n" not in str(refused.value)  # one line, even for a value with a newline


def test_a_child_without_a_trust_bundle_gets_no_script(context):
    ctx = nested(context, {k: v for k, v in CHILD.items() if k != "trust_bundle_cert"})
    with pytest.raises(ParameterError) as refused:
        provisioning_script(ctx)
    assert refused.value.field == "device.trust_bundle_cert" and ctx.site.device.id in refused.value.message


@pytest.mark.parametrize("field", ["gateway", "hostname", "edge_ca_cert", "edge_ca_key", "trust_bundle_cert"])
def test_the_nested_fields_are_refused_on_an_arc_host(field):
    value = {"gateway": True, "hostname": "gw.local"}.get(field, "/var/aziot/certs/x.pem")
    overrides = {f"device.{field}": value}
    if field == "gateway":  # a complete gateway, so that the refusal is the Arc host's
        overrides |= {f"device.{k}": v for k, v in GATEWAY.items() if k != "trust_bundle_cert"}
    if field in ("edge_ca_cert", "edge_ca_key"):
        overrides |= {"device.edge_ca_cert": "/a/ca.pem", "device.edge_ca_key": "/a/ca.key"}
    with pytest.raises(ParameterError) as refused:
        params.load_file(PARAMETERS_ARC, overrides)
    assert refused.value.field.startswith("device.") and "means nothing on an Arc host" in refused.value.message


@pytest.mark.parametrize("host_os", ["ubuntu22.04", "ubuntu24.04"])
@pytest.mark.parametrize(("parent_hostname", "device"), [
    (None, {}),
    ("parent-device.contoso.local", {}),
    (None, GATEWAY),
    (None, CHILD),
    (None, MIDDLE),
], ids=["plain", "parent-hostname", "gateway", "child", "middle"])
def test_the_provisioning_script_passes_shellcheck(context, tmp_path, host_os, parent_hostname, device):
    ctx = nested(context, {"id": "edge-$(id)'x", "host_os": host_os, **device})
    script = provisioning_script(ctx, parent_hostname=parent_hostname)
    checked = shellcheck(script, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_fake_host_runs_no_command_it_was_not_given(context, host, key):
    """The guard the leak test relies on: a command outside the stubs and REAL_COMMANDS is not found."""
    stage(host, connection_string(context, key))
    (host.bin / "mv").unlink()
    ran = host.run(provisioning_script(context))
    assert ran.returncode != 0 and "mv: command not found" in ran.stderr
    assert os.environ.get("HOST_ROOT") is None  # the tests' own environment is left alone
