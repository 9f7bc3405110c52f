"""A run that fails outside its notebooks (before the first one, in the runner around one, or on
Ctrl-C) is recorded as failed with the reason and sealed; it never stays "running"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from notebook_kit import params_file

from crlib import archive, runner
from crlib.cli import main


def only_run(runs: Path) -> tuple[Path, dict]:
    (run_dir,) = runs.iterdir()
    return run_dir, json.loads((run_dir / "run.json").read_text())


def test_missing_notebooks_fail_the_run_before_it_starts(tmp_path):
    params = params_file(tmp_path, {"state_dir": str(tmp_path / "no-sandbox")})
    run = runner.Run.create(params, runs_dir=tmp_path / "runs", phases=runner.select_phases(None), plan=False)
    record = run.run(notebooks_dir=tmp_path / "empty", progress=False)
    assert record["status"] == "failed"
    assert record["failed"]["reason"] == "setup" and record["failed"]["notebook"] is None
    assert "00-prerequisites" in record["failed"]["error"] and "missing" in record["failed"]["error"]
    assert record["attempts"][-1]["status"] == "failed" and record["finished"]
    assert archive.verify(run.dir) == []
    assert archive.list_runs(tmp_path / "runs")["status"].tolist() == ["failed"]


def test_crlib_run_says_in_one_line_why_nothing_ran_and_records_it(tmp_path, capsys):
    params = params_file(tmp_path, {"state_dir": str(tmp_path / "no-sandbox")})  # no sandbox runs there
    assert main(["run", str(params), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert "failed before any notebook ran" in captured.err and "crlib sandbox start" in captured.err
    run_dir, record = only_run(tmp_path / "runs")
    assert f"crlib run --resume {run_dir}" in captured.err
    assert record["status"] == "failed" and record["failed"]["step"] == "before any notebook"
    assert all(n["status"] == "not run" for n in record["notebooks"])
    assert main(["archive", "list", "--runs-dir", str(tmp_path / "runs")]) == 0
    assert "failed" in capsys.readouterr().out
    assert main(["archive", "verify", str(run_dir)]) == 0


@pytest.mark.parametrize("error", [RuntimeError("the runner broke"), KeyboardInterrupt()])
def test_an_error_around_a_notebook_is_recorded_against_it(sandbox, tmp_path, monkeypatch, error):
    def execute(*args, **kwargs):
        raise error

    monkeypatch.setattr(runner, "execute", execute)
    params = params_file(tmp_path, sandbox)
    run = runner.Run.create(params, runs_dir=tmp_path / "runs", phases=runner.select_phases(None), plan=False)
    if isinstance(error, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            run.run(progress=False)
    else:
        run.run(progress=False)
    _, record = only_run(tmp_path / "runs")
    reason = "interrupted" if isinstance(error, KeyboardInterrupt) else "runner"
    assert record["status"] == "failed"
    assert record["failed"] == {"notebook": "00-prerequisites", "step": "00-prerequisites, in the runner",
                                "reason": reason, "error": "KeyboardInterrupt" if reason == "interrupted"
                                else "RuntimeError: the runner broke"}
    assert record["notebooks"][0]["status"] == "failed" and record["notebooks"][1]["status"] == "not run"
    assert archive.verify(run.dir) == []
