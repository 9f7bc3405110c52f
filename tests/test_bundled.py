"""Where crlib finds its notebooks and example parameter files (`crlib.bundled`), and `crlib notebooks`.

From a checkout they are the repository's folders; tests/test_wheel.py covers an installed wheel."""

from __future__ import annotations

import ast
from pathlib import Path

import papermill

from crlib import bundled, runner
from crlib.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_a_checkout_runs_the_repository_notebooks():
    assert bundled.checkout() == ROOT
    assert bundled.notebooks_dir() == runner.NOTEBOOKS_DIR == ROOT / "notebooks"
    assert bundled.notebooks() == sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert [p.name for p in bundled.parameter_files()] == ["example-azure-arc.yaml", "example-azure.yaml",
                                                           "fleet-sandbox.yaml", "sandbox-arc.yaml", "sandbox.yaml"]


def test_notebooks_list_names_every_notebook_and_parameter_file(capsys):
    assert main(["notebooks", "list"]) == 0
    out = capsys.readouterr().out
    assert "00-prerequisites.ipynb" in out and "00 · Prerequisites" in out
    assert all(p.name in out for p in [*bundled.notebooks(), *bundled.parameter_files()])


def test_notebooks_copy_lays_out_what_the_notebooks_expect_and_overwrites_only_with_force(tmp_path, capsys):
    workspace = tmp_path / "lab"
    assert main(["notebooks", "copy", str(workspace)]) == 0
    out = capsys.readouterr().out
    for source in bundled.notebooks():
        assert (workspace / "notebooks" / source.name).read_bytes() == source.read_bytes()
        assert f"wrote {workspace / 'notebooks' / source.name}" in out
    for source in bundled.parameter_files():
        assert (workspace / "parameters" / source.name).read_bytes() == source.read_bytes()
    # Each notebook's default parameter file (the fleet's: its inventory) resolves from where
    # JupyterLab runs it (its own folder).
    for notebook in (workspace / "notebooks").glob("*.ipynb"):
        declared = papermill.inspect_notebook(str(notebook))
        name, expected = (("inventory_file", "fleet-sandbox.yaml") if "inventory_file" in declared
                          else ("params_file", "sandbox.yaml"))
        default = ast.literal_eval(declared[name]["default"])
        assert (notebook.parent / default).resolve() == (workspace / "parameters" / expected).resolve()

    edited = workspace / "parameters" / "sandbox.yaml"
    edited.write_text("site: mine\n")
    assert main(["notebooks", "copy", str(workspace)]) == 1
    err = capsys.readouterr().err
    assert "exist already" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert edited.read_text() == "site: mine\n"
    assert main(["notebooks", "copy", str(workspace), "--force"]) == 0
    assert edited.read_bytes() == (ROOT / "parameters" / "sandbox.yaml").read_bytes()
