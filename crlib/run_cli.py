"""`crlib run` and `crlib archive verify|list`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import archive, runbook, signing
from .errors import CrlibError, ParameterError

RUN_EXAMPLES = """\
examples:
  crlib run parameters/sandbox.yaml                        notebooks 00-06
  crlib run parameters/sandbox.yaml --plan                 every plan; writes nothing
  crlib run parameters/sandbox.yaml -p connected_registry.mode=ReadOnly -p hub.capacity=2
  crlib run parameters/sandbox.yaml --only 90              rotate the sync password
  crlib run parameters/sandbox.yaml --only 99-teardown     tear the site down
  crlib run --resume runs/<run> [fixed-parameters.yaml]    continue from the first notebook not completed

Bad parameters are refused before anything runs (exit 2), every problem listed in one line with its
file:line (or -p key) and field. A failed or interrupted run is recorded as failed in its folder
and says how to resume it (exit 1; 130 on Ctrl-C)."""

VERIFY_EXAMPLES = """\
examples:
  crlib archive verify runs/<run>
  crlib archive verify runs/<run> --key signer.pem
  crlib archive verify runs/<run> --key-id local:<entry>/<sha256 prefix>"""


def parse_overrides(items: list[str] | None) -> dict[str, object]:
    """`-p key=value` options as load_file's overrides: dotted keys, values read as YAML scalars
    (ReadOnly, 2, true), a value that is not YAML kept as text."""
    import re

    import yaml

    overrides: dict[str, object] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][\w-]*(?:\.[\w-]+)*", key):
            raise ParameterError("-p", f"'{item}' is not KEY=VALUE with a dotted key, such as -p hub.capacity=2")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        overrides[key] = value
    return overrides


def add_parsers(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run the runbook's notebooks headless and archive them",
                         description="Execute the notebooks in order through papermill into "
                                     "runs/<UTC>-<site>-<id>/, with run.json, SHA256SUMS and SIGNATURE.",
                         epilog=RUN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("params", nargs="?", type=Path, help="the site's parameter file (with --resume: a fixed one)")
    run.add_argument("--only", nargs="+", metavar="NOTEBOOK",
                     help=f"notebooks to run, by name or number ({', '.join(runbook.PHASE_NAMES)}); "
                          "default: 00 to 06")
    run.add_argument("--plan", action="store_true", help="show every notebook's plan; write nothing")
    run.add_argument("--json", action="store_true", help="with --plan: print the plan as JSON")
    run.add_argument("--yes", action="store_true",
                     help="apply without showing the plan and asking first (in a terminal crlib asks; rotation "
                          "and teardown need --yes when not in a terminal)")
    run.add_argument("-p", "--parameter", action="append", dest="overrides", metavar="KEY=VALUE",
                     help="override a parameter of the file (dotted key, YAML value; repeatable); validated "
                          "like the file and recorded in run.json")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR",
                     help="continue a run from its first notebook that did not complete")
    run.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run folders go (default: runs)")
    run.add_argument("--cell-timeout", type=float, default=None, metavar="SECONDS",
                     help="fail a notebook whose cell runs longer than this (default: no limit)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)

    arch = sub.add_parser("archive", help="check and list run archives",
                          description="Each run folder is a change record, sealed with SHA256SUMS and "
                                      "SIGNATURE: verify one, or list them.",
                          epilog="examples:\n  crlib archive list\n  crlib archive verify runs/<run>",
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = arch.add_subparsers(dest="archive_command", required=True)
    verify = commands.add_parser("verify", help="check an archive's hashes and signature, and scan it for secrets",
                                 description="Check every hash in SHA256SUMS, that SIGNATURE signs them, and "
                                             "that no secret is in any file; say who signed. Without --key or "
                                             "--key-id the signer is not pinned: anyone can re-sign with a key of "
                                             "their own, so a reviewer pins the key they expect.",
                                 epilog=VERIFY_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    verify.add_argument("run_dir", type=Path)
    pin = verify.add_mutually_exclusive_group()
    pin.add_argument("--key", type=Path, metavar="FILE",
                     help="PEM public key or certificate the signer must have")
    pin.add_argument("--key-id", metavar="KID",
                     help="the key id the signer must have: a Key Vault key's versioned URL (its public key is "
                          "read from the vault with the run's target credentials) or a local key id "
                          "(local:<entry>/<sha256 prefix>, which names its public key)")
    verify.set_defaults(func=_verify)
    listing = commands.add_parser("list", help="a table of runs",
                                  description="A table of the run folders: when, site, status, notebooks.",
                                  epilog="example:\n  crlib archive list --runs-dir runs",
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    listing.add_argument("--runs-dir", type=Path, default=Path("runs"))
    listing.set_defaults(func=_list)
    show = commands.add_parser("show", help="a run's summary: who, when, where, what changed, how it ended",
                               description="Print a run's record in words: site, kind, status, operator and "
                                           "identity, times, tenant, subscription and target, who signed, each "
                                           "notebook's and step's outcome with its changes, the checks' evidence, "
                                           "and the failure with how to resume.",
                               epilog="example:\n  crlib archive show runs/<run>",
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    show.add_argument("run_dir", type=Path)
    show.set_defaults(func=_show)
    report = commands.add_parser("report", help="write a run's record as one self-contained HTML file",
                                 description="Write one HTML file: the run's summary (as `show` prints it), what "
                                             "`verify` finds and who signed, then every archived notebook. It "
                                             "fetches nothing when opened.",
                                 epilog="examples:\n  crlib archive report runs/<run>            # writes "
                                        "runs/<run>.html\n  crlib archive report runs/<run> -o review.html",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    report.add_argument("run_dir", type=Path)
    report.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="where to write it (default: <RUN>.html beside the run folder, never inside it)")
    report.set_defaults(func=_report)


def _summary(record: dict) -> str:
    import pandas as pd

    rows = [{"notebook": n["name"], "status": n["status"], "duration_s": n.get("duration_s", "")}
            for n in record["notebooks"]]
    steps = pd.DataFrame(record["steps"], columns=["step", "notebook", "status", "duration_s"])
    return (pd.DataFrame(rows).to_string(index=False) + "\n\n" + steps.to_string(index=False)
            if not steps.empty else pd.DataFrame(rows).to_string(index=False))


def plan_text(record: dict) -> str:
    """A plan run's changes as operators read them (crlib/plan_view.py): per notebook and step,
    each change with its action's symbol and fields, then the counts."""
    from . import plan_view

    return plan_view.render(record["steps"], title=f"Plan for site '{record['site']}' ({record['target']['kind']}):")


