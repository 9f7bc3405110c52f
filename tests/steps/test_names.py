"""Every Azure name in the parameters follows Azure's documented rules (issue 15).

A name that breaks them is refused while the parameter file is loaded: the error names the field, in
one line, no run folder is made and no request reaches Azure (the sandbox logs none, and no HTTP
client is even asked to send). The rules and their sources are in crlib/params.py.
"""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from testkit import site_data

from crlib import params
from crlib.errors import ParameterError


def _tokens(**token):
    return lambda d: [{**d["client_access"]["tokens"][0], **token}]


def _scope_map(name: str):
    return lambda d: {name: next(iter(d["client_access"]["scope_maps"].values()))}


_ARC = {"kind": "arc", "arc": {"cluster": "arc-cluster-1", "service_cluster_ip": "10.0.0.100"}}

# (dotted key, a name breaking Azure's rules (or a function of the site giving it), the field named)
BAD_NAMES = [
    ("resource_group", "..", "resource_group"),
    ("resource_group", ".", "resource_group"),
    ("resource_group", "rg-ends-in.", "resource_group"),
    ("resource_group", "rg/../other", "resource_group"),
    ("resource_group", "rg with spaces", "resource_group"),
    ("resource_group", "r" * 91, "resource_group"),
    ("resource_group", "", "resource_group"),
    ("host", {**_ARC, "arc": {**_ARC["arc"], "cluster_resource_group": ".."}}, "host.arc.cluster_resource_group"),
    ("hub.name", "hub-ends-", "hub.name"),
    ("hub.name", "-hub-starts", "hub.name"),
    ("hub.name", "1234567", "hub.name"),
    ("hub.name", "hb", "hub.name"),
    ("hub.name", "h" * 51, "hub.name"),
    ("hub.name", "hub.dotted", "hub.name"),
    ("device.id", ".", "device.id"),
    ("device.id", "..", "device.id"),
    ("device.id", "edge/one", "device.id"),
    ("device.id", "edge;one", "device.id"),
    ("device.id", "édge", "device.id"),
    ("device.id", "d" * 129, "device.id"),
    ("device.parent_device", "parent/..", "device.parent_device"),
    ("registry.name", "reg", "registry.name"),
    ("registry.name", "reg-istry1", "registry.name"),
    ("registry.name", "reg_istry1", "registry.name"),
    ("registry.name", "r" * 51, "registry.name"),
    ("connected_registry.name", "1connected", "connected_registry.name"),
    ("connected_registry.name", "cr-dashed1", "connected_registry.name"),
    ("connected_registry.parent", "../parent1", "connected_registry.parent"),
    ("client_access.tokens", _tokens(name="tok_under1"), "client_access.tokens.0.name"),
    ("client_access.tokens", _tokens(name="tok"), "client_access.tokens.0.name"),
    ("client_access.tokens", _tokens(name="t" * 51), "client_access.tokens.0.name"),
    ("client_access.tokens", _tokens(scope_map="maps/../x"), "client_access.tokens.0.scope_map"),
    ("client_access.scope_maps", _scope_map("map"), "client_access.scope_maps"),
    ("client_access.scope_maps", _scope_map("scope map"), "client_access.scope_maps"),
    ("subscription_id", "-" * 36, "subscription_id"),
    ("subscription_id", "0000000-00000-0000-0000-000000000000", "subscription_id"),
    ("secrets.vault_url", "https://-vault.vault.azure.net", "secrets.vault_url"),
    ("secrets.vault_url", "https://kv.vault.azure.net", "secrets.vault_url"),
    ("secrets.vault_url", "https://my--vault.vault.azure.net", "secrets.vault_url"),
    ("secrets.vault_url", "https://9vault.vault.azure.net", "secrets.vault_url"),
    ("site", "Site_With_Underscore", "site"),
]


def _with(data: dict, dotted: str, value) -> dict:
    data = copy.deepcopy(data)
    value = value(data) if callable(value) else value
    target = data
    *parents, last = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value
    return data


@pytest.fixture
def no_http(monkeypatch):
    """Any HTTP request crlib's clients try (azure-core sends with requests) fails the test."""
    import requests

    sent = []

    def send(session, request, **kwargs):
        sent.append(request.url)
        raise AssertionError(f"a request was sent: {request.method} {request.url}")

    monkeypatch.setattr(requests.Session, "send", send)
    return sent


@pytest.mark.parametrize(("key", "value", "field"), BAD_NAMES,
                         ids=[f"{k}={v!r}"[:50] if not callable(v) else f"{k}:{i}" for i, (k, v, _) in
                              enumerate(BAD_NAMES)])
def test_a_name_breaking_azures_rules_is_refused_before_any_request(sandbox, request_log, no_http, tmp_path, key,
                                                                    value, field):
    from crlib import runner

    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(_with(site_data(sandbox), key, value)))
    runs = tmp_path / "runs"
    with pytest.raises(ParameterError) as refused:
        runner.Run.create(path, runs_dir=runs, phases=[], plan=True)
    assert refused.value.field == field, refused.value
    # "file:line: field: message" (the line where the file has the key, else the file alone)
    assert re.match(rf"^{re.escape(str(path))}(:\d+)?: {re.escape(field)}: ", str(refused.value)), refused.value
    assert "\n" not in str(refused.value)
    assert not runs.exists(), "a run folder was made for refused parameters"
    assert no_http == []
    # Devices left running by earlier tests still sync with their registries; that is not crlib.
    assert [r for r in request_log() if r["service"] != "registry"] == []


def test_at_least_twenty_bad_names_besides_the_dot_dot_group():
    assert ("resource_group", "..", "resource_group") in BAD_NAMES
    assert len(BAD_NAMES) - 1 >= 20
    assert len({field for _, _, field in BAD_NAMES}) >= 12


GOOD_NAMES = [
    ("resource_group", "rg_(lab).one-1"),
    ("resource_group", "r" * 90),
    ("resource_group", "grüppe"),  # letters as Char.IsLetterOrDigit has them
    ("hub.name", "h-1"),
    ("hub.name", "H" * 50),
    ("device.id", "edge:1.a+b%c_d#e*f?g!h(i),j=k@l$m'n"),
    ("device.id", "0012"),
    ("registry.name", "R" * 50),
    ("client_access.scope_maps", _scope_map("scope_map-1")),
    ("subscription_id", "0b1f6471-1bf0-4dda-aec3-cb9272f09590"),
    ("secrets.vault_url", "https://kv-lab-01.vault.azure.net/"),
]


@pytest.mark.parametrize(("key", "value"), GOOD_NAMES, ids=[f"{k}:{i}" for i, (k, _) in enumerate(GOOD_NAMES)])
def test_names_within_azures_rules_pass(sandbox, key, value):
    data = _with(site_data(sandbox), key, value)
    if key == "client_access.scope_maps":
        data["client_access"]["tokens"] = []
    params.load(data)
