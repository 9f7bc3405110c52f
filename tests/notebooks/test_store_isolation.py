"""The default secret store is named after the target: one site name against two sandboxes keeps
two stores, and neither run disturbs the other (issue 16: a hand run against another sandbox
broke `make demo`, whose site name it shared)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from notebook_kit import crlib_run
from testkit import site_data

from crlib import archive
from crlib.context import DEFAULT_STORE_ROOT, local_store_dir
from crlib.params import load_file
from crlib.profiles import profile_for
from crlib.sandbox import control


@pytest.fixture
def other_sandbox(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("other-sandbox")
    status = control.start(state_dir, clock_speed=60)
    yield status
    control.stop(state_dir)


def test_one_site_name_on_two_sandboxes_keeps_two_stores(sandbox, other_sandbox, tmp_path, monkeypatch):
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the default store is under ~
    first = site_data(sandbox)
    first.pop("secrets", None)
    second = copy.deepcopy(first)
    second["target"] = {"kind": "sandbox", "sandbox_state_dir": other_sandbox["state_dir"]}
    paths = []
    for name, data in (("first", first), ("second", second)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        paths.append(path)
    stores = [local_store_dir(load_file(p), profile_for(load_file(p))) for p in paths]
    root = Path(DEFAULT_STORE_ROOT.replace("~", str(tmp_path / "home")))
    assert [s.parent for s in stores] == [root, root]
    assert stores[0] != stores[1]
    assert stores[0].name == f"sandbox-{sandbox['tenant_id']}-{sandbox['subscription_id']}"

    phases = ["00", "01", "02", "03"]
    for path in paths:  # the same site name, the same resource names, two targets
        run = crlib_run(path, tmp_path / "runs", only=phases)
        assert archive.read_record(run.dir)["status"] == "succeeded", archive.read_record(run.dir)["failed"]
    names = [sorted(p.name for p in store.iterdir()) for store in stores]
    assert names[0] == names[1] and f"crlib-{first['site']}-sync-password" in names[0]
    passwords = [(store / f"crlib-{first['site']}-sync-password").read_text() for store in stores]
    assert passwords[0] != passwords[1]  # each sandbox's token has its own

    again = crlib_run(paths[0], tmp_path / "runs", only=["03"])  # the first target, after the second ran
    record = archive.read_record(again.dir)
    assert record["status"] == "succeeded"
    assert {s["step"]: s["status"] for s in record["steps"]} == {"definition": "unchanged", "settings": "unchanged"}
