"""`crlib fleet plan|run` against the sandbox: every site built, a second run that writes nothing,
Azure's limits refused at plan time, and a broken site that fails alone and is resumed alone."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import yaml
from conftest import inventory_data
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
    assert cli.main(["fleet", "run", str(inventory), "--yes", "--runs-dir", str(inventory.parent / "runs")]) == 1
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
    assert record["sites"][name]["attempts"][0]["failure"]["step"] == "checks"
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
