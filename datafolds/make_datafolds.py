"""``python -m datafolds.make_datafolds ...``: the fold builder (:mod:`labelfree.data.make_datafolds`, ``labelfree-datafolds``)."""

import sys

from labelfree.data.make_datafolds import main

if __name__ == "__main__":
    sys.exit(main())
