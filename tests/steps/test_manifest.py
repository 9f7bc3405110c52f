"""The manifest step against the sandbox: the module pull credential (get-or-create, repaired when
its password is lost or refused, never rebound), the manifest built from service responses, its
record with secret references only, and validation against the IoT Edge schemas plus the
createOptions JSON check."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
from azure.mgmt.containerregistry import models as acr
from requestlog import log_from_now

from crlib import runbook
from crlib.azure.names import PULL_SECRET
from crlib.azure.pull_access import module_repositories, password_refusal, pull_token_name
from crlib.azure.readers import registry as get_registry
from crlib.errors import ManifestInvalid, PreconditionFailed
from crlib.hosts import digest
from crlib.hosts.iotedge_manifest import HOST_DATA_DIR, build_manifest, compose_manifest, validate_manifest
from crlib.results import Status
from crlib.secrets import mask
from crlib.steps.manifest import ensure_manifest

# Everything the manifest builds on, plus client access (which the checks after a deployment need).
UPSTREAM = [s for s in runbook.STEP_NAMES if s not in ("manifest", "deploy", "checks")]




def writes(log) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in log() if r["wrote"]]


def build_upstream(ctx):
    """Everything before the manifest (hub, device, registry, imports, connected registry,
    settings, client access), built by the runbook's own steps."""
    runbook.run(ctx, only=UPSTREAM)
    return ctx


@pytest.fixture
def upstream(make_site, make_context):
    return build_upstream(make_context(make_site()))


def pull_token(ctx):
    site = ctx.site
    return ctx.clients.acr.tokens.get(site.resource_group, site.registry.name, pull_token_name(ctx))


def password_works(ctx, password: str) -> bool:
    return password_refusal(ctx, get_registry(ctx), pull_token(ctx)) is None and \
        ctx.get_secret(PULL_SECRET) == password


def test_first_run_creates_the_pull_token_and_a_manifest_from_service_responses(upstream):
    ctx = upstream
    result = ensure_manifest(ctx)
    assert result.status == Status.CREATED
    assert [c.split(" '")[0] for c in result.changes] == ["create scope map", "create token", "generate password1 of token"]
    name = pull_token_name(ctx)
    site = ctx.site
    scope_map = ctx.clients.acr.scope_maps.get(site.resource_group, site.registry.name, name)
    assert sorted(scope_map.actions) == sorted(f"repositories/{r}/content/read" for r in (
        "acr/connected-registry", "azureiotedge-agent", "azureiotedge-hub", "azureiotedge-api-proxy",
        "azureiotedge-diagnostics"))
    assert password_works(ctx, ctx.get_secret(PULL_SECRET))

    real = build_manifest(ctx)
    registry = get_registry(ctx)
    login = registry.login_server
    agent = real["$edgeAgent"]["properties.desired"]
    assert agent["runtime"]["settings"]["registryCredentials"] == {registry.name: {
        "address": login, "username": name, "password": ctx.get_secret(PULL_SECRET)}}
    images = {n: m["settings"]["image"] for g in ("systemModules", "modules") for n, m in agent[g].items()}
    assert images == {"edgeAgent": f"{login}/{site.images.edge_agent}", "edgeHub": f"{login}/{site.images.edge_hub}",
                      "connectedRegistry": f"{login}/{site.images.connected_registry}",
                      "IoTEdgeAPIProxy": f"{login}/{site.images.api_proxy}"}
    registry_module = agent["modules"]["connectedRegistry"]
    assert registry_module["env"]["ACR_REGISTRY_CONNECTION_STRING"]["value"] == ctx.get_secret(
        "connected-registry-connection-string")
    assert json.loads(registry_module["settings"]["createOptions"])["HostConfig"]["Binds"] == [
        f"{HOST_DATA_DIR}:/var/acr/data"]
    proxy = agent["modules"]["IoTEdgeAPIProxy"]
    assert {k: v["value"] for k, v in proxy["env"].items()} == {
        "NGINX_DEFAULT_PORT": "8000", "CONNECTED_ACR_ROUTE_ADDRESS": "connectedRegistry:8080"}
    assert json.loads(proxy["settings"]["createOptions"]) == {
        "HostConfig": {"PortBindings": {"8000/tcp": [{"HostPort": "8000"}]}}}
    assert real["$edgeHub"]["properties.desired"]["schemaVersion"] == "1.2"

    record = result.details["record"]
    assert digest(record) == result.details["sha256"]
    shown = json.dumps(record) + result.to_json()
    for secret in (ctx.get_secret(PULL_SECRET), ctx.get_secret("connected-registry-connection-string")):
        assert secret not in shown
    assert record["$edgeAgent"]["properties.desired"]["modules"]["connectedRegistry"]["env"][
        "ACR_REGISTRY_CONNECTION_STRING"]["value"] == f"secret:{ctx.secret_name('connected-registry-connection-string')}"
    assert result.secrets[PULL_SECRET] == f"local:{ctx.secret_name(PULL_SECRET)}"


