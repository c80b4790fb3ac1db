"""Fetch real CT with labels through pip and write a data root with datalists.

    python scripts/fetch_sample_ct.py --out data/real [--cache ~/.cache/labelfree]

The code lives in :mod:`labelfree.data.sample_ct` (what is fetched, the layout written).
"""

import sys

from labelfree.data.sample_ct import main

if __name__ == "__main__":
    sys.exit(main())
