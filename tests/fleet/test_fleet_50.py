"""Fifty sites on one registry, on a sandbox of their own: every site completes, a second
`crlib fleet run` writes nothing, and `crlib status` finds 50 healthy sites. Long: runs with -m long."""

from __future__ import annotations

import json

import pytest
import yaml
from fleet_kit import inventory_data
from requestlog import log_from_now
from test_fleet_runs import fleet_record, only_run, resource_writes

from crlib import cli
from crlib.sandbox import control

pytestmark = pytest.mark.long
SITES = 50


@pytest.fixture
def own_sandbox(tmp_path):
    state_dir = tmp_path / "sandbox"
    status = control.start(state_dir, clock_speed=60)
    yield status
    control.stop(state_dir)  # its fifty simulated devices stop with it


def test_fifty_sites_complete_rerun_without_writes_and_read_healthy(own_sandbox, tmp_path, capsys):
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(yaml.safe_dump(inventory_data(own_sandbox, tmp_path / "secrets", SITES), sort_keys=False))
    runs = tmp_path / "runs"
    assert cli.main(["fleet", "run", str(inventory), "--yes", "--runs-dir", str(runs), "--max-parallel", "16"]) == 0, \
        capsys.readouterr().err
    record = fleet_record(only_run(runs))
    assert record["counts"]["succeeded"] == SITES and record["status"] == "succeeded"
    assert "50 existing + 0 new = 50 of 50" not in json.dumps(record["limits"])  # they were new then
    assert any("0 existing + 50 new = 50 of 50" in line for line in record["limits"]), record["limits"]

    second = log_from_now(own_sandbox)
    assert cli.main(["fleet", "run", str(inventory), "--yes", "--runs-dir", str(runs), "--max-parallel", "16"]) == 0
    assert resource_writes(second) == []
    again = fleet_record(only_run(runs))
    assert any("50 existing + 0 new = 50 of 50" in line for line in again["limits"]), again["limits"]

    capsys.readouterr()
    assert cli.main(["status", str(inventory), "--json"]) == 0, capsys.readouterr()
    shown = json.loads(capsys.readouterr().out)
    assert shown["healthy"] is True and len(shown["sites"]) == SITES
    assert all(site["healthy"] for site in shown["sites"]), [s for s in shown["sites"] if not s["healthy"]][:3]