def test_second_run_is_unchanged_and_writes_nothing(upstream, sandbox):
    first = ensure_manifest(upstream)
    log = log_from_now(sandbox)
    again = ensure_manifest(upstream)
    assert (again.status, again.changes) == (Status.UNCHANGED, [])
    assert writes(log) == []
    assert again.details["sha256"] == first.details["sha256"]


def test_plan_on_a_fresh_site_lists_the_writes_and_makes_none(make_site, make_context, sandbox):
    ctx = make_context(make_site())
    log = log_from_now(sandbox)
    plan = ensure_manifest(ctx, plan=True)
    assert plan.status == Status.PLANNED
    assert any(c.startswith("create token") for c in plan.changes)
    assert any(c.startswith("build and validate the deployment manifest") for c in plan.changes)
    assert writes(log) == []
    with pytest.raises(PreconditionFailed, match="run the endpoint step"):
        ensure_manifest(ctx)
    assert writes(log) == []


def test_a_missing_connection_string_is_refused_before_any_write(upstream, sandbox):
    ctx = upstream
    ctx.secrets.delete(ctx.secret_name("connected-registry-connection-string"))
    log = log_from_now(sandbox)
    with pytest.raises(PreconditionFailed, match="run the settings step"):
        ensure_manifest(ctx)
    assert writes(log) == []
    assert pull_token_name(ctx) not in [t.name for t in ctx.clients.acr.tokens.list(
        ctx.site.resource_group, ctx.site.registry.name)]


@pytest.mark.parametrize("damage", ["lost", "wrong"])
def test_a_lost_or_refused_pull_password_is_replaced(upstream, damage):
    ctx = upstream
    ensure_manifest(ctx)
    old = ctx.get_secret(PULL_SECRET)
    if damage == "lost":
        ctx.secrets.delete(ctx.secret_name(PULL_SECRET))
    else:
        ctx.set_secret(PULL_SECRET, "not-the-password-at-all")
    repaired = ensure_manifest(ctx)
    assert repaired.status == Status.UPDATED
    reason = "no password is stored" if damage == "lost" else "the registry refuses the stored password"
    assert repaired.changes == [f"generate password1 of token '{pull_token_name(ctx)}' and store it as secret "
                                f"'{ctx.secret_name(PULL_SECRET)}' ({reason})"]
    new = ctx.get_secret(PULL_SECRET)
    assert new != old and password_works(ctx, new)


def test_scope_map_drift_is_corrected(upstream):
    ctx = upstream
    ensure_manifest(ctx)
    site, name = ctx.site, pull_token_name(ctx)
    ctx.clients.acr.scope_maps.begin_update(site.resource_group, site.registry.name, name,
                                            acr.ScopeMapUpdateParameters(actions=["repositories/x/content/read"])).result()
    fixed = ensure_manifest(ctx)
    assert fixed.status == Status.UPDATED
    assert fixed.changes[0].startswith(f"update scope map '{name}'")
    actions = ctx.clients.acr.scope_maps.get(site.resource_group, site.registry.name, name).actions
    assert sorted(actions) == sorted(f"repositories/{r}/content/read" for r in module_repositories(ctx))


def test_a_pull_token_bound_elsewhere_is_not_rebound(upstream, sandbox):
    ctx = upstream
    site, name = ctx.site, pull_token_name(ctx)
    acr_ops = ctx.clients.acr
    other = acr_ops.scope_maps.begin_create(site.resource_group, site.registry.name, "someone-elses", acr.ScopeMap(
        actions=["repositories/hello-world/content/read"])).result()
    acr_ops.scope_maps.begin_create(site.resource_group, site.registry.name, name, acr.ScopeMap(
        actions=["repositories/hello-world/content/read"])).result()
    acr_ops.tokens.begin_create(site.resource_group, site.registry.name, name,
                                acr.Token(scope_map_id=other.id, status="enabled")).result()
    log = log_from_now(sandbox)
    with pytest.raises(PreconditionFailed, match="does not rebind a token"):
        ensure_manifest(ctx)
    assert writes(log) == []


