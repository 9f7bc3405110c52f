import sys

from ..cli import main

sys.exit(main(["sandbox", *sys.argv[1:]]))
