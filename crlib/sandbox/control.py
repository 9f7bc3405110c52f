"""Start, stop and query a sandbox process from outside it (the CLI and tests use this)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .config import ADMIN_TOKEN_FILE, RUNTIME_FILE, default_state_dir, private_dir


class SandboxNotRunning(RuntimeError):
    pass


class DeviceNotFound(LookupError):
    """No simulated device of that id (and hub) has been provisioned."""


def _alive(pid: int) -> bool:
    try:
        # A sandbox this process started stays a zombie until reaped, and zombies answer kill(0).
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_status(state_dir: Path | None = None) -> dict:
    """The running sandbox's status; raises SandboxNotRunning when there is none."""
    state_dir = Path(state_dir or default_state_dir())
    path = state_dir / RUNTIME_FILE
    if not path.exists():
        raise SandboxNotRunning(f"no sandbox is running for {state_dir}")
    status = json.loads(path.read_text())
    if not _alive(status["pid"]):
        raise SandboxNotRunning(f"the sandbox for {state_dir} (pid {status['pid']}) is gone")
    return status


def admin_token(status: dict) -> str:
    """The running sandbox's admin token, read from its state dir (only its owner can read it)."""
    return (Path(status["state_dir"]) / ADMIN_TOKEN_FILE).read_text().strip()


def admin_headers(status: dict) -> dict[str, str]:
    """The header every `/_sandbox/` request needs: `Authorization: Bearer <admin token>` (none for
    a sandbox started by a crlib from before the token, which wrote no token file)."""
    try:
        return {"Authorization": "Bearer " + admin_token(status)}
    except FileNotFoundError:
        return {}


