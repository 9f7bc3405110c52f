"""Where the runbook's notebooks and example parameter files are.

Their canonical copies sit at the repository's top level (`notebooks/`, `parameters/`), where
JupyterLab and the tests open them and where the notebooks find `../parameters/sandbox.yaml`. A
wheel cannot hold files outside its package, so the build (setup.py) copies them into the package
as `crlib/_bundled/`. From a checkout (an editable install) this module answers with the
repository's folders, so an edited notebook runs at once; from an installed wheel, with the
package's copies, found through importlib.resources.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import CrlibError

_ROOT = Path(__file__).resolve().parents[1]  # the repository, when crlib runs from a checkout


def checkout() -> Path | None:
    """The repository crlib runs from, or None when crlib is an installed wheel."""
    if (_ROOT / "pyproject.toml").is_file() and (_ROOT / "notebooks").is_dir() and (_ROOT / "crlib").is_dir():
        return _ROOT
    return None


def _folder(name: str) -> Path:
    root = checkout()
    if root is not None:
        return root / name
    folder = resources.files("crlib") / "_bundled" / name
    if not isinstance(folder, Path):  # papermill and JupyterLab need real files
        raise CrlibError(f"crlib's {name} are inside an archive ({folder}); install crlib as a regular wheel")
    return folder


def notebooks_dir() -> Path:
    """The folder holding the runbook's notebooks (`00-prerequisites.ipynb`, ...)."""
    return _folder("notebooks")


def parameters_dir() -> Path:
    """The folder holding the example parameter files (`sandbox.yaml`, `example-azure.yaml`)."""
    return _folder("parameters")


def notebooks() -> list[Path]:
    return sorted(notebooks_dir().glob("*.ipynb"))


def parameter_files() -> list[Path]:
    return sorted(parameters_dir().glob("*.yaml"))
