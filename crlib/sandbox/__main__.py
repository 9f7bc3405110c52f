"""`python -m crlib.sandbox ...`: the same commands as `crlib sandbox ...`."""

import argparse
import sys

from . import cli

parser = argparse.ArgumentParser(prog="python -m crlib.sandbox")
cli.add_parser(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(["sandbox", *sys.argv[1:]])
sys.exit(args.func(args))
