"""Microsoft.ContainerRegistry in the sandbox, driven through azure-mgmt-containerregistry the way
users drive Azure, with wire shapes checked against the spec's schemas (and for nulls)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from types import SimpleNamespace

import jsonschema
import pytest
import requests
import spec_replay
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.containerregistry import models as m

from crlib.sandbox import control

API = "2025-11-01"
ACR_SPEC = spec_replay.SPEC_FILES[0]
HOST = re.compile(r"^127\.0\.0\.1:\d+$")


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:10]


def assert_schema(definition: str, body: object) -> None:
    """The body validates against the spec's definition and carries no nulls."""
    validator = jsonschema.Draft4Validator({"$ref": f"{ACR_SPEC.as_uri()}#/definitions/{definition}"},
                                           registry=spec_replay.registry())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]
    assert not errors, errors
    assert None not in _leaves(body), body


def _leaves(node: object) -> list:
    if isinstance(node, dict):
        return [x for v in node.values() for x in _leaves(v)]
    if isinstance(node, list):
        return [x for v in node for x in _leaves(v)]
    return [node]


def error_code(exc: pytest.ExceptionInfo) -> tuple[int, str, str]:
    err = exc.value
    return err.status_code, err.error.code, err.error.message


def listening(host: str, ca_bundle: str) -> bool:
    """Whether a registry host answers HTTPS with the sandbox's certificate."""
    try:
        requests.get(f"https://{host}/v2/", verify=ca_bundle, timeout=5)
    except requests.ConnectionError:
        return False
    return True


def new_group(arm) -> str:
    name = unique("rg")
    response = arm.request("PUT", f"/subscriptions/{{sub}}/resourcegroups/{name}", "2024-03-01",
                           json={"location": "westus"})
    assert response.status_code == 201, response.text
    return name


@pytest.fixture
def group(arm) -> str:
    return new_group(arm)


def registry_path(group: str, name: str | None = None) -> str:
    """A registry's ARM path, or the group's registry collection without a name."""
    path = f"/subscriptions/{{sub}}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries"
    return f"{path}/{name}" if name else path


def create_registry(acr, group: str, sku: str = "Premium", *, data_endpoint: bool = False) -> m.Registry:
    registry = m.Registry(location="westus", sku=m.Sku(name=sku), data_endpoint_enabled=data_endpoint)
    return acr.registries.begin_create(group, unique("cr"), registry).result()


def create_token(acr, group: str, registry: str, actions: list[str] | None = None) -> m.Token:
    scope_map = acr.scope_maps.begin_create(group, registry, unique("map"), m.ScopeMap(
        actions=actions or ["repositories/hello/content/read"])).result()
    return acr.tokens.begin_create(group, registry, unique("tok"), m.Token(scope_map_id=scope_map.id)).result()


# -- registries ------------------------------------------------------------------------------------
def test_registry_lifecycle(acr, arm, group, sandbox):
    ca = sandbox["ca_bundle"]
    reg = create_registry(acr, group)
    assert reg.provisioning_state == "Succeeded" and reg.sku.tier == "Premium"
    assert HOST.match(reg.login_server) and listening(reg.login_server, ca)
    assert reg.data_endpoint_enabled is False and reg.data_endpoint_host_names == []
    assert reg.id in [r.id for r in acr.registries.list()]
    assert [r.name for r in acr.registries.list_by_resource_group(group)] == [reg.name]
    raw = arm.request("GET", registry_path(group, reg.name), API).json()
    assert_schema("Registry", raw)
    assert "status" not in raw["properties"] and "_sandbox" not in raw
    assert_schema("RegistryListResult", arm.request("GET", registry_path(group), API).json())
    tracked = arm.request("GET", "/subscriptions/{sub}/resources", "2024-03-01", params={
        "$filter": "resourceType eq 'Microsoft.ContainerRegistry/registries'"}).json()["value"]
    assert reg.id in [r["id"] for r in tracked]

    reg = acr.registries.begin_update(group, reg.name, m.RegistryUpdateParameters(
        tags={"env": "test"}, admin_user_enabled=True, data_endpoint_enabled=True)).result()
    assert reg.tags == {"env": "test"} and reg.admin_user_enabled is True
    [data_host] = reg.data_endpoint_host_names
    assert HOST.match(data_host) and data_host != reg.login_server and listening(data_host, ca)

    reg = acr.registries.begin_update(group, reg.name, m.RegistryUpdateParameters(data_endpoint_enabled=False)).result()
    assert reg.data_endpoint_host_names == [] and not listening(data_host, ca)
    reg = acr.registries.begin_update(group, reg.name, m.RegistryUpdateParameters(data_endpoint_enabled=True)).result()
    assert reg.data_endpoint_host_names == [data_host] and listening(data_host, ca)

    acr.registries.begin_delete(group, reg.name).result()
    with pytest.raises(ResourceNotFoundError):
        acr.registries.get(group, reg.name)
    assert not listening(reg.login_server, ca) and not listening(data_host, ca)


