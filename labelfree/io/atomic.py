"""Atomic file output: every file the project writes goes through here.

A file is written to a temporary sibling in the same directory and then renamed over
its destination (``os.replace`` is atomic on POSIX), so a crash or a kill in the middle
of a write never leaves a truncated file and never destroys the previous good copy.

A write that fails (disk full, quota, ``ulimit -f``, permissions, a parent that is a file)
raises :class:`OutputWriteError`: one line naming the destination and the cause in the
operating system's words ("No space left on device", "File too large"), after the
temporary file is deleted; the previous file at the destination is untouched. Every
command-line tool prints it as ``error: <message>`` (``labelfree.runtime.cli_errors``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


class OutputWriteError(Exception):
    """An output file or folder could not be written; the message names it and the cause.

    Attributes:
        path: the destination (file or folder) that could not be written.
    """

    def __init__(self, path: str | os.PathLike, message: str) -> None:
        super().__init__(message)
        self.path = Path(path)

    def __reduce__(self):  # pickled whole from worker processes (the default would drop ``path``)
        return type(self), (self.path, str(self))


def os_error_reason(error: OSError, path: str | os.PathLike) -> str:
    """Why an operation on ``path`` failed, in words: the OS's text, or which part of the path is a file.

    ``mkdir`` and ``open`` below a path component that is a regular file fail with
    ``ENOTDIR`` / ``EEXIST``, whose texts ("Not a directory", "File exists") do not say
    which component is meant; the first such component is named instead.
    """
    if error.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = first_file_on_path(path)
        if blocker is not None:
            return "it is a file" if blocker == Path(path) else f"its parent {blocker} is a file"
    return error.strerror or str(error)


def first_file_on_path(path: str | os.PathLike) -> Path | None:
    """The first component of ``path`` (from the root down, ``path`` included) that exists and is not a folder."""
    path = Path(path)
    for candidate in [*reversed(path.parents), path]:
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return None


def write_error(path: str | os.PathLike, error: OSError, earlier_kept: bool) -> OutputWriteError:
    """The :class:`OutputWriteError` of a failed write of the file ``path``."""
    kept = "; the earlier file is kept unchanged" if earlier_kept else ""
    return OutputWriteError(path, f"cannot write {path}: {os_error_reason(error, path)}{kept}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    Args:
        path: final destination. Its parent directory is created if needed.
        suffix: suffix of the temporary file (some writers, e.g. nibabel, pick the
            format from the extension). Defaults to the destination's full suffix.

    Raises:
        OutputWriteError: creating the folder or the temporary file, writing it (an
            ``OSError`` inside the ``with`` block) or renaming it failed. The temporary file
            is gone and the file at ``path`` is as it was.
    """
    path = Path(path)
    earlier = path.is_file()
    if suffix is None:
        suffix = "".join(path.suffixes)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise write_error(path, e, earlier) from e
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates the file 0600; give the result the permissions a plain open() would have.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except OSError as e:
        raise write_error(path, e, earlier) from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


#: Name of the temporary file of :func:`atomic_path`: ``.<destination>.<8 random chars>.tmp<suffix>``.
_TEMP_NAME = re.compile(r"^\.(?P<destination>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>(\.[A-Za-z0-9]+)*)$")


def remove_stale_temp_files(folder: str | os.PathLike | None) -> list[Path]:
    """Delete the temporary files that interrupted atomic writes left in ``folder``.

    A SIGKILL (or power loss) during a write skips :func:`atomic_path`'s clean-up, and its
    hidden temporary file (``.model_final.pt.x1y2z3ab.tmp.pt``, possibly 0 bytes or a
    partial checkpoint) would stay for good. Call this when a run starts in a folder where
    no other process is writing. Only names of that exact pattern are touched, in
    ``folder`` itself (not below it).

    Returns:
        The files removed.
    """
    if folder is None or not Path(folder).is_dir():
        return []
    removed = []
    for path in Path(folder).iterdir():
        if _TEMP_NAME.match(path.name) and path.is_file() and not path.is_symlink():
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed.append(path)
    return removed


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically and return the path."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def save_nifti_atomic(array: np.ndarray, affine: np.ndarray, path: str | os.PathLike, dtype=None, header=None) -> Path:
    """Save a (H, W, D) array as NIfTI atomically.

    Args:
        array: voxel data, (H, W, D) in the order of ``affine``'s columns.
        affine: 4x4 voxel-to-world (RAS+ mm) matrix; its column norms are the voxel spacing.
        path: destination, ``.nii`` or ``.nii.gz``.
        dtype: on-disk data type (e.g. ``np.int16`` for HU images, ``np.uint8`` for labels).
        header: optional nibabel header to start from (keeps e.g. descriptions of a source file).
    """
    import nibabel as nib

    data = np.asarray(array)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    img = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64), header=header)
    img.set_data_dtype(data.dtype)
    # qform and sform both carry the affine, so every viewer places the volume identically.
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)


def save_torch_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically: the previous file survives a crash mid-write.

    Raises:
        OutputWriteError: the write failed (see :func:`atomic_path`).
    """
    import torch

    with atomic_path(path, suffix=".pt") as tmp:
        # Through a Python file object: given a path, torch's zip writer reports a failed write as
        # "[enforce fail at inline_container.cc ...]" and the OS's reason is lost; given a file,
        # the OSError of file.write stays attached to torch's RuntimeError.
        try:
            with open(tmp, "wb") as file:
                torch.save(obj, file)
        except RuntimeError as e:
            cause = _os_error_behind(e)
            if cause is None:
                raise
            raise OSError(cause.errno, cause.strerror, str(tmp)) from e
    return Path(path)


def _os_error_behind(error: BaseException) -> OSError | None:
    """The ``OSError`` an exception was raised from or while handling, if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
