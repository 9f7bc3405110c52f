"""`crlib sandbox serve|start|stop|status|reset|device|cluster|faults`.

The parser needs nothing beyond the standard library, so `crlib --help` works without the sandbox
extra; the commands import the sandbox (aiohttp, cryptography, PyJWT) only when one runs, and say in
one line which extra to install when it is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import urllib.error
from pathlib import Path

from .config import LATENCY_PROFILES, default_state_dir

# What the sandbox imports from pyproject's `sandbox` extra (its server, TLS and tokens).
EXTRA_MODULES = frozenset({"aiohttp", "cryptography", "jwt"})


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """Why the sandbox cannot load, when `exc` is its extra missing; None for any other import error."""
    module = (exc.name or "").partition(".")[0]
    if module not in EXTRA_MODULES:
        return None
    return f"needs crlib's sandbox extra, which is not installed (no module {module}): pip install 'crlib[sandbox]'"


SANDBOX_EXAMPLES = """\
examples:
  crlib sandbox start --clock-speed 60         in the background; a simulated minute per second
  crlib sandbox status                         endpoints and the sandbox-only credentials
  crlib sandbox device list                    the simulated IoT Edge devices
  crlib sandbox cluster connect crlib-arc-cluster -g crlib-arc --create-group
  crlib sandbox faults --rate 0.2 --seed 7     inject faults (see docs/sandbox.md)
  crlib sandbox stop"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("sandbox", help="run the local emulation of Azure",
                            description="The sandbox: a local emulation of the Azure services the runbook uses "
                                        "(ARM, IoT Hub, container registries, Key Vault, Arc clusters), over HTTPS "
                                        "on 127.0.0.1 with its own CA, and simulated IoT Edge devices.",
                            epilog=SANDBOX_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="sandbox_command", required=True)
    for name, text in [("serve", "run in the foreground"), ("start", "start in the background"),
                       ("stop", "stop the background sandbox"), ("status", "show endpoints and credentials"),
                       ("reset", "forget every resource")]:
        p = commands.add_parser(name, help=text)
        p.add_argument("--state-dir", type=Path, default=None,
                       help="state directory (default: $CRLIB_SANDBOX_DIR or ~/.local/state/crlib/sandbox)")
        if name in ("serve", "start"):
            p.add_argument("--latency-profile", choices=sorted(LATENCY_PROFILES), default=None)
            p.add_argument("--clock-speed", type=float, default=None,
                           help="simulated seconds per real second for device behaviour")
        if name == "serve":
            p.add_argument("--port", type=int, default=None, help="main port (default: kept from the last run)")
        if name == "status":
            p.add_argument("--json", action="store_true", help="print one JSON object for scripts")
    device = commands.add_parser("device", help="simulated IoT Edge devices")
    device_commands = device.add_subparsers(dest="device_command", required=True)
    provision = device_commands.add_parser("provision", help="configure a device with its connection string "
                                                             "(the sandbox's iotedge config mp + apply)")
    provision.add_argument("--connection-string-file", required=True, type=argparse.FileType("r"),
                           help="file holding the device connection string ('-' for stdin); never pass it "
                                "on the command line")
    provision.add_argument("--parent-hostname", default=None, help="the parent device endpoint, for nested devices")
    listing = device_commands.add_parser("list", help="show every simulated device")
    show = device_commands.add_parser("show", help="one device: its address, root CA and what it runs")
    show.add_argument("device_id", metavar="ID")
    show.add_argument("--hub", default=None, help="the hub's host name or name, when the id is ambiguous")
    show.add_argument("--json", action="store_true", help="print one JSON object for scripts")
    offline = device_commands.add_parser("offline", help="cut a device off for a while (simulated seconds)")
    offline.add_argument("--device-id", required=True)
    offline.add_argument("--seconds", type=float, required=True, help="simulated seconds before it comes back")
    offline.add_argument("--hub", default=None, help="the hub's host name or name, when the id is ambiguous")
    for p in (provision, listing, show, offline):
        p.add_argument("--state-dir", type=Path, default=None)
    _add_cluster_parser(commands)
    _add_faults_parser(commands)
    parser.set_defaults(func=run)