# -- validation ---------------------------------------------------------------------------------------
@pytest.fixture
def sample(make_site, make_context):
    """A manifest composed from made-up inputs: validation needs no Azure."""
    ctx = make_context(make_site())
    registry = SimpleNamespace(name="sample", login_server="127.0.0.1:5000")
    return compose_manifest(ctx, registry, pull_password="pull-secret-value",
                                 connection_string="ConnectedRegistryName=x;SyncTokenPassword=cs-secret-value")


def modules_of(manifest: dict) -> dict:
    return manifest["$edgeAgent"]["properties.desired"]["modules"]


def test_the_composed_manifest_is_valid(sample):
    validate_manifest(sample)


def test_create_options_that_are_not_json_are_refused(sample):
    broken = copy.deepcopy(sample)
    modules_of(broken)["IoTEdgeAPIProxy"]["settings"]["createOptions"] = "{HostConfig: nope}"
    with pytest.raises(ManifestInvalid) as refused:
        validate_manifest(broken)
    assert refused.value.problems == ["$edgeAgent: modules.IoTEdgeAPIProxy.settings.createOptions is not JSON "
                                      "(Expecting property name enclosed in double quotes at character 1)"]


def test_create_options_must_be_a_json_object(sample):
    broken = copy.deepcopy(sample)
    broken["$edgeAgent"]["properties.desired"]["systemModules"]["edgeHub"]["settings"]["createOptions"] = "[1, 2]"
    with pytest.raises(ManifestInvalid, match=r"systemModules\.edgeHub\.settings\.createOptions must be a JSON object"):
        validate_manifest(broken)


def test_create_options_split_over_several_keys_are_joined_in_order(sample):
    split = copy.deepcopy(sample)
    settings = modules_of(split)["connectedRegistry"]["settings"]
    whole = settings.pop("createOptions")
    settings |= {"createOptions": whole[:10], "createOptions01": whole[10:20], "createOptions02": whole[20:]}
    validate_manifest(split)
    settings |= {"createOptions01": whole[20:], "createOptions02": whole[10:20]}  # joined out of order
    with pytest.raises(ManifestInvalid, match=r"connectedRegistry\.settings\.createOptions is not JSON"):
        validate_manifest(split)


@pytest.mark.parametrize(("part", "version"), [("$edgeAgent", "1.0"), ("$edgeHub", "1.1"), ("$edgeAgent", "11.1")])
def test_schema_versions_without_a_vendored_schema_are_refused(sample, part, version):
    other = copy.deepcopy(sample)
    other[part]["properties.desired"]["schemaVersion"] = version
    with pytest.raises(ManifestInvalid, match=rf"\{part}: schemaVersion '{version}' is not one crlib validates"):
        validate_manifest(other)


def test_schema_violations_name_their_place(sample):
    broken = copy.deepcopy(sample)
    modules_of(broken)["connectedRegistry"]["restartPolicy"] = "sometimes"
    del broken["$edgeHub"]["properties.desired"]["routes"]
    with pytest.raises(ManifestInvalid) as refused:
        validate_manifest(broken)
    assert refused.value.problems == [
        "$edgeAgent: modules.connectedRegistry.restartPolicy: 'sometimes' is not one of "
        "['never', 'on-failure', 'on-unhealthy', 'always']",
        "$edgeHub: (properties.desired): 'routes' is a required property"]


def test_a_missing_part_is_refused(sample):
    with pytest.raises(ManifestInvalid, match=r"\$edgeHub: properties.desired is missing"):
        validate_manifest({"$edgeAgent": sample["$edgeAgent"]})


def test_refusals_never_show_a_secret(sample):
    secret = "s3cret-value-in-a-bad-place"
    mask(secret)  # every secret crlib reads or writes is registered like this
    broken = copy.deepcopy(sample)
    broken["$edgeAgent"]["properties.desired"]["runtime"]["settings"]["registryCredentials"]["sample"][
        "address"] = f"bad address {secret}"
    with pytest.raises(ManifestInvalid) as refused:
        validate_manifest(broken)
    assert secret not in str(refused.value)
    assert "does not match" in str(refused.value)
