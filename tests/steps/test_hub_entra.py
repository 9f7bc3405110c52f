"""A hub with local auth disabled (`hub.disable_local_auth`): crlib creates or updates the hub with
`disableLocalAuth`, reaches its service API with Entra ID tokens only, and never lists its keys.

What crlib sent is read from the sandbox: the request log (no listKeys) and the IoT Hub auth
journal (which credential each service API request came with)."""

from __future__ import annotations

import pytest
from requestlog import log_from_now

from crlib import params, runbook
from crlib.azure import readers
from crlib.azure.names import DEVICE_SECRET, HUB_SECRET
from crlib.results import Status
from crlib.sandbox import control
from crlib.steps.device import ensure_device
from crlib.steps.hub import ensure_hub, ensure_resource_group
from crlib.steps.teardown import teardown

CONVERGING = [s for s in runbook.STEP_NAMES if s != "checks"]


def auth_from_now(sandbox: dict):
    """The IoT Hub auth journal (scheme of every service API request) from this moment on."""
    rows = control.admin(sandbox, "GET", "/_sandbox/iothub/auth")["requests"]
    since = rows[-1]["seq"] if rows else 0

    def read() -> list[dict]:
        return control.admin(sandbox, "GET", f"/_sandbox/iothub/auth?since={since}")["requests"]

    return read


def list_keys_calls(log) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in log() if r["path"].lower().endswith("/listkeys")]


def hub_auth(journal, host: str) -> set[tuple[str, bool]]:
    return {(r["scheme"], r["admitted"]) for r in journal() if r["host"] == host}


def without_local_auth(site: params.Site) -> params.Site:
    return params.load(site.model_dump() | {"hub": site.hub.model_dump() | {"disable_local_auth": True}})


def test_the_whole_runbook_reaches_a_hub_without_local_auth_through_entra_id_only(
        sandbox, make_site, make_context, torn_down):
    site = without_local_auth(make_site())
    log, journal = log_from_now(sandbox), auth_from_now(sandbox)
    ctx = make_context(site)
    # Should an assertion fail first: its device would keep syncing in the background. A context of
    # its own, which reads afresh (this one's cache will hold the hub this test deletes).
    torn_down(make_context(site))
    results = runbook.run(ctx)
    assert [r.step for r in results] == runbook.STEP_NAMES
    assert all(r.status in (Status.CREATED, Status.UPDATED, Status.UNCHANGED, Status.PASSED) for r in results), \
        [(r.step, r.status) for r in results]
    assert results[-1].details["pull"]["digest"].startswith("sha256:")

    hub = ctx.clients.hubs.iot_hub_resource.get(site.resource_group, site.hub.name)
    assert hub.properties.disable_local_auth is True
    host = hub.properties.host_name
    by_step = {r.step: r for r in results}
    assert by_step["hub"].secrets == {} and by_step["hub"].details["auth"] == "Entra ID (local auth disabled)"
    assert make_context(site).get_secret(HUB_SECRET) is None
    # The device still has its own key: a device's SAS is not what disableLocalAuth refuses.
    assert by_step["device"].secrets == {DEVICE_SECRET: f"local:crlib-{site.site}-{DEVICE_SECRET}"}

    assert list_keys_calls(log) == []
    used = hub_auth(journal, host)
    assert ("entra", True) in used
    assert {scheme for scheme, _ in used} == {"entra"}, used
    assert all(admitted for _, admitted in used), used

    # A second pass in a new process writes nothing, and still never lists keys.
    second_log, second_journal = log_from_now(sandbox), auth_from_now(sandbox)
    again = runbook.run(make_context(site), only=CONVERGING)
    assert [(r.step, r.status) for r in again] == [(s, Status.UNCHANGED) for s in CONVERGING]
    assert [f"{r['method']} {r['path']}" for r in second_log() if r["wrote"]] == []
    assert list_keys_calls(second_log) == []
    assert {scheme for scheme, _ in hub_auth(second_journal, host)} == {"entra"}

    # Teardown, hub included, reads the hub's devices and deletes its own the same way.
    teardown_log, teardown_journal = log_from_now(sandbox), auth_from_now(sandbox)
    removed = teardown(make_context(site), delete_hub=True, delete_registry=True)
    assert removed.status == Status.DELETED and any("IoT hub" in c for c in removed.changes), removed.changes
    assert readers.hub(make_context(site)) is None
    assert list_keys_calls(teardown_log) == []
    assert {scheme for scheme, _ in hub_auth(teardown_journal, host)} == {"entra"}


