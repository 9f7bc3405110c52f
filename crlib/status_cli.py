"""`crlib status PARAMS|INVENTORY [--json]`: each site's connected registry, sync, token expiries
and host, and whether the site is healthy (crlib/status.py). It reads and never writes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXAMPLES = """\
examples:
  crlib status parameters/sandbox.yaml                       one site
  crlib status parameters/fleet-sandbox.yaml                 every site of a fleet inventory
  crlib status parameters/fleet-sandbox.yaml --sites store-002 --json
  crlib status parameters/sandbox.yaml -p status.expiry_warning_days=30

A site is healthy when its connected registry is Online and Active, its last sync is not older than
the schedule's last due time (less status.sync_grace), no sync or client token password expires within
status.expiry_warning_days, and every module runs (on Arc: the extension Succeeded).
Exit codes: 0 every site healthy, 1 a site is not (its reasons are printed) or reading failed,
2 bad input (one line naming the file and field)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("status", help="each site's health: connection, sync, token expiry, modules (reads only)",
                            description="The day-2 view of a site or of every site of a fleet inventory (a file "
                                        "with a top-level fleet: key): the connected registry's connection state, "
                                        "activation and last sync against its schedule, the sync and client "
                                        "tokens' password expiries, and the device's modules or the Arc "
                                        "extension. It reads and never writes.",
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("params", type=Path, metavar="PARAMS|INVENTORY",
                        help="a site's parameter file, or a fleet inventory")
    parser.add_argument("--json", action="store_true",
                        help='print {"healthy": ..., "sites": [...]} as JSON (timestamps ISO 8601 UTC)')
    parser.add_argument("--sites", nargs="+", metavar="SITE", help="with an inventory: only these sites")
    parser.add_argument("-p", "--parameter", action="append", dest="overrides", metavar="KEY=VALUE",
                        help="override a parameter (dotted key, YAML value; repeatable); for an inventory only "
                             "status.* ones, applied to every site")
    parser.set_defaults(func=_status)


def _status(args: argparse.Namespace) -> int:
    from . import status
    from .run_cli import parse_overrides

    sites = status.load_sites(args.params, parse_overrides(args.overrides), names_=args.sites)
    found = status.read_status(sites)
    if args.json:
        print(json.dumps(status.to_json(found), indent=2))
        return 0 if all(s.healthy for s in found) else 1
    import pandas as pd

    with pd.option_context("display.max_colwidth", None, "display.width", 250):
        print(status.to_frame(found).drop(columns=["reasons"]).to_string(index=False))
    unhealthy = [s for s in found if not s.healthy]
    if not unhealthy:
        print(f"\nhealthy: all {len(found)} site{'s' if len(found) != 1 else ''}")
        return 0
    print(f"\nunhealthy: {len(unhealthy)} of {len(found)} site{'s' if len(found) != 1 else ''}")
    for site in unhealthy:
        for reason in site.reasons:
            print(f"  {reason}")
    return 1
