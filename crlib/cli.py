"""The `crlib` command: run the connected registry runbook headless, check its archives, copy its
notebooks, show each site's health on day 2 (`crlib status`), and run the local sandbox that emulates
Azure."""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import NoReturn

from . import __version__

EPILOG = """\
examples:
  crlib sandbox start                          start the local emulation of Azure
  crlib run parameters/sandbox.yaml            notebooks 00-06, headless, into runs/<run>/
  crlib run parameters/sandbox.yaml -p connected_registry.mode=ReadOnly --plan
  crlib run --resume runs/<run>                continue a failed run
  crlib fleet plan parameters/fleet-sandbox.yaml   many sites from one inventory: the plan
  crlib fleet run parameters/fleet-sandbox.yaml    ... and the run, into runs/<stamp>-fleet-<name>-<hex>/
  crlib archive verify runs/<run>              hashes, signature, secrets
  crlib notebooks copy ~/crlib                 the notebooks, to open in JupyterLab
  crlib status parameters/sandbox.yaml         day 2: is the site healthy? (reads only; 1 when not)

A failure is one line on stderr: what failed, where (file:line, field or -p key) and what to do.
Exit codes: 0 done, 1 failed, 2 refused before anything ran (bad input), 130 interrupted.
--debug shows the traceback as well."""

class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line too (argparse prints the usage block first), naming
    the command's --help; subcommands' parsers are of this class as well."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    top = _OneLineParser(prog="crlib", description=__doc__, epilog=EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version=f"crlib {__version__}")
    top.add_argument("--debug", action="store_true", help="on a failure, show the traceback too")
    sub = top.add_subparsers(dest="command", required=True, metavar="{run,fleet,archive,notebooks,status,sandbox}")
    from . import fleet_cli, notebooks_cli, run_cli, status_cli
    from .sandbox import cli as sandbox_cli  # its parser only: the sandbox itself loads when a command runs

    run_cli.add_parsers(sub)
    notebooks_cli.add_parser(sub)
    status_cli.add_parser(sub)
    fleet_cli.add_parser(sub)
    sandbox_cli.add_parser(sub)
    return top


def one_line(exc: BaseException) -> tuple[str, int]:
    """A failure as one line (what failed, where, what to do) and the exit code: 2 for input
    refused before anything ran, 1 for a failure, 130 for Ctrl-C."""
    from .errors import CrlibError, ParameterError

    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    if isinstance(exc, ParameterError):
        count = len(exc.problems)
        return (f"{count} problems: {exc}" if count > 1 else str(exc)), 2
    if isinstance(exc, CrlibError):
        return str(exc), 1
    try:
        import yaml

        if isinstance(exc, yaml.YAMLError):
            mark = getattr(exc, "problem_mark", None)
            where = f"{mark.name}:{mark.line + 1}: " if mark is not None else ""
            return f"{where}not valid YAML: {getattr(exc, 'problem', None) or exc}", 2
    except ImportError:  # pragma: no cover - yaml is a dependency
        pass
    if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError | PermissionError):
        what = {FileNotFoundError: "no such file or folder", NotADirectoryError: "not a folder",
                IsADirectoryError: "is a folder, not a file", PermissionError: "permission denied"}[type(exc)]
        return f"{exc.filename}: {what}", 2
    if isinstance(exc, OSError):
        return f"{str(exc.filename) + ': ' if exc.filename else ''}{exc.strerror or exc}", 1
    if _sign_in_error(exc):  # one the steps did not map (crlib.profiles.sign_in_errors)
        from .profiles import SIGN_IN_HINT

        return f"Azure sign-in failed: {SIGN_IN_HINT}", 1
    first = (str(exc).strip().splitlines() or [""])[0]
    from .secrets import MASKER

    return MASKER.redact(f"unexpected {type(exc).__name__}{': ' + first if first else ''} "
                         "(crlib --debug ... shows the traceback; please report it)"), 1


def _sign_in_error(exc: BaseException) -> bool:
    try:
        from azure.core.exceptions import ClientAuthenticationError
        from azure.identity import CredentialUnavailableError
    except ImportError:  # pragma: no cover - azure-identity is a dependency
        return False
    return isinstance(exc, ClientAuthenticationError | CredentialUnavailableError)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = " ".join(["crlib", args.command, getattr(args, f"{args.command}_command", None) or ""]).strip()
    try:
        return int(args.func(args))
    except (Exception, KeyboardInterrupt) as exc:
        if args.debug:
            traceback.print_exc()
        line, code = one_line(exc)
        print(f"{command}: {line}", file=sys.stderr)
        return code