def _add_cluster_parser(commands: argparse._SubParsersAction) -> None:
    cluster = commands.add_parser("cluster", help="simulated Arc-enabled Kubernetes clusters")
    cluster_commands = cluster.add_subparsers(dest="cluster_command", required=True)
    connect = cluster_commands.add_parser("connect", help="connect a cluster as az connectedk8s connect would")
    connect.add_argument("name", metavar="NAME")
    connect.add_argument("-g", "--resource-group", required=True)
    connect.add_argument("--service-cidr", default="10.0.0.0/16", help="the cluster's service CIDR (data only)")
    connect.add_argument("--storage-class", default="standard")
    connect.add_argument("--arch", choices=("amd64", "arm64"), default="amd64")
    connect.add_argument("--kubernetes-version", default="1.30.4")
    connect.add_argument("--location", default=None, help="the cluster's region (default: its resource group's)")
    connect.add_argument("--create-group", action="store_true",
                         help="create the resource group first when it is missing, as az group create would")
    offline = cluster_commands.add_parser("offline", help="cut a cluster off for a while (simulated seconds)")
    offline.add_argument("name", metavar="NAME")
    offline.add_argument("--seconds", type=float, required=True, help="simulated seconds before it comes back")
    offline.add_argument("-g", "--resource-group", default=None)
    forward = cluster_commands.add_parser("forward", help="where a connected registry extension answers, as "
                                                         "kubectl port-forward would")
    forward.add_argument("name", metavar="NAME")
    forward.add_argument("--extension", required=True)
    forward.add_argument("-g", "--resource-group", default=None)
    forward.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    for p in (connect, offline, forward):
        p.add_argument("--state-dir", type=Path, default=None)


