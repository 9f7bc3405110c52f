"""The sandbox's key vault, through the real azure-keyvault-secrets client."""

from __future__ import annotations

import uuid

import pytest
import requests
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.keyvault.secrets import SecretClient

from crlib.sandbox import control


@pytest.fixture(scope="module")
def client(sandbox, credential) -> SecretClient:
    # The vault is 127.0.0.1:<port>, so the challenge's resource cannot match its domain.
    return SecretClient(sandbox["key_vault_url"], credential, connection_verify=sandbox["ca_bundle"],
                        verify_challenge_resource=False)


def _name() -> str:
    return f"s-{uuid.uuid4().hex[:12]}"


def _raw(sandbox) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = sandbox["ca_bundle"]
    return session


def test_status_names_the_vault_on_its_own_port(sandbox):
    url = sandbox["key_vault_url"]
    assert url.startswith("https://127.0.0.1:") and url.endswith("/")
    assert url.rstrip("/") != sandbox["arm_endpoint"]
    assert control.admin(sandbox, "GET", "/_sandbox/status")["key_vault_url"] == url


def test_set_get_list_new_version_delete_and_purge(sandbox, client):
    name = _name()
    first = client.set_secret(name, "value-one", content_type="text/plain", tags={"site": "lab"})
    assert first.id == f"{sandbox['key_vault_url']}secrets/{name}/{first.properties.version}"
    assert first.properties.enabled and first.properties.created_on and first.properties.updated_on
    assert first.properties.recovery_level == "Recoverable+Purgeable"

    got = client.get_secret(name)
    assert (got.value, got.properties.content_type, got.properties.tags) == ("value-one", "text/plain", {"site": "lab"})
    assert name in {p.name for p in client.list_properties_of_secrets()}

    second = client.set_secret(name, "value-two")
    assert second.properties.version != first.properties.version
    assert client.get_secret(name).value == "value-two"
    assert client.get_secret(name, first.properties.version).value == "value-one"
    assert {p.version for p in client.list_properties_of_secret_versions(name)} == {
        first.properties.version, second.properties.version}

    deleted = client.begin_delete_secret(name).result()
    assert deleted.name == name and deleted.deleted_date and deleted.recovery_id.endswith(f"/deletedsecrets/{name}")
    with pytest.raises(ResourceNotFoundError):
        client.get_secret(name)
    assert name not in {p.name for p in client.list_properties_of_secrets()}
    assert client.get_deleted_secret(name).name == name
    client.purge_deleted_secret(name)
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret(name)
    # Purged, the name may be used again.
    assert client.set_secret(name, "value-three").value == "value-three"


def test_begin_delete_wait_then_get_is_not_found(client):
    name = _name()
    client.set_secret(name, "short-lived")
    client.begin_delete_secret(name).wait()
    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_secret(name)
    assert missing.value.error.code == "SecretNotFound"
    with pytest.raises(ResourceNotFoundError):
        client.begin_delete_secret(name)


def test_request_without_a_token_is_challenged(sandbox):
    response = _raw(sandbox).get(sandbox["key_vault_url"] + "secrets/anything", params={"api-version": "7.6"})
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert f'authorization="{sandbox["authority"]}/{sandbox["tenant_id"]}"' in challenge
    assert 'resource="https://vault.azure.net"' in challenge


def test_tokens_for_other_audiences_are_refused(sandbox, arm_token, credential):
    session = _raw(sandbox)
    url = sandbox["key_vault_url"] + "secrets/anything"
    response = session.get(url, params={"api-version": "7.6"}, headers={"Authorization": f"Bearer {arm_token}"})
    assert response.status_code == 401 and "WWW-Authenticate" in response.headers
    vault_token = credential.get_token("https://vault.azure.net/.default").token
    response = session.get(url, params={"api-version": "7.6"}, headers={"Authorization": f"Bearer {vault_token}"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "SecretNotFound"
    response = session.get(url, params={"api-version": "1999-01-01"},
                           headers={"Authorization": f"Bearer {vault_token}"})
    assert response.status_code == 400


def test_a_deleted_name_is_refused_until_recovered_with_the_inner_error_key_vault_sends(sandbox, client, credential):
    name = _name()
    first = client.set_secret(name, "before-teardown", tags={"site": "lab"})
    client.set_secret(name, "second-version")
    client.begin_delete_secret(name).wait()

    # The wire shape: 409, code Conflict, the reason in innererror (KeyVaultError's nested Error).
    token = credential.get_token("https://vault.azure.net/.default").token
    response = _raw(sandbox).put(sandbox["key_vault_url"] + f"secrets/{name}", params={"api-version": "7.6"},
                                 json={"value": "again"}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "Conflict"
    assert error["innererror"] == {"code": "ObjectIsDeletedButRecoverable"}
    assert "deleted but recoverable state" in error["message"]
    # ...and as azure-core surfaces it.
    with pytest.raises(ResourceExistsError) as refused:
        client.set_secret(name, "again")
    assert refused.value.error.code == "Conflict"
    assert refused.value.error.innererror == {"code": "ObjectIsDeletedButRecoverable"}

    listed = {d.name: d for d in client.list_deleted_secrets()}
    assert name in listed
    assert listed[name].recovery_id == f"{sandbox['key_vault_url']}deletedsecrets/{name}"
    assert listed[name].deleted_date and listed[name].scheduled_purge_date > listed[name].deleted_date

    poller = client.begin_recover_deleted_secret(name)
    recovered = poller.result()
    assert recovered.name == name and recovered.version != first.properties.version  # the latest version
    poller.wait()
    assert poller.done()
    # Every version and its tags come back; the deleted collection no longer holds it.
    assert client.get_secret(name).value == "second-version"
    assert client.get_secret(name, first.properties.version).properties.tags == {"site": "lab"}
    assert len(list(client.list_properties_of_secret_versions(name))) == 2
    assert name not in {d.name for d in client.list_deleted_secrets()}
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret(name)
    assert client.set_secret(name, "after-recovery").value == "after-recovery"


def test_recovering_or_purging_what_is_not_deleted_is_not_found(client):
    name = _name()
    with pytest.raises(ResourceNotFoundError):
        client.begin_recover_deleted_secret(name)
    client.set_secret(name, "still-here")
    with pytest.raises(ResourceNotFoundError):
        client.begin_recover_deleted_secret(name)
    with pytest.raises(ResourceNotFoundError):
        client.purge_deleted_secret(name)
    client.begin_delete_secret(name).wait()
    client.purge_deleted_secret(name)
    assert name not in {d.name for d in client.list_deleted_secrets()}
    with pytest.raises(ResourceNotFoundError):
        client.begin_recover_deleted_secret(name)
