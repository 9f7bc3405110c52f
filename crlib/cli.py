"""The `crlib` command."""

from __future__ import annotations

import argparse

from . import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crlib", description=__doc__)
    parser.add_argument("--version", action="version", version=f"crlib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    from . import notebooks_cli, run_cli
    from .sandbox import cli as sandbox_cli  # its parser only: the sandbox itself loads when a command runs

    run_cli.add_parsers(sub)
    notebooks_cli.add_parser(sub)
    sandbox_cli.add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)