def test_a_plan_for_a_hub_with_local_auth_shows_the_update_and_apply_moves_to_entra_id(
        sandbox, make_site, make_context):
    site = make_site()
    first = make_context(site)
    ensure_resource_group(first)
    assert ensure_hub(first).secrets == {HUB_SECRET: f"local:crlib-{site.site}-{HUB_SECRET}"}
    ensure_device(first)
    stored = make_context(site).get_secret(HUB_SECRET)
    assert stored is not None

    strict = without_local_auth(site)
    plan_log = log_from_now(sandbox)
    planned = ensure_hub(make_context(strict), plan=True)
    assert planned.status == Status.PLANNED
    assert planned.plan[0]["action"] == "update" and planned.plan[0]["kind"] == "IoT hub"
    assert planned.plan[0]["fields"] == [{"name": "disableLocalAuth", "old": "false", "new": "true"}]
    assert planned.changes[0] == f"update IoT hub '{site.hub.name}' disabling local auth (Entra ID only)"
    # The owner key it kept can no longer reach the hub: the plan deletes it too.
    assert [(c["action"], c["kind"]) for c in planned.plan[1:]] == [("delete", "secret")]
    assert [r for r in plan_log() if r["wrote"]] == []

    apply_log, journal = log_from_now(sandbox), auth_from_now(sandbox)
    ctx = make_context(strict)
    applied = ensure_hub(ctx)
    assert applied.status == Status.UPDATED and applied.secrets == {}
    hub = readers.hub(ctx, fresh=True)
    assert hub.properties.disable_local_auth is True
    assert make_context(strict).get_secret(HUB_SECRET) is None
    # The key crlib kept is refused now; the next steps reach the hub with Entra ID.
    assert ensure_device(make_context(strict)).status == Status.UNCHANGED
    assert list_keys_calls(apply_log) == []
    assert {scheme for scheme, _ in hub_auth(journal, hub.properties.host_name)} == {"entra"}
    assert ensure_hub(make_context(strict)).status == Status.UNCHANGED

    # Local auth back on (the parameters say false again): the update, then the owner key as before.
    back = ensure_hub(make_context(site))
    assert back.status == Status.UPDATED and back.plan[0]["fields"] == [
        {"name": "disableLocalAuth", "old": "true", "new": "false"}]
    assert back.secrets == {HUB_SECRET: f"local:crlib-{site.site}-{HUB_SECRET}"}


@pytest.mark.parametrize("disabled", [False, True])
def test_hub_access_says_how_the_hub_is_reached(make_site, make_context, sandbox, disabled):
    site = make_site()
    if disabled:
        site = without_local_auth(site)
    ctx = make_context(site)
    ensure_resource_group(ctx)
    ensure_hub(ctx)
    log = log_from_now(sandbox)
    fresh = make_context(site)
    access = readers.hub_access(fresh)
    assert access is not None and access.entra is disabled
    assert (access.connection_string is None) is disabled
    assert len(list_keys_calls(log)) == (0 if disabled else 1)
    # Either way, both managers reach the hub through the profile's CA and retry settings.
    manager = fresh.clients.registry_manager(access)
    assert manager.protocol.config.connection.verify == fresh.profile.connection_verify
    assert manager.get_devices() == []
    configurations = fresh.clients.configuration_manager(access)
    assert configurations.protocol.config.connection.verify == fresh.profile.connection_verify
    assert isinstance(configurations.get_configurations(), list)
