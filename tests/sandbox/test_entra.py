"""Entra ID and cloud metadata as the Azure CLI uses them (the CLI itself runs in tests/test_azcli.py)."""

from __future__ import annotations

import pytest
import requests

from crlib.sandbox import control
from crlib.sandbox.entra.models import audience_of


@pytest.mark.parametrize(("scope", "audience"), [
    ("https://management.azure.com/.default", "https://management.azure.com/"),
    # The CLI appends /.default to a resource id that already ends in a slash.
    ("https://management.core.windows.net//.default", "https://management.core.windows.net/"),
    ("https://127.0.0.1:8443//.default", "https://127.0.0.1:8443/"),
    ("https://vault.azure.net", "https://vault.azure.net"),
])
def test_audience_of_a_scope(scope, audience):
    assert audience_of(scope) == audience


def test_cli_style_scope_gives_an_arm_token(sandbox, credential):
    token = credential.get_token(sandbox["arm_endpoint"] + "//.default").token
    response = requests.get(sandbox["arm_endpoint"] + "/subscriptions", params={"api-version": "2022-12-01"},
                            headers={"Authorization": f"Bearer {token}"}, verify=sandbox["ca_bundle"])
    assert response.status_code == 200, response.text
    assert [s["subscriptionId"] for s in response.json()["value"]] == [sandbox["subscription_id"]]


def test_cloud_metadata_names_the_sandbox_for_az_cloud_register(sandbox):
    # `az cloud register --endpoint-resource-manager` reads exactly these fields.
    doc = control.admin(sandbox, "GET", "/metadata/endpoints?api-version=2022-09-01")
    base = sandbox["arm_endpoint"] + "/"
    assert doc["name"]
    assert doc["resourceManager"] == base
    assert doc["authentication"]["loginEndpoint"] == base
    assert doc["authentication"]["audiences"][0] == base
    assert "acrLoginServer" in doc["suffixes"]
