"""The access step (client scope maps, tokens and their passwords, attached with SET semantics) and
its teardown, against the sandbox through the real SDKs."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.containerregistry import models
from dxf.exceptions import DXFUnauthorizedError

from crlib.errors import ParameterError, PreconditionFailed
from crlib.results import Status
from crlib.steps.access import ensure_client_access
from crlib.steps.definition import ensure_connected_registry
from crlib.steps.teardown import detach_and_delete_client_access


def writes_since(request_log, start: int) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in request_log()[start:] if r["wrote"]]


def kind(write: str) -> str:
    """'PUT .../tokens/x' -> 'PUT tokens'; 'POST .../generateCredentials' -> 'POST generateCredentials'."""
    method, path = write.split(" ", 1)
    *_, collection, last = path.split("/")
    return f"{method} {last if last == 'generateCredentials' else collection}"


@pytest.fixture
def defined(make_site, make_context):
    """A context whose registry (Premium, data endpoint on) and connected registry exist."""
    def make(**overrides):
        ctx = make_context(make_site(**overrides))
        site, acr = ctx.site, ctx.clients.acr
        url = (f"{ctx.profile.arm_endpoint}/subscriptions/{ctx.profile.subscription_id}/resourcegroups/"
               f"{site.resource_group}")
        ctx.clients.arm_session().put(url, params={"api-version": "2024-11-01"},
                                      json={"location": site.location}).raise_for_status()
        acr.registries.begin_create(site.resource_group, site.registry.name, models.Registry(
            location=site.location, sku=models.Sku(name="Premium"), data_endpoint_enabled=True)).result()
        ensure_connected_registry(ctx)
        return ctx

    return make


class Azure:
    """Reads and out-of-band changes, as someone in the portal would make them."""

    def __init__(self, ctx):
        self.acr, self.rg, self.reg = ctx.clients.acr, ctx.site.resource_group, ctx.site.registry.name
        self.cr = ctx.site.connected_registry.name

    def token(self, name):
        return self.acr.tokens.get(self.rg, self.reg, name)

    def scope_map(self, name):
        return self.acr.scope_maps.get(self.rg, self.reg, name)

    def attached(self) -> list[str]:
        ids = self.acr.connected_registries.get(self.rg, self.reg, self.cr).client_token_ids or []
        return sorted(i.rsplit("/", 1)[-1] for i in ids)

    def extra_token(self, name: str, *, attach: bool = False, scope_map: str | None = None):
        if scope_map is None:
            scope_map = f"{name}-map"
            self.acr.scope_maps.begin_create(self.rg, self.reg, scope_map, models.ScopeMap(
                actions=["repositories/hello-world/content/read"])).result()
        token = self.acr.tokens.begin_create(self.rg, self.reg, name, models.Token(
            scope_map_id=self.scope_map(scope_map).id, status="enabled")).result()
        if attach:
            current = self.acr.connected_registries.get(self.rg, self.reg, self.cr).client_token_ids or []
            self.acr.connected_registries.begin_update(self.rg, self.reg, self.cr, models.ConnectedRegistryUpdateParameters(
                client_token_ids=[*current, token.id])).result()
        return token


def token_spec(ctx):
    return ctx.site.client_access.tokens[0]


def pulls_with(ctx, username: str, password: str) -> bool:
    """The token signs in for a pull at the cloud registry's login server."""
    host = ctx.clients.acr.registries.get(ctx.site.resource_group, ctx.site.registry.name).login_server
    client = ctx.clients.oci(host, "hello-world", username=username, password=password)
    try:
        client.authenticate(username, password, actions=["pull"])
    except (DXFUnauthorizedError, requests.HTTPError):
        return False
    return True


def test_first_run_creates_scope_map_token_password_and_attaches_it(defined, request_log):
    ctx = defined()
    azure, spec = Azure(ctx), token_spec(ctx)
    start = len(request_log())
    result = ensure_client_access(ctx)
    assert result.status == Status.CREATED
    assert [c.split(" '")[0] for c in result.changes] == [
        "create scope map", "create client token", "generate password1 of client token",
        "set the client tokens of connected registry"]
    assert [kind(w) for w in writes_since(request_log, start)] == [
        "PUT scopeMaps", "PUT tokens", "POST generateCredentials", "PATCH connectedRegistries"]

    assert azure.scope_map(spec.scope_map).actions == [
        "repositories/hello-world/content/read", "repositories/hello-world/content/write",
        "repositories/hello-world/metadata/read"]
    token = azure.token(spec.name)
    assert token.status == "enabled" and token.scope_map_id.lower() == azure.scope_map(spec.scope_map).id.lower()
    (password1,) = token.credentials.passwords
    assert password1.name == "password1"
    expected_expiry = ctx.profile.now() + dt.timedelta(days=spec.expiry_days)  # by the service's clock
    assert abs(password1.expiry - expected_expiry) < dt.timedelta(minutes=5)
    assert azure.attached() == [spec.name]

    password = ctx.get_secret(f"client-token-{spec.name}")
    assert pulls_with(ctx, spec.name, password)
    assert password not in json.dumps(result.to_dict()) + repr(result)
    assert result.secrets == {f"client-token-{spec.name}":
                              f"******** (local:crlib-{ctx.site.site}-client-token-{spec.name})"}
    assert result.details["token_ids"] == {spec.name: token.id}


