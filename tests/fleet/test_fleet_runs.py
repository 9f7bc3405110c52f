"""`crlib fleet plan|run` against the sandbox: every site built, a second run that writes nothing,
Azure's limits refused at plan time, and a broken site that fails alone and is resumed alone."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import yaml
from fleet_kit import inventory_data
from requestlog import log_from_now

from crlib import archive, cli, runbook
from crlib.fleet import FleetContexts, _shared_run
from crlib.inventory import load_inventory


def resource_writes(log) -> list[str]:
    """Writes to Azure resources: ARM, IoT Hub and Key Vault. The checks' pushes through a device
    (the registry's data plane, /v2/...) are operations the checks make anew on every run."""
    return [f"{r['method']} {r['path']}" for r in log() if r["wrote"] and not r["path"].startswith("/v2/")]


def fleet_record(run_dir) -> dict:
    return json.loads((run_dir / "fleet.json").read_text())


def only_run(runs) -> object:
    found = sorted(p for p in runs.iterdir() if p.is_dir())
    return found[-1]


def test_a_fleet_run_builds_every_site_and_a_second_run_writes_nothing(sandbox, write_inventory, tmp_path, capsys):
    inventory = write_inventory(3)
    runs = tmp_path / "runs"
    assert cli.main(["fleet", "run", str(inventory), "--yes", "--runs-dir", str(runs)]) == 0, capsys.readouterr().err
    run_dir = only_run(runs)
    record = fleet_record(run_dir)
    fleet = load_inventory(inventory)
    assert record["status"] == "succeeded" and record["counts"]["succeeded"] == 3
    for site in fleet.sites:
        entry = record["sites"][site.site]
        assert entry["status"] == "succeeded" and len(entry["attempts"]) == 1
        steps = [s["step"] for s in entry["attempts"][0]["steps"]]
        assert steps == ["device", "provision", "definition", "settings", "manifest", "deploy", "access", "checks"]
        assert any(site.connected_registry.name in r for r in entry["attempts"][0]["resource_ids"])
        assert json.loads((run_dir / "sites" / f"{site.site}.json").read_text())["status"] == "succeeded"
    assert [s["step"] for s in record["shared"][0]["steps"]] == ["prerequisites", "group", "hub", "endpoint", "imports"]
    assert {p.name for p in (run_dir / "notebooks").iterdir()} == {"10-fleet.ipynb"}
    assert "# The validated inventory" in (run_dir / "inventory.yaml").read_text()
    capsys.readouterr()
    assert cli.main(["archive", "verify", str(run_dir)]) == 0
    assert "verified" in capsys.readouterr().out
    assert archive.verify(run_dir, secrets=archive.store_secrets(
        __import__("crlib.secrets", fromlist=["LocalSecretStore"]).LocalSecretStore(tmp_path / "secrets"), "crlib-")) == []

    second = log_from_now(sandbox)
    assert cli.main(["fleet", "run", str(inventory), "--yes", "--runs-dir", str(runs)]) == 0
    assert resource_writes(second) == []
    again = fleet_record(only_run(runs))
    for entry in again["sites"].values():
        assert {s["status"] for s in entry["attempts"][0]["steps"] if s["step"] != "checks"} <= {"unchanged", "skipped"}


def test_51_connected_registries_on_one_registry_are_refused_at_plan_time(sandbox, write_inventory, capsys):
    inventory = write_inventory(51, built=False)
    log = log_from_now(sandbox)
    assert cli.main(["fleet", "plan", str(inventory)]) == 2
    err = capsys.readouterr().err
    assert "0 existing + 51 new = 51 of 50" in err and "limit of 50 connected registries" in err, err
    assert "intro-connected-registry" in err and str(inventory) in err
    assert [r for r in log() if r["wrote"]] == []
    assert cli.main(["fleet", "run", str(inventory), "--yes", "--runs-dir", str(inventory.parent / "runs")]) == 2
    assert not (inventory.parent / "runs").exists()  # refused before any run folder
    assert [r for r in log() if r["wrote"]] == []


def test_45_existing_plus_6_new_connected_registries_are_refused(sandbox, write_inventory, tmp_path, capsys):
    data = inventory_data(sandbox, tmp_path / "secrets", 51)
    existing = dict(data, sites=data["sites"][:45])
    built = load_inventory(write_inventory(data=existing, name="existing.yaml"))
    contexts = FleetContexts(built)
    _shared_run(contexts, plan=False)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda site: runbook.run(contexts.for_site(site), only=["definition"]), built.sites))
    inventory = write_inventory(data=data, built=False)
    log = log_from_now(sandbox)
    assert cli.main(["fleet", "plan", str(inventory)]) == 2
    err = capsys.readouterr().err
    assert "45 existing + 6 new = 51 of 50" in err, err
    assert [r for r in log() if r["wrote"]] == []


