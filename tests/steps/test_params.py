"""Bad input is refused before any write, with an error that names the field."""

from __future__ import annotations

import copy

import pytest
from testkit import site_data

from crlib import params
from crlib.errors import ParameterError


def _set(data: dict, dotted: str, value) -> dict:
    data = copy.deepcopy(data)
    target = data
    *parents, last = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {}) if not isinstance(target, list) else target[int(part)]
    if value is _DELETE:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return data


_DELETE = object()

# (dotted key to change, bad value, the field the error must name)
INVALID = [
    ("site", "Has Spaces", "site"),
    ("site", "", "site"),
    ("resource_group", "bad/group", "resource_group"),
    ("location", "West US", "location"),
    ("subscription_id", "not-a-guid", "subscription_id"),
    ("target.kind", "aws", "target.kind"),
    ("target.cloud", "AzureGermanCloud", "target.cloud"),
    ("hub.name", "h", "hub.name"),
    ("hub.name", "hub_with_underscore", "hub.name"),
    ("hub.sku", "S9", "hub.sku"),
    ("hub.capacity", 0, "hub.capacity"),
    ("hub.reuse", "maybe", "hub.reuse"),
    ("device.id", "bad id with spaces", "device.id"),
    ("device.host_os", "windows", "device.host_os"),
    ("registry.name", "abcd", "registry.name"),
    ("registry.name", "has-dash-in-it", "registry.name"),
    ("registry.sku", "Standard", "registry.sku"),
    ("registry.sku", "Basic", "registry.sku"),
    ("images.connected_registry", "acr/connected-registry", "images.connected_registry"),
    ("images.edge_agent", "Azureiotedge-Agent:1.5", "images.edge_agent"),
    ("images.source_registry", "https://mcr.microsoft.com", "images.source_registry"),
    ("connected_registry.name", "abcd", "connected_registry.name"),
    ("connected_registry.name", "1startswithdigit", "connected_registry.name"),
    ("connected_registry.name", "a" * 41, "connected_registry.name"),
    ("connected_registry.name", "has-dash", "connected_registry.name"),
    ("connected_registry.mode", "ReadAndWrite", "connected_registry.mode"),
    ("connected_registry.mode", "readwrite", "connected_registry.mode"),
    ("connected_registry.repositories", [], "connected_registry.repositories"),
    ("connected_registry.repositories", ["Hello-World"], "connected_registry.repositories"),
    ("connected_registry.repositories", ["hello-world", "hello-world"], "connected_registry.repositories"),
    ("connected_registry.sync_schedule", "every minute", "connected_registry.sync_schedule"),
    ("connected_registry.sync_schedule", "* * * *", "connected_registry.sync_schedule"),
    ("connected_registry.sync_schedule", "61 * * * *", "connected_registry.sync_schedule"),
    ("connected_registry.sync_window", "PT30M", "connected_registry.sync_window"),
    ("connected_registry.sync_window", "P8D", "connected_registry.sync_window"),
    ("connected_registry.sync_window", "three hours", "connected_registry.sync_window"),
    ("connected_registry.message_ttl", "PT12H", "connected_registry.message_ttl"),
    ("connected_registry.message_ttl", "P91D", "connected_registry.message_ttl"),
    ("connected_registry.message_ttl", "P1M", "connected_registry.message_ttl"),
    ("connected_registry.log_level", "Verbose", "connected_registry.log_level"),
    ("connected_registry.notifications", ["hello-world"], "connected_registry.notifications"),
    ("connected_registry.garbage_collection", {"enabled": "sometimes"}, "connected_registry.garbage_collection.enabled"),
    ("connected_registry.unknown", 1, "connected_registry.unknown"),
    ("client_access.tokens", [{"name": "abc", "scope_map": "x"}], "client_access.tokens.0.name"),
    ("checks.pull_image", "not-an-image", "checks.pull_image"),
    ("secrets.store", "vault", "secrets.store"),
    ("secrets.vault_url", "http://insecure.example", "secrets.vault_url"),
    ("bogus", "x", "bogus"),
    ("hub.extra", "x", "hub.extra"),
    ("device.password", "Password=abc", "device"),
]


@pytest.mark.parametrize(("key", "value", "field"), INVALID, ids=[f"{k}={v!r}"[:60] for k, v, _ in INVALID])
def test_invalid_parameter_is_refused_naming_the_field(sandbox, key, value, field):
    data = _set(site_data(sandbox), key, value)
    with pytest.raises(ParameterError) as refused:
        params.load(data)
    assert refused.value.field == field, refused.value
    assert refused.value.message


