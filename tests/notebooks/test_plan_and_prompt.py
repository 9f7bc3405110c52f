"""`crlib run` shows its plan the way Terraform users expect, and asks before writing: a converged
site plans `0 to add, 0 to change, 0 to destroy`; teardown in a terminal shows what it will delete
and asks, and anything but 'yes' leaves every resource in place; not in a terminal, teardown needs
--yes."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from notebook_kit import crlib_run

from crlib import archive
from crlib.cli import main
from crlib.context import open_context
from crlib.params import load_file

CRLIB = [str(Path(sys.executable).with_name("crlib"))]  # the installed command


@pytest.fixture(scope="module")
def converged(sandbox, tmp_path_factory):
    """A site deployed by 00-06."""
    import yaml
    from testkit import site_data

    base = tmp_path_factory.mktemp("converged")
    data = site_data(sandbox)
    data["secrets"] = {"store": "local", "local_dir": str(base / "secrets")}
    params = base / "site.yaml"
    params.write_text(yaml.safe_dump(data, sort_keys=False))
    run = crlib_run(params, base / "runs")
    assert archive.read_record(run.dir)["status"] == "succeeded", archive.read_record(run.dir)["failed"]
    yield {"params": params, "runs": base / "runs", "site": load_file(params), "deployed": run.dir}
    main(["run", str(params), "--only", "99", "--yes", "--runs-dir", str(base / "runs"), "--no-progress"])


def resources(site) -> dict[str, bool]:
    """Whether the site's registry, connected registry and hub exist, read through the SDKs."""
    from crlib.azure import readers

    ctx = open_context(site)
    return {"registry": readers.registry(ctx) is not None,
            "connected registry": readers.connected_registry(ctx, site.connected_registry.name) is not None,
            "hub": readers.hub(ctx) is not None}


def test_a_converged_site_plans_nothing_to_add_change_or_destroy(converged, capsys):
    code = main(["run", str(converged["params"]), "--plan", "--runs-dir", str(converged["runs"]), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Plan: 0 to add, 0 to change, 0 to destroy." in out
    assert "  = definition" in out and "  = endpoint" in out  # every step says it is unchanged


def test_plan_json_is_the_plan_as_data(converged, capsys):
    code = main(["run", str(converged["params"]), "--plan", "--json", "--only", "02", "--runs-dir",
                 str(converged["runs"]), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0
    plan = json.loads(captured.out)
    assert [s["step"] for s in plan["steps"]] == ["endpoint", "imports"]
    assert plan["counts"] == {"add": 0, "change": 0, "destroy": 0, "run": 0}


def _in_a_terminal(args: list[str], answer: str) -> tuple[int, str]:
    """Run the crlib command on a pseudo-terminal; answer its prompt once it is shown."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    output, answered = b"", False
    while True:
        ready, _, _ = select.select([leader], [], [], 600)
        if not ready:
            process.kill()
            raise AssertionError("no output for 600 s:\n" + output.decode(errors="replace"))
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the command ended and closed the terminal
            break
        if not chunk:
            break
        output += chunk
        if not answered and b"Enter a value:" in output:
            os.write(leader, answer.encode() + b"\n")
            answered = True
    os.close(leader)
    return process.wait(timeout=120), output.decode(errors="replace")


def test_teardown_in_a_terminal_shows_what_it_deletes_and_n_keeps_everything(converged):
    before = resources(converged["site"])
    assert all(before.values()), before
    code, output = _in_a_terminal([*CRLIB, "run", str(converged["params"]), "--only", "99", "--runs-dir",
                                   str(converged["runs"]), "--no-progress"], "n")
    assert code == 1, output
    assert "- teardown" in output and "to destroy." in output and "Enter a value:" in output
    assert "Apply cancelled: nothing was written." in output
    assert resources(converged["site"]) == before


def test_teardown_not_in_a_terminal_needs_yes(converged):
    result = subprocess.run([*CRLIB, "run", str(converged["params"]), "--only", "99", "--runs-dir",
                             str(converged["runs"]), "--no-progress"], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "99-teardown deletes the site's resources; confirm with --yes" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert all(resources(converged["site"]).values())


def test_an_apply_whose_plan_differs_from_the_approved_one_writes_nothing(converged, tmp_path):
    from crlib import runner

    before = resources(converged["site"])
    run = runner.Run.create(converged["params"], runs_dir=tmp_path / "runs", phases=runner.select_phases(["99"]),
                            plan=False)
    run.approved_plan = [["teardown", "delete", "token", "someone-elses-token", "[]"]]  # not what 99 plans now
    record = run.run(progress=False)
    assert record["status"] == "failed"
    assert "differs from the plan approved at the prompt" in record["failed"]["error"]
    assert resources(converged["site"]) == before


def test_yes_at_the_prompt_applies_the_plan_it_showed(converged):
    code, output = _in_a_terminal([*CRLIB, "run", str(converged["params"]), "--only", "05", "--runs-dir",
                                   str(converged["runs"]), "--no-progress"], "yes")
    assert code == 0, output
    assert "Plan: 0 to add, 0 to change, 0 to destroy." in output and "archive:" in output
    records = [archive.read_record(run) for run in converged["runs"].iterdir()]
    applied = [r for r in records if r.get("approved_plan_run") and r["notebooks"][0]["name"] == "05-client-access"]
    assert len(applied) == 1 and applied[0]["status"] == "succeeded"
    plan_run = archive.read_record(converged["runs"] / applied[0]["approved_plan_run"])
    assert plan_run["plan_only"] is True and plan_run["notebooks"][0]["name"] == "05-client-access"


def test_the_deploy_wait_says_what_it_waits_for(converged):
    """A wait prints a line each time what it waits for changes, which the archived notebook keeps."""
    notebook = json.loads((converged["deployed"] / "notebooks" / "04-deploy.ipynb").read_text())
    printed = "".join(text for cell in notebook["cells"] for out in cell.get("outputs", [])
                      if out.get("output_type") == "stream" for text in out["text"])
    waits = [line for line in printed.splitlines() if line.startswith("deploy: waiting for ")]
    assert waits, printed
    assert len(waits) == len(set(waits))  # once per change, not once per poll
