"""The original layout's ``trainer.py``: the training loop lives in :mod:`labelfree.training.trainer`.

Kept so that code written against the original layout (``from trainer import ...``) still imports.
"""

from labelfree.training.trainer import *  # noqa: F401,F403
