"""Output folders checked before the work: they can be created and written, or one line says why not.

A command that finds out only at its first write that its output folder cannot exist (a
parent that is a file), is read-only or sits on a full disk has already spent its minutes
(or hours) of caching, training or inference. Every command line therefore calls
:func:`check_output_dir` (or :func:`check_output_file`) on each output flag right after
checking its flags, before any scan is read. A probe file is written and removed in the
folder, or, when the folder does not exist yet, in its nearest existing parent (where
``mkdir`` would write): nothing is left behind, so a run refused later for bad input
leaves no empty folder. ``create=True`` creates the folder as well. A failure raises
:class:`~labelfree.io.atomic.OutputWriteError`, e.g.::

    --logdir runs/x: cannot create folder: its parent runs is a file
    --save_dir outs/run/0.5/pred: cannot create folder in outs: Permission denied

which every command prints as one line (``labelfree.runtime.cli_errors.exits_on``). A disk
that fills up later is caught by the writes themselves (:mod:`labelfree.io.atomic`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from labelfree.io.atomic import OutputWriteError, first_file_on_path, os_error_reason

#: Name prefix of the probe file (hidden; removed at once).
PROBE_PREFIX = ".labelfree-write-probe."


def check_output_dir(path: str | os.PathLike, flag: str | None = None, create: bool = False) -> Path:
    """Check that the folder ``path`` can be created (when missing) and written; create it with ``create``.

    Args:
        path: the output folder.
        flag: the command-line flag it comes from (e.g. ``"--logdir"``), for the message.
        create: create the folder (and its parents) too; otherwise nothing is created.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        OutputWriteError: the folder cannot be created (a component is a file, permissions)
            or a file cannot be written in it (read-only, disk full, quota).
    """
    path = Path(path)
    _check_folder(path, f"{flag} {path}" if flag else f"output folder {path}", "folder", create)
    return path


def check_output_file(path: str | os.PathLike, flag: str | None = None, create: bool = False) -> Path:
    """Check that the file ``path`` can be written: ``path`` is no folder, its folder passes :func:`check_output_dir`.

    Raises:
        OutputWriteError: ``path`` is an existing folder, or its folder cannot be created or written.
    """
    path = Path(path)
    label = f"{flag} {path}" if flag else f"output file {path}"
    if path.is_dir():
        raise OutputWriteError(path, f"{label}: is a folder, not a file")
    _check_folder(path.parent, label, f"folder {path.parent}", create)
    return path


def _check_folder(folder: Path, label: str, what: str, create: bool) -> None:
    """Refuse a component that is a file, create ``folder`` if asked, write and remove a probe file."""
    blocker = first_file_on_path(folder)
    if blocker is not None:
        reason = "it is a file" if blocker == folder else f"its parent {blocker} is a file"
        raise OutputWriteError(folder, f"{label}: cannot create {what}: {reason}")
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputWriteError(folder, f"{label}: cannot create {what}: {os_error_reason(e, folder)}") from e
    existing = next(p for p in [folder, *folder.parents] if p.is_dir())  # "." or "/" at the latest
    try:
        fd, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=existing)
        try:
            os.write(fd, b"probe\n")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        where = f"write in {what}" if existing == folder else f"create {what} in {existing}"
        raise OutputWriteError(folder, f"{label}: cannot {where}: {os_error_reason(e, existing)}") from e
