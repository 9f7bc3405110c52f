"""The inventory: shared, defaults and sites merged, and validated as a whole before anything is written."""

from __future__ import annotations

import pytest
import yaml
from fleet_kit import inventory_data

from crlib.errors import ParameterError
from crlib.inventory import load_inventory

SANDBOX = {"state_dir": "/nonexistent-sandbox"}  # nothing here reaches a sandbox


def write(tmp_path, data: dict, name: str = "fleet.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_sites_are_shared_then_defaults_then_their_own_entry(tmp_path):
    data = inventory_data(SANDBOX, tmp_path / "secrets", 3, tag="abc123")
    data["sites"][1]["connected_registry"]["mode"] = "ReadWrite"
    data["sites"][1]["client_access"] = {"scope_maps": {"rw-clients": {"hello-world": ["content/read", "content/write"]}},
                                         "tokens": [{"name": "rw-client", "scope_map": "rw-clients"}]}
    fleet = load_inventory(write(tmp_path, data))
    assert fleet.name == "f-abc123" and [s.site for s in fleet.sites] == ["sabc123-01", "sabc123-02", "sabc123-03"]
    first, second = fleet.sites[0], fleet.sites[1]
    assert first.device.id == "sabc123-01-edge"  # {site} in a default
    assert [t.name for t in first.client_access.tokens] == ["sabc123-01-client"]
    assert second.connected_registry.mode == "ReadWrite" and [t.name for t in second.client_access.tokens] == ["rw-client"]
    assert {s.registry.name for s in fleet.sites} == {"regfabc123"} and {s.hub.name for s in fleet.sites} == {"hub-fabc123"}
    assert fleet.shared_site.site == "f-abc123"


def test_every_problem_of_every_site_is_named_with_its_line_site_and_field(tmp_path):
    data = inventory_data(SANDBOX, tmp_path / "secrets", 4, tag="abc123")
    data["sites"][1]["connected_registry"]["name"] = "1bad"          # a site's own field
    data["sites"][3]["connected_registry"]["mode"] = "Sideways"
    data["sites"][2]["hub"] = {"name": "another-hub"}                 # shared: a site may not set it
    path = write(tmp_path, data)
    with pytest.raises(ParameterError) as caught:
        load_inventory(path)
    text = str(caught.value)
    assert len(caught.value.problems) == 3, caught.value.problems
    lines = path.read_text().splitlines()
    for where, field, _ in caught.value.problems:
        assert where.startswith(f"{path}:"), where
        assert field.startswith("site sabc123-0"), field
    assert "site sabc123-02: connected_registry.name" in text
    assert "site sabc123-04: connected_registry.mode" in text
    assert "site sabc123-03: hub" in text and "shared by every site" in text
    bad_line = int(caught.value.problems[0][0].rsplit(":", 1)[1])
    assert "1bad" in lines[bad_line - 1]


def test_names_that_are_one_resource_are_refused_when_two_sites_share_them(tmp_path):
    data = inventory_data(SANDBOX, tmp_path / "secrets", 3, tag="abc123")
    data["sites"][2]["connected_registry"]["name"] = data["sites"][0]["connected_registry"]["name"]
    data["sites"][1]["device"] = {"id": "sabc123-01-edge"}
    with pytest.raises(ParameterError) as caught:
        load_inventory(write(tmp_path, data))
    fields = [field for _, field, _ in caught.value.problems]
    assert fields == ["site sabc123-02: device.id", "site sabc123-03: connected_registry.name"], fields
    assert "is also site sabc123-01's" in str(caught.value)


def test_parents_that_form_a_cycle_are_refused(tmp_path):
    data = inventory_data(SANDBOX, tmp_path / "secrets", 2, tag="abc123")
    data["sites"][0]["connected_registry"]["parent"] = "crabc12302"
    data["sites"][1]["connected_registry"]["parent"] = "crabc12301"
    for entry, parent in zip(data["sites"], ("sabc123-02-edge", "sabc123-01-edge"), strict=True):
        entry["device"] = {"id": f"{entry['site']}-edge", "parent_device": parent}
    with pytest.raises(ParameterError, match="the parents form a cycle"):
        load_inventory(write(tmp_path, data))


def test_a_secret_in_an_inventory_is_refused_naming_the_line(tmp_path):
    data = inventory_data(SANDBOX, tmp_path / "secrets", 1, tag="abc123")
    path = write(tmp_path, data)
    path.write_text(path.read_text() + "# HostName=h;SharedAccessKeyName=x;SharedAccessKey=abcdef==\n")
    with pytest.raises(ParameterError, match=r"fleet.yaml:\d+: a SharedAccessKey looks like a secret"):
        load_inventory(path)


def test_a_single_sites_parameter_file_is_not_an_inventory(tmp_path):
    path = write(tmp_path, {"site": "one", "resource_group": "rg"})
    with pytest.raises(ParameterError, match="resource_group: is not an inventory key"):
        load_inventory(path)
