"""`crlib fleet plan|run`: many sites from one inventory (crlib/fleet.py, crlib/fleet_runner.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EPILOG = """examples:
  crlib fleet plan parameters/fleet-sandbox.yaml
  crlib fleet run parameters/fleet-sandbox.yaml --max-parallel 8
  crlib fleet run parameters/fleet-sandbox.yaml --sites store-001,store-002
  crlib fleet run --resume runs/<fleet run>          only the sites that did not succeed
  crlib fleet run --resume runs/<fleet run> parameters/fleet-x.yaml   ... with the inventory, fixed"""


def _sites(value: str) -> list[str]:
    names = [s.strip() for s in value.split(",") if s.strip()]
    if not names:  # "--sites $FAILED" with nothing in it must not mean every site
        raise argparse.ArgumentTypeError("names no site; leave --sites out to run every site")
    return names


def add_parser(sub: argparse._SubParsersAction) -> None:
    fleet = sub.add_parser("fleet", help="plan or run many sites from one inventory",
                           description="The shared steps once, then every site's steps in parallel, paced to ARM's "
                                       "throttling, with Azure's limits checked in the plan.",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = fleet.add_subparsers(dest="fleet_command", required=True, metavar="{plan,run}")
    for name, text in (("plan", "show what a fleet run would change; nothing is written"),
                       ("run", "run the fleet through notebooks/10-fleet.ipynb and archive it")):
        command = commands.add_parser(name, help=text, description=text, epilog=EPILOG,
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
        command.add_argument("inventory", type=Path, nargs="?" if name == "run" else None,
                             help="the fleet's inventory (parameters/fleet-*.yaml)")
        command.add_argument("--max-parallel", type=int, default=None, metavar="N",
                             help="how many sites run at once (default 8)")
        command.add_argument("--sites", type=_sites, default=None, metavar="A,B", help="only these sites")
        if name == "plan":
            command.add_argument("--json", action="store_true", help="the plan as JSON")
            command.set_defaults(func=_plan)
        else:
            command.add_argument("--resume", type=Path, default=None, metavar="FLEET_RUN_DIR",
                                 help="run again only the sites of this fleet run that did not succeed")
            command.add_argument("--yes", action="store_true", help="apply without the prompt")
            command.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run folders go")
            command.add_argument("--cell-timeout", type=float, default=None, help="seconds a notebook cell may run")
            command.set_defaults(func=_run)


def _max_parallel(args: argparse.Namespace) -> int:
    from .errors import ParameterError
    from .fleet import DEFAULT_MAX_PARALLEL

    value = DEFAULT_MAX_PARALLEL if args.max_parallel is None else args.max_parallel
    if value < 1:
        raise ParameterError("--max-parallel", f"must be at least 1, not {value}")
    return value


def _plan(args: argparse.Namespace) -> int:
    from .fleet import plan_fleet
    from .inventory import load_inventory

    fleet = load_inventory(args.inventory)
    planned = plan_fleet(fleet, sites=args.sites, max_parallel=_max_parallel(args))
    if args.json:
        print(json.dumps({"fleet": fleet.name, "counts": planned.counts(),
                          "limits": [{"limit": c.limit, "scope": c.scope, "existing": c.existing, "new": c.new,
                                      "maximum": c.maximum, "source": c.source} for c in planned.limits],
                          "shared": [r.to_dict() for r in planned.shared],
                          "sites": {n: o.to_dict() for n, o in planned.sites.items()}}, indent=2, default=str))
    else:
        print(planned.render())
    return 1 if any(o.status == "failed" for o in planned.sites.values()) else 0


def _run(args: argparse.Namespace) -> int:
    from .errors import ParameterError
    from .fleet_runner import FleetRun

    if args.resume is not None:
        if args.sites is not None or args.max_parallel is not None:
            raise ParameterError("--resume", "runs the sites of the recorded run that did not succeed, as parallel "
                                             "as it was; give no --sites or --max-parallel with it")
        run = FleetRun.resume(args.resume, args.inventory)  # INVENTORY, when given: the inventory, fixed
    else:
        if args.inventory is None:
            raise ParameterError("INVENTORY", "is required (or --resume FLEET_RUN_DIR)")
        max_parallel = _max_parallel(args)
        if not args.yes and sys.stdin.isatty() and not _approved(args, max_parallel):
            return 1
        run = FleetRun.create(args.inventory, runs_dir=args.runs_dir, sites=args.sites, max_parallel=max_parallel,
                              plan=False)
    record = run.run(cell_timeout=args.cell_timeout)
    for attempt in record["attempts"][-1:]:
        for name in attempt["sites"]:
            entry = record["sites"].get(name) or {}
            last = (entry.get("attempts") or [{}])[-1]
            failure = last.get("failure") or {}
            print(f"  {name}: {entry.get('status') or 'not run'}"
                  + (f" ({failure.get('step')}: {failure.get('error')})" if failure else ""))
    counts = record.get("counts", {})
    print(f"fleet {record['fleet']}: {record['status']}: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v)
          + f" in {record['duration_s']} s; recorded in {run.dir}")
    failed = record["attempts"][-1].get("failed")
    if failed:
        print(f"crlib fleet run: the fleet notebook failed ({failed['reason']}): {failed['error']}", file=sys.stderr)
    if run.unsigned:
        print(f"crlib fleet run: {run.unsigned}", file=sys.stderr)
    if record["status"] != "succeeded":
        print(f"crlib fleet run: resume the sites that did not succeed with: crlib fleet run --resume {run.dir}",
              file=sys.stderr)
    return 0 if record["status"] == "succeeded" else 1


def _approved(args: argparse.Namespace, max_parallel: int) -> bool:
    from .fleet import plan_fleet
    from .inventory import load_inventory

    fleet = load_inventory(args.inventory)
    print(plan_fleet(fleet, sites=args.sites, max_parallel=max_parallel).render())
    try:
        answer = input(f"\nDo you want to perform these actions on fleet '{fleet.name}'?\n"
                       "  Only 'yes' will be accepted to approve.\n\n  Enter a value: ")
    except EOFError:
        answer = ""
    if answer.strip() != "yes":
        print("\nApply cancelled: nothing was written.")
        return False
    return True
