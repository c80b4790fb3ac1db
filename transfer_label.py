"""Label conversion entry point of the original project's layout: ``python transfer_label.py ...``.

The code lives in :mod:`labelfree.data.transfer_label`; installed, the same command is
``labelfree-transfer-label``.
"""

import sys

from labelfree.data.transfer_label import main

if __name__ == "__main__":
    sys.exit(main())
