"""The Arc host's parameters (issue 13): every rule refused naming its field, valid sites accepted.

No sandbox: the site is built inline, aimed at Azure with a local secret store.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from crlib import params
from crlib.errors import ParameterError

ROOT = Path(__file__).resolve().parents[2]
CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


def arc_site(**arc) -> dict:
    """A minimal valid Arc site, like testkit.site_data but without the sandbox."""
    return {
        "site": "arc-lab",
        "target": {"kind": "azure"},
        "resource_group": "rg-arc",
        "hub": {"name": "hub-arc"},
        "device": {"id": "arc-device"},
        "registry": {"name": "regarc01"},
        "connected_registry": {"name": "CrArc01", "repositories": ["hello-world"]},
        "secrets": {"store": "local", "local_dir": "/tmp/crlib-arc-test"},
        "records": {"signing_key": "keyvault:crlib-records", "vault_url": "https://arc-lab-kv.vault.azure.net/"},
        "host": {"kind": "arc", "arc": {"cluster": "arc-cluster-1", "service_cluster_ip": "10.0.0.100", **arc}},
    }


def _set(data: dict, dotted: str, value) -> dict:
    data = copy.deepcopy(data)
    target = data
    *parents, last = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return data


_DELETE = object()


@pytest.fixture
def pem(tmp_path):
    """Paths of a PEM certificate, a PEM key and a file that is neither."""
    (tmp_path / "tls.crt").write_text(CERT)
    (tmp_path / "tls.key").write_text(KEY)
    (tmp_path / "notes.txt").write_text("not PEM\n")
    return {"cert": str(tmp_path / "tls.crt"), "key": str(tmp_path / "tls.key"), "other": str(tmp_path / "notes.txt"),
            "missing": str(tmp_path / "absent.pem")}


def _refused(data: dict) -> ParameterError:
    with pytest.raises(ParameterError) as refused:
        params.load(data)
    return refused.value


def test_a_minimal_arc_site_loads_with_its_documented_defaults():
    site = params.load(arc_site())
    arc = site.host.arc
    assert site.host.kind == "arc" and arc is not None
    assert arc.cluster == "arc-cluster-1"
    assert arc.cluster_resource_group == "rg-arc"  # the site's resource group
    assert arc.extension_name == "crarc01"  # the connected registry's name, lowercase
    assert arc.service_cluster_ip == "10.0.0.100"
    assert arc.storage_request == "500Gi" and arc.storage_class is None
    assert arc.tls.mode == "cert-manager" and arc.tls.cert_manager_install is True
    assert arc.trust_distribution is True and arc.trust_distribution_node_selector is False
    assert arc.version is None and arc.auto_upgrade_minor_version is True


def test_existing_parameter_files_load_unchanged_as_iotedge():
    for name in ("sandbox.yaml", "example-azure.yaml"):
        site = params.load_file(ROOT / "parameters" / name)
        assert site.host == params.Host() and site.host.kind == "iotedge" and site.host.arc is None
        # Unchanged: the same values as before the host block existed.
        assert site.device.parent_device is None and site.device.iotedge_version == "1.5"


def test_an_iotedge_site_keeps_its_iotedge_only_fields():
    data = arc_site()
    data["host"] = {"kind": "iotedge"}
    data["device"] = {"id": "edge-1", "host_os": "ubuntu24.04", "iotedge_version": "1.5", "parent_device": "gw-1"}
    data["connected_registry"] = {**data["connected_registry"], "parent": "ParentReg1"}
    site = params.load(data)
    assert site.device.parent_device == "gw-1" and site.device.host_os == "ubuntu24.04"


# (dotted key under the site, bad value, the field the error must name, a piece of the message)
INVALID = [
    ("host.kind", "k3s", "host.kind", "'iotedge' or 'arc'"),
    ("host.arc", _DELETE, "host.arc", "required when host.kind is arc"),
    ("host.arc.unknown", 1, "host.arc.unknown", "unknown parameter"),
    ("host.arc.cluster", _DELETE, "host.arc.cluster", "Field required"),
    ("host.arc.cluster", "-arc", "host.arc.cluster", "not an Arc cluster name"),
    ("host.arc.cluster", "arc.cluster", "host.arc.cluster", "not an Arc cluster name"),
    ("host.arc.cluster", "a" * 64, "host.arc.cluster", "1-63"),
    ("host.arc.cluster_resource_group", "bad/group", "host.arc.cluster_resource_group", "not a resource group"),
    ("host.arc.cluster_resource_group", "ends.", "host.arc.cluster_resource_group", "not ending in '.'"),
    ("host.arc.extension_name", "Connected_Registry", "host.arc.extension_name", "Helm release name"),
    ("host.arc.extension_name", "x" * 54, "host.arc.extension_name", "at most 53"),
    ("host.arc.service_cluster_ip", _DELETE, "host.arc.service_cluster_ip", "Field required"),
    ("host.arc.service_cluster_ip", "10.0.0.300", "host.arc.service_cluster_ip",
     "'10.0.0.300' is not an IPv4 or IPv6 address"),
    ("host.arc.service_cluster_ip", "10.0.0.0/16", "host.arc.service_cluster_ip", "not a network"),
    ("host.arc.service_cluster_ip", "registry.local", "host.arc.service_cluster_ip", "not an IPv4 or IPv6"),
    ("host.arc.service_cluster_ip", "0.0.0.0", "host.arc.service_cluster_ip", "cannot be a service cluster IP"),
    ("host.arc.service_cluster_ip", "127.0.0.1", "host.arc.service_cluster_ip", "cannot be a service cluster IP"),
    ("host.arc.service_cluster_ip", 167772260, "host.arc.service_cluster_ip", "valid string"),
    ("host.arc.storage_class", "Standard_SSD", "host.arc.storage_class", "storage class name"),
    ("host.arc.storage_request", "500GB", "host.arc.storage_request", "500Gi"),
    ("host.arc.storage_request", "500 Gi", "host.arc.storage_request", "quantity"),
    ("host.arc.storage_request", "-1Gi", "host.arc.storage_request", "quantity"),
    ("host.arc.storage_request", "0Gi", "host.arc.storage_request", "quantity"),
    ("host.arc.version", "1.2", "host.arc.version", "semver"),
    ("host.arc.version", "v0.11.0", "host.arc.version", "semver"),
    ("host.arc.auto_upgrade_minor_version", "sometimes", "host.arc.auto_upgrade_minor_version", "boolean"),
    ("host.arc.trust_distribution", "maybe", "host.arc.trust_distribution", "boolean"),
    ("host.arc.tls.mode", "self-signed", "host.arc.tls.mode", "'cert-manager', 'secret' or 'files'"),
    ("host.arc.tls.cert_manager_install", "perhaps", "host.arc.tls.cert_manager_install", "boolean"),
]


@pytest.mark.parametrize(("key", "value", "field", "message"), INVALID,
                         ids=[f"{k}={v!r}"[:60] for k, v, _, _ in INVALID])
def test_each_arc_rule_is_refused_naming_the_field(key, value, field, message):
    refused = _refused(_set(arc_site(), key, value))
    assert refused.field == field, refused
    assert message in refused.message, refused
    assert "\n" not in str(refused)


def test_host_arc_with_kind_iotedge_is_refused_naming_host_arc():
    data = arc_site()
    data["host"]["kind"] = "iotedge"
    refused = _refused(data)
    assert refused.field == "host.arc"
    assert "set host.kind: arc or remove host.arc" in refused.message
    data["host"].pop("kind")  # the default kind is iotedge too
    assert _refused(data).field == "host.arc"


def test_pinning_a_version_needs_auto_upgrade_off():
    refused = _refused(arc_site(version="0.11.0"))
    assert refused.field == "host.arc.version"
    assert "auto_upgrade_minor_version" in refused.message and "0.11.0" in refused.message
    site = params.load(arc_site(version="0.11.0", auto_upgrade_minor_version="false"))
    assert site.host.arc is not None and site.host.arc.version == "0.11.0"
    assert params.load(arc_site(version="1.0.0-rc.1+build.5", auto_upgrade_minor_version=False))


@pytest.mark.parametrize(("dotted", "value"), [
    ("device.parent_device", "gateway-1"),
    ("device.parent_address", "gateway.local:8000"),
    ("connected_registry.parent", "ParentReg1"),
    ("connected_registry.sync_module_images", True),
    ("device.host_os", "ubuntu24.04"),
])
def test_iotedge_only_fields_are_refused_on_an_arc_host(dotted, value):
    refused = _refused(_set(arc_site(), dotted, value))
    assert refused.field == dotted, refused
    assert "remove it" in refused.message


def test_device_address_and_ca_cert_keep_their_meaning_on_arc(pem):
    data = arc_site()
    data["device"] = {"id": "arc-device", "address": "localhost:8443", "ca_cert": pem["cert"]}
    site = params.load(data)
    assert site.device.address == "localhost:8443" and site.device.ca_cert == pem["cert"]


def test_valid_arc_combinations_are_accepted(pem):
    cases = [
        arc_site(service_cluster_ip="fd00:10:96::a", storage_class="azurefile", storage_request="250Gi"),
        arc_site(cluster="My_Arc-Cluster", cluster_resource_group="rg-clusters", extension_name="cr.plant-1"),
        arc_site(tls={"mode": "cert-manager", "cert_manager_install": False}),
        arc_site(tls={"mode": "secret", "secret": "k8secret"}),
        arc_site(tls={"mode": "secret", "secret": "k8secret", "cert_manager_install": False},
                 trust_distribution=False),
        arc_site(tls={"mode": "files", "cert": pem["cert"], "key": pem["key"], "ca_cert": pem["cert"]}),
        arc_site(tls={"mode": "files", "cert": pem["cert"], "key": pem["key"]}, trust_distribution=False),
        arc_site(trust_distribution_node_selector=True),
        arc_site(storage_request="1.5Ti"),
    ]
    for data in cases:
        site = params.load(data)
        assert site.host.kind == "arc"
    assert params.load(cases[0]).host.arc.service_cluster_ip == "fd00:10:96::a"  # type: ignore[union-attr]
    tls = params.load(cases[3]).host.arc.tls  # type: ignore[union-attr]
    assert tls.cert_manager_install is False  # cert-manager is off without being asked
    assert params.load(cases[1]).host.arc.extension_name == "cr.plant-1"  # type: ignore[union-attr]


def test_ipv6_addresses_are_kept_in_canonical_form():
    site = params.load(arc_site(service_cluster_ip="FD00:0010:0096:0000::000A"))
    assert site.host.arc is not None and site.host.arc.service_cluster_ip == "fd00:10:96::a"


def test_tls_rules_name_the_tls_field(pem):
    cases = [
        ({"mode": "secret"}, "host.arc.tls.secret", "required with tls.mode secret"),
        ({"mode": "secret", "secret": "Bad_Secret"}, "host.arc.tls.secret", "Kubernetes secret name"),
        ({"mode": "secret", "secret": "s1", "cert_manager_install": True}, "host.arc.tls.cert_manager_install",
         "must be false with tls.mode secret"),
        ({"mode": "files", "key": pem["key"], "ca_cert": pem["cert"]}, "host.arc.tls.cert",
         "required with tls.mode files"),
        ({"mode": "files", "cert": pem["cert"], "ca_cert": pem["cert"]}, "host.arc.tls.key",
         "required with tls.mode files"),
        ({"mode": "files", "cert": pem["cert"], "key": pem["key"], "ca_cert": pem["cert"],
          "cert_manager_install": "true"}, "host.arc.tls.cert_manager_install", "must be false with tls.mode files"),
        ({"mode": "files", "cert": pem["missing"], "key": pem["key"]}, "host.arc.tls.cert", "is not a file"),
        ({"mode": "files", "cert": pem["other"], "key": pem["key"]}, "host.arc.tls.cert", "no PEM certificate"),
        ({"mode": "files", "cert": pem["cert"], "key": pem["cert"]}, "host.arc.tls.key", "no PEM private key"),
        ({"mode": "files", "cert": pem["cert"], "key": pem["key"], "ca_cert": pem["key"]}, "host.arc.tls.ca_cert",
         "no PEM certificate"),
        ({"secret": "k8secret"}, "host.arc.tls.secret", "only with tls.mode secret"),
        ({"mode": "secret", "secret": "s1", "cert": pem["cert"]}, "host.arc.tls.cert", "only with tls.mode files"),
        ({"key": pem["key"]}, "host.arc.tls.key", "only with tls.mode files, not cert-manager"),
    ]
    for tls, field, message in cases:
        refused = _refused(arc_site(tls=tls))
        assert (refused.field, message in refused.message) == (field, True), (tls, refused)


def test_trust_distribution_needs_a_ca(pem):
    refused = _refused(arc_site(tls={"mode": "files", "cert": pem["cert"], "key": pem["key"]}))
    assert refused.field == "host.arc.tls.ca_cert"
    assert "trust_distribution" in refused.message
    refused = _refused(arc_site(trust_distribution=False, trust_distribution_node_selector=True))
    assert refused.field == "host.arc.trust_distribution_node_selector"


def test_secret_values_are_refused_in_the_arc_block():
    refused = _refused(arc_site(tls={"mode": "secret", "secret": "SharedAccessKey=abc"}))
    assert "secret" in refused.message and "SharedAccessKey" not in str(refused)


def test_an_arc_site_passes_through_a_parameter_file_and_overrides(tmp_path):
    import yaml

    path = tmp_path / "arc.yaml"
    path.write_text(yaml.safe_dump(arc_site()))
    site = params.load_file(path, {"host.arc.storage_request": "750Gi", "host.arc.trust_distribution": "false"})
    assert site.host.arc is not None
    assert site.host.arc.storage_request == "750Gi" and site.host.arc.trust_distribution is False
    with pytest.raises(ParameterError) as refused:
        params.load_file(path, {"host.arc.service_cluster_ip": "10.0.0.300"})
    assert str(refused.value) == ("-p host.arc.service_cluster_ip: '10.0.0.300' is not an IPv4 or IPv6 address "
                                  "(a free address in the cluster's service CIDR)")


def test_an_arc_site_dumped_loads_again_the_same(pem):
    tls = {"mode": "files", "cert": pem["cert"], "key": pem["key"], "ca_cert": pem["cert"]}
    site = params.load(arc_site(tls=tls, version="0.11.0", auto_upgrade_minor_version=False))
    assert params.load(site.model_dump(mode="json")) == site
    iotedge = params.load_file(ROOT / "parameters" / "sandbox.yaml")
    assert params.load(iotedge.model_dump(mode="json")) == iotedge


def test_iotedge_defaults_on_an_arc_device_are_tolerated():
    data = _set(_set(arc_site(), "device.host_os", "ubuntu22.04"), "device.iotedge_version", "1.5")
    assert params.load(data).host.kind == "arc"
