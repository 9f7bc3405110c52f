"""The hashed lock (requirements/dev.lock) that `make venv` and CI install: it pins, with hashes, every
dependency pyproject.toml names for the core, sandbox, test and lab sets (each pin inside pyproject's
range), and the venv running the suite holds exactly the locked versions, so a stale lock or a stale
venv fails here. See docs/installing.md."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "dev.lock"
SETS = ("sandbox", "test", "lab")


@dataclass
class Pin:
    name: str
    version: str
    marker: Marker | None
    hashes: list[str] = field(default_factory=list)


def read_lock(text: str) -> dict[str, Pin]:
    """The lock's requirements (`name==version [; marker] \\` then `--hash=...` lines), by canonical name."""
    pins: dict[str, Pin] = {}
    logical = re.sub(r"\\\n", " ", text)  # join continuation lines
    for line in logical.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        hashes = [w.removeprefix("--hash=") for w in words if w.startswith("--hash=")]
        spec = " ".join(w for w in words if not w.startswith("--hash="))
        requirement = Requirement(spec)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{spec}: a lock pins with =="
        name = canonicalize_name(requirement.name)
        assert name not in pins or requirement.marker is not None, f"{name} pinned twice"
        pins[name] = Pin(name, specifier.version, requirement.marker, hashes)
    return pins


def wanted_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = list(project["dependencies"])
    for extra in SETS:
        listed += project["optional-dependencies"][extra]
    build_in = (ROOT / "requirements" / "build.in").read_text().splitlines()
    listed += [line for line in build_in if line.strip() and not line.startswith("#")]
    requirements = [Requirement(r) for r in listed]
    return [r for r in requirements if canonicalize_name(r.name) != "crlib"]


def test_the_lock_pins_every_named_dependency_with_hashes_within_its_range():
    pins = read_lock(LOCK.read_text())
    assert pins, "the lock is empty"
    for name, pin in pins.items():
        assert pin.hashes, f"{name}=={pin.version} has no --hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in pin.hashes), f"{name}: {pin.hashes}"
    for requirement in wanted_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} (pyproject.toml) is not in {LOCK.name}: run `make lock`"
        version = pins[name].version
        assert requirement.specifier.contains(Version(version), prereleases=True), (
            f"{LOCK.name} pins {name}=={version}, outside pyproject's {requirement}: run `make lock`")


def test_the_running_venv_holds_the_locked_versions():
    pins = read_lock(LOCK.read_text())
    wrong = []
    for name, pin in sorted(pins.items()):
        if pin.marker is not None and not pin.marker.evaluate():
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "(missing)"
        if installed == "(missing)" or Version(installed) != Version(pin.version):
            wrong.append(f"{name}: locked {pin.version}, installed {installed}")
    assert not wrong, "the venv differs from the lock (run `make venv`):\n" + "\n".join(wrong)


def test_the_lock_reader_joins_continuations_and_reads_markers():
    text = ("# header\n"
            "six==1.17.0 \\\n    --hash=sha256:" + "a" * 64 + " \\\n    --hash=sha256:" + "b" * 64 + "\n"
            "    # via crlib\n"
            "colorama==0.4.6 ; sys_platform == 'win32' \\\n    --hash=sha256:" + "c" * 64 + "\n")
    pins = read_lock(text)
    assert pins["six"].version == "1.17.0" and len(pins["six"].hashes) == 2
    assert pins["colorama"].marker is not None and len(pins["colorama"].hashes) == 1
