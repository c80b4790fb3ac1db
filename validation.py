"""Evaluation entry point of the original project's layout: ``python validation.py ...`` (flags unchanged).

The code lives in :mod:`labelfree.cli.validate`; installed, the same command is ``labelfree-validate``.
"""

import sys

from labelfree.cli.validate import cli

if __name__ == "__main__":
    sys.exit(cli())
