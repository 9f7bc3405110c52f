"""The page API as JupyterLab shows it, in-process: the form grouped by section with each field's help,
refusals as a short styled message with the field highlighted (and still raised), the Confirm button's
state, tables that wrap, and an interactive apply recorded in a sealed run folder that `crlib archive
verify` accepts (crlib/lab_record.py). Headless pages behave as before: errors raise with their
tracebacks, and nothing is recorded outside `crlib run`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from crlib import archive, lab_record, notebook, runbook
from crlib.cli import main
from crlib.context import open_context
from crlib.errors import NotConfirmed, ParameterError
from crlib.forms import OPTIONS_SECTION, Form, help_text
from crlib.params import load_file

ROOT = Path(__file__).resolve().parents[2]


def _page(name: str, params: Path, **values):
    return notebook.open_page(name, {"params_file": str(params), "In": [], "Out": {}, **values})


@pytest.fixture
def shown(monkeypatch):
    """What the page displays (IPython.display.display), as HTML text or widgets."""
    import IPython.display

    displayed: list = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: displayed.extend(objs))
    return displayed


def _html(displayed: list) -> str:
    return "\n".join(getattr(obj, "data", "") or "" for obj in displayed if isinstance(getattr(obj, "data", None), str))


def _titles(form: Form) -> list[str]:
    return [box.children[0].value for box in form.box.children if "crlib-section" in box._dom_classes]


# -- the form -----------------------------------------------------------------------------------------
def test_the_form_is_grouped_by_section_with_each_fields_help(write_params):
    site = load_file(write_params())
    form = Form(site, runbook.phase("00").fields)
    assert list(form.sections) == ["", "registry", "images"]
    assert [t.split(">")[1].split("<")[0] for t in _titles(form)] == ["Site", "Cloud registry", "Images"]

    form = Form(site, runbook.phase("03").fields)
    assert list(form.sections) == ["connected_registry"]
    section = next(b for b in form.box.children if "crlib-section-connected-registry" in b._dom_classes)
    helps = [child.value for child in section.children if "crlib-help" in getattr(child, "value", "")]
    description = "5-40 letters and digits, starting with a letter"  # params.py's Field description
    assert any(description in h for h in helps), helps
    assert description in form.widget("connected_registry.name").tooltip
    assert "ReadOnly: pull only" in form.widget("connected_registry.mode").tooltip  # forms.FIELD_HELP

    teardown = runbook.phase("99")
    options = {name: (False, text) for per_step in teardown.options.values() for name, text in per_step.items()}
    form = Form(site, teardown.fields, options)
    assert list(form.sections) == ["device", "connected_registry", OPTIONS_SECTION]
    assert "never while another site uses it" in form.widget("delete_hub").tooltip


def test_every_form_field_of_every_notebook_has_help():
    missing = sorted({dotted for phase in runbook.PHASES for dotted in phase.fields if not help_text(dotted)})
    assert not missing, f"fields without a description (params.py) or forms.FIELD_HELP: {missing}"


# -- refusals -----------------------------------------------------------------------------------------
def test_a_refused_form_value_is_a_short_message_with_its_field_highlighted(write_params, shown):
    page = _page("03-connected-registry", write_params())
    form = page.form().widget
    form.widget("connected_registry.sync_schedule").value = "every minute"
    with pytest.raises(ParameterError, match=r"connected_registry\.sync_schedule") as refused:
        page.read_form(form)
    lines = refused.value._render_traceback_()  # what IPython shows instead of the traceback
    assert len(lines) == 1 and "Traceback" not in lines[0] and lines[0].startswith("ParameterError:"), lines
    assert form.highlighted() == ["connected_registry.sync_schedule"]
    assert "crlib-message" in form.message.value and "connected_registry.sync_schedule" in form.message.value
    html = _html(shown)
    assert 'class="crlib-message crlib-message-error"' in html and "five-field cron" in html, html
    assert "Traceback" not in html

    with pytest.raises(ParameterError, match="sync_schedule"):  # no plan of the values before the refusal
        page.plan()

    form.widget("connected_registry.sync_schedule").value = "*/5 * * * *"
    table = page.read_form(form)
    assert table.set_index("parameter").loc["connected_registry.sync_schedule", "value"] == "*/5 * * * *"
    assert form.highlighted() == [] and form.message.value == ""


def test_headless_refusals_raise_with_their_traceback(write_params, shown):
    page = _page("00-prerequisites", write_params(), interactive=False)
    with pytest.raises(NotConfirmed) as refused:
        page.apply()
    assert not hasattr(refused.value, "_render_traceback_")
    assert shown == []


# -- confirm, tables, records ---------------------------------------------------------------------------
def _build(params: Path, *notebooks: str) -> None:
    runbook.run(open_context(load_file(params)), only=[s for n in notebooks for s in runbook.phase(n).steps])


def test_an_interactive_apply_is_recorded_sealed_and_verified(sandbox, write_params, tmp_path, monkeypatch, shown):
    params = write_params()
    _build(params, "00", "01", "02")
    lab = tmp_path / "lab"
    lab.mkdir()
    saved = lab / "03-connected-registry.ipynb"
    shutil.copy(ROOT / "notebooks" / saved.name, saved)
    monkeypatch.setenv("JPY_SESSION_NAME", str(saved))  # what jupyter_server gives the kernels it starts

    page = _page("03-connected-registry", params)
    page.read_form(page.form())
    plan = page.plan()
    assert "white-space: pre-wrap" in plan._repr_html_()  # JupyterLab wraps long values...
    assert plan.to_string() == pd.DataFrame(plan).to_string()  # ...and its text (headless output) is unchanged

    with pytest.raises(NotConfirmed, match="Confirm apply") as refused:
        page.apply()
    assert refused.value._render_traceback_()[0].startswith("NotConfirmed: stopped here")
    assert "Not applied: nothing was written." in _html(shown)

    page.confirmation()
    button = page._confirm_button
    assert (button.description, button.disabled) == ("Confirm apply", False)
    button.value = True  # pressed
    assert (button.description, button.button_style, button.disabled) == ("Confirmed ✓", "success", True)
    page.apply()

    run_dir = page.record_dir
    assert run_dir is not None and run_dir.parent == lab / "runs", _html(shown)
    assert main(["archive", "verify", str(run_dir)]) == 0
    assert main(["archive", "show", str(run_dir)]) == 0
    record = archive.read_record(run_dir)
    assert record["source"] == "jupyterlab" and record["status"] == "succeeded" and record["kind"] == "deploy"
    assert record["site"] == page.site.site and record["operator"]["local_user"]
    assert record["tenant"] and record["subscription"] and record["signing"]["key_id"].startswith("local:")
    assert [(s["step"], s["status"]) for s in record["steps"]] == [("definition", "created"), ("settings", "created")]
    assert all(s["plan"] for s in record["steps"]), record["steps"]
    assert record["notebooks"][0]["source_sha256"] == archive.sha256_file(saved)
    assert {p.relative_to(run_dir).as_posix() for p in archive.archived_files(run_dir)} >= {
        "run.json", "parameters.yaml", "steps.jsonl", "notebooks/03-connected-registry.ipynb"}
    events = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events if e["event"] != "plan"] == ["start", "result", "start", "result"]
    assert str(tmp_path) not in (run_dir / "run.json").read_text()  # local paths become placeholders

    # Save record: an unchanged notebook file is not recorded twice; a saved one is, in a new folder.
    box = page.record_box
    assert box.save() is None and "unchanged" in box.status.value
    nb = json.loads(saved.read_text())
    nb["cells"][-1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "saved after apply\n"}]
    saved.write_text(json.dumps(nb))
    again = box.save()
    assert again is not None and again != run_dir and again.parent == run_dir.parent
    assert archive.read_record(again)["supersedes"] == run_dir.name
    assert "saved after apply" in (again / "notebooks" / "03-connected-registry.ipynb").read_text()
    assert main(["archive", "verify", str(again)]) == 0
    assert main(["archive", "verify", str(run_dir)]) == 0  # the first record is untouched

    # Headless, the runner records: a page outside crlib run records nothing of its own.
    headless = _page("03-connected-registry", params, interactive=False, confirm=True)
    headless.plan()
    headless.apply()
    assert headless.record_dir is None
    assert len(list((lab / "runs").iterdir())) == 2


def test_a_kernel_that_names_no_notebook_records_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert lab_record.notebook_path("03-connected-registry") is None
    other = tmp_path / "other.ipynb"
    other.write_text(json.dumps({"cells": []}))
    monkeypatch.setenv("JPY_SESSION_NAME", str(other))  # a notebook that is not this phase's
    assert lab_record.notebook_path("03-connected-registry") is None
    assert lab_record.runs_dir_for(ROOT / "notebooks" / "03-connected-registry.ipynb") == ROOT / "runs"
    assert lab_record.runs_dir_for(tmp_path / "x.ipynb") == tmp_path.resolve() / "runs"


@pytest.mark.parametrize("name", ["90-rotate-credentials", "99-teardown"])
def test_rotation_and_teardown_show_their_plan_and_ask_before_applying(name):
    """Notebooks 90 and 99 plan, then show the Confirm button, then apply: in that order, each a cell."""
    cells = ["".join(c["source"]).strip() for c in json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]
             if c["cell_type"] == "code"]
    order = [cells.index(call) for call in ("page.plan()", "page.confirmation()", "page.apply()")]
    assert order == sorted(order), cells


def test_teardown_shows_what_it_removes_and_refuses_until_confirmed(sandbox, write_params, shown):
    params = write_params()
    _build(params, "00", "01", "02", "03")
    page = _page("99-teardown", params)
    plan = page.plan()
    deletes = plan[plan["action"] == "- delete"]
    assert any(site_name in resource for resource in deletes["resource"]
               for site_name in (page.site.connected_registry.name,)), plan.to_string()
    with pytest.raises(NotConfirmed, match="Confirm apply"):
        page.apply()
    site = page.site
    assert page.context.clients.acr.connected_registries.get(site.resource_group, site.registry.name,
                                                             site.connected_registry.name) is not None


def test_a_failed_interactive_apply_is_recorded_as_failed(sandbox, write_params, tmp_path, monkeypatch, shown):
    from crlib.errors import RunFailed, StepFailed

    params = write_params()
    _build(params, "00", "01", "02")
    saved = tmp_path / "03-connected-registry.ipynb"
    shutil.copy(ROOT / "notebooks" / saved.name, saved)
    monkeypatch.setenv("JPY_SESSION_NAME", str(saved))
    page = _page("03-connected-registry", params)
    page.plan()
    page.confirmation()
    page._confirm_button.value = True
    real_run = runbook.run

    def failing(ctx, *, plan=False, on_start=None, **kwargs):
        if plan:
            return real_run(ctx, plan=True, **kwargs)
        on_start("definition")
        raise RunFailed("definition", StepFailed("definition", "Azure refused the write"), [])

    monkeypatch.setattr(runbook, "run", failing)
    with pytest.raises(RunFailed) as failed:
        page.apply()
    assert not hasattr(failed.value, "_render_traceback_")  # a step's failure keeps its traceback
    record = archive.read_record(page.record_dir)
    assert record["status"] == "failed" and record["failed"]["step"] == "definition", record
    assert record["steps"][-1]["status"] == "failed" and record["steps"][-1]["plan"], record["steps"]
    assert main(["archive", "verify", str(page.record_dir)]) == 0
