"""Project hygiene: the conda environment and pyproject agree, and notebooks carry no outputs."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    for extra in ("sandbox", "lab", "test"):
        wanted |= {r for r in project["optional-dependencies"][extra] if not r.startswith("crlib")}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {r for r in pip if not r.startswith("-e")}
    assert listed == wanted, f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python.removeprefix("python") == project["requires-python"]


def test_notebooks_are_committed_without_outputs():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        assert "papermill" not in notebook.get("metadata", {}), path.name
        for cell in notebook["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, path.name



def test_notebooks_hold_no_logic():
    """Code cells are the parameters cell, then calls on crlib's page: no definitions, loops or branches."""
    import ast

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1 and cells[0] is tagged[0], f"{path.name}: the first code cell is the parameters cell"
        for cell in cells[1:]:
            tree = ast.parse("".join(cell["source"]))
            for node in ast.walk(tree):
                assert not isinstance(node, ast.FunctionDef | ast.ClassDef | ast.For | ast.While | ast.If | ast.With
                                      | ast.Try | ast.Lambda), f"{path.name}: logic in a cell: {ast.unparse(node)}"
                if isinstance(node, ast.ImportFrom | ast.Import):
                    assert ast.unparse(node) == "from crlib import notebook", f"{path.name}: {ast.unparse(node)}"


def test_notebook_texts_name_resources_as_the_code_does():
    """Names a notebook's text promises (`<name>-...`) are the names crlib.azure.names gives."""
    import re

    from crlib.azure import names

    promised = {"pull token": names.pull_token_name("<name>"), "sync token": names.sync_token_name("<name>"),
                "sync scope map": names.sync_scope_map_name("<name>")}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            text = "".join(cell["source"])
            for named in re.findall(r"`(<name>[^`]*)`", text):
                assert named in promised.values(), f"{path.name} names `{named}`; crlib names {promised}"