def test_a_broken_site_fails_alone_and_resume_runs_it_alone(sandbox, write_inventory, tmp_path, capsys):
    data = inventory_data(sandbox, tmp_path / "secrets", 3)
    broken = data["sites"][1]
    broken["connected_registry"]["repositories"] = ["no-such-repository"]
    broken["checks"] = {"pull_image": "no-such-repository:latest"}
    inventory = write_inventory(data=data)
    runs = tmp_path / "runs"
    assert cli.main(["fleet", "run", str(inventory), "--yes", "--runs-dir", str(runs)]) == 1
    err = capsys.readouterr().err
    run_dir = only_run(runs)
    assert f"crlib fleet run --resume {run_dir}" in err
    record = fleet_record(run_dir)
    name = broken["site"]
    assert record["sites"][name]["status"] == "failed"
    # Its check image is its own: imported as its first step, which fails before it writes anything.
    assert record["sites"][name]["attempts"][0]["failure"]["step"] == "imports"
    assert [record["sites"][s["site"]]["status"] for s in data["sites"]] == ["succeeded", "failed", "succeeded"]

    broken["connected_registry"]["repositories"] = ["hello-world"]
    del broken["checks"]
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    assert cli.main(["fleet", "run", "--resume", str(run_dir), str(inventory)]) == 0, capsys.readouterr().err
    record = fleet_record(run_dir)
    assert record["status"] == "succeeded"
    assert [a["sites"] for a in record["attempts"]] == [[s["site"] for s in data["sites"]], [name]]
    assert [a["status"] for a in record["sites"][name]["attempts"]] == ["failed", "succeeded"]
    assert [a["attempt"] for a in record["sites"][name]["attempts"]] == [1, 2]
    for other in (data["sites"][0]["site"], data["sites"][2]["site"]):
        assert len(record["sites"][other]["attempts"]) == 1
    assert {p.name for p in (run_dir / "notebooks").iterdir()} == {"10-fleet.ipynb", "10-fleet.attempt-2.ipynb"}
    assert cli.main(["archive", "verify", str(run_dir)]) == 0


def test_nested_sites_start_after_their_parent_and_siblings_keep_each_others_writes(sandbox, write_inventory,
                                                                                    tmp_path):
    from crlib.azure import names, readers
    from crlib.context import open_context
    from crlib.fleet import apply_fleet

    data = inventory_data(sandbox, tmp_path / "secrets", 3)
    parent, *children = data["sites"]
    parent["connected_registry"]["mode"] = "ReadWrite"
    parent["client_access"] = {"scope_maps": {f"{parent['site']}-clients": {"hello-world": [
        "content/read", "content/write", "metadata/read"]}}, "tokens": [
            {"name": f"{parent['site']}-client", "scope_map": f"{parent['site']}-clients"}]}
    for child in children:
        child["connected_registry"]["parent"] = parent["connected_registry"]["name"]
        child["device"] = {"id": f"{child['site']}-edge", "parent_device": f"{parent['site']}-edge"}
    data["sites"] = [children[0], parent, children[1]]  # the inventory's order is not the order of work
    fleet = load_inventory(write_inventory(data=data))
    result = apply_fleet(fleet, max_parallel=3, sites=None)
    assert result.succeeded, {n: o.failure for n, o in result.sites.items()}
    top = result.sites[parent["site"]]
    for child in children:
        assert result.sites[child["site"]].started >= top.started + top.duration_s - 0.5
    # Each child's sync scope map actions and module pull token reached the parent: neither sibling's
    # read-and-write-back lost the other's.
    ctx = open_context(fleet.site(parent["site"]))
    actions = readers.scope_map(ctx, names.sync_scope_map_name(parent["connected_registry"]["name"])).actions
    top_registry = readers.connected_registry(ctx)
    attached = {readers.name_of(i).lower() for i in top_registry.client_token_ids or []}
    for child in children:
        name = child["connected_registry"]["name"]
        assert any(f"gateway/{name.lower()}/" in a for a in actions), (name, actions)
        assert names.pull_token_name(name).lower() in attached, (name, attached)
