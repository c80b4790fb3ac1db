"""Several realism runs side by side: one markdown table from their ``realism.json`` files.

    python scripts/realism_table.py ellipsoid=results/realism/liver_2mm_ellipsoid \\
        growth=results/realism/liver_2mm_growth --out results/realism/liver_2mm.md

The table is described in :mod:`labelfree.apps.realism.table`.
"""

import sys

from labelfree.apps.realism.table import main

if __name__ == "__main__":
    sys.exit(main())
