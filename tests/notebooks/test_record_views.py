"""A record worth reading: each run's kind and steps, runs that failed before their first notebook,
`crlib archive show` and `crlib archive report`, checks that say `passed` with their evidence in
words, progress that the archive keeps in its final state, and kernels that do not warn about TCP.
Against the sandbox over HTTPS, through `crlib run` in-process."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from notebook_kit import crlib_run, params_file, secret_values
from testkit import site_data

from crlib import archive, report, runbook, runner
from crlib.cli import main

TCP_WARNING = "without encryption"


@contextlib.contextmanager
def stderr_of_children(into: Path) -> Iterator[None]:
    """File descriptor 2 (which kernel processes inherit) redirected into a file."""
    saved = os.dup(2)
    with into.open("wb") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def outputs_text(notebook: Path) -> str:
    """Every output of an archived notebook, as the JSON it is stored as."""
    cells = json.loads(notebook.read_text())["cells"]
    return json.dumps([c.get("outputs", []) for c in cells])


@pytest.fixture(scope="module")
def runs(sandbox, tmp_path_factory):
    """One site: deployed (00-06), planned again, rotated, torn down; what its kernels wrote to
    stderr, and every secret its store held."""
    base = tmp_path_factory.mktemp("record-views")
    data = site_data(sandbox)
    data["secrets"] = {"store": "local", "local_dir": str(base / "secrets")}
    params = base / "site.yaml"
    params.write_text(yaml.safe_dump(data))
    made, seen = {}, set()
    with stderr_of_children(base / "kernels-stderr.txt"):
        for kind, only, plan in (("deploy", None, False), ("plan", None, True), ("rotate", ["90"], False),
                                 ("teardown", ["99"], False)):
            made[kind] = crlib_run(params, base / "runs", only=only, plan=plan).dir
            seen |= secret_values(base / "secrets")
    return {"dirs": made, "secrets": seen, "base": base, "stderr": (base / "kernels-stderr.txt").read_text()}


def test_each_run_records_its_kind_and_steps_and_the_list_shows_them(runs, capsys):
    for kind, run_dir in runs["dirs"].items():
        assert record(run_dir)["status"] == "succeeded", record(run_dir)["failed"]
        assert record(run_dir)["kind"] == kind
    assert record(runs["dirs"]["deploy"])["ran"] == runbook.STEP_NAMES
    assert record(runs["dirs"]["plan"])["ran"] == runbook.STEP_NAMES
    assert record(runs["dirs"]["rotate"])["ran"] == ["rotate"]
    assert record(runs["dirs"]["teardown"])["ran"] == ["teardown"]

    table = archive.list_runs(runs["base"] / "runs")
    by_run = {row["run"]: row for row in table.to_dict("records")}
    assert {by_run[d.name]["kind"] for d in runs["dirs"].values()} == {"deploy", "plan", "rotate", "teardown"}
    assert by_run[runs["dirs"]["rotate"].name]["steps"] == "rotate"
    assert by_run[runs["dirs"]["deploy"].name]["steps"] == f"prerequisites..checks ({len(runbook.STEP_NAMES)})"

    assert main(["archive", "list", "--runs-dir", str(runs["base"] / "runs")]) == 0
    listed = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    for kind, run_dir in runs["dirs"].items():
        assert kind in listed[run_dir.name], listed[run_dir.name]


def test_checks_pass_with_their_evidence_in_words_in_the_record_and_notebook_06(runs):
    run_dir = runs["dirs"]["deploy"]
    checks = next(s for s in record(run_dir)["steps"] if s["step"] == "checks")
    assert checks["status"] == "passed"
    events = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    (result,) = [e for e in events if e["event"] == "result" and e["step"] == "checks"]
    pull, push = result["details"]["pull"], result["details"]["push"]
    pulled, pushed = result["details"]["evidence"]
    assert pulled.startswith(f"pulled hello-world:latest through {result['details']['endpoint']}: digest "
                             f"{pull['digest']}"), pulled
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", pull["digest"])
    assert pushed == (f"pushed hello-world:{push['tag']} through the connected registry at "
                      f"{result['details']['endpoint']}; seen in the cloud registry at {push['seen_in_cloud_at']} "
                      f"with the same digest {push['digest']}; pulled back from there: {push['pulled_back_blobs']} "
                      f"blobs, {push['pulled_back_bytes']} bytes, checked")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", push["seen_in_cloud_at"])
    shown = outputs_text(run_dir / "notebooks" / "06-checks.ipynb")
    assert json.dumps(pulled)[1:-1] in shown and json.dumps(pushed)[1:-1] in shown  # the details table, one row each


def test_the_archived_imports_show_their_final_state_not_a_frozen_bar(runs):
    notebook = runs["dirs"]["deploy"] / "notebooks" / "02-registry.ipynb"
    shown = outputs_text(notebook)
    assert "widget-view" not in shown  # a widget's state is not archived: it would show 0/N forever
    streams = "".join("".join(o.get("text", "")) for c in json.loads(notebook.read_text())["cells"]
                      for o in c.get("outputs", []) if o["output_type"] == "stream")
    final = re.search(r"importing images: done, (\d+)/(\d+) images in [\d.]+ s", streams)
    assert final and final.group(1) == final.group(2) and int(final.group(1)) >= 1, streams
    assert len(re.findall(r"importing images: \d+/\d+ \(\S+ imported\)", streams)) == int(final.group(1)), streams


def test_no_kernel_warns_about_tcp_without_encryption(runs):
    assert TCP_WARNING not in runs["stderr"], runs["stderr"][:2000]
    for run_dir in runs["dirs"].values():
        for notebook in (run_dir / "notebooks").glob("*.ipynb"):
            assert TCP_WARNING not in notebook.read_text(), notebook


def test_archive_show_prints_who_when_where_the_signer_and_every_change(runs, capsys):
    run_dir = runs["dirs"]["deploy"]
    assert main(["archive", "show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    data = record(run_dir)
    facts = dict(re.findall(r"^([a-z ]+):\s+(.*)$", out, flags=re.M))
    assert facts["site"] == data["site"] and facts["kind"] == "deploy" and facts["status"] == "succeeded"
    assert data["operator"]["local_user"] in facts["operator"] and data["operator"]["identity"] in facts["operator"]
    assert facts["tenant"] == data["tenant"] and facts["subscription"] == data["subscription"]
    assert facts["started"] == data["started"] and facts["target"].startswith("sandbox https://")
    assert facts["signed by"].startswith(archive.signature(run_dir).key_id)
    for notebook in data["notebooks"]:
        assert re.search(rf"^  {notebook['name']}\s+completed", out, flags=re.M), notebook
    for step in data["steps"]:
        assert re.search(rf"^  {step['step']}\s+{step['status']}", out, flags=re.M), step
        for change in step["plan"]:
            assert f"      {'+~->'[['create', 'update', 'delete', 'run'].index(change['action'])]} {change['summary']}" \
                in out, change
    assert "      = pulled hello-world:latest through " in out


def test_archive_report_is_one_self_contained_html_file_without_secrets(runs, capsys):
    run_dir = runs["dirs"]["rotate"]  # the rotation generated a new sync password: none of it may show
    assert main(["archive", "report", str(run_dir)]) == 0
    written = run_dir.parent / f"{run_dir.name}.html"
    assert str(written) in capsys.readouterr().out
    page = written.read_text()
    assert report.external_references(page) == []
    assert not re.search(r"<(script|link|img)\b[^>]*\b(src|href)\s*=\s*[\"']?(https?:)?//", page, flags=re.I)
    assert archive.scan_bytes(page.encode(), runs["secrets"]) == []
    assert len(runs["secrets"]) >= 5  # the scan had values to look for
    assert 'id="summary"' in page and '<b>Verified</b>' in page and 'id="notebook-90-rotate-credentials"' in page
    assert archive.signature(run_dir).key_id in page
    assert archive.verify(run_dir) == []  # nothing was written into the sealed folder

    inside = run_dir / "report.html"
    assert main(["archive", "report", str(run_dir), "-o", str(inside)]) == 2
    assert "inside the sealed run folder" in capsys.readouterr().err and not inside.exists()


def test_show_and_report_refuse_a_folder_holding_a_symlink(runs, tmp_path, capsys):
    copy = tmp_path / runs["dirs"]["teardown"].name
    shutil.copytree(runs["dirs"]["teardown"], copy)
    copy.chmod(0o700)
    (copy / "notebooks").chmod(0o700)
    (copy / "notebooks" / "elsewhere.ipynb").symlink_to(tempfile.gettempdir())
    for command in ("show", "report"):
        assert main(["archive", command, str(copy)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "refusing" in err and "notebooks/elsewhere.ipynb is a symlink" in err, err
    assert not (tmp_path / f"{copy.name}.html").exists()



@pytest.mark.parametrize("cause", ["unreachable target", "missing notebooks"])
def test_a_run_that_fails_before_its_first_notebook_is_sealed_listed_and_shown(tmp_path, capsys, cause):
    params = params_file(tmp_path, {"state_dir": str(tmp_path / "no-sandbox")})  # no sandbox runs there
    run = runner.Run.create(params, runs_dir=tmp_path / "runs", phases=runner.select_phases(["90"]), plan=False)
    notebooks = tmp_path / "empty" if cause == "missing notebooks" else runner.NOTEBOOKS_DIR
    run.run(notebooks_dir=notebooks, progress=False)
    assert (run.dir / archive.SUMS).is_file() and (run.dir / archive.SIGNATURE).is_file()  # sealed, signed locally

    (row,) = archive.list_runs(tmp_path / "runs").to_dict("records")
    assert (row["kind"], row["status"], row["failed_step"], row["reason"]) == \
        ("rotate", "failed", "before any notebook", "setup")
    assert row["sealed"] and row["signed"]
    assert main(["archive", "verify", str(run.dir)]) == 0
    capsys.readouterr()

    assert main(["archive", "show", str(run.dir)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^status:\s+failed$", out, flags=re.M) and re.search(r"^kind:\s+rotate$", out, flags=re.M)
    assert "(no step ran)" in out and "no identity: the target was not reached" in out
    failure = "missing" if cause == "missing notebooks" else "crlib sandbox start"
    assert re.search(rf"^failed before any notebook \(setup\): .*{failure}", out, flags=re.M), out
    assert f"after fixing it: crlib run --resume {run.dir}" in out
