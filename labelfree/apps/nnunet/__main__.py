"""``python -m labelfree.apps.nnunet`` = ``labelfree-nnunet`` (see :mod:`labelfree.apps.nnunet.cli`)."""

import sys

from labelfree.apps.nnunet.cli import main

sys.exit(main())
