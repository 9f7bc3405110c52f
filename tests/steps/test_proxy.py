"""Every client crlib builds honours HTTPS_PROXY and NO_PROXY the way the Azure SDKs do, and keeps the
profile's CA: a whole run goes through a CONNECT proxy (tests/proxy.py), and the sandbox's request
log, which records each client's peer address, shows that every request crlib made came from one of
the proxy's outbound sockets.

The sandbox runs in its own process, started before the proxy variables are set, so its simulated
devices (python-dxf over requests, told apart by their User-Agent) talk to it directly."""

from __future__ import annotations

from urllib.parse import urlsplit

import certifi
import pytest
import requests
from proxy import ConnectProxy
from requestlog import log_from_now

from crlib import runbook
from crlib.context import open_context
from crlib.profiles import Clients, profile_for

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def proxy():
    with ConnectProxy() as running:
        yield running


@pytest.fixture
def proxied_env(monkeypatch, proxy):
    """HTTPS_PROXY at the test proxy, NO_PROXY empty, and a CA bundle in the environment that does not
    know the sandbox's CA (a client that let it replace the profile's CA would fail TLS)."""
    for name in PROXY_VARIABLES:
        for variant in (name, name.lower()):
            monkeypatch.delenv(variant, raising=False)
    for variant in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(variant, proxy.url)
    for variant in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(variant, "")
    for variant in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(variant, certifi.where())
    return proxy


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port


def _peer_port(row: dict) -> int | None:
    peer = row.get("peer")
    return int(peer.rsplit(":", 1)[1]) if peer else None


# The simulated devices pull and sync with python-dxf over requests, inside the sandbox's process; they
# name themselves last (`... IoTEdgeDevice/<id>`), or send those libraries' own User-Agents; crlib's
# requests-based clients send `crlib/...` instead.
DEVICE_AGENTS = ("python-requests/", "Docker-Client/")
DEVICE_TOKEN = "IoTEdgeDevice/"


def _from_crlib(rows: list[dict]) -> list[dict]:
    """The rows of requests this process made: not the simulated devices' ones."""
    return [r for r in rows if not (agent := r.get("user_agent") or "").startswith(DEVICE_AGENTS)
            and not agent.rsplit(" ", 1)[-1].startswith(DEVICE_TOKEN)]


def test_the_proxy_tunnels_and_records_and_refuses_what_is_not_connect(proxy, sandbox):
    arm = urlsplit(sandbox["arm_endpoint"])
    session = requests.Session()
    session.trust_env = False
    session.verify = sandbox["ca_bundle"]
    session.proxies = {"https": proxy.url}
    log = log_from_now(sandbox)
    response = session.get(sandbox["arm_endpoint"] + "/subscriptions", params={"api-version": "2022-12-01"})
    assert response.status_code == 401  # through the tunnel to ARM, which wants a token
    assert [t.target for t in proxy.tunnels] == [arm.netloc]
    rows = [r for r in log() if r["path"] == "/subscriptions"]
    assert [_peer_port(r) for r in rows] == [proxy.tunnels[0].local_port]
    assert rows[0]["user_agent"].startswith("python-requests/")

    plain = requests.Session()
    plain.trust_env = False
    assert plain.get(proxy.url + "/anything").status_code == 405  # not a CONNECT
    assert len(proxy.tunnels) == 1


def test_http_session_takes_the_proxy_and_no_proxy_from_the_environment_and_keeps_the_profile_ca(
        proxied_env, monkeypatch, make_site, sandbox):
    clients = Clients(profile_for(make_site()))
    url = sandbox["arm_endpoint"] + "/subscriptions"
    # Proxied; the environment's CA bundle (certifi) would fail against the sandbox's CA.
    assert clients.http_session().get(url, params={"api-version": "2022-12-01"}).status_code == 401
    assert [t.target for t in proxied_env.tunnels] == [urlsplit(url).netloc]
    # NO_PROXY naming the host: straight there.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert clients.http_session().get(url, params={"api-version": "2022-12-01"}).status_code == 401
    assert len(proxied_env.tunnels) == 1


def test_a_whole_run_goes_through_the_proxy(proxied_env, sandbox, make_site):
    site = make_site(secrets={"store": "keyvault"})
    log = log_from_now(sandbox)
    results = runbook.run(open_context(site))
    assert [r.step for r in results] == runbook.STEP_NAMES

    tunnels = proxied_env.tunnels
    outbound = {t.local_port for t in tunnels}
    rows = _from_crlib(log())
    counts = f"{len(tunnels)} tunnels through the proxy, {len(rows)} requests from crlib in the sandbox's log"
    assert rows, counts
    direct = [f"{r['service']} {r['method']} {r['path']} from {r['peer']} ({r['user_agent']})"
              for r in rows if _peer_port(r) not in outbound]
    assert not direct, f"{counts}; {len(direct)} did not come through the proxy: {direct[:10]}"
    # Each client stack crlib builds was among them: azure-core (management, Key Vault, azure-identity's
    # own transport), msrest (azure-iot-hub), and crlib's requests sessions and python-dxf.
    agents = {r["user_agent"] for r in rows}
    for stack in ("azsdk-python-mgmt-containerregistry/", "azsdk-python-azure-mgmt-iothub/",
                  "azsdk-python-keyvault-secrets/", "azsdk-python-identity/", " msrest/", "crlib/"):
        assert any(stack in agent for agent in agents), f"{counts}; no request from {stack!r}: {sorted(agents)}"
    crlib_services = {r["service"] for r in rows if r["user_agent"].startswith("crlib/")}
    assert {"arm", "registry"} <= crlib_services, (counts, crlib_services)

    targets = {t.target for t in tunnels}
    ports = {int(t.rsplit(":", 1)[1]) for t in targets}
    wanted = {"arm": _port(sandbox["arm_endpoint"]), "keyvault": _port(sandbox["key_vault_url"])}
    for service in ("iothub", "registry"):
        hosts = {r["host"] for r in rows if r["service"] == service}
        assert hosts, f"{counts}; no {service} request in the log"
        wanted |= {f"{service} {h}": _port(f"https://{h}") for h in hosts}
    missing = {name: port for name, port in wanted.items() if port not in ports}
    assert not missing, f"{counts}; no tunnel to {missing}; tunnels went to {sorted(targets)}"