def test_registry_create_goes_from_creating_to_succeeded(arm, group):
    path = registry_path(group, unique("cr"))
    created = arm.request("PUT", path, API, json={"location": "West US", "sku": {"name": "basic"}})
    assert created.status_code == 201 and "Retry-After" not in created.headers
    body = created.json()
    assert_schema("Registry", body)
    assert body["properties"]["provisioningState"] == "Creating"
    assert body["location"] == "westus" and body["sku"] == {"name": "Basic", "tier": "Basic"}
    status = arm.session.get(created.headers["Azure-AsyncOperation"]).json()
    assert status["status"] == "Succeeded"
    assert arm.request("GET", path, API).json()["properties"]["provisioningState"] == "Succeeded"


def test_registry_refusals(acr, arm, group):
    premium = create_registry(acr, group)
    other_group = new_group(arm)
    cases = [
        ("abcd", "Basic", 400, "InvalidResourceName"),
        ("my-registry", "Basic", 400, "InvalidResourceName"),
        (unique("cr"), "Free", 400, "InvalidSku"),
        (premium.name, "Basic", 409, "AlreadyInUse"),
    ]
    for name, sku, status, code in cases:
        with pytest.raises(HttpResponseError) as exc:
            acr.registries.begin_create(other_group, name, m.Registry(location="westus", sku=m.Sku(name=sku)))
        assert error_code(exc)[:2] == (status, code), name
    with pytest.raises(HttpResponseError) as exc:
        create_registry(acr, other_group, "Standard", data_endpoint=True)
    assert error_code(exc)[:2] == (400, "RegistrySkuNotSupported")
    assert list(acr.registries.list_by_resource_group(other_group)) == []
    with pytest.raises(HttpResponseError) as exc:
        acr.registries.begin_update(group, premium.name, m.RegistryUpdateParameters(
            sku=m.Sku(name="Standard"), data_endpoint_enabled=True))
    assert error_code(exc)[:2] == (400, "RegistrySkuNotSupported")
    assert acr.registries.get(group, premium.name).sku.name == "Premium"


@pytest.mark.parametrize(("version", "code"), [("2019-05-01", "NoRegisteredProviderFound"),
                                               ("latest", "InvalidApiVersionParameter")])
def test_unknown_api_version_is_refused(arm, group, version, code):
    response = arm.request("GET", registry_path(group), version)
    assert response.status_code == 400 and response.json()["error"]["code"] == code