DESTRUCTIVE = {"rotate": "replaces the sync token's password (the device must take the new one)",
               "teardown": "deletes the site's resources"}


def _approve(args: argparse.Namespace, phases: list, overrides: dict) -> int | None:
    """Before an apply: in a terminal, plan first (its own run folder, kind plan), show the plan and
    ask; anything but 'yes' cancels with nothing written. Not in a terminal, an apply goes ahead,
    except rotation and teardown, which need --yes. None means go ahead; else the exit code."""
    from . import plan_view, runner

    destroys = [f"{p.notebook} {DESTRUCTIVE[step]}" for p in phases for step in p.steps if step in DESTRUCTIVE]
    if not sys.stdin.isatty():
        if destroys:
            print(f"crlib run: {destroys[0]}; confirm with --yes (review it first: crlib run {args.params} --only "
                  f"{' '.join(p.notebook[:2] for p in phases)} --plan)", file=sys.stderr)
            return 2
        return None
    plan_run = runner.Run.create(args.params, runs_dir=args.runs_dir, phases=phases, plan=True, overrides=overrides)
    record = plan_run.run(cell_timeout=args.cell_timeout, progress=not args.no_progress)
    if record["status"] != "succeeded":
        failed = record["failed"] or {}
        print(f"crlib run: the plan failed in {failed.get('notebook')} at step {failed.get('step')}: "
              f"{failed.get('error')} (recorded in {plan_run.dir}); nothing was written", file=sys.stderr)
        return 1
    print(plan_text(record))
    if destroys:
        print("\n" + "\n".join(f"Warning: {d}." for d in destroys))
    print(f"\n(this plan is recorded in {plan_run.dir})")
    try:
        answer = input(f"\nDo you want to perform these actions on site '{record['site']}'?\n"
                       "  Only 'yes' will be accepted to approve.\n\n  Enter a value: ")
    except EOFError:
        answer = ""
    if answer.strip() != "yes":
        print("\nApply cancelled: nothing was written.")
        return 1
    first = phases[0].notebook
    args.approved = (plan_run.dir.name, plan_view.resource_changes(s for s in record["steps"] if s["notebook"] == first),
                     record["parameters_sha256"])
    return None


