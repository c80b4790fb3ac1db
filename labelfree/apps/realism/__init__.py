"""The realism tool (``labelfree-realism``, ``python -m tumor_synthesis.realism``): synthetic vs real lesions, measured."""
