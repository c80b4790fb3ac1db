"""The original project's ``networks`` package, for scripts written against it.

Works from a clone's root (it is not installed: ``networks`` is too generic a name for
site-packages). The networks themselves are MONAI's, configured in :mod:`labelfree.networks`.
"""
