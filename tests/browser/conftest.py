"""Fixtures for the browser tests: a test site with its parameter file beside a copy of the notebooks,
JupyterLab serving that copy, and headless Chromium (Debian's package) driven by Playwright."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from lab_server import LabServer, kernelspecs
from testkit import site_data

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]  # containers often have a small /dev/shm
# The steps notebooks 00 to 02 would run; created in-process so that the browser starts at 03.
BEFORE_03 = ["prerequisites", "group", "hub", "device", "provision", "endpoint", "imports"]


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go: $CRLIB_ARTIFACTS, or tests/browser/artifacts/ (ignored by git)."""
    path = Path(os.environ.get("CRLIB_ARTIFACTS") or Path(__file__).parent / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class LabSite:
    """A test site laid out as the repository is: notebooks/ beside parameters/sandbox.yaml."""

    root: Path
    data: dict

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def params_file(self) -> Path:
        return self.root / "parameters" / "sandbox.yaml"

    def write(self) -> None:
        self.params_file.parent.mkdir(parents=True, exist_ok=True)
        self.params_file.write_text(yaml.safe_dump(self.data, sort_keys=False))

    def site(self):
        from crlib.params import load_file

        return load_file(self.params_file)

    def context(self):
        from crlib.context import open_context

        return open_context(self.site())  # secrets: the LocalSecretStore in the site's secrets.local_dir

    def run(self, *steps: str):
        from crlib import runbook

        return runbook.run(self.context(), only=list(steps))


@pytest.fixture(scope="session")
def lab_site(sandbox, tmp_path_factory):
    """A fresh site whose resource group, hub, device and registry (with its imports) exist; torn down
    at the end of the session."""
    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        shutil.copy(notebook, root / "notebooks" / notebook.name)
    data = site_data(sandbox)
    data["secrets"] = {"store": "local", "local_dir": str(root / "secrets")}
    site = LabSite(root, data)
    site.write()
    site.run(*BEFORE_03)
    yield site
    site.run("teardown")


@pytest.fixture(scope="session")
def lab(lab_site, tmp_path_factory):
    """JupyterLab on 127.0.0.1, rooted at the site's notebooks; its python3 kernel is this venv's."""
    server = LabServer(lab_site.notebooks, tmp_path_factory.mktemp("jupyter"))
    specs = kernelspecs(server.env)
    assert "python3" in specs, specs
    python3 = specs["python3"]
    assert Path(python3["resource_dir"]).is_relative_to(sys.prefix), python3
    # jupyter_client runs a kernel whose argv[0] is "python" with the server's own interpreter.
    assert python3["spec"]["argv"][0] in ("python", "python3", sys.executable), python3
    server.start()
    print(f"\nJupyterLab up in {server.startup_s:.1f} s at {server.url} (log {server.log_path})")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Headless Chromium with a fresh profile, and its HOME and XDG dirs in a temporary folder."""
    from playwright.sync_api import expect, sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (make test-browser does)")
    expect.set_options(timeout=30_000)
    home = tmp_path_factory.mktemp("chromium-home")
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_CACHE_HOME": str(home / "cache"), "XDG_DATA_HOME": str(home / "data")}
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, env=env, viewport={"width": 1600, "height": 1000})
        yield context
        context.close()


@pytest.fixture
def page(browser, artifacts, request):
    """A new tab; at the end of the test a screenshot of the whole page (also when it failed)."""
    tab = browser.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    path = artifacts / f"{request.node.name}-last.png"
    try:
        tab.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
    finally:
        tab.close()
