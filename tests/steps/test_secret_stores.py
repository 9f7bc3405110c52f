"""Both secret stores keep the same contract; the Key Vault one is checked against the sandbox's vault."""

from __future__ import annotations

import stat
import uuid

import pytest
from azure.keyvault.secrets import SecretClient

from crlib.azure.names import HUB_SECRET
from crlib.context import open_context
from crlib.secrets import KeyVaultSecretStore, LocalSecretStore
from crlib.steps.hub import ensure_hub, ensure_resource_group


@pytest.fixture
def vault_client(sandbox, credential) -> SecretClient:
    return SecretClient(sandbox["key_vault_url"], credential, connection_verify=sandbox["ca_bundle"],
                        verify_challenge_resource=False)


@pytest.fixture(params=["local", "keyvault"])
def store(request, tmp_path, make_site):
    if request.param == "local":
        return LocalSecretStore(tmp_path / "secrets")
    # Built the way steps get it: from the site's parameters and the sandbox profile.
    secrets = open_context(make_site(secrets={"store": "keyvault"})).secrets
    assert isinstance(secrets, KeyVaultSecretStore)
    return secrets


def test_store_contract(store):
    name = f"contract-{uuid.uuid4().hex[:10]}"
    assert store.get(name) is None
    store.set(name, "first-value")
    assert store.get(name) == "first-value"
    store.set(name, "second-value")
    assert store.get(name) == "second-value"
    store.delete(name)
    assert store.get(name) is None
    store.delete(name)  # deleting what is gone is fine
    assert store.get(name) is None
    store.set(name, "after-delete")  # a deleted name can be set again (Key Vault: recovered first)
    assert store.get(name) == "after-delete"
    assert name in store.names("contract-")
    for bad in ["has space", "a/b", "", "x" * 128, "under_score"]:
        with pytest.raises(ValueError):
            store.get(bad)
        with pytest.raises(ValueError):
            store.set(bad, "value-123")
        with pytest.raises(ValueError):
            store.delete(bad)


def test_keyvault_set_on_a_soft_deleted_name_recovers_it_then_adds_a_version(make_site, vault_client, request_log):
    store = open_context(make_site(secrets={"store": "keyvault"})).secrets
    name = f"rerun-{uuid.uuid4().hex[:10]}"
    store.set(name, "first-run")
    store.delete(name)
    assert name in {d.name for d in vault_client.list_deleted_secrets()}
    store.set(name, "second-run")
    assert vault_client.get_secret(name).value == "second-run"
    # Recovered, not purged: the first run's version is still there, and the name left the deleted list.
    assert len(list(vault_client.list_properties_of_secret_versions(name))) == 2
    assert name not in {d.name for d in vault_client.list_deleted_secrets()}
    calls = [(r["method"], r["path"], r["status"]) for r in request_log() if r["service"] == "keyvault"
             and r["path"].endswith((f"/{name}", f"/{name}/recover"))]
    assert ("PUT", f"/secrets/{name}", 409) in calls, calls
    assert ("POST", f"/deletedsecrets/{name}/recover", 200) in calls, calls
    assert calls[-1] == ("PUT", f"/secrets/{name}", 200), calls


def test_local_store_files_are_private(tmp_path):
    store = LocalSecretStore(tmp_path / "secrets")
    store.set("private-one", "some-value")
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "secrets" / "private-one").stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "secrets").iterdir()] == ["private-one"]


def test_hub_connection_string_lands_in_the_sandbox_vault(sandbox, make_site, vault_client):
    site = make_site(secrets={"store": "keyvault"})
    assert site.secrets.vault_url is None
    ctx = open_context(site)
    ensure_resource_group(ctx)
    result = ensure_hub(ctx)
    name = f"crlib-{site.site}-{HUB_SECRET}"
    assert result.secrets == {HUB_SECRET: f"keyvault:{name}"}
    stored = vault_client.get_secret(name)
    host = result.details["host_name"]
    assert stored.value.startswith(f"HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey=")
    # A second run finds the same value and writes no new version.
    ensure_hub(ctx)
    assert len(list(vault_client.list_properties_of_secret_versions(name))) == 1


# --- Where the local store may be (issue 15): never where a run folder, and its archive, can reach it ---

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("local_dir", ["secrets", "./state/secrets", "../secrets", "runs/secrets",
                                       str(REPO / "secrets"), str(REPO / "runs" / "secrets"),
                                       str(REPO / "crlib" / "secrets"), str(REPO), "~/../" + str(REPO)[1:]])
def test_a_relative_or_in_repository_store_is_refused(sandbox, local_dir):
    from testkit import site_data

    from crlib import params
    from crlib.errors import ParameterError

    data = site_data(sandbox, secrets={"store": "local", "local_dir": local_dir})
    with pytest.raises(ParameterError) as refused:
        params.load(data)
    assert refused.value.field == "secrets.local_dir", refused.value


def test_a_store_inside_a_run_folder_or_the_working_runs_folder_is_refused(sandbox, tmp_path, monkeypatch):
    from testkit import site_data

    from crlib import params
    from crlib.errors import ParameterError

    run = tmp_path / "elsewhere" / "20260101T000000Z-lab-abcdef"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    for local_dir in (run / "secrets", tmp_path / "runs" / "x" / "secrets"):
        with pytest.raises(ParameterError) as refused:
            params.load(site_data(sandbox, secrets={"store": "local", "local_dir": str(local_dir)}))
        assert refused.value.field == "secrets.local_dir", refused.value


@pytest.mark.parametrize("local_dir", ["~/.local/state/crlib/secrets", "/tmp/crlib-secrets", "/var/lib/crlib/secrets"])
def test_an_absolute_store_outside_the_repository_is_accepted(sandbox, local_dir):
    from testkit import site_data

    from crlib import params

    site = params.load(site_data(sandbox, secrets={"store": "local", "local_dir": local_dir}))
    assert site.secrets.local_dir == local_dir
