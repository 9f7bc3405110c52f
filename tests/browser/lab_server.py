"""An isolated JupyterLab server for the browser tests: 127.0.0.1, a random port, a token, and every
Jupyter/IPython directory in a temporary folder, so that nothing is read from or written to $HOME."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# Settings that keep JupyterLab 4 quiet and deterministic in a headless browser (jupyterlab_server
# reads them from <config dir>/labconfig/default_setting_overrides.json).
LAB_OVERRIDES = {
    # no "official Jupyter news?" toast, no update check
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    # render every cell: the default windowing leaves off-screen cells empty or hidden; and never ask
    # "Select Kernel"
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
    # no autosave racing the test's own files
    "@jupyterlab/docmanager-extension:plugin": {"autosave": False},
}

# Options for `jupyter lab` beyond address, port, token and root: nothing fetched from the internet
# (news, update checks, the extension manager's PyPI queries, jupyter_lsp's `npm prefix -g`).
LAB_OPTIONS = [
    "--no-browser",
    "--ServerApp.port_retries=0",
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    "--LabApp.extension_manager=readonly",
    "--ServerApp.terminals_enabled=False",
    "--LanguageServerManager.autodetect=False",
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolated_env(base: Path, overrides: dict | None = None) -> dict[str, str]:
    """The environment for a Jupyter process whose config, data, runtime and IPython dirs are under base."""
    env = dict(os.environ)
    dirs = {"JUPYTER_CONFIG_DIR": base / "config", "JUPYTER_DATA_DIR": base / "data",
            "JUPYTER_RUNTIME_DIR": base / "runtime", "IPYTHONDIR": base / "ipython"}
    for name, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env.pop("JUPYTER_PATH", None)  # kernels and extensions come from the venv's share/jupyter only
    env.pop("JUPYTER_PREFER_ENV_PATH", None)
    labconfig = dirs["JUPYTER_CONFIG_DIR"] / "labconfig"
    labconfig.mkdir(exist_ok=True)
    (labconfig / "default_setting_overrides.json").write_text(json.dumps(overrides or LAB_OVERRIDES, indent=1))
    return env


def kernelspecs(env: dict[str, str], python: str = sys.executable) -> dict:
    """`jupyter kernelspec list --json` as the server would see it."""
    out = subprocess.run([python, "-m", "jupyter", "kernelspec", "list", "--json"], env=env, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)["kernelspecs"]


def wait_for_status(url: str, token: str, proc: subprocess.Popen, log_path: Path, timeout: float = 60) -> float:
    """Wait until /api/status answers 200; the seconds it took. Raises when the process exits first."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"jupyter lab did not answer in {timeout:g} s:\n{log_path.read_text()}")


def get(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def stop_process(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    """SIGTERM (jupyter then shuts its kernels down), SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class LabServer:
    """`python -m jupyterlab` on 127.0.0.1 with a random port and token, rooted at root_dir."""

    def __init__(self, root_dir: Path, base: Path, python: str = sys.executable):
        self.root_dir, self.base, self.python = Path(root_dir), Path(base), python
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.env = isolated_env(self.base)
        self.log_path = self.base / "jupyter.log"
        self.proc: subprocess.Popen | None = None
        self.startup_s = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LabServer:
        cmd = [self.python, "-m", "jupyterlab", "--ip=127.0.0.1", f"--port={self.port}",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root_dir}",
               "--LabApp.expose_app_in_browser=True", *LAB_OPTIONS]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self.startup_s = wait_for_status(self.url, self.token, self.proc, self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_process(self.proc)