def admin(status: dict, method: str, path: str, body: dict | None = None, timeout: float = 10) -> Any:
    """Call the sandbox's admin API over HTTPS, verified with its CA, with its admin token."""
    ctx = ssl.create_default_context(cafile=status["ca_bundle"])
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(status["arm_endpoint"] + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"} | admin_headers(status))
    with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def start(state_dir: Path | None = None, *, latency_profile: str | None = None, clock_speed: float | None = None,
          timeout: float = 30) -> dict:
    """Start a sandbox in the background, or return the one already running for this state dir."""
    state_dir = Path(state_dir or default_state_dir())
    try:
        return read_status(state_dir)
    except SandboxNotRunning:
        pass
    private_dir(state_dir)
    args = [sys.executable, "-m", "crlib.sandbox", "serve", "--state-dir", str(state_dir)]
    if latency_profile:
        args += ["--latency-profile", latency_profile]
    if clock_speed:
        args += ["--clock-speed", str(clock_speed)]
    fd = os.open(state_dir / "sandbox.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    log = os.fdopen(fd, "ab")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (state_dir / "sandbox.log").read_text()[-2000:]
            raise RuntimeError(f"the sandbox exited with {proc.returncode}:\n{tail}")
        try:
            status = read_status(state_dir)
            if status["pid"] == proc.pid:
                admin(status, "GET", "/_sandbox/health")
                return status
        except (SandboxNotRunning, OSError, ValueError):
            pass
        time.sleep(0.05)
    proc.terminate()
    raise RuntimeError(f"the sandbox did not start within {timeout} s")


def stop(state_dir: Path | None = None, timeout: float = 15) -> bool:
    """Stop the sandbox for this state dir. Returns False if none was running."""
    try:
        status = read_status(state_dir)
    except SandboxNotRunning:
        return False
    pid = status["pid"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    return True


def reset(state_dir: Path | None = None, *, rotate_ca: bool = True) -> None:
    """Forget every resource and (by default) replace the sandbox's CA. A running sandbox resets in
    place and serves new connections with the new CA; otherwise its state file and CA go, and the
    next start makes a new CA."""
    state_dir = Path(state_dir or default_state_dir())
    try:
        admin(read_status(state_dir), "POST", "/_sandbox/reset", {"rotate_ca": rotate_ca})
    except SandboxNotRunning:
        names = ["state.db", "state.db-wal", "state.db-shm"]
        if rotate_ca:
            names += ["ca.pem", "ca.key", "server.pem", "server.key"]
        for name in names:
            (state_dir / name).unlink(missing_ok=True)


def provision_device(status: dict, connection_string: str, *, parent_hostname: str | None = None) -> dict:
    """Provision a simulated IoT Edge device: the sandbox's `iotedge config mp` plus `apply`."""
    body = {"connection_string": connection_string}
    if parent_hostname:
        body["parent_hostname"] = parent_hostname
    return admin(status, "POST", "/_sandbox/edge/devices", body)


def edge_devices(status: dict) -> list[dict]:
    """Every simulated device, as device_show shows one."""
    return admin(status, "GET", "/_sandbox/edge/devices")["devices"]


def device_show(status: dict, device_id: str, *, hub: str | None = None) -> dict:
    """One simulated device as its operator knows it: `deviceId`, `hub` (the hub's host name),
    `address` ("127.0.0.1:<port>", where its API proxy answers once deployed as Microsoft's manifest
    does), `ca_cert` (absolute path of its IoT Edge root CA, to verify that address with), and
    what it runs (`connected`, `modules`, `listening`, ...). `hub` (a hub's host name or name) is
    needed only when devices of two hubs share the id. Raises DeviceNotFound."""
    path = "/_sandbox/edge/devices/" + urllib.parse.quote(device_id, safe="")
    if hub:
        path += "?" + urllib.parse.urlencode({"hub": hub})
    try:
        return admin(status, "GET", path)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise DeviceNotFound(f"no simulated device '{device_id}'" + (f" for hub '{hub}'" if hub else "")
                                 + " has been provisioned") from exc
        raise


def set_faults(status: dict, **settings) -> dict:
    """Replace the fault settings (see crlib.sandbox.faults.FaultSettings); no arguments turns faults off.
    Returns {"settings": ..., "counters": ...}, the counters zeroed."""
    return admin(status, "POST", "/_sandbox/faults", settings)


def fault_counters(status: dict) -> dict:
    """What the fault injector has done since its settings were last set."""
    return admin(status, "GET", "/_sandbox/faults")["counters"]


def clock_now(status: dict) -> dt.datetime:
    """The sandbox's simulated time (UTC): what its devices' syncs and its token expiries follow."""
    text = admin(status, "GET", "/_sandbox/clock")["now"]
    return dt.datetime.fromisoformat(text[:26].rstrip("Z")).replace(tzinfo=dt.UTC)


def device_offline(status: dict, device_id: str, seconds: float, hub: str | None = None) -> dict:
    """Take a simulated device offline for `seconds` of simulated time; it comes back by itself.
    `hub` (a hub's host name or name) is needed only when two hubs have a device of that id."""
    body = {"device_id": device_id, "seconds": seconds}
    if hub:
        body["hub"] = hub
    return admin(status, "POST", "/_sandbox/devices/offline", body)


def connect_cluster(status: dict, name: str, resource_group: str, *, service_cidr: str = "10.0.0.0/16",
                    storage_class: str = "standard", arch: str = "amd64", kubernetes_version: str = "1.30.4",
                    location: str | None = None, create_group: bool = False) -> dict:
    """Make an Arc-enabled cluster as `az connectedk8s connect -n NAME -g RG` would: a
    Microsoft.Kubernetes/connectedClusters resource, Connected, whose agents report. The service
    CIDR, storage class and node architecture are facts about the cluster (data only), kept beside
    the ARM document. The resource group must exist, unless `create_group` (then it is made first,
    as `az group create` would, at `location` or westus)."""
    body: dict[str, object] = {"name": name, "resource_group": resource_group, "service_cidr": service_cidr,
            "storage_class": storage_class, "arch": arch, "kubernetes_version": kubernetes_version}
    if location:
        body["location"] = location
    if create_group:
        body["create_group"] = True
    return admin(status, "POST", "/_sandbox/arc/clusters", body)


def cluster_offline(status: dict, name: str, seconds: float, resource_group: str | None = None) -> dict:
    """Cut a connected cluster's agents off for `seconds` of simulated time (connectivityStatus
    Offline); it comes back by itself."""
    body: dict = {"name": name, "seconds": seconds}
    if resource_group:
        body["resource_group"] = resource_group
    return admin(status, "POST", "/_sandbox/arc/clusters/offline", body)


def cluster_forward(status: dict, name: str, extension: str, resource_group: str | None = None) -> dict:
    """Where the connected registry extension EXTENSION on cluster NAME answers the operator, as
    `kubectl port-forward svc/connected-registry` would: {"address": "127.0.0.1:<port>", "ca_cert":
    <path of the CA to verify it with>} (plus clusterIP and tls). Refused (HTTPError 409) while its pod is
    not ready."""
    path = f"/_sandbox/arc/clusters/{urllib.parse.quote(name)}/extensions/{urllib.parse.quote(extension)}/forward"
    if resource_group:
        path += "?resource_group=" + urllib.parse.quote(resource_group)
    return admin(status, "GET", path)
