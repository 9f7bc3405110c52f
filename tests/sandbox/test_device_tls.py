"""A simulated device is reached the way a real one is: at the address of the host its operator
provisioned, trusted with that device's own IoT Edge CA, through an API proxy that obeys its
manifest settings. ARM's loginServer of a connected registry is never the way there."""

from __future__ import annotations

import socket
import ssl
import stat
import urllib.error
from pathlib import Path

import pytest
import requests
from cryptography import x509
from edge_story import all_running, device_address, manifest, provision, unique, wait_for
from test_device import deploy_connected_registry, wait_online
from test_device_failures import connection_string, status_detail

from crlib.cli import main as crlib_main
from crlib.sandbox import control


def provisioned(cloud) -> str:
    device_id = unique("edge")
    provision(cloud.status, cloud.edge_device(device_id))
    return device_id


def deployed(cloud, pull_token, **proxy) -> tuple[str, dict]:
    """A device running the API proxy (no connected registry) with the given proxy settings."""
    device_id = provisioned(cloud)
    cloud.deploy(device_id, manifest(cloud, pull_token=pull_token, connection_string=None, **proxy))
    wait_for(lambda: all_running(cloud.edge_agent_reported(device_id)), what="every module running")
    return device_id, control.device_show(cloud.status, device_id)


def handshake(address: str, cafile: str) -> x509.Certificate:
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection((host, int(port)), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def get_v2(address: str, ca: str) -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    return session.get(f"https://{address}/v2/", verify=ca, timeout=5)


def test_device_endpoint_serves_the_devices_own_ca_chain(cloud, pull_token):
    _, shown = deployed(cloud, pull_token)
    assert shown["listening"] is True
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(shown["address"], cloud.ca)  # the sandbox's CA does not vouch for a device
    server = handshake(shown["address"], shown["ca_cert"])
    root = x509.load_pem_x509_certificate(Path(shown["ca_cert"]).read_bytes())
    sandbox_ca = x509.load_pem_x509_certificate(Path(cloud.ca).read_bytes())
    assert server.issuer != root.subject and server.issuer != sandbox_ca.subject  # issued by the Edge CA
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]


def test_device_keys_are_private_and_each_device_has_its_own_ca(cloud, pull_token):
    _, first = deployed(cloud, pull_token)
    second = control.device_show(cloud.status, provisioned(cloud))
    assert Path(first["ca_cert"]).read_bytes() != Path(second["ca_cert"]).read_bytes()
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(first["address"], second["ca_cert"])
    folder = Path(first["ca_cert"]).parent
    keys = sorted(folder.glob("*.key"))
    assert len(keys) == 3 and all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)
    assert Path(first["ca_cert"]).is_absolute() and folder.is_relative_to(Path(cloud.status["state_dir"]))


def test_device_show_gives_the_address_and_ca_before_anything_runs(cloud, capsys):
    device_id = provisioned(cloud)
    shown = control.device_show(cloud.status, device_id)
    hub_host = cloud.hub_connection_string.split(";")[0].split("=", 1)[1]
    assert shown["deviceId"] == device_id and shown["hub"] == hub_host
    assert shown["address"].startswith("127.0.0.1:") and shown["listening"] is False
    assert Path(shown["ca_cert"]).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert control.device_show(cloud.status, device_id, hub=hub_host)["address"] == shown["address"]
    listed = next(d for d in control.edge_devices(cloud.status) if d["deviceId"] == device_id)
    assert (listed["address"], listed["ca_cert"]) == (shown["address"], shown["ca_cert"])
    with pytest.raises(control.DeviceNotFound):
        control.device_show(cloud.status, unique("nobody"))
    assert crlib_main(["sandbox", "device", "show", device_id, "--json",
                       "--state-dir", cloud.status["state_dir"]]) == 0
    printed = capsys.readouterr().out
    assert f'"address": "{shown["address"]}"' in printed and f'"ca_cert": "{shown["ca_cert"]}"' in printed


