"""``python scripts/check_data.py ...``: the data checker (:mod:`labelfree.cli.check_data`, ``labelfree-check-data``)."""

import sys

from labelfree.cli.check_data import main

if __name__ == "__main__":
    sys.exit(main())