CROSS_FIELD = [
    ("a ReadWrite site whose push repository is not synced",
     lambda d: _set(_set(d, "checks", {"push_repository": "elsewhere"}), "connected_registry.mode", "ReadWrite")),
    ("a pull image outside the synced repositories", lambda d: _set(d, "checks", {"pull_image": "other:latest"})),
    ("a token naming an undefined scope map",
     lambda d: _set(d, "client_access.tokens", [{"name": "client-x1", "scope_map": "nope-nope"}])),
    ("a scope map with an unknown action",
     lambda d: _set(d, "client_access.scope_maps", {"maps-one": {"hello-world": ["content/execute"]}})),
    ("a connected registry that is its own parent",
     lambda d: _set(d, "connected_registry.parent", d["connected_registry"]["name"])),
    ("referrers listed by the on-device script, which cannot",
     lambda d: _set(d, "checks", {"mode": "on-device", "referrers": True})),
    ("keyvault without a vault on Azure",
     lambda d: _set(_set(d, "secrets", {"store": "keyvault"}), "target", {"kind": "azure"})),
]


@pytest.mark.parametrize(("case", "change"), CROSS_FIELD, ids=[c for c, _ in CROSS_FIELD])
def test_inconsistent_parameters_are_refused(sandbox, case, change):
    with pytest.raises(ParameterError) as refused:
        params.load(change(site_data(sandbox)))
    assert refused.value.message
    assert refused.value.field != "(site)", "a cross-field refusal must still name a field"


def test_over_forty_invalid_sets_and_no_request_follows(sandbox, request_log):
    assert len(INVALID) + len(CROSS_FIELD) >= 40
    for key, value, _ in INVALID:
        with pytest.raises(ParameterError):
            params.load(_set(site_data(sandbox), key, value))
    # Devices left running by earlier tests still sync with their registries; that is not crlib.
    assert [r for r in request_log() if r["service"] != "registry"] == []


def test_papermill_strings_are_coerced_explicitly(sandbox):
    data = site_data(sandbox)
    data["hub"] = {**data["hub"], "reuse": "false", "capacity": "2"}
    data["device"] = {**data["device"], "id": "0012"}
    site = params.load(data)
    assert site.hub.reuse is False and site.hub.capacity == 2
    assert site.device.id == "0012"
    data["hub"]["reuse"] = "TRUE"
    assert params.load(data).hub.reuse is True


def test_secret_values_are_refused_but_references_pass(sandbox):
    data = site_data(sandbox)
    data["secrets"] = {"store": "local", "local_dir": "/tmp/x"}
    assert params.load(data).secrets.store == "local"
    data["device"] = {**data["device"], "parent_device": "HostName=h;SharedAccessKey=abc"}
    with pytest.raises(ParameterError, match="secret"):
        params.load(data)
    nested = site_data(sandbox)
    nested["connected_registry"]["notifications"] = ["SyncTokenPassword=abc:*:*"]
    with pytest.raises(ParameterError, match="secret"):
        params.load(nested)


def test_overrides_apply_to_a_parameter_file(tmp_path, sandbox):
    import yaml

    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site_data(sandbox)))
    site = params.load_file(path, {"connected_registry.mode": "ReadOnly", "hub.reuse": "false"})
    assert site.connected_registry.mode == "ReadOnly" and site.hub.reuse is False
    with pytest.raises(ParameterError) as refused:
        params.load_file(path, {"connected_registry.mode": "Sideways"})
    assert refused.value.field == "connected_registry.mode"


def test_example_parameter_files_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "parameters"
    assert params.load_file(root / "sandbox.yaml").target.kind == "sandbox"
    assert params.load_file(root / "example-azure.yaml").target.kind == "azure"


# --- Parameter files holding secrets (issue 15): refused naming the line, the value never shown ---

_JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjcmxpYi10ZXN0In0.c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
_ACR = "Q" * 20 + "x7/+k" * 4 + "ab" + "+ACRB" + "c9d/e"  # 42 base64, +ACR, A-D, 5 base64: 52
SECRET_LINES = [
    ("# sas: https://a.blob.core.windows.net/c?sv=2022-11-02&sig=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5%2B", "SAS signature"),
    ("# SharedAccessSignature sr=hub.azure-devices.net%2Fdevices%2Fd&sig=abc&se=1", "SAS token"),
    (f"# token: {_JWT}", "JWT"),
    ("# HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=c2VjcmV0", "SharedAccessKey"),
    ("# DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0", "AccountKey"),
    ("# -----BEGIN RSA PRIVATE KEY-----", "PEM block"),
    ("# -----BEGIN CERTIFICATE-----", "PEM block"),
    (f"# the client token's: {_ACR}", "ACR password"),
    ("# password: Hunter2Hunter2", "password"),
    ("# ConnectedRegistryName=c;SyncTokenName=c;SyncTokenPassword=c2VjcmV0", "SyncTokenPassword"),
]


@pytest.mark.parametrize(("line", "kind"), SECRET_LINES, ids=[k for _, k in SECRET_LINES])
def test_a_parameter_file_holding_a_secret_is_refused_naming_the_line(tmp_path, sandbox, line, kind):
    import yaml

    text = yaml.safe_dump(site_data(sandbox))
    lines = text.splitlines()
    lines.insert(3, line)  # a comment, which YAML drops: refused all the same
    path = tmp_path / "site.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ParameterError) as refused:
        params.load_file(path)
    assert str(refused.value).startswith(f"{path}:4: ") and kind in str(refused.value), refused.value
    assert str(refused.value).endswith("looks like a secret; parameter files hold references only")
    secret = line.split("=", 1)[-1].split(": ", 1)[-1]
    assert secret[:3] not in str(refused.value).removeprefix(f"{path}:4: ").replace(kind, "")