@pytest.mark.parametrize("proxy", [
    {"proxy_env": {"NGINX_DEFAULT_PORT": "8001", "CONNECTED_ACR_ROUTE_ADDRESS": "connectedRegistry:8080"}},
    {"proxy_env": {"CONNECTED_ACR_ROUTE_ADDRESS": "connectedRegistry:8080"}},  # nginx's default, 443
    {"proxy_ports": {"8000/tcp": [{"HostPort": "8080"}]}},
    {"proxy_ports": {}},
], ids=["nginx-port", "nginx-default-port", "host-port", "no-binding"])
def test_wrong_api_proxy_ports_leave_the_address_refusing_connections(cloud, pull_token, proxy):
    device_id, shown = deployed(cloud, pull_token, **proxy)
    assert shown["modules"]["IoTEdgeAPIProxy"] == "running" and shown["listening"] is False
    host, _, port = shown["address"].rpartition(":")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=5).close()
    # The quickstart's settings open the same address.
    cloud.deploy(device_id, manifest(cloud, pull_token=pull_token, connection_string=None))
    wait_for(lambda: control.device_show(cloud.status, device_id)["listening"], what="the address open")
    assert get_v2(shown["address"], shown["ca_cert"]).status_code == 502  # no registry module to route to


def test_wrong_route_answers_502_and_arm_never_names_the_address(cloud, pull_token):
    device_id, name, _ = deploy_connected_registry(cloud, pull_token, "ReadOnly")
    online = wait_online(cloud, name)
    address, ca = device_address(cloud.status, device_id)
    assert online.login_server is None or online.login_server.host is None
    assert get_v2(address, ca).status_code == 401  # the quickstart's route reaches the registry
    # Microsoft's manifest names its module connected-registry; this one is connectedRegistry.
    other_device, other_name = provisioned(cloud), unique("cr")
    cr, sync_token, password = cloud.connected_registry(other_name, "ReadOnly", ["hello-world"])
    cs = connection_string(other_name, sync_token.name, password, cr.parent.sync_properties.gateway_endpoint)
    cloud.deploy(other_device, manifest(cloud, pull_token=pull_token, connection_string=cs, proxy_env={
        "NGINX_DEFAULT_PORT": "8000", "CONNECTED_ACR_ROUTE_ADDRESS": "connected-registry:8080"}))
    wait_online(cloud, other_name)  # the registry runs; only the proxy's route is wrong
    other_address, other_ca = device_address(cloud.status, other_device)
    assert get_v2(other_address, other_ca).status_code == 502


def test_a_child_that_does_not_trust_its_parents_ca_cannot_activate(cloud, pull_token):
    parent_device, parent_name, _ = deploy_connected_registry(cloud, pull_token, "ReadWrite")
    parent = wait_online(cloud, parent_name)
    parent_address, _ = device_address(cloud.status, parent_device)
    child_device, child_name = provisioned(cloud), unique("cr")  # no parent_hostname: trusts no device CA
    _, sync_token, password = cloud.connected_registry(child_name, "ReadOnly", ["hello-world"], parent_id=parent.id)
    cloud.deploy(child_device, manifest(cloud, pull_token=pull_token, connection_string=connection_string(
        child_name, sync_token.name, password, parent_address)))
    offline, detail = status_detail(cloud, child_name, "PARENT_UNREACHABLE")
    assert offline.connection_state == "Offline" and "TLS verification" in detail.description


def test_the_address_and_ca_survive_a_restart_and_go_with_the_record(tmp_path):
    from edge_story import make_cloud

    status = control.start(tmp_path)
    try:
        cloud = make_cloud(status)
        device_id = provisioned(cloud)
        before = control.device_show(status, device_id)
        root_pem = Path(before["ca_cert"]).read_bytes()
        control.stop(tmp_path)
        status = control.start(tmp_path)
        after = control.device_show(status, device_id)
        assert (after["address"], after["ca_cert"]) == (before["address"], before["ca_cert"])
        assert Path(after["ca_cert"]).read_bytes() == root_pem
        control.reset(tmp_path)  # forgets every device record
        wait_for(lambda: not Path(before["ca_cert"]).parent.exists(), what="the device's CA removed")
        with pytest.raises(control.DeviceNotFound):
            control.device_show(status, device_id)
    finally:
        control.stop(tmp_path)


def test_device_show_needs_a_known_hub(cloud):
    device_id = provisioned(cloud)
    with pytest.raises(urllib.error.HTTPError) as refused:
        control.admin(cloud.status, "GET", f"/_sandbox/edge/devices/{device_id}?hub=nohub")
    assert refused.value.code == 404
