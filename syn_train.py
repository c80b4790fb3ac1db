"""Train the tumor generator of ``main.py --synthesis gan``: ``python syn_train.py ...``.

The code lives in :mod:`labelfree.cli.syn_train`; installed, the same command is ``labelfree-syn-train``.
"""

from labelfree.cli.syn_train import main

if __name__ == "__main__":
    main()