def test_second_run_and_a_fresh_process_write_nothing_and_keep_the_password(defined, make_context, request_log):
    ctx = defined()
    first = ensure_client_access(ctx)
    spec = token_spec(ctx)
    password = ctx.get_secret(f"client-token-{spec.name}")
    start = len(request_log())
    assert ensure_client_access(ctx).status == Status.UNCHANGED
    fresh = make_context(ctx.site)
    again = ensure_client_access(fresh)
    assert again.status == Status.UNCHANGED and again.changes == []
    assert fresh.get_secret(f"client-token-{spec.name}") == password
    assert again.details["token_ids"] == first.details["token_ids"]
    assert writes_since(request_log, start) == []


def test_plan_writes_nothing_on_a_fresh_site_and_before_the_first_run(make_site, make_context, defined, request_log):
    bare = make_context(make_site())
    kinds = ["create scope map", "create client token", "generate password1 of client token",
             "set the client tokens of connected registry"]
    planned = ensure_client_access(bare, plan=True)
    assert planned.status == Status.PLANNED
    assert [c.split(" '")[0] for c in planned.changes] == kinds
    ctx = defined()
    start = len(request_log())
    before_first_run = ensure_client_access(ctx, plan=True)
    assert before_first_run.status == Status.PLANNED
    assert [c.split(" '")[0] for c in before_first_run.changes] == kinds
    assert writes_since(request_log, start) == []
    assert ctx.get_secret(f"client-token-{token_spec(ctx).name}") is None
    assert "token_ids" not in before_first_run.details  # a plan records no ids of what it would make


def test_set_semantics_detach_tokens_the_site_does_not_define(defined, request_log):
    ctx = defined()
    ensure_client_access(ctx)
    azure = Azure(ctx)
    stranger = azure.extra_token("stranger", attach=True)
    assert azure.attached() == sorted([token_spec(ctx).name, "stranger"])
    start = len(request_log())
    result = ensure_client_access(ctx)
    assert result.status == Status.UPDATED
    assert result.changes == [f"set the client tokens of connected registry '{ctx.site.connected_registry.name}' to "
                              f"{token_spec(ctx).name}; detach stranger"]
    assert len(writes_since(request_log, start)) == 1
    assert azure.attached() == [token_spec(ctx).name]
    assert azure.token("stranger").id == stranger.id  # detached, not deleted


def test_a_site_without_tokens_detaches_all(defined, make_context):
    ctx = defined()
    ensure_client_access(ctx)
    data = ctx.site.model_dump()
    data["client_access"] = {"scope_maps": {}, "tokens": []}
    bare = make_context(type(ctx.site).model_validate(data))
    assert ensure_client_access(bare).status == Status.UPDATED
    assert Azure(ctx).attached() == []


def test_drift_in_scope_map_and_token_is_corrected(defined):
    ctx = defined()
    ensure_client_access(ctx)
    azure, spec = Azure(ctx), token_spec(ctx)
    azure.acr.scope_maps.begin_update(azure.rg, azure.reg, spec.scope_map, models.ScopeMapUpdateParameters(
        actions=["repositories/hello-world/content/delete"])).result()
    azure.acr.tokens.begin_update(azure.rg, azure.reg, spec.name, models.TokenUpdateParameters(
        status="disabled")).result()
    planned = ensure_client_access(ctx, plan=True)
    assert [c.split(" '")[0] for c in planned.changes] == ["update scope map", "update client token"]
    fixed = ensure_client_access(ctx)
    assert fixed.status == Status.UPDATED
    assert set(azure.scope_map(spec.scope_map).actions) == {
        "repositories/hello-world/content/read", "repositories/hello-world/content/write",
        "repositories/hello-world/metadata/read"}
    assert azure.token(spec.name).status == "enabled"
    assert pulls_with(ctx, spec.name, ctx.get_secret(f"client-token-{spec.name}"))


def test_a_lost_password_is_refused_until_regeneration_is_asked_for(defined, request_log):
    ctx = defined()
    ensure_client_access(ctx)
    spec = token_spec(ctx)
    old = ctx.get_secret(f"client-token-{spec.name}")
    ctx.secrets.delete(ctx.secret_name(f"client-token-{spec.name}"))
    start = len(request_log())
    with pytest.raises(PreconditionFailed) as refused:
        ensure_client_access(ctx)
    assert refused.value.subject == f"client_access.tokens.{spec.name}"
    assert "regenerate" in refused.value.message
    assert writes_since(request_log, start) == []

    result = ensure_client_access(ctx, regenerate=[spec.name])
    assert result.status == Status.UPDATED and result.changes[0].startswith("regenerate password1")
    new = ctx.get_secret(f"client-token-{spec.name}")
    assert new != old
    assert pulls_with(ctx, spec.name, new) and not pulls_with(ctx, spec.name, old)