NOT_SECRETS = [
    "# the sync password is kept as secret crlib-<site>-sync-password, in the store",
    "# password: see the store",
    "# client token password: local:crlib-lab-client-token-t1",
    "# design=xyz; signature=none; sig=short",
    "# SharedAccessKeyName=iothubowner (a policy name, not a key)",
    "# images come from mcr.microsoft.com/azureiotedge-agent:1.5",
    "# registry: " + "A" * 52,  # long, but not ACR's identifiable shape
]


@pytest.mark.parametrize("line", NOT_SECRETS)
def test_ordinary_comments_are_not_mistaken_for_secrets(tmp_path, sandbox, line):
    import yaml

    path = tmp_path / "site.yaml"
    path.write_text(line + "\n" + yaml.safe_dump(site_data(sandbox)))
    params.load_file(path)


def test_every_shipped_parameter_file_is_free_of_secrets():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "parameters"
    for path in sorted(root.glob("*.yaml")):
        params.refuse_secrets(path.read_text(), str(path))


def _patterns(model: type, seen: set | None = None) -> set[str]:
    """Every Field(pattern=...) of a model and the models under it."""
    seen = set() if seen is None else seen
    found: set[str] = set()
    if model in seen:
        return found
    seen.add(model)
    for field in model.model_fields.values():
        found |= {m.pattern for m in field.metadata if isinstance(getattr(m, "pattern", None), str)}
        inner = params._inner_model(field.annotation)
        if inner is not None:
            found |= _patterns(inner, seen)
    return found


def test_every_field_pattern_has_plain_words():
    patterns = _patterns(params.Site)
    assert patterns, "no Field(pattern=...) found: the walk is broken"
    assert patterns <= set(params.PATTERN_WORDS), patterns - set(params.PATTERN_WORDS)


def test_every_problem_is_listed_with_its_file_line_and_field(tmp_path, sandbox):
    import yaml

    data = site_data(sandbox)
    data["resource_grup"] = data.pop("resource_group")
    data["images"] = {"source_registry": "MCR.example.com"}
    data["hub"]["sku"] = "Z9"
    data["hub"]["extra_key"] = 1
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    lines = path.read_text().splitlines()

    def line(text: str) -> int:
        return next(n for n, li in enumerate(lines, start=1) if li.lstrip().startswith(text))

    with pytest.raises(ParameterError) as refused:
        params.load_file(path)
    problems = refused.value.problems
    assert [(where, field) for where, field, _ in problems] == [
        (f"{path}:{line('sku: Z9')}", "hub.sku"), (f"{path}:{line('extra_key')}", "hub.extra_key"),
        (f"{path}:{line('source_registry')}", "images.source_registry"),
        (f"{path}:{line('resource_grup')}", "resource_grup")], problems
    assert refused.value.field == "hub.sku" and refused.value.where == problems[0][0]
    text = str(refused.value)
    assert "\n" not in text and text.count("; ") >= 3
    assert "hub.extra_key: unknown parameter (hub takes name, sku, capacity" in text
    assert "'MCR.example.com' is not a registry host (lowercase letters" in text
    assert "resource_grup: unknown parameter (did you mean 'resource_group'?)" in text
    assert "must be 'F1', 'B1', 'B2', 'B3', 'S1', 'S2' or 'S3', not 'Z9'" in text


def test_an_override_is_named_as_the_option(tmp_path, sandbox):
    import yaml

    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site_data(sandbox)))
    with pytest.raises(ParameterError) as refused:
        params.load_file(path, {"hub.capacity": 0, "connected_registry.mode": "ReadOnly"})
    assert str(refused.value) == "-p hub.capacity: must be at least 1, not 0"
    assert refused.value.field == "hub.capacity"
    site = params.load_file(path, {"hub.capacity": 3, "connected_registry.mode": "ReadOnly"})
    assert site.hub.capacity == 3 and site.connected_registry.mode == "ReadOnly"


@pytest.mark.parametrize(("text", "line"), [("site: a\nhub: [x\n", 3), ("site: a\n  bad: indent\n", 2),
                                            ("a: 1\n\tb: 2\n", 2)])
def test_malformed_yaml_names_the_file_and_line(tmp_path, text, line):
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(ParameterError) as refused:
        params.load_file(path)
    assert str(refused.value).startswith(f"{path}:{line}: not valid YAML"), refused.value


def test_a_missing_or_unreadable_file_is_a_parameter_error(tmp_path):
    with pytest.raises(ParameterError, match="no such parameter file"):
        params.load_file(tmp_path / "nope.yaml")
    with pytest.raises(ParameterError, match="is a folder"):
        params.load_file(tmp_path)
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ParameterError, match="holds list, not a mapping of parameters"):
        params.load_file(tmp_path / "list.yaml")
