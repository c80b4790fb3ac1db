"""``python -m labelfree.nnunet`` = ``labelfree-nnunet`` (see :mod:`labelfree.nnunet.cli`)."""

import sys

from labelfree.nnunet.cli import main

sys.exit(main())
