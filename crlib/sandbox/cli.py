"""`crlib sandbox serve|start|stop|status|reset`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from . import control
from .config import LATENCY_PROFILES, default_state_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("sandbox", help="run the local emulation of Azure")
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
    for p in (provision, listing):
        p.add_argument("--state-dir", type=Path, default=None)
    parser.set_defaults(func=run)


async def _serve(args: argparse.Namespace) -> None:
    from .runtime import Sandbox

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


def run(args: argparse.Namespace) -> int:
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
        else:
            print(json.dumps(control.edge_devices(status), indent=2))
        return 0
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
            "ca_bundle", "state_dir"]
    if args.json:
        print(json.dumps({k: status[k] for k in keys} | {"running": True, "pid": status["pid"]}))
    else:
        for key in keys:
            print(f"{key:16} {status[key]}")
    return 0
