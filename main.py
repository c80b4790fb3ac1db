"""Training entry point of the original project's layout: ``python main.py ...`` (flags unchanged).

The code lives in :mod:`labelfree.cli.train`; this file keeps users' scripts and ``torchrun main.py``
working. Installed, the same command is ``labelfree-train``.
"""

from labelfree.cli.train import main

if __name__ == "__main__":
    main()