def _run(args: argparse.Namespace) -> int:
    from . import runner
    from .cli import one_line

    try:
        overrides = parse_overrides(args.overrides)
        if args.resume:
            if not args.resume.is_dir():
                raise ParameterError("--resume", f"{args.resume}: no such run folder (crlib archive list shows "
                                                 "the runs)")
            if overrides:
                raise ParameterError("-p", "applies to a new run; with --resume, give a fixed parameter file")
            run = runner.Run.resume(args.resume, args.params)
        else:
            if args.params is None:
                raise ParameterError("params", "give a parameter file, or --resume RUN_DIR")
            phases = runner.select_phases(args.only)
            if not args.plan and not args.yes:
                refused = _approve(args, phases, overrides)
                if refused is not None:
                    return refused
            approved = getattr(args, "approved", None)
            if approved and runner.parameters_digest(args.params, overrides) != approved[2]:
                raise ParameterError(str(args.params), "changed while the plan waited for approval; nothing was "
                                                       "written: run again to see the new plan")
            run = runner.Run.create(args.params, runs_dir=args.runs_dir, phases=phases,
                                    plan=args.plan, overrides=overrides)
            if approved:
                run.record["approved_plan_run"], run.approved_plan = approved[0], approved[1]
    except CrlibError as exc:  # refused before anything ran
        if getattr(args, "debug", False):
            import traceback

            traceback.print_exc()
        print(f"crlib run: {one_line(exc)[0]}", file=sys.stderr)
        return 2
    try:
        record = run.run(cell_timeout=args.cell_timeout, progress=not args.no_progress)  # records any failure
    except KeyboardInterrupt:
        if getattr(args, "debug", False):
            import traceback

            traceback.print_exc()
        print(f"crlib run: interrupted; recorded as failed in {run.dir}; to continue: crlib run --resume {run.dir}",
              file=sys.stderr)
        return 130
    failed = record["failed"] or {}
    if record["status"] != "succeeded" and failed.get("notebook") is None:  # nothing ran: one line says why
        # A run sealed unsigned (its key was out of reach) cannot be resumed: nothing ran, so run again.
        again = f"crlib run --resume {run.dir}" if not run.unsigned else f"crlib run {args.params} (a new run)"
        print(f"crlib run: failed before any notebook ran: {failed.get('error')} (recorded as failed in {run.dir}; "
              f"after fixing it: {again})", file=sys.stderr)
        return 1
    if record.get("plan_only") and args.json:
        from . import plan_view

        print(json.dumps(plan_view.as_json(record), indent=2))
    elif record.get("plan_only"):
        print(plan_text(record))
    else:
        print(_summary(record))
    print(f"\narchive: {run.dir}", file=sys.stderr if args.json else sys.stdout)
    if run.unsigned:
        print(f"crlib run: {run.unsigned}", file=sys.stderr)
    if record["status"] != "succeeded":
        failed = record["failed"]
        print(f"crlib run: failed in {failed['notebook']} at step {failed['step']} ({failed['reason']}): "
              f"{failed['error']}", file=sys.stderr)
        print(f"after fixing it: crlib run --resume {run.dir}", file=sys.stderr)
        return 1
    return 0


def archive_secrets(run_dir: Path) -> tuple[dict[str, str], str]:
    """The secrets of the run's site, from its secret store (entry name -> value), and where they
    came from."""
    from .params import load_file

    names = None
    if (run_dir / "inventory.yaml").is_file():  # a fleet run: every site's secrets, and the fleet's own
        from .inventory import load_inventory

        fleet = load_inventory(run_dir / "inventory.yaml")
        site, names = fleet.shared_site, [fleet.name, *(s.site for s in fleet.sites)]
    else:
        site = load_file(run_dir / "parameters.yaml")
    try:
        from .context import secret_store_for
        from .profiles import profile_for
        from .secrets import LocalSecretStore

        store = (LocalSecretStore(site.secrets.local_dir) if site.secrets.store == "local" and site.secrets.local_dir
                 else secret_store_for(site, profile_for(site)))
        found: dict[str, str] = {}
        for name in names or [site.site]:
            found |= archive.named_store_secrets(store, f"crlib-{name}-")
        return found, f"{site.secrets.store} secret store"
    except Exception as exc:  # an unreachable store still leaves the hash and shape checks
        return {}, f"secret shapes only ({site.secrets.store} store unreachable: {type(exc).__name__})"


