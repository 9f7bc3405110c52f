"""Puts the runbook's notebooks and example parameter files into the wheel.

Everything else about the project is in pyproject.toml. The canonical notebooks and parameter
files stay at the repository's top level (`notebooks/`, `parameters/`), where JupyterLab, papermill
and the tests open them; package data cannot reach outside the package, so build_py copies them
into the build tree as `crlib/_bundled/notebooks/` and `crlib/_bundled/parameters/` (nothing is
duplicated in git). `crlib.bundled` finds them: the repository's folders from a checkout, the
package's copies from an installed wheel. MANIFEST.in puts the sources into the sdist, so a wheel
built from the sdist has them too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
BUNDLED = {"notebooks": "*.ipynb", "parameters": "*.yaml"}  # top-level folder -> the files it ships


class BuildWithNotebooks(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the repository's folders themselves
            return
        for folder, pattern in BUNDLED.items():
            sources = sorted((HERE / folder).glob(pattern))
            if not sources:
                raise SystemExit(f"setup.py: no {folder}/{pattern} to put into the wheel")
            target = Path(self.build_lib) / "crlib" / "_bundled" / folder
            shutil.rmtree(target, ignore_errors=True)  # no stale copy of a file since removed
            target.mkdir(parents=True)
            for source in sources:
                self.copy_file(str(source), str(target / source.name), preserve_mode=False)


setup(cmdclass={"build_py": BuildWithNotebooks})
