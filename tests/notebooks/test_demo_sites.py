"""The sites `make demo` runs (scripts/demo.sh) and the Arc example: they load as shipped, the two
sandbox sites share one sandbox without colliding, and the cluster the demo connects is the one
the Arc site names, with its service IP inside the CIDR and its storage class."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from crlib import params

ROOT = Path(__file__).resolve().parents[2]
PARAMETERS = ROOT / "parameters"
DEMO = ROOT / "scripts" / "demo.sh"


def test_the_arc_sites_load_as_arc_sites():
    sandbox = params.load_file(PARAMETERS / "sandbox-arc.yaml")
    assert sandbox.target.kind == "sandbox" and sandbox.host.kind == "arc"
    azure = params.load_file(PARAMETERS / "example-azure-arc.yaml")
    assert azure.target.kind == "azure" and azure.host.kind == "arc"
    assert azure.secrets.store == "keyvault" and azure.secrets.vault_url
    assert azure.device.address  # the checks need it on Azure; the sandbox fills it in
    for site in (sandbox, azure):
        assert site.host.arc is not None and site.host.arc.tls.mode == "cert-manager"


def test_the_two_demo_sites_share_a_sandbox_without_colliding():
    arc = params.load_file(PARAMETERS / "sandbox-arc.yaml")
    iotedge = params.load_file(PARAMETERS / "sandbox.yaml")
    assert iotedge.host.kind == "iotedge"
    assert arc.target == iotedge.target
    for name in (lambda s: s.site, lambda s: s.resource_group, lambda s: s.registry.name,
                 lambda s: s.connected_registry.name, lambda s: s.hub.name, lambda s: s.device.id,
                 lambda s: sorted(s.client_access.scope_maps), lambda s: [t.name for t in s.client_access.tokens]):
        assert name(arc) != name(iotedge)


def test_the_demo_runs_both_sites_and_connects_the_arc_sites_cluster_first():
    script = DEMO.read_text()
    assert script.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in script
    assert "arc_params=parameters/sandbox-arc.yaml" in script and "iotedge_params=parameters/sandbox.yaml" in script
    connect = script.index("sandbox cluster connect")
    assert connect < script.index('"$crlib" run --yes "$arc_params"') < script.index('"$crlib" run --yes "$iotedge_params"')
    assert script.count('"$crlib" archive verify') == 2

    arc = params.load_file(PARAMETERS / "sandbox-arc.yaml").host.arc
    assert arc is not None
    cidr = re.search(r"--service-cidr (\S+)", script)
    storage = re.search(r"--storage-class (\S+)", script)
    assert cidr and storage
    assert ipaddress.ip_address(arc.service_cluster_ip) in ipaddress.ip_network(cidr.group(1))
    assert storage.group(1) == arc.storage_class
