"""Run a tool of the training framework from one of the engine's ``python -m`` names.

The engine (``tumor_synthesis``) stands alone: it never imports ``labelfree``. Its two
historical command lines (``python -m tumor_synthesis.realism`` and ``... .preview``) name tools
that need the framework; they run it by module name, and say what to install when it is absent.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys


def run_framework_tool(module: str) -> None:
    """Run ``module`` as ``__main__`` with the current ``sys.argv``, or exit 2 with one line."""
    if importlib.util.find_spec(module.partition(".")[0]) is None:
        sys.exit(f"error: {module} is part of the labelfree framework, which is not installed "
                 "(pip install labelfree-tumor, or run from a clone of the project)")
    runpy.run_module(module, run_name="__main__", alter_sys=True)