@pytest.mark.parametrize("clash", ["token", "scope map", "regenerate"])
def test_names_that_would_take_over_the_sync_credentials_are_refused(defined, make_context, request_log, clash):
    ctx = defined()
    cr_name = ctx.site.connected_registry.name
    data = ctx.site.model_dump()
    if clash == "token":
        data["client_access"]["tokens"][0]["name"] = cr_name
    elif clash == "scope map":
        data["client_access"] = {"scope_maps": {cr_name: {"hello-world": ["content/read"]}}, "tokens": []}
    start = len(request_log())
    with pytest.raises(ParameterError) as refused:
        ensure_client_access(make_context(type(ctx.site).model_validate(data)),
                             regenerate=["nobody"] if clash == "regenerate" else ())
    assert refused.value.field.startswith({"token": "client_access.tokens", "scope map": "client_access.scope_maps",
                                           "regenerate": "regenerate"}[clash])
    assert writes_since(request_log, start) == []


def test_without_the_connected_registry_the_step_refuses(make_site, make_context, defined):
    ctx = defined()
    data = ctx.site.model_dump()
    data["connected_registry"]["name"] = "notcreatedyet"
    with pytest.raises(PreconditionFailed) as refused:
        ensure_client_access(make_context(type(ctx.site).model_validate(data)))
    assert refused.value.subject == "connected_registry"


def test_definition_updates_keep_the_attached_client_tokens(defined, make_context):
    ctx = defined()
    ensure_client_access(ctx)
    data = ctx.site.model_dump()
    data["connected_registry"]["log_level"] = "Debug"
    result = ensure_connected_registry(make_context(type(ctx.site).model_validate(data)))
    assert result.status == Status.UPDATED
    assert Azure(ctx).attached() == [token_spec(ctx).name]


def test_teardown_detaches_and_deletes_only_this_sites_access(defined, request_log):
    ctx = defined()
    ensure_client_access(ctx)
    azure, spec = Azure(ctx), token_spec(ctx)
    azure.extra_token("stranger", attach=True)
    start = len(request_log())
    planned = detach_and_delete_client_access(ctx, plan=True)
    assert planned.status == Status.PLANNED and len(planned.changes) == 4
    assert writes_since(request_log, start) == []

    result = detach_and_delete_client_access(ctx)
    assert result.status == Status.DELETED
    assert azure.attached() == ["stranger"]
    with pytest.raises(ResourceNotFoundError):
        azure.token(spec.name)
    with pytest.raises(ResourceNotFoundError):
        azure.scope_map(spec.scope_map)
    assert ctx.get_secret(f"client-token-{spec.name}") is None

    start = len(request_log())
    again = detach_and_delete_client_access(ctx)
    assert again.status == Status.UNCHANGED and again.changes == []
    assert writes_since(request_log, start) == []


def test_teardown_refuses_while_another_token_uses_the_scope_map(defined, request_log):
    ctx = defined()
    ensure_client_access(ctx)
    Azure(ctx).extra_token("borrower", scope_map=token_spec(ctx).scope_map)
    start = len(request_log())
    with pytest.raises(PreconditionFailed) as refused:
        detach_and_delete_client_access(ctx)
    assert "borrower" in refused.value.message
    assert writes_since(request_log, start) == []


def test_a_token_of_someone_else_is_never_taken_over(make_site, make_context, request_log):
    """A client token whose name is already used, bound to a scope map this site does not define
    (a sibling's sync token, the module pull token), is refused before any write."""

    from crlib.errors import PreconditionFailed
    from crlib.steps.access import ensure_client_access
    from crlib.steps.endpoint import ensure_endpoint
    from crlib.steps.hub import ensure_resource_group

    site = make_site()
    ctx = make_context(site)
    acr = ctx.clients.acr
    ensure_resource_group(ctx)
    ensure_endpoint(ctx)
    foreign = acr.scope_maps.begin_create(site.resource_group, site.registry.name, "someone-elses",
                                          models.ScopeMap(actions=["repositories/other/content/read"])).result()
    name = site.client_access.tokens[0].name
    acr.tokens.begin_create(site.resource_group, site.registry.name, name,
                            models.Token(scope_map_id=foreign.id, status="enabled")).result()
    log = request_log()
    with pytest.raises(PreconditionFailed, match="does not define"):
        ensure_client_access(ctx, plan=True)
    assert acr.tokens.get(site.resource_group, site.registry.name, name).scope_map_id == foreign.id
    assert [r for r in request_log()[len(log):] if r["wrote"]] == []

