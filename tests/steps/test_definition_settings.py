"""The definition step (connected registry, sync scope map and token, ancestors' permissions) and
the settings step (sync password and connection string), against the sandbox through the real SDKs."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
import requests
from azure.mgmt.containerregistry import models
from dxf.exceptions import DXFUnauthorizedError

from crlib.azure.pull_access import deployed_module_repositories
from crlib.errors import ParameterError, PreconditionFailed
from crlib.results import Status
from crlib.steps.definition import ensure_connected_registry
from crlib.steps.settings import ensure_settings, rotate_sync_password

RW = ["content/read", "content/write", "content/delete", "metadata/read", "metadata/write"]
RO = ["content/read", "metadata/read"]
# What the definition step reports about the connected registry it made (its result's details).
STATE = ("id", "name", "mode", "gateway_endpoint", "sync_token_id", "sync_scope_map_id", "login_server_host")


def gateway(name: str) -> list[str]:
    return [f"gateway/{name.lower()}/{a}" for a in ("config/read", "config/write", "message/read", "message/write")]


def repo_actions(repos: list[str], verbs: list[str]) -> list[str]:
    return [f"repositories/{r}/{v}" for r in repos for v in verbs]


def writes(request_log) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in request_log() if r["wrote"]]


def ready_registry(ctx) -> models.Registry:
    """The resource group and a Premium registry with its data endpoint, as the endpoint step leaves them."""
    site, acr = ctx.site, ctx.clients.acr
    session = ctx.clients.arm_session()
    url = f"{ctx.profile.arm_endpoint}/subscriptions/{ctx.profile.subscription_id}/resourcegroups/{site.resource_group}"
    session.put(url, params={"api-version": "2024-11-01"}, json={"location": site.location}).raise_for_status()
    acr.registries.begin_create(site.resource_group, site.registry.name, models.Registry(
        location=site.location, sku=models.Sku(name="Premium"))).result()
    return acr.registries.begin_update(site.resource_group, site.registry.name,
                                       models.RegistryUpdateParameters(data_endpoint_enabled=True)).result()


def cr_section(name: str | None = None, **fields) -> dict:
    return {"name": name or f"cr{uuid.uuid4().hex[:8]}", "mode": "ReadWrite", "repositories": ["hello-world"],
            "sync_schedule": "* * * * *", "message_ttl": "P2D"} | fields


@pytest.fixture
def ready(make_site, make_context):
    """A context whose registry exists (Premium, data endpoint on)."""
    def make(**overrides):
        ctx = make_context(make_site(**overrides))
        ready_registry(ctx)
        return ctx

    return make


@pytest.fixture
def family(ready, make_site, make_context):
    """A root connected registry, and a maker of sites nested in the same registry."""
    root = ready()
    ensure_connected_registry(root)

    def child(parent: str, **fields):
        return make_context(make_site(resource_group=root.site.resource_group,
                                      registry={"name": root.site.registry.name},
                                      connected_registry=cr_section(parent=parent, **fields)))

    return root, child


def sync_map(ctx, name: str | None = None) -> models.ScopeMap:
    site = ctx.site
    return ctx.clients.acr.scope_maps.get(site.resource_group, site.registry.name, name or site.connected_registry.name)


def connected(ctx) -> models.ConnectedRegistry:
    site = ctx.site
    return ctx.clients.acr.connected_registries.get(site.resource_group, site.registry.name,
                                                    site.connected_registry.name)


# -- definition -------------------------------------------------------------------------------------
def test_first_run_creates_scope_map_token_and_registry_as_the_cli_does(ready, request_log):
    ctx = ready()
    registry = ctx.clients.acr.registries.get(ctx.site.resource_group, ctx.site.registry.name)
    name = ctx.site.connected_registry.name
    log_from = len(request_log())
    result = ensure_connected_registry(ctx)
    assert result.status == Status.CREATED
    assert len(result.changes) == 3
    written = writes(lambda: request_log()[log_from:])
    assert [w.split(" ")[0] + " " + w.split("/")[-2] for w in written] == [
        "PUT scopeMaps", "PUT tokens", "PUT connectedRegistries"]

    scope_map = sync_map(ctx)
    assert scope_map.actions == gateway(name) + repo_actions(["hello-world"], RW)
    assert scope_map.description == f"Created by connected registry sync token: {name}"
    token = ctx.clients.acr.tokens.get(ctx.site.resource_group, ctx.site.registry.name, name)
    assert token.status == "enabled" and token.scope_map_id.lower() == scope_map.id.lower()
    cr = connected(ctx)
    assert cr.mode == "ReadWrite" and cr.parent.id is None
    assert cr.parent.sync_properties.token_id.lower() == token.id.lower()
    assert cr.parent.sync_properties.message_ttl == dt.timedelta(days=2)
    assert cr.parent.sync_properties.schedule == "* * * * *"
    assert cr.logging.log_level == "Information"
    assert cr.garbage_collection.enabled is False
    assert not cr.client_token_ids
    assert {k: result.details[k] for k in STATE} == {
        "id": cr.id, "name": name, "mode": "ReadWrite", "gateway_endpoint": registry.data_endpoint_host_names[0],
        "sync_token_id": token.id, "sync_scope_map_id": scope_map.id, "login_server_host": None}


def test_second_run_and_a_fresh_process_write_nothing(ready, make_context, request_log):
    ctx = ready()
    first = ensure_connected_registry(ctx)
    log_from = len(request_log())
    again = ensure_connected_registry(ctx)
    assert again.status == Status.UNCHANGED and again.changes == []
    fresh = make_context(ctx.site)  # a later process: nothing cached, everything read from Azure
    in_fresh = ensure_connected_registry(fresh)
    assert in_fresh.status == Status.UNCHANGED
    assert {k: in_fresh.details[k] for k in STATE} == {k: first.details[k] for k in STATE}
    assert writes(lambda: request_log()[log_from:]) == []


def test_plan_on_a_fresh_site_lists_the_creations_and_writes_nothing(make_site, make_context, ready, request_log):
    bare = make_context(make_site())  # not even the registry exists yet
    planned = ensure_connected_registry(bare, plan=True)
    assert planned.status == Status.PLANNED
    assert [c.split(" '")[0] for c in planned.changes] == ["create sync scope map", "create sync token",
                                                          "create connected registry"]
    assert "id" not in planned.details  # nothing exists to describe yet
    with_registry = ready()
    log_from = len(request_log())
    assert ensure_connected_registry(with_registry, plan=True).status == Status.PLANNED
    assert writes(lambda: request_log()[log_from:]) == []


def test_read_only_mode_grants_read_actions_for_every_repository(ready):
    ctx = ready(connected_registry=cr_section(mode="ReadOnly", repositories=["hello-world", "library/busybox"]))
    ensure_connected_registry(ctx)
    assert sync_map(ctx).actions == gateway(ctx.site.connected_registry.name) + repo_actions(
        ["hello-world", "library/busybox"], RO)
    assert connected(ctx).mode == "ReadOnly"


def test_drift_is_planned_then_corrected_with_one_patch(ready, make_context, make_site, request_log):
    ctx = ready(connected_registry=cr_section(notifications=["hello-world:*:push"]))
    ensure_connected_registry(ctx)
    site = ctx.site
    ctx.clients.acr.connected_registries.begin_update(
        site.resource_group, site.registry.name, site.connected_registry.name,
        models.ConnectedRegistryUpdateParameters(
            logging=models.LoggingProperties(log_level="Debug"),
            sync_properties=models.SyncUpdateProperties(schedule="0 * * * *"), notifications_list=[])).result()
    log_from = len(request_log())

    planned = ensure_connected_registry(ctx, plan=True)
    assert planned.status == Status.PLANNED
    assert len(planned.changes) == 1
    for phrase in ("log level Debug -> Information", "sync schedule 0 * * * * -> * * * * *", "notifications"):
        assert phrase in planned.changes[0]
    assert writes(lambda: request_log()[log_from:]) == []

    fixed = ensure_connected_registry(ctx)
    assert fixed.status == Status.UPDATED
    patched = writes(lambda: request_log()[log_from:])
    assert len(patched) == 1 and patched[0].startswith("PATCH ") and "/connectedRegistries/" in patched[0]
    cr = connected(ctx)
    assert cr.logging.log_level == "Information" and cr.parent.sync_properties.schedule == "* * * * *"
    assert cr.notifications_list == ["hello-world:*:push"]
    assert ensure_connected_registry(ctx).status == Status.UNCHANGED


def test_removing_the_sync_window_replaces_the_settings_and_keeps_client_tokens(ready, make_site, make_context):
    windowed = ready(connected_registry=cr_section(sync_schedule="0 */6 * * *", sync_window="PT3H"))
    ensure_connected_registry(windowed)
    site = windowed.site
    acr, rg, reg = windowed.clients.acr, site.resource_group, site.registry.name
    scope_map = acr.scope_maps.begin_create(rg, reg, "readers", models.ScopeMap(
        actions=["repositories/hello-world/content/read"])).result()
    token = acr.tokens.begin_create(rg, reg, "reader", models.Token(scope_map_id=scope_map.id)).result()
    acr.connected_registries.begin_update(rg, reg, site.connected_registry.name, models.ConnectedRegistryUpdateParameters(
        client_token_ids=[token.id])).result()

    data = site.model_dump()
    data["connected_registry"].pop("sync_window")
    unwindowed = make_context(type(site).model_validate(data))
    result = ensure_connected_registry(unwindowed)
    assert result.status == Status.UPDATED and "sync window PT3H -> None" in result.changes[0]
    cr = connected(unwindowed)
    assert cr.parent.sync_properties.sync_window is None
    assert [i.lower() for i in cr.client_token_ids] == [token.id.lower()]
    assert ensure_connected_registry(unwindowed).status == Status.UNCHANGED


def test_added_repositories_update_the_sync_scope_map(ready, make_context):
    ctx = ready()
    ensure_connected_registry(ctx)
    data = ctx.site.model_dump()
    data["connected_registry"]["repositories"] = ["hello-world", "alpine"]
    wider = make_context(type(ctx.site).model_validate(data))
    result = ensure_connected_registry(wider)
    assert result.status == Status.UPDATED
    assert result.changes == [f"update sync scope map '{ctx.site.connected_registry.name}': add "
                              + ", ".join(repo_actions(["alpine"], RW))]
    assert sync_map(wider).actions == gateway(ctx.site.connected_registry.name) + repo_actions(
        ["hello-world", "alpine"], RW)


def test_a_nested_registry_s_new_repository_is_granted_in_its_parent(family, make_context):
    root, child = family
    nested = child(root.site.connected_registry.name, mode="ReadOnly")
    ensure_connected_registry(nested)
    data = nested.site.model_dump()
    data["connected_registry"]["repositories"] = ["hello-world", "alpine"]
    result = ensure_connected_registry(make_context(type(nested.site).model_validate(data)))
    assert [c.split(" '")[0] for c in result.changes] == ["add gateway", "update sync scope map"]
    assert set(repo_actions(["alpine"], RO)) <= set(sync_map(root).actions)
    assert not set(repo_actions(["alpine"], ["content/write"])) & set(sync_map(root).actions)


@pytest.mark.parametrize("change", ["mode", "parent"])
def test_mode_or_parent_changes_are_refused_before_any_write(family, make_context, request_log, change):
    root, child = family
    ctx = child(root.site.connected_registry.name)
    ensure_connected_registry(ctx)
    data = ctx.site.model_dump()
    if change == "mode":
        data["connected_registry"]["mode"] = "ReadOnly"
    else:
        data["connected_registry"]["parent"] = None
    log_from = len(request_log())
    with pytest.raises(PreconditionFailed) as refused:
        ensure_connected_registry(make_context(type(ctx.site).model_validate(data)))
    assert refused.value.subject == f"connected_registry.{change}"
    assert "delete" in refused.value.message and "recreate" in refused.value.message
    assert writes(lambda: request_log()[log_from:]) == []


def test_a_nested_registry_is_granted_in_every_ancestor_and_ancestors_keep_it(family, request_log):
    root, child = family
    middle = child(root.site.connected_registry.name, repositories=["hello-world", "alpine"])
    middle_result = ensure_connected_registry(middle)
    assert middle_result.status == Status.CREATED
    assert middle_result.changes[0].startswith(f"add gateway '{middle.site.connected_registry.name.lower()}'")
    leaf = child(middle.site.connected_registry.name, mode="ReadOnly")
    ensure_connected_registry(leaf)

    root_name, middle_name, leaf_name = (c.site.connected_registry.name for c in (root, middle, leaf))
    # Nested children sync the module repositories by default, so their ancestors hold them too.
    modules = repo_actions(deployed_module_repositories(leaf), RO)
    leaf_grant = gateway(leaf_name) + repo_actions(["hello-world"], RO) + modules
    middle_grant = gateway(middle_name) + repo_actions(["hello-world", "alpine"], RW) + modules
    assert set(sync_map(root).actions) == set(gateway(root_name) + repo_actions(["hello-world"], RW)
                                              + middle_grant + leaf_grant)
    assert set(sync_map(middle).actions) == set(middle_grant + leaf_grant)
    assert connected(leaf).parent.id.lower() == connected(middle).id.lower()
    assert connected(middle).parent.id.lower() == connected(root).id.lower()

    log_from = len(request_log())
    for ctx in (root, middle, leaf):  # re-runs keep what descendants need
        assert ensure_connected_registry(ctx).status == Status.UNCHANGED
    assert writes(lambda: request_log()[log_from:]) == []


def test_a_read_only_parent_refuses_a_read_write_child_before_any_write(family, request_log):
    root, child = family
    reader = child(root.site.connected_registry.name, mode="ReadOnly")
    ensure_connected_registry(reader)
    log_from = len(request_log())
    for plan in (True, False):
        with pytest.raises(ParameterError) as refused:
            ensure_connected_registry(child(reader.site.connected_registry.name, mode="ReadWrite"), plan=plan)
        assert refused.value.field == "connected_registry.mode"
        assert "ReadOnly" in refused.value.message
    assert writes(lambda: request_log()[log_from:]) == []


def test_a_missing_parent_or_registry_is_refused_before_any_write(family, make_site, make_context, request_log):
    _, child = family
    log_from = len(request_log())
    with pytest.raises(ParameterError) as refused:
        ensure_connected_registry(child("nosuchparent"))
    assert refused.value.field == "connected_registry.parent"
    with pytest.raises(PreconditionFailed) as missing:
        ensure_connected_registry(make_context(make_site()))
    assert missing.value.subject == "registry"
    assert writes(lambda: request_log()[log_from:]) == []


# -- settings ---------------------------------------------------------------------------------------
def signs_in(ctx, host: str, username: str, password: str) -> bool:
    client = ctx.clients.oci(host, "hello-world", username=username, password=password)
    try:
        client.authenticate(username, password, actions=["pull"])
    except (DXFUnauthorizedError, requests.HTTPError):
        return False
    return True


def parse(connection_string: str) -> dict:
    return dict(part.split("=", 1) for part in connection_string.split(";"))


@pytest.fixture
def defined(ready):
    ctx = ready()
    ensure_connected_registry(ctx)
    return ctx


def test_settings_generate_the_password_once_and_build_the_connection_string(defined):
    ctx = defined
    name = ctx.site.connected_registry.name
    result = ensure_settings(ctx)
    assert result.status == Status.CREATED
    password = ctx.get_secret("sync-password")
    stored = ctx.get_secret("connected-registry-connection-string")
    gateway_endpoint = connected(ctx).parent.sync_properties.gateway_endpoint
    assert stored == (f"ConnectedRegistryName={name};SyncTokenName={name};SyncTokenPassword={password};"
                      f"ParentGatewayEndpoint={gateway_endpoint};ParentEndpointProtocol=https")
    shown = json.dumps(result.to_dict()) + repr(result)
    assert password not in shown and stored not in shown
    assert result.secrets["sync-password"].startswith("********")
    assert result.secrets["connected-registry-connection-string"].endswith(
        f"(local:crlib-{ctx.site.site}-connected-registry-connection-string)")
    assert signs_in(ctx, gateway_endpoint, name, password)
    assert result.details["gateway_endpoint"] == gateway_endpoint


def test_settings_rerun_reuses_the_stored_password_and_writes_nothing(defined, make_context, request_log):
    ensure_settings(defined)
    password = defined.get_secret("sync-password")
    log_from = len(request_log())
    assert ensure_settings(defined).status == Status.UNCHANGED
    fresh = make_context(defined.site)
    again = ensure_settings(fresh)
    assert again.status == Status.UNCHANGED and again.changes == []
    assert fresh.get_secret("sync-password") == password
    assert writes(lambda: request_log()[log_from:]) == []


def test_settings_plan_on_a_fresh_site_writes_and_stores_nothing(make_site, make_context, defined, request_log):
    bare = make_context(make_site())
    assert ensure_settings(bare, plan=True).status == Status.PLANNED
    log_from = len(request_log())
    planned = ensure_settings(defined, plan=True)
    assert planned.status == Status.PLANNED
    assert planned.changes[0].startswith("generate password1 of sync token")
    assert writes(lambda: request_log()[log_from:]) == []
    assert defined.get_secret("sync-password") is None


def test_a_lost_stored_password_is_not_replaced_silently(defined, request_log):
    ensure_settings(defined)
    old = defined.get_secret("sync-password")
    defined.secrets.delete(defined.secret_name("sync-password"))
    log_from = len(request_log())
    for plan in (True, False):
        with pytest.raises(PreconditionFailed) as refused:
            ensure_settings(defined, plan=plan)
        assert "rotate" in refused.value.message and "no copy" in refused.value.message
    assert writes(lambda: request_log()[log_from:]) == []

    rotated = ensure_settings(defined, rotate=True)
    assert rotated.status == Status.UPDATED
    new = defined.get_secret("sync-password")
    assert new != old
    gateway_endpoint = connected(defined).parent.sync_properties.gateway_endpoint
    assert not signs_in(defined, gateway_endpoint, defined.site.connected_registry.name, old)
    assert signs_in(defined, gateway_endpoint, defined.site.connected_registry.name, new)


def test_a_password_regenerated_elsewhere_is_refused(defined):
    ensure_settings(defined)
    site = defined.site
    token = connected(defined).parent.sync_properties.token_id
    defined.clients.acr.registries.begin_generate_credentials(
        site.resource_group, site.registry.name,
        models.GenerateCredentialsParameters(token_id=token, name="password1")).result()
    with pytest.raises(PreconditionFailed) as refused:
        ensure_settings(defined)
    assert "regenerated since the stored copy" in refused.value.message


def test_rotate_replaces_the_password_and_rebuilds_the_connection_string(defined, request_log):
    ensure_settings(defined)
    old_password = defined.get_secret("sync-password")
    old_string = defined.get_secret("connected-registry-connection-string")
    log_from = len(request_log())
    planned = rotate_sync_password(defined, plan=True)
    assert planned.status == Status.PLANNED and "redeploy" in planned.changes[0]
    assert writes(lambda: request_log()[log_from:]) == []

    rotated = rotate_sync_password(defined)
    assert rotated.status == Status.UPDATED and rotated.step == "rotate"
    assert [w.rsplit("/", 1)[-1] for w in writes(lambda: request_log()[log_from:])] == ["generateCredentials"]
    new_password = defined.get_secret("sync-password")
    new_string = defined.get_secret("connected-registry-connection-string")
    assert new_password != old_password
    assert parse(new_string)["SyncTokenPassword"] == new_password
    assert {k: v for k, v in parse(new_string).items() if k != "SyncTokenPassword"} == \
        {k: v for k, v in parse(old_string).items() if k != "SyncTokenPassword"}
    assert ensure_settings(defined).status == Status.UNCHANGED


def test_a_child_needs_its_parent_devices_address(family, request_log):
    root, child = family
    nested = child(root.site.connected_registry.name)
    # Azure gives a nested registry no gateway endpoint: the parent device's address is the operator's.
    assert ensure_connected_registry(nested).details["gateway_endpoint"] is None
    log_from = len(request_log())
    planned = ensure_settings(nested, plan=True)
    assert planned.status == Status.PLANNED and "not known yet" in planned.changes[-1]
    with pytest.raises(PreconditionFailed) as refused:
        ensure_settings(nested)
    assert refused.value.subject == "device.parent_address" and "parent device" in refused.value.message
    assert writes(lambda: request_log()[log_from:]) == []
    nested.site = nested.site.model_copy(update={"device": nested.site.device.model_copy(
        update={"parent_address": "parent-device.contoso.local:8000"})})
    planned = ensure_settings(nested, plan=True)
    assert "parent gateway parent-device.contoso.local:8000" in planned.changes[-1]


def test_a_sixth_layer_is_refused_before_any_write(family, request_log):
    root, child = family
    parent = root
    for _ in range(4):  # layers 2-5
        parent = child(parent.site.connected_registry.name, mode="ReadOnly")
        ensure_connected_registry(parent)
    log_from = len(request_log())
    with pytest.raises(ParameterError) as refused:
        ensure_connected_registry(child(parent.site.connected_registry.name, mode="ReadOnly"))
    assert refused.value.field == "connected_registry.parent"
    assert "would be layer 6; IoT Edge supports at most 5 layers" in refused.value.message
    assert writes(lambda: request_log()[log_from:]) == []
