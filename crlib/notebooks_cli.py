"""`crlib notebooks list|copy`: the runbook's notebooks and example parameter files, where a user
opens them in JupyterLab.

`copy DIR` lays them out as the repository does, `DIR/notebooks/` and `DIR/parameters/`, because
each notebook reads `../parameters/sandbox.yaml` unless told otherwise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from . import bundled


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("notebooks", help="list the runbook's notebooks, or copy them to open in JupyterLab",
                            description="The runbook's notebooks and example parameter files, as crlib ships "
                                        "them: list them, or copy them where JupyterLab opens them.",
                            epilog="examples:\n  crlib notebooks list\n  crlib notebooks copy ~/crlib && "
                                   "jupyter lab ~/crlib/notebooks",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="notebooks_command", required=True)
    listing = commands.add_parser("list", help="the notebooks and example parameter files crlib ships",
                                  description="Each notebook with its title and each example parameter file with "
                                              "its first comment, and the folders they are in.",
                                  epilog="example:\n  crlib notebooks list",
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    listing.set_defaults(func=_list)
    copy = commands.add_parser(
        "copy", help="copy the notebooks to DIR/notebooks and the example parameter files to DIR/parameters",
        description="Copy the runbook's notebooks to DIR/notebooks/ and the example parameter files to "
                    "DIR/parameters/: the notebooks read ../parameters/sandbox.yaml by default, so `jupyter lab "
                    "DIR/notebooks` opens them ready to run against `crlib sandbox start`. Existing files are "
                    "left alone unless --force is given.",
        epilog="examples:\n  crlib notebooks copy ~/crlib\n  crlib notebooks copy ~/crlib --force    "
               "overwrite earlier copies",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    copy.add_argument("dir", type=Path, metavar="DIR")
    copy.add_argument("--force", action="store_true", help="overwrite files that exist")
    copy.set_defaults(func=_copy)


def _title(notebook: Path) -> str:
    cells = json.loads(notebook.read_text()).get("cells", [])
    text = "".join(cells[0]["source"]) if cells and cells[0]["cell_type"] == "markdown" else ""
    return next((line.lstrip("# ").strip() for line in text.splitlines() if line.strip()), "")


def _comment(parameters: Path) -> str:
    first = next((line for line in parameters.read_text().splitlines() if line.strip()), "")
    return first.lstrip("# ").strip() if first.startswith("#") else ""


def _list(args: argparse.Namespace) -> int:
    notebooks, parameters = bundled.notebooks(), bundled.parameter_files()
    print(f"notebooks ({bundled.notebooks_dir()}):")
    for path in notebooks:
        print(f"  {path.name:30} {_title(path)}")
    print(f"parameters ({bundled.parameters_dir()}):")
    for path in parameters:
        print(f"  {path.name:30} {_comment(path)}")
    return 0 if notebooks else 1


def _copy(args: argparse.Namespace) -> int:
    plan = [(source, args.dir / "notebooks" / source.name) for source in bundled.notebooks()]
    plan += [(source, args.dir / "parameters" / source.name) for source in bundled.parameter_files()]
    if not plan:
        print(f"crlib notebooks copy: no notebooks in {bundled.notebooks_dir()}; reinstall crlib", file=sys.stderr)
        return 1
    existing = [target for _, target in plan if target.exists()]
    if existing and not args.force:
        shown = ", ".join(str(p) for p in existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        print(f"crlib notebooks copy: {shown} exist already; nothing written (--force overwrites them)",
              file=sys.stderr)
        return 1
    for source, target in plan:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        print(f"wrote {target}")
    print(f"\nopen them with: jupyter lab {args.dir / 'notebooks'}  (they read ../parameters/sandbox.yaml; "
          "start the sandbox first: crlib sandbox start)")
    return 0
