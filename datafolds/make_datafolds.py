"""``python -m datafolds.make_datafolds ...``: the fold builder (:mod:`labelfree.make_datafolds`, ``labelfree-datafolds``)."""

import sys

from labelfree.make_datafolds import main

if __name__ == "__main__":
    sys.exit(main())
