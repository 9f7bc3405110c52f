"""`crlib run` and `crlib archive verify|list`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import archive, runbook, signing
from .errors import CrlibError, ParameterError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run the runbook's notebooks headless and archive them",
                         description="Execute the notebooks in order through papermill into "
                                     "runs/<UTC>-<site>-<id>/, with run.json and SHA256SUMS.")
    run.add_argument("params", nargs="?", type=Path, help="the site's parameter file (with --resume: a fixed one)")
    run.add_argument("--only", nargs="+", metavar="NOTEBOOK",
                     help=f"notebooks to run, by name or number ({', '.join(runbook.PHASE_NAMES)}); "
                          "default: 00 to 06")
    run.add_argument("--plan", action="store_true", help="show every notebook's plan; write nothing")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR",
                     help="continue a run from its first notebook that did not complete")
    run.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run folders go (default: runs)")
    run.add_argument("--cell-timeout", type=float, default=None, metavar="SECONDS",
                     help="fail a notebook whose cell runs longer than this (default: no limit)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)

    arch = sub.add_parser("archive", help="check and list run archives")
    commands = arch.add_subparsers(dest="archive_command", required=True)
    verify = commands.add_parser("verify", help="check an archive's hashes and signature, and scan it for secrets",
                                 description="Check every hash in SHA256SUMS, that SIGNATURE signs them, and "
                                             "that no secret is in any file; say who signed. Without --key or "
                                             "--key-id the signer is not pinned: anyone can re-sign with a key of "
                                             "their own, so a reviewer pins the key they expect.")
    verify.add_argument("run_dir", type=Path)
    pin = verify.add_mutually_exclusive_group()
    pin.add_argument("--key", type=Path, metavar="FILE",
                     help="PEM public key or certificate the signer must have")
    pin.add_argument("--key-id", metavar="KID",
                     help="the key id the signer must have: a Key Vault key's versioned URL (its public key is "
                          "read from the vault with the run's target credentials) or a local key id "
                          "(local:<entry>/<sha256 prefix>, which names its public key)")
    verify.set_defaults(func=_verify)
    listing = commands.add_parser("list", help="a table of runs")
    listing.add_argument("--runs-dir", type=Path, default=Path("runs"))
    listing.set_defaults(func=_list)


def _summary(record: dict) -> str:
    import pandas as pd

    rows = [{"notebook": n["name"], "status": n["status"], "duration_s": n.get("duration_s", "")}
            for n in record["notebooks"]]
    steps = pd.DataFrame(record["steps"], columns=["step", "notebook", "status", "duration_s"])
    return (pd.DataFrame(rows).to_string(index=False) + "\n\n" + steps.to_string(index=False)
            if not steps.empty else pd.DataFrame(rows).to_string(index=False))


def plan_text(record: dict) -> str:
    """A plan run's changes, from the same data the notebooks' plan tables show: one line per
    change with its action's symbol, then the counts."""
    from .plans import Action

    lines, counts = [], dict.fromkeys(Action, 0)
    for step in record["steps"]:
        for change in step.get("plan") or []:
            action = Action(change["action"])
            counts[action] += 1
            lines.append(f"  {action.symbol} {step['step']:<13} {change['kind']} '{change['name']}': {change['summary']}")
    if not lines:
        return "Plan: no changes."
    return "\n".join([*lines, "", f"Plan: {counts[Action.CREATE]} to create, {counts[Action.UPDATE]} to update, "
                                 f"{counts[Action.DELETE]} to delete, {counts[Action.RUN]} to run."])


def _run(args: argparse.Namespace) -> int:
    from . import runner

    try:
        if args.resume:
            run = runner.Run.resume(args.resume, args.params)
        else:
            if args.params is None:
                raise ParameterError("params", "give a parameter file, or --resume RUN_DIR")
            run = runner.Run.create(args.params, runs_dir=args.runs_dir, phases=runner.select_phases(args.only),
                                    plan=args.plan)
    except CrlibError as exc:  # refused before anything ran
        print(f"crlib run: {exc}", file=sys.stderr)
        return 2
    try:
        record = run.run(cell_timeout=args.cell_timeout, progress=not args.no_progress)  # records any failure
    except KeyboardInterrupt:
        print(f"crlib run: interrupted; recorded as failed in {run.dir}; to continue: crlib run --resume {run.dir}",
              file=sys.stderr)
        return 130
    failed = record["failed"] or {}
    if record["status"] != "succeeded" and failed.get("notebook") is None:  # nothing ran: one line says why
        print(f"crlib run: failed before any notebook ran: {failed.get('error')} (recorded as failed in {run.dir}; "
              f"after fixing it: crlib run --resume {run.dir})", file=sys.stderr)
        return 1
    print(_summary(record))
    if record.get("plan_only"):
        print("\n" + plan_text(record))
    print(f"\narchive: {run.dir}")
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

    site = load_file(run_dir / "parameters.yaml")
    try:
        from .context import secret_store_for
        from .profiles import profile_for
        from .secrets import LocalSecretStore

        store = (LocalSecretStore(site.secrets.local_dir) if site.secrets.store == "local"
                 else secret_store_for(site, profile_for(site)))
        return archive.named_store_secrets(store, f"crlib-{site.site}-"), f"{site.secrets.store} secret store"
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
    if args.key_id.startswith("local:"):
        return check.public_key, f"the local key {args.key_id}", []  # its id names its public key: check() compares
    from .context import open_context
    from .params import load_file

    try:
        profile = open_context(load_file(args.run_dir / "parameters.yaml")).profile
        return signing.key_vault_public_key(args.key_id, profile), f"the Key Vault key {args.key_id}", []
    except Exception as exc:
        return None, "", [f"cannot read {args.key_id} from its vault ({type(exc).__name__}: {exc})"]


def _verify(args: argparse.Namespace) -> int:
    """Findings name the file and the store entry or the shape found; no part of a secret is printed."""
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
