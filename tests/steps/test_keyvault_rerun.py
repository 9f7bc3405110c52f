"""A site kept in Key Vault, torn down, then run again: teardown soft-deletes the site's secrets, and
Key Vault refuses a set on a soft-deleted name (409, inner error ObjectIsDeletedButRecoverable) until
it is recovered. The re-run must recover them and complete."""

from __future__ import annotations

import pytest
from azure.keyvault.secrets import SecretClient
from requestlog import log_from_now

from crlib import runbook
from crlib.context import open_context
from crlib.results import Status
from crlib.secrets import KeyVaultSecretStore


@pytest.fixture
def vault_client(sandbox, credential) -> SecretClient:
    return SecretClient(sandbox["key_vault_url"], credential, connection_verify=sandbox["ca_bundle"],
                        verify_challenge_resource=False)


def _site_secrets(client: SecretClient, prefix: str, *, deleted: bool) -> set[str]:
    items = client.list_deleted_secrets() if deleted else client.list_properties_of_secrets()
    return {name for s in items if (name := s.name) and name.startswith(prefix)}


def test_teardown_then_the_same_site_again_recovers_its_soft_deleted_secrets(sandbox, make_site, vault_client):
    site = make_site(secrets={"store": "keyvault"})
    prefix = f"crlib-{site.site}-"
    ctx = open_context(site)
    assert isinstance(ctx.secrets, KeyVaultSecretStore)

    first = runbook.run(ctx)
    assert [r.step for r in first] == runbook.STEP_NAMES
    stored_first = _site_secrets(vault_client, prefix, deleted=False)
    assert stored_first, "the first run stored nothing in the vault"

    down = runbook.run(open_context(site), only=["teardown"])
    assert [(r.step, r.status) for r in down] == [("teardown", Status.DELETED)]
    soft_deleted = _site_secrets(vault_client, prefix, deleted=True)
    assert soft_deleted, "teardown deleted no secret from the vault"
    assert soft_deleted <= stored_first

    log = log_from_now(sandbox)
    again = runbook.run(open_context(site))
    assert [r.step for r in again] == runbook.STEP_NAMES
    assert all(r.status in (Status.CREATED, Status.UPDATED, Status.UNCHANGED, Status.PASSED) for r in again), \
        [(r.step, r.status) for r in again]

    rows = [r for r in log() if r["service"] == "keyvault"]
    refused = {r["path"].rsplit("/", 1)[-1] for r in rows if r["method"] == "PUT" and r["status"] == 409}
    recovered = {r["path"].split("/")[2] for r in rows
                 if r["method"] == "POST" and r["path"].endswith("/recover") and r["status"] == 200}
    # Every secret the re-run set again had been soft-deleted, was refused once, and was recovered.
    assert refused and refused == recovered, (refused, recovered)
    assert recovered <= soft_deleted
    assert _site_secrets(vault_client, prefix, deleted=True) == soft_deleted - recovered
    for name in recovered:
        # Recovered, not purged: the first run's versions are kept under the new one.
        assert len(list(vault_client.list_properties_of_secret_versions(name))) >= 2, name