def test_request_without_bearer_token_is_refused(sandbox, group):
    url = sandbox["arm_endpoint"] + registry_path(group).replace("{sub}", sandbox["subscription_id"])
    response = requests.get(url, params={"api-version": API}, verify=sandbox["ca_bundle"], timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthenticationFailed" and "WWW-Authenticate" in response.headers


def test_name_availability_admin_credentials_and_usages(acr, arm, group, request_log):
    reg = create_registry(acr, group, "Standard")

    def check(name: str) -> m.RegistryNameStatus:
        request = m.RegistryNameCheckRequest(name=name, type="Microsoft.ContainerRegistry/registries")
        return acr.registries.check_name_availability(request)

    assert (check(reg.name).name_available, check(reg.name).reason) == (False, "AlreadyExists")
    assert check(unique("free")).name_available is True and check("no").reason == "Invalid"

    with pytest.raises(HttpResponseError) as exc:
        acr.registries.list_credentials(group, reg.name)
    assert error_code(exc)[:2] == (400, "AdminUserDisabled")
    acr.registries.begin_update(group, reg.name, m.RegistryUpdateParameters(admin_user_enabled=True)).result()
    before = acr.registries.list_credentials(group, reg.name)
    assert before.username == reg.name and [p.name for p in before.passwords] == ["password", "password2"]
    after = acr.registries.regenerate_credential(group, reg.name, m.RegenerateCredentialParameters(name="password2"))
    assert after.passwords[0].value == before.passwords[0].value
    assert after.passwords[1].value != before.passwords[1].value
    assert_schema("RegistryListCredentialsResult",
                  arm.request("POST", registry_path(group, reg.name) + "/listCredentials", API).json())

    usages = arm.request("GET", registry_path(group, reg.name) + "/listUsages", API).json()
    assert_schema("RegistryUsageListResult", usages)
    assert {u["name"]: u["limit"] for u in usages["value"]}["Size"] == 100 * 1024**3
    reads = [r for r in request_log() if r["path"].endswith(("checkNameAvailability", "listCredentials"))]
    assert reads and not any(r["wrote"] for r in reads)


# -- importImage -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "field"), [
    ({}, "'source'"),
    ({"source": {"registryUri": "mcr.microsoft.com"}}, "source.sourceImage"),
    ({"source": {"sourceImage": "hello"}}, "'source'"),
    ({"source": {"sourceImage": "hello", "registryUri": "mcr.microsoft.com", "resourceId": "/x"}}, "'source'"),
    ({"source": {"sourceImage": "hello", "resourceId": "/subscriptions/s/resourceGroups/g/providers/"
                 "Microsoft.ContainerRegistry/registries/nothere"}}, "source.resourceId"),
    ({"source": {"sourceImage": "hello", "registryUri": "not a host"}}, "source.registryUri"),
    ({"source": {"sourceImage": "hello:bad tag!", "registryUri": "mcr.microsoft.com"}}, "source.sourceImage"),
    ({"source": {"sourceImage": "hello", "registryUri": "mcr.microsoft.com"}, "targetTags": ["x:y:z!"]},
     "targetTags[0]"),
    ({"source": {"sourceImage": "hello", "registryUri": "mcr.microsoft.com"}, "untaggedTargetRepositories": ["-x"]},
     "untaggedTargetRepositories[0]"),
    ({"source": {"sourceImage": "hello", "registryUri": "mcr.microsoft.com"}, "mode": "Overwrite"}, "'mode'"),
])
def test_import_image_is_validated(acr, arm, group, body, field):
    reg = create_registry(acr, group, "Basic")
    response = arm.request("POST", registry_path(group, reg.name) + "/importImage", API, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "InvalidParameter" and field in error["message"]


# -- scope maps ------------------------------------------------------------------------------------
def test_scope_map_crud(acr, arm, group):
    reg = create_registry(acr, group, "Standard")
    system = {s.name: s for s in acr.scope_maps.list(group, reg.name)}
    assert set(system) >= {"_repositories_pull", "_repositories_push", "_repositories_admin"}
    assert {s.properties.type for s in system.values()} == {"SystemDefined"}
    assert system["_repositories_pull"].actions == ["repositories/*/content/read"]

    actions = ["repositories/samples/*/content/read", "repositories/*/metadata/read", "gateway/edge01/config/read"]
    name = unique("map")
    created = acr.scope_maps.begin_create(group, reg.name, name, m.ScopeMap(actions=actions, description="d")).result()
    assert created.properties.type == "UserDefined"
    assert (created.actions, created.provisioning_state) == (actions, "Succeeded")
    path = registry_path(group, reg.name) + f"/scopeMaps/{name}"
    assert_schema("ScopeMap", arm.request("GET", path, API).json())
    assert_schema("ScopeMapListResult", arm.request("GET", registry_path(group, reg.name) + "/scopeMaps", API).json())

    updated = acr.scope_maps.begin_update(group, reg.name, name, m.ScopeMapUpdateParameters(
        actions=["repositories/hello/content/write"], description="writers")).result()
    assert updated.actions == ["repositories/hello/content/write"] and updated.description == "writers"
    acr.scope_maps.begin_delete(group, reg.name, name).result()
    with pytest.raises(ResourceNotFoundError):
        acr.scope_maps.get(group, reg.name, name)


@pytest.mark.parametrize("action", ["repositories/hello/pull", "repositories/Hello/content/read",
                                    "registry/hello/content/read", "gateway/edge01/config/delete",
                                    "repositories/*bad/content/read", "gateway/1edge/message/read"])
def test_scope_map_with_a_bad_action_is_refused(acr, group, action):
    reg = create_registry(acr, group, "Basic")
    with pytest.raises(HttpResponseError) as exc:
        acr.scope_maps.begin_create(group, reg.name, "badmap", m.ScopeMap(actions=[action]))
    status, code, message = error_code(exc)
    assert (status, code) == (400, "InvalidScopeMapAction") and action in message
    with pytest.raises(ResourceNotFoundError):
        acr.scope_maps.get(group, reg.name, "badmap")


def test_system_and_used_scope_maps_cannot_be_removed(acr, group):
    reg = create_registry(acr, group, "Basic")
    with pytest.raises(HttpResponseError) as exc:
        acr.scope_maps.begin_update(group, reg.name, "_repositories_pull", m.ScopeMapUpdateParameters(
            actions=["repositories/*/content/write"]))
    assert error_code(exc)[:2] == (400, "OperationNotAllowed")
    with pytest.raises(HttpResponseError) as exc:
        acr.scope_maps.begin_delete(group, reg.name, "_repositories_admin")
    assert error_code(exc)[:2] == (400, "OperationNotAllowed")
    token = create_token(acr, group, reg.name)
    with pytest.raises(HttpResponseError) as exc:
        acr.scope_maps.begin_delete(group, reg.name, token.scope_map_id.rsplit("/", 1)[1])
    assert error_code(exc)[:2] == (409, "ScopeMapInUse")


# -- tokens -------------------------------------------------------------------------------------------
def test_token_crud_and_disable(acr, arm, group):
    reg = create_registry(acr, group, "Standard")
    token = create_token(acr, group, reg.name)
    assert token.status == "enabled" and token.credentials.passwords == [] and token.provisioning_state == "Succeeded"
    path = registry_path(group, reg.name) + f"/tokens/{token.name}"
    assert_schema("Token", arm.request("GET", path, API).json())
    assert [t.name for t in acr.tokens.list(group, reg.name)] == [token.name]
    assert_schema("TokenListResult", arm.request("GET", registry_path(group, reg.name) + "/tokens", API).json())

    disabled = acr.tokens.begin_update(group, reg.name, token.name, m.TokenUpdateParameters(status="disabled")).result()
    assert disabled.status == "disabled" and acr.tokens.get(group, reg.name, token.name).status == "disabled"
    pull = f"{reg.id}/scopeMaps/_repositories_pull"
    moved = acr.tokens.begin_update(group, reg.name, token.name, m.TokenUpdateParameters(scope_map_id=pull)).result()
    assert moved.scope_map_id == pull

    for name, scope_map_id, code in [("abc", pull, "InvalidResourceName"), (unique("tok"), None, "InvalidParameter"),
                                     (unique("tok"), f"{reg.id}/scopeMaps/nothere", "InvalidParameter")]:
        with pytest.raises(HttpResponseError) as exc:
            acr.tokens.begin_create(group, reg.name, name, m.Token(scope_map_id=scope_map_id))
        assert error_code(exc)[:2] == (400, code)

    acr.tokens.begin_delete(group, reg.name, token.name).result()
    with pytest.raises(ResourceNotFoundError):
        acr.tokens.get(group, reg.name, token.name)


def test_generate_credentials_rotates_one_password(acr, arm, group, sandbox):
    reg = create_registry(acr, group, "Basic")
    token = create_token(acr, group, reg.name)
    generate = acr.registries.begin_generate_credentials
    both = generate(group, reg.name, m.GenerateCredentialsParameters(token_id=token.id)).result()
    assert both.username == token.name and [p.name for p in both.passwords] == ["password1", "password2"]
    first = {p.name: p.value for p in both.passwords}
    assert len(set(first.values())) == 2

    raw = arm.request("GET", registry_path(group, reg.name) + f"/tokens/{token.name}", API).json()
    assert_schema("Token", raw)
    shown = {p["name"]: p for p in raw["properties"]["credentials"]["passwords"]}
    assert set(shown) == {"password1", "password2"} and not any("value" in p for p in shown.values())
    stored = control.admin(sandbox, "GET", "/_sandbox/state")[token.id.lower()]
    hashes = {n: e["hash"] for n, e in stored["_sandbox"]["passwords"].items()}
    assert hashes == {n: hashlib.sha256(v.encode()).hexdigest() for n, v in first.items()}
    assert not any(v in str(stored) for v in first.values())

    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    one = generate(group, reg.name, m.GenerateCredentialsParameters(token_id=token.id, name="password1",
                                                                    expiry=expiry)).result()
    [new] = one.passwords
    assert new.name == "password1" and new.value != first["password1"] and new.expiry is not None
    after = {p.name: p for p in acr.tokens.get(group, reg.name, token.name).credentials.passwords}
    assert after["password2"].creation_time == dt.datetime.fromisoformat(shown["password2"]["creationTime"])
    assert after["password1"].expiry is not None and after["password2"].expiry is None

    with pytest.raises(HttpResponseError) as exc:
        generate(group, reg.name, m.GenerateCredentialsParameters(token_id=f"{reg.id}/tokens/nothere"))
    assert error_code(exc)[:2] == (400, "InvalidParameter")
    kept = acr.tokens.begin_update(group, reg.name, token.name, m.TokenUpdateParameters(
        credentials=m.TokenCredentialsProperties(passwords=[m.TokenPassword(name="password2")]))).result()
    assert [p.name for p in kept.credentials.passwords] == ["password2"]


# -- connected registries -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def premium(acr, arm) -> SimpleNamespace:
    """A Premium registry with its data endpoint, a sync token and a client token."""
    group = new_group(arm)
    reg = create_registry(acr, group, data_endpoint=True)
    sync = create_token(acr, group, reg.name, ["repositories/hello/content/read", "gateway/edgeparent/config/read"])
    client = create_token(acr, group, reg.name)
    return SimpleNamespace(group=group, registry=reg, sync=sync, client=client,
                           path=registry_path(group, reg.name) + "/connectedRegistries")


def connected_body(token_id: str, mode: str = "ReadOnly", parent_id: str | None = None, **sync) -> dict:
    parent = {"syncProperties": {"tokenId": token_id, "messageTtl": "P2D"} | sync}
    return {"properties": {"mode": mode, "parent": ({"id": parent_id} if parent_id else {}) | parent}}


def test_connected_registry_lifecycle(acr, arm, premium):
    group, reg = premium.group, premium.registry
    parent = acr.connected_registries.begin_create(group, reg.name, unique("edge"), m.ConnectedRegistry(
        mode="ReadWrite", client_token_ids=[premium.client.id], notifications_list=["hello:*:*"],
        parent=m.ParentProperties(sync_properties=m.SyncProperties(
            token_id=premium.sync.id, schedule="0 9 * * *", sync_window=dt.timedelta(hours=3),
            message_ttl=dt.timedelta(days=2))))).result()
    assert (parent.provisioning_state, parent.connection_state, parent.activation.status) == (
        "Succeeded", "Offline", "Inactive")
    assert parent.status_details == [] and parent.last_activity_time is None and parent.version is None
    assert parent.parent.sync_properties.gateway_endpoint == reg.data_endpoint_host_names[0]
    assert (parent.logging.log_level, parent.logging.audit_log_status) == ("Information", "Disabled")
    raw = arm.request("GET", f"{premium.path}/{parent.name}", API).json()
    assert_schema("ConnectedRegistry", raw)
    assert "lastActivityTime" not in raw["properties"] and "lastSyncTime" not in raw["properties"]["parent"]

    child = acr.connected_registries.begin_create(group, reg.name, unique("edge"), m.ConnectedRegistry(
        mode="ReadOnly", parent=m.ParentProperties(id=parent.id, sync_properties=m.SyncProperties(
            token_id=premium.sync.id, message_ttl=dt.timedelta(days=1))))).result()
    assert child.parent.id == parent.id and child.parent.sync_properties.gateway_endpoint is None
    listed = acr.connected_registries.list
    assert {c.name for c in listed(group, reg.name)} >= {parent.name, child.name}
    assert [c.name for c in listed(group, reg.name, filter=f"parent.id eq '{parent.id}'")] == [child.name]
    assert [c.name for c in listed(group, reg.name, filter=f"parent/id eq '{parent.id}' and mode eq 'readonly'")
            ] == [child.name]
    assert parent.name in [c.name for c in listed(group, reg.name, filter="connectionState eq 'Offline'")]
    assert_schema("ConnectedRegistryListResult", arm.request("GET", premium.path, API).json())
    bad = arm.request("GET", premium.path, API, params={"$filter": "name eq 'x'"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidFilterInQueryString"

    updated = acr.connected_registries.begin_update(group, reg.name, parent.name, m.ConnectedRegistryUpdateParameters(
        logging=m.LoggingProperties(log_level="Debug"), client_token_ids=[],
        sync_properties=m.SyncUpdateProperties(schedule="0 0 */10 * *", message_ttl=dt.timedelta(days=30)))).result()
    assert updated.logging.log_level == "Debug" and updated.client_token_ids is None
    assert updated.parent.sync_properties.schedule == "0 0 */10 * *"
    assert updated.parent.sync_properties.message_ttl == dt.timedelta(days=30)

    acr.connected_registries.begin_deactivate(group, reg.name, parent.name).result()
    after = acr.connected_registries.get(group, reg.name, parent.name)
    assert (after.activation.status, after.connection_state) == ("Inactive", "Offline")
    for name in (child.name, parent.name):
        acr.connected_registries.begin_delete(group, reg.name, name).result()
        with pytest.raises(ResourceNotFoundError):
            acr.connected_registries.get(group, reg.name, name)


def test_connected_registry_takes_the_azure_cli_spellings(arm, premium):
    body = connected_body(premium.sync.id, mode="readwrite")
    body["properties"] |= {"garbageCollection": {"enabled": "false", "schedule": "0 5 * * *"},
                           "logging": {"logLevel": "warning", "auditLogStatus": True}}
    created = arm.request("PUT", f"{premium.path}/{unique('cli')}", API, json=body)
    assert created.status_code == 201, created.text
    props = created.json()["properties"]
    assert props["mode"] == "ReadWrite" and props["garbageCollection"] == {"enabled": False, "schedule": "0 5 * * *"}
    assert props["logging"] == {"logLevel": "Warning", "auditLogStatus": "Enabled"}
    assert_schema("ConnectedRegistry", created.json())


REFUSALS = {
    "name of four characters": ("edge", {}, "InvalidResourceName"),
    "name starting with a digit": ("1edge", {}, "InvalidResourceName"),
    "unknown sync token": (None, {"tokenId": "/tokens/none"}, "InvalidParameter"),
    "bad cron schedule": (None, {"schedule": "61 * * * *"}, "InvalidParameter"),
    "bad message TTL": (None, {"messageTtl": "2 days"}, "InvalidParameter"),
    "bad sync window": (None, {"syncWindow": "PT"}, "InvalidParameter"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_connected_registry_refusals(arm, premium, case):
    name, sync, code = REFUSALS[case]
    name = name or unique("edge")
    body = connected_body(premium.sync.id)
    body["properties"]["parent"]["syncProperties"] |= sync
    response = arm.request("PUT", f"{premium.path}/{name}", API, json=body)
    assert response.status_code == 400 and response.json()["error"]["code"] == code, response.text
    assert arm.request("GET", f"{premium.path}/{name}", API).status_code == 404


def test_connected_registry_needs_premium_and_data_endpoint(acr, arm, group):
    for sku, data_endpoint, code, mentioned in [("Standard", False, "RegistrySkuNotSupported", "Standard"),
                                                ("Premium", False, "DataEndpointNotEnabled", "data endpoint")]:
        reg = create_registry(acr, group, sku, data_endpoint=data_endpoint)
        token = create_token(acr, group, reg.name)
        path = registry_path(group, reg.name) + "/connectedRegistries/edge01"
        response = arm.request("PUT", path, API, json=connected_body(token.id))
        error = response.json()["error"]
        assert response.status_code == 400 and error["code"] == code and mentioned in error["message"]
        assert arm.request("GET", path, API).status_code == 404


def test_read_write_child_under_read_only_parent_is_refused(arm, premium):
    parent = arm.request("PUT", f"{premium.path}/{unique('ro')}", API, json=connected_body(premium.sync.id))
    assert parent.status_code == 201
    child = f"{premium.path}/{unique('child')}"
    rw = arm.request("PUT", child, API, json=connected_body(premium.sync.id, "ReadWrite", parent.json()["id"]))
    error = rw.json()["error"]
    assert rw.status_code == 400 and error["code"] == "InvalidConnectedRegistryMode" and "ReadOnly" in error["message"]
    orphan = arm.request("PUT", child, API, json=connected_body(
        premium.sync.id, parent_id=premium.registry.id + "/connectedRegistries/nothere"))
    assert orphan.status_code == 400 and "properties.parent.id" in orphan.json()["error"]["message"]
    assert arm.request("GET", child, API).status_code == 404
    ro = arm.request("PUT", child, API, json=connected_body(premium.sync.id, "ReadOnly", parent.json()["id"]))
    assert ro.status_code == 201, ro.text