def _cluster(args: argparse.Namespace, control) -> int:
    status = control.read_status(args.state_dir)
    try:
        if args.cluster_command == "connect":
            shown = control.connect_cluster(status, args.name, args.resource_group, service_cidr=args.service_cidr,
                                            storage_class=args.storage_class, arch=args.arch,
                                            kubernetes_version=args.kubernetes_version, location=args.location,
                                            create_group=args.create_group)
        elif args.cluster_command == "forward":
            shown = control.cluster_forward(status, args.name, args.extension, resource_group=args.resource_group)
            if not args.json:
                print(f"{shown['address']}  (verify with {shown['ca_cert']})")
                return 0
        else:
            shown = control.cluster_offline(status, args.name, args.seconds, resource_group=args.resource_group)
    except urllib.error.HTTPError as exc:
        print(f"refused: {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 2
    print(json.dumps(shown))
    return 0


def _weights(text: str) -> dict[str, float]:
    """'throttle=1,unavailable=2' -> {'throttle': 1.0, 'unavailable': 2.0}"""
    try:
        return {k.strip(): float(v) for k, _, v in (item.partition("=") for item in text.split(",") if item)}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected kind=weight,...: {exc}") from exc


def _buckets(text: str) -> dict[str, list[float]]:
    """'writes=5:1,reads=250:25' -> {'writes': [5.0, 1.0], 'reads': [250.0, 25.0]}"""
    try:
        return {k.strip(): [float(x) for x in v.split(":")] for k, _, v in (i.partition("=") for i in text.split(",") if i)}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected name=capacity:refill,...: {exc}") from exc


def _add_faults_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("faults", help="show or set injected faults (no option: show them)",
                            description="Options replace every fault setting at once; those not given take "
                                        "their defaults (off). Prints the settings and counters as JSON.")
    p.add_argument("--state-dir", type=Path, default=None)
    p.add_argument("--off", action="store_true", help="turn every fault off")
    p.add_argument("--seed", type=int, help="seed of the fault sequence (default 0)")
    p.add_argument("--rate", type=float, help="probability that a request is faulted")
    p.add_argument("--kinds", type=_weights, help="relative weights, e.g. throttle=1,unavailable=1,reset=1,slow=1")
    p.add_argument("--services", type=lambda t: [s.strip() for s in t.split(",") if s.strip()],
                   help="routers to fault (default arm,iothub,registry; also keyvault, entra)")
    p.add_argument("--slow-seconds", type=float, help="delay of a slow answer (default 0.5)")
    p.add_argument("--lro-failure-rate", type=float, help="probability that a long-running operation ends Failed")
    p.add_argument("--arm-throttling", action="store_true", help="ARM's token buckets per subscription and principal")
    p.add_argument("--buckets", type=_buckets, help="bucket sizes, e.g. writes=5:1 (capacity:refill per second)")


def _show_device(args: argparse.Namespace, control, status: dict) -> int:
    try:
        shown = control.device_show(status, args.device_id, hub=args.hub)
    except control.DeviceNotFound as exc:
        print(exc, file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(shown))
        return 0
    for key in ("deviceId", "hub", "address", "ca_cert", "listening", "connected", "offline", "lastDesiredStatus"):
        if key in shown:
            print(f"{key:18} {shown[key]}")
    for name, state in (shown.get("modules") or {}).items():
        print(f"{'module ' + name:18} {state}")
    return 0


def _faults(args: argparse.Namespace, control) -> int:
    status = control.read_status(args.state_dir)
    names = ("seed", "rate", "kinds", "services", "slow_seconds", "lro_failure_rate", "buckets")
    settings = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    if args.arm_throttling:
        settings["arm_throttling"] = True
    if args.off and settings:
        print("--off takes no other option", file=sys.stderr)
        return 2
    try:
        if args.off or settings:
            shown = control.set_faults(status, **settings)
        else:
            shown = control.admin(status, "GET", "/_sandbox/faults")
    except urllib.error.HTTPError as exc:
        print(f"refused: {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 2
    print(json.dumps(shown, indent=2))
    return 0


async def _serve(args: argparse.Namespace) -> None:
    from .runtime import Sandbox

    os.umask(0o077)  # everything the sandbox writes (state.db, blobs, device keys) is its owner's alone
    sandbox = Sandbox(args.state_dir or default_state_dir(), port=args.port,
                      latency_profile=args.latency_profile, clock_speed=args.clock_speed)
    await sandbox.start()
    print(f"crlib sandbox serving ARM at {sandbox.arm_endpoint} (state: {sandbox.state_dir})", flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    await stopped.wait()
    await sandbox.stop()


def absent_extra() -> str | None:
    """Why the sandbox cannot run, when a module of its extra is not installed (asked without
    importing any: reading a sandbox's status needs none of them)."""
    import importlib.util

    absent = next((m for m in sorted(EXTRA_MODULES) if importlib.util.find_spec(m) is None), None)
    return missing_extra(ModuleNotFoundError(name=absent)) if absent else None


def run(args: argparse.Namespace) -> int:
    why = absent_extra()
    if why is not None:
        print(f"crlib sandbox {why}", file=sys.stderr)
        return 2
    from . import control

    command = args.sandbox_command
    if command == "serve":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        asyncio.run(_serve(args))
        return 0
    if command == "start":
        status = control.start(args.state_dir, latency_profile=args.latency_profile,
                               clock_speed=args.clock_speed)
        print(f"crlib sandbox running at {status['arm_endpoint']} (pid {status['pid']})")
        return 0
    if command == "stop":
        print("stopped" if control.stop(args.state_dir) else "not running")
        return 0
    if command == "device":
        status = control.read_status(args.state_dir)
        if args.device_command == "provision":
            shown = control.provision_device(status, args.connection_string_file.read().strip(),
                                             parent_hostname=args.parent_hostname)
            print(json.dumps(shown))
        elif args.device_command == "show":
            return _show_device(args, control, status)
        elif args.device_command == "offline":
            print(json.dumps(control.device_offline(status, args.device_id, args.seconds, hub=args.hub)))
        else:
            print(json.dumps(control.edge_devices(status), indent=2))
        return 0
    if command == "faults":
        return _faults(args, control)
    if command == "cluster":
        return _cluster(args, control)
    if command == "reset":
        control.reset(args.state_dir)
        print("reset")
        return 0
    try:
        status = control.read_status(args.state_dir)
    except control.SandboxNotRunning as exc:
        if args.json:
            print(json.dumps({"running": False, "state_dir": str(args.state_dir or default_state_dir())}))
        else:
            print(exc, file=sys.stderr)
        return 3
    keys = ["arm_endpoint", "authority", "tenant_id", "subscription_id", "client_id", "client_secret",
            "ca_bundle", "state_dir", "image_source", "key_vault_url"]
    if args.json:
        print(json.dumps({k: status[k] for k in keys} | {"running": True, "pid": status["pid"]}))
    else:
        for key in keys:
            print(f"{key:16} {status[key]}")
    return 0
