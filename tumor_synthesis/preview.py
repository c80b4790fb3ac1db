"""``python -m tumor_synthesis.preview``: PNG and HTML previews of synthetic tumors, kept under the engine's name.

The tool reads scans through the framework's readers, so it lives in :mod:`labelfree.apps.preview`;
this module only dispatches there, by name, so that the engine itself imports nothing from
``labelfree``. Installed, the same command is ``labelfree-preview``.
"""

if __name__ == "__main__":
    from tumor_synthesis._dispatch import run_framework_tool

    run_framework_tool("labelfree.apps.preview")
