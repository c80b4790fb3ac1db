"""The original project's ``optimizers`` package, for scripts written against it.

Works from a clone's root (not installed under this generic name); the code is
:mod:`labelfree.optimizers`.
"""
