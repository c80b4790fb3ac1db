"""``python -m tumor_synthesis.realism``: the realism tool, kept under the engine's name.

The tool needs the training framework (its data pipeline, the trained generator's loader), so
it lives in :mod:`labelfree.apps.realism`; this module only dispatches there, by name, so that
the engine itself imports nothing from ``labelfree``. Installed, the same command is
``labelfree-realism``.
"""

if __name__ == "__main__":
    from tumor_synthesis._dispatch import run_framework_tool

    run_framework_tool("labelfree.apps.realism.cli")
