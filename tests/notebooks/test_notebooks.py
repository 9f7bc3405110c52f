"""The notebooks themselves: their parameters cells, papermill's CLI against them (string booleans,
unknown parameters, a headless apply without confirmation), plan-only runs, and the form."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from notebook_kit import crlib_run
from requestlog import log_from_now

from crlib import notebook, runbook
from crlib.cli import main
from crlib.errors import NotConfirmed, ParameterError

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def papermill(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "papermill", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_there_is_one_notebook_per_phase():
    """...and the notebooks beside the phases, which crlib run never runs (runbook.OTHER_NOTEBOOKS)."""
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted([*runbook.PHASE_NAMES, *runbook.OTHER_NOTEBOOKS])
    assert not set(runbook.OTHER_NOTEBOOKS) & set(runbook.PHASE_NAMES)


@pytest.mark.parametrize("name", runbook.PHASE_NAMES)
def test_help_notebook_lists_every_parameter_with_help(name, tmp_path):
    import papermill as pm

    declared = pm.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb"))
    assert list(declared) == notebook.parameter_names(runbook.phase(name))
    shown = papermill("--help-notebook", str(NOTEBOOKS / f"{name}.ipynb"), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    for parameter, spec in declared.items():
        assert parameter in shown.stdout
        assert spec["help"] and spec["help"][:30] in " ".join(shown.stdout.split())


def test_papermill_cli_string_booleans_are_read_strictly(write_params, tmp_path):
    params = write_params()
    # papermill passes "false" as the (truthy) string "false": crlib must read it as false.
    refused = papermill(str(NOTEBOOKS / "00-prerequisites.ipynb"), "out.ipynb", "-p", "params_file", str(params),
                        "-p", "interactive", "false", "-p", "confirm", "false", cwd=tmp_path)
    assert refused.returncode != 0
    assert "NotConfirmed" in refused.stderr and "confirm: true" in refused.stderr
    planned = papermill(str(NOTEBOOKS / "00-prerequisites.ipynb"), "plan.ipynb", "-p", "params_file", str(params),
                        "-p", "interactive", "no", "-p", "plan_only", "yes", cwd=tmp_path)
    assert planned.returncode == 0, planned.stderr
    bad = papermill(str(NOTEBOOKS / "00-prerequisites.ipynb"), "bad.ipynb", "-p", "params_file", str(params),
                    "-p", "confirm", "maybe", cwd=tmp_path)
    assert bad.returncode != 0 and "confirm: 'maybe' is not a boolean" in bad.stderr


def test_an_unknown_parameter_is_an_error_not_a_warning(write_params, tmp_path):
    params = write_params()
    run = papermill(str(NOTEBOOKS / "00-prerequisites.ipynb"), "out.ipynb", "-p", "params_file", str(params),
                    "-p", "confrim", "true", cwd=tmp_path)
    assert run.returncode != 0
    assert "confrim: is not a parameter of 00-prerequisites" in run.stderr


def test_plan_only_run_writes_nothing_and_lists_every_change(sandbox, write_params, tmp_path):
    params = write_params()
    writes = log_from_now(sandbox)
    run = crlib_run(params, tmp_path / "runs", plan=True)
    record = json.loads((run.dir / "run.json").read_text())
    assert record["status"] == "succeeded" and record["plan_only"] is True
    assert [r for r in writes() if r["wrote"]] == []
    statuses = {s["step"]: s["status"] for s in record["steps"]}
    assert statuses.pop("prerequisites") == "unchanged"
    assert set(statuses.values()) == {"planned"}, statuses
    # The --plan output is the record's changes as data: one line per change, the same lines, each
    # field of a new resource under it, every step without a change "= unchanged", then the counts.
    from crlib.run_cli import plan_text

    text = plan_text(record)
    summaries = [c for s in record["steps"] for c in s["changes"]]
    listed = [line for line in text.splitlines() if line[:4].strip() in ("+", "~", "-", ">")]
    assert len(listed) == len(summaries) and all(s in line for s, line in zip(summaries, listed, strict=True))
    assert any(line.startswith("  + endpoint ") and "registry '" in line for line in listed)
    assert "  = prerequisites  unchanged" in text
    assert "      location: westus" in text  # a created resource's fields
    added, changed = (sum(line.startswith(f"  {symbol} ") for line in listed) for symbol in "+~")
    assert text.splitlines()[-1].startswith(f"Plan: {added} to add, {changed} to change, 0 to destroy.")


def test_crlib_run_command_exits_non_zero_and_names_the_step(sandbox, write_params, tmp_path, capsys):
    from testkit import site_data

    data = site_data(sandbox)
    data["hub"]["reuse"] = True
    params = write_params(data=data)
    code = main(["run", str(params), "--only", "00", "01", "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "failed in 01-iot-hub-and-device at step hub" in err and "crlib run --resume" in err
    assert main(["archive", "list", "--runs-dir", str(tmp_path / "runs")]) == 0
    listing = capsys.readouterr().out
    assert "failed" in listing and "hub" in listing and data["site"] in listing
    run_dir = next((tmp_path / "runs").iterdir())
    assert main(["archive", "verify", str(run_dir)]) == 0
    assert "verified" in capsys.readouterr().out


def test_bad_parameters_stop_crlib_run_before_any_folder(write_params, tmp_path, capsys):
    params = write_params()
    params.write_text(params.read_text().replace("mode: ReadWrite", "mode: ReadMostly"))
    assert main(["run", str(params), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "connected_registry.mode" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# -- the page API, in-process, as an interactive session uses it ------------------------------------
def _page(name: str, params: Path, **values):
    namespace = {"params_file": str(params), "In": [], "Out": {}, **values}
    return notebook.open_page(name, namespace)


def test_a_form_edit_changes_the_plan_and_what_is_created(sandbox, write_params, tmp_path):
    params = write_params()
    crlib_run(params, tmp_path / "runs", only=["00", "01", "02"])
    page = _page("03-connected-registry", params)
    shown = page.form()
    form = shown.widget
    assert form.widget("connected_registry.mode").options == ("ReadWrite", "ReadOnly")
    form.widget("connected_registry.mode").value = "ReadOnly"
    table = page.read_form(shown)
    assert table.set_index("parameter").loc["connected_registry.mode", "source"] == "form"
    plan = page.plan()
    assert any("ReadOnly" in change for change in plan["change"]), plan.to_string()
    with pytest.raises(NotConfirmed, match="Confirm apply"):
        page.apply()
    page.confirmation()  # interactively, this shows the Confirm button
    page._confirm_button.value = True
    applied = page.apply()
    assert list(applied["step"]) == ["definition", "settings"]
    cr = page.context.clients.acr.connected_registries.get(page.site.resource_group, page.site.registry.name,
                                                           page.site.connected_registry.name)
    assert cr.mode == "ReadOnly"


def test_a_form_value_the_parameters_refuse_names_the_field(write_params):
    page = _page("03-connected-registry", write_params())
    shown = page.form()
    shown.widget.widget("connected_registry.sync_schedule").value = "every minute"
    with pytest.raises(ParameterError, match=r"connected_registry\.sync_schedule"):
        page.read_form(shown)


def test_headless_pages_need_confirm_true(write_params):
    page = _page("00-prerequisites", write_params(), interactive="false")
    page.read_form(page.form())
    with pytest.raises(NotConfirmed, match="confirm: true"):
        page.apply()
