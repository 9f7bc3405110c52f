"""A device host for running the generated scripts in a test: a scratch directory stands for the
host's root, the stubs in this folder stand for the commands that would change the machine, and every
other command the scripts may run is a recording wrapper around the real one (`passthrough`), so the
call log holds every command line the script ran. A command the test did not allow is not found,
and the script fails.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

STUBS = Path(__file__).resolve().parent


@dataclass
class FakeHost:
    base: Path
    real_commands: tuple[str, ...]

    def __post_init__(self) -> None:
        for folder in (self.root, self.bin, self.state, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)
        for name in self.real_commands:
            (self.bin / name).symlink_to(STUBS / "passthrough")

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def bin(self) -> Path:
        return self.base / "bin"

    @property
    def state(self) -> Path:
        return self.base / "stub-state"

    @property
    def tmp(self) -> Path:
        return self.base / "tmp"

    @property
    def log(self) -> Path:
        return self.base / "calls.log"

    def write(self, path: str, text: str, mode: int = 0o644) -> Path:
        """A file on the host, e.g. write("/etc/os-release", ...)."""
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
        return target

    def calls(self) -> list[str]:
        """Every command line run so far, one string each, in order."""
        return self.log.read_text().splitlines() if self.log.exists() else []

    def run(self, script: str, **env: str) -> subprocess.CompletedProcess[str]:
        path = self.base / "script.sh"
        path.write_text(script)
        # The real commands: this Python first (python3 for the scripts), then the system's.
        real_path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
        environment = {"PATH": f"{STUBS}:{self.bin}", "HOME": str(self.base), "LANG": "C.UTF-8",
                       "TMPDIR": str(self.tmp), "HOST_ROOT": str(self.root), "CRLIB_REAL_PATH": real_path,
                       "CRLIB_STUB_LOG": str(self.log), "CRLIB_STUB_STATE": str(self.state), **env}
        bash = shutil.which("bash") or "/bin/bash"
        return subprocess.run([bash, str(path)], env=environment, capture_output=True, text=True, timeout=60,
                              check=False)


def shellcheck(script: str, where: Path) -> subprocess.CompletedProcess[str]:
    """shellcheck's verdict on a script; the test fails when shellcheck is missing."""
    checker = shutil.which("shellcheck") or "/usr/bin/shellcheck"
    assert Path(checker).exists(), "shellcheck is needed (apt-get install -y shellcheck)"
    path = where / "checked.sh"
    path.write_text(script)
    return subprocess.run([checker, "--shell=bash", str(path)], capture_output=True, text=True, check=False)
