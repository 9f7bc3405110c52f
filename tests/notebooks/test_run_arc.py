"""The same notebooks for an Arc site: `crlib run` through 00-06, rotation and teardown on a
simulated Arc-enabled cluster, the archives verified and free of every secret (the digest of the
extension's protected settings included), and notebook 04 showing the extension, not a manifest."""

from __future__ import annotations

import json

import pytest
import yaml
from notebook_kit import crlib_run, secret_values
from testkit import site_data

from crlib import archive
from crlib.sandbox import control


@pytest.fixture(scope="module")
def arc_lifecycle(sandbox, tmp_path_factory):
    base = tmp_path_factory.mktemp("arc")
    data = site_data(sandbox)
    cluster = "arc-" + data["site"]
    data["secrets"] = {"store": "local", "local_dir": str(base / "secrets")}
    data["connected_registry"]["mode"] = "ReadOnly"
    data["host"] = {"kind": "arc", "arc": {"cluster": cluster, "service_cluster_ip": "10.0.0.100",
                                           "storage_class": "standard"}}
    path = base / "arc.yaml"
    path.write_text(yaml.safe_dump(data))
    # The operator's part before the runbook: `az group create` and `az connectedk8s connect`.
    control.connect_cluster(sandbox, cluster, data["resource_group"], create_group=True)
    runs, seen = [], set()
    for only in (None, ["90"], ["99-teardown"]):
        runs.append(crlib_run(path, base / "runs", only=only))
        seen |= secret_values(base / "secrets")
    return {"runs": runs, "secrets": seen, "site": data}


def record_of(run) -> dict:
    return json.loads((run.dir / "run.json").read_text())


def test_every_notebook_runs_for_an_arc_site(arc_lifecycle):
    first, rotate, teardown = (record_of(r) for r in arc_lifecycle["runs"])
    assert first["status"] == "succeeded", first["failed"]
    statuses = {s["step"]: s["status"] for s in first["steps"]}
    assert [statuses[s] for s in ("hub", "device", "provision")] == ["skipped"] * 3
    assert statuses["deploy"] == "created" and statuses["checks"] == "passed"  # ReadOnly: the push refused
    assert rotate["status"] == "succeeded" and [s["step"] for s in rotate["steps"]] == ["rotate"]
    assert [(s["step"], s["status"]) for s in teardown["steps"]] == [("teardown", "deleted")]


def test_notebook_04_shows_the_extension(arc_lifecycle):
    notebook = (arc_lifecycle["runs"][0].dir / "notebooks" / "04-deploy.ipynb").read_text()
    assert "Microsoft.ContainerRegistry.ConnectedRegistry" in notebook
    assert "provisioning state" in notebook and "Succeeded" in notebook
    assert "service.clusterIP" in notebook and "configurationProtectedSettings" in notebook
    assert "$edgeAgent" not in notebook.split('"outputs"', 1)[1]  # the outputs show no IoT Edge manifest


def test_arc_archives_verify_and_hold_no_secret(arc_lifecycle):
    secrets = arc_lifecycle["secrets"]
    assert len(secrets) >= 4  # sync password before and after rotation, connection string, client token, digest
    for run in arc_lifecycle["runs"]:
        assert archive.verify(run.dir, secrets=secrets) == []
        leaks = [(str(p), v[:4]) for p in run.dir.rglob("*") if p.is_file() for v in secrets
                 if v.encode() in p.read_bytes()]
        assert leaks == []
