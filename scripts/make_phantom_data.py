"""``python scripts/make_phantom_data.py ...``: the phantom generator (:mod:`labelfree.phantom.cli`, ``labelfree-phantom``)."""

import sys

from labelfree.phantom.cli import cli

if __name__ == "__main__":
    sys.exit(cli())
