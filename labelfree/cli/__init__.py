"""The programs: parse the flags, check everything before work, then call the package (``main.py`` = :mod:`labelfree.cli.train`)."""
