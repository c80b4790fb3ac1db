"""The paper's comparison at phantom scale: real-tumor vs synthetic-tumor vs mixed training.

The arms, the steps and the report are described in :mod:`labelfree.apps.experiment`::

    python scripts/run_experiment.py --data_root data/exp_phantom --out runs/experiment --results results
"""

import sys

from labelfree.apps.experiment import main

if __name__ == "__main__":
    sys.exit(main())