def _trusted_key(args: argparse.Namespace) -> tuple[signing.ec.EllipticCurvePublicKey | None, str, list[str]]:
    """The key the signer must have (from --key or --key-id), how to name it, and any problem
    finding it."""
    if args.key is not None:
        return signing.read_key_file(args.key), f"the key in {args.key}", []
    if args.key_id is None:
        return None, "", []
    check = archive.signature(args.run_dir)
    if check.key_id != args.key_id:
        return None, "", [f"signed by {check.key_id or 'no key'}, not by {args.key_id}"]
    if args.key_id.startswith("local:"):  # its id names its public key's fingerprint
        if check.public_key is None or not signing.names_its_key(args.key_id, check.public_key):
            return None, "", [f"{args.key_id} is not a local key id naming the key that signed "
                              "(local:<entry>/<32 hex digits of its public key's sha256>)"]
        return check.public_key, f"the local key {args.key_id}", []
    from .context import open_context
    from .params import load_file

    try:
        if (args.run_dir / "inventory.yaml").is_file():  # a fleet run
            from .inventory import load_inventory

            profile = open_context(load_inventory(args.run_dir / "inventory.yaml").shared_site).profile
        else:
            profile = open_context(load_file(args.run_dir / "parameters.yaml")).profile
        return signing.key_vault_public_key(args.key_id, profile), f"the Key Vault key {args.key_id}", []
    except Exception as exc:
        return None, "", [f"cannot read {args.key_id} from its vault ({type(exc).__name__}: {exc})"]


def _verify(args: argparse.Namespace) -> int:
    """Findings name the file and the store entry or the shape found; no part of a secret is printed."""
    if not args.run_dir.is_dir() and not args.run_dir.is_symlink():
        raise ParameterError(str(args.run_dir), "no such run folder (crlib archive list shows the runs)"
                             if not args.run_dir.exists() else "is not a run folder")
    # A symlink is reported before anything in the folder (its parameter file included) is read.
    problems = archive.tree_problems(args.run_dir, others=False)
    secrets: dict[str, str] = {}
    source = "secret store (not read)"
    pinned = ""
    if not problems:
        try:
            trusted, pinned, problems = _trusted_key(args)
        except signing.SigningError as exc:
            print(f"crlib archive verify: {exc}", file=sys.stderr)
            return 2
        secrets, source = archive_secrets(args.run_dir)
        problems += archive.verify(args.run_dir, secrets=secrets, trusted=trusted, trusted_name=pinned or "the given key")
    if problems:
        print(f"{args.run_dir}: NOT verified ({len(problems)} problems)", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    files = len(archive.archived_files(args.run_dir))
    signed = archive.signature(args.run_dir)
    print(f"{args.run_dir}: verified: {files} files match SHA256SUMS; no secret found "
          f"({len(secrets)} known secrets from the {source}, plus secret shapes)")
    print(f"signed at {signed.signed_at} by {signed.signer}")
    print(f"the signer is {pinned}" if pinned else
          "the signer is not pinned: anyone able to write the folder could re-sign it with a key of their own; "
          "pin the key you expect with --key FILE or --key-id KID")
    return 0


def _list(args: argparse.Namespace) -> int:
    table = archive.list_runs(args.runs_dir)
    print(table.to_string(index=False) if not table.empty else f"no runs in {args.runs_dir}")
    return 0


def _readable_run(run_dir: Path, command: str) -> bool:
    """A folder `show` and `report` may read: no symlink in it, a run.json; else one line says why."""
    problems = archive.tree_problems(run_dir, others=False)
    if not problems and not (run_dir / archive.RECORD).is_file():
        problems = [f"no {archive.RECORD}: not a run folder"]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        print(f"crlib archive {command}: refusing {run_dir}: {problems[0]}{more}", file=sys.stderr)
        return False
    return True


def _show(args: argparse.Namespace) -> int:
    from . import report

    if not _readable_run(args.run_dir, "show"):
        return 2
    print(report.show_text(args.run_dir))
    return 0


def _report(args: argparse.Namespace) -> int:
    """The report is checked with the archive's own secret scan before it is written."""
    from . import report

    run_dir = args.run_dir
    if not _readable_run(run_dir, "report"):
        return 2
    output = args.output or run_dir.absolute().parent / f"{run_dir.absolute().name}.html"
    if output.absolute().resolve().is_relative_to(run_dir.absolute().resolve()):
        print(f"crlib archive report: refusing to write {output} inside the sealed run folder; give -o FILE "
              "outside it", file=sys.stderr)
        return 2
    secrets, _ = archive_secrets(run_dir)
    page = report.report_html(run_dir, archive.verify(run_dir, secrets=secrets))
    found = archive.scan_bytes(page.encode(), secrets)
    if found:
        print(f"crlib archive report: not written: the report would hold {found[0]}", file=sys.stderr)
        return 1
    try:
        archive.write_private(output, page)
    except OSError as exc:
        print(f"crlib archive report: cannot write {output} ({exc.strerror})", file=sys.stderr)
        return 1
    print(f"{output}: the report of {run_dir.name} ({len(page) // 1024} KiB, self-contained)")
    return 0
