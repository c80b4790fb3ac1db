"""Turn validation.py outputs into a markdown results table, bar plots and prediction overlays.

One or more *arms* (trained models) are compared on the same cases::

    python scripts/make_report.py --arm synthetic=outs/syn/0.5 --arm real=outs/real/0.5 \\
        --json_dir data/phantom/datafolds/healthy.json --val_dir data/phantom --out results

The work is :mod:`labelfree.evaluation.comparison` (what it writes is described there).
"""

import sys

from labelfree.evaluation.comparison import main

if __name__ == "__main__":
    sys.exit(main())
