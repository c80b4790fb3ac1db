"""The one header pass over a datalist: each file's geometry read once, shared by every check.

Three checks look at the headers of a datalist's files before anything is trained or
predicted: the datalist check of the command-line tools (files exist, are scans, open:
:func:`labelfree.data.datalist.check_datalist_files`), the header pass of the pre-flight
(3D, image and label on one grid: :mod:`labelfree.data.preflight`) and the data checker's
grid comparison (:func:`labelfree.data.checks.check_case`). They all consume the
:class:`CaseGeometry` of :func:`case_geometry`, so the rules (what "missing", "unreadable",
"not 3D" and "another grid" mean, and their messages) exist once.

A file's header is read once per process: the record is kept per (path, size, modification
time), because the command-line tools check the files when they load the lists and the
pre-flight screens the same files moments later. A file replaced in between is read again.

NIfTI, NRRD and MetaImage have a header read that does not read the voxel data
(``labelfree.io.readers.read_header``); the grid of a DICOM series is known once its slices
are read (the content pass of the pre-flight, :func:`labelfree.data.checks.check_case`).
A header whose voxel grid no scan can have (spacing 0, negative, NaN or infinite; a singular
affine: ``labelfree.io.readers.impossible_geometry``) is a problem of its file here, so every
tool that checks its datalist refuses it before it writes anything.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Mapping, Sequence

from labelfree.io import readers
from labelfree.io.formats import ReaderError, image_format, path_exists, supported_text

#: What a datalist entry may name.
PATH_KEYS = ("image", "label")


@dataclass(frozen=True)
class FileGeometry:
    """One file of a datalist entry as its header describes it.

    Attributes:
        key: ``"image"`` or ``"label"``.
        path: the file (or DICOM folder).
        problem: why the file cannot be used, after ``"<key> file "``: ``"missing: <path>"``,
            ``"unsupported format: <path> (supported: ...)"``, ``"unreadable: <path>
            (<error>)"`` or ``"has an impossible voxel grid: <path> (<why>)"``; ``None`` when
            the file exists and its header (NIfTI, NRRD, MetaImage) reads.
        grid: for a file whose header reads, its shape (:func:`labelfree.io.readers.grid_shape`
            of the stored one, not checked to be 3D) and voxel -> RAS+ mm affine (``array`` is
            ``None``); ``None`` otherwise (a DICOM series).
    """

    key: str
    path: str
    problem: str | None = None
    grid: readers.Volume | None = None

    @property
    def message(self) -> str | None:
        """The problem as one line naming the file: ``"label file missing: /data/x.nii.gz"``."""
        return None if self.problem is None else f"{self.key} file {self.problem}"

    @property
    def not_3d(self) -> str | None:
        """``"image is not 3D: shape (32, 32) (<path>)"`` when the header's grid is not 3D."""
        if self.grid is None or len(self.grid.shape) == 3:
            return None
        return f"{self.key} is not 3D: shape {self.grid.shape} ({self.path})"


@dataclass(frozen=True)
class CaseGeometry:
    """The headers of one datalist entry: its image and (optionally) its label.

    Attributes:
        files: one :class:`FileGeometry` per path the entry names, in :data:`PATH_KEYS` order.
    """

    files: tuple[FileGeometry, ...]

    def file(self, key: str) -> FileGeometry | None:
        return next((f for f in self.files if f.key == key), None)

    def file_problems(self) -> list[str]:
        """Files missing, of an unsupported format, with an unreadable header or an impossible grid; one line each."""
        return [f.message for f in self.files if f.message]

    def grid_problems(self) -> list[str]:
        """A file not 3D, or a label not on its image's voxel grid (only what the headers show)."""
        problems = [f.not_3d for f in self.files if f.not_3d]
        image, label = self.file("image"), self.file("label")
        if problems or image is None or label is None or image.grid is None or label.grid is None:
            return problems
        return grid_mismatch(image.grid, label.grid, label.path)

    def problems(self) -> list[str]:
        """Everything the headers show: :meth:`file_problems`, then :meth:`grid_problems`."""
        return self.file_problems() + self.grid_problems()


def grid_mismatch(image: readers.Volume, label: readers.Volume, label_path) -> list[str]:
    """Lines saying how a label's grid differs from its image's (empty: the same grid).

    Shapes first: two grids of different shapes differ in their affines for no useful reason.
    """
    comparison = readers.compare_grids(image, label)
    if not comparison.same_shape:
        return [f"shape mismatch: image {comparison.shape_a} vs label {comparison.shape_b} ({label_path})"]
    if not comparison.same_affine:
        return [f"affine mismatch: image and label differ by up to {comparison.affine_difference_mm:.4g} mm "
                f"({label_path})"]
    return []


def impossible_grid(path, error: readers.ImpossibleGeometryError) -> str:
    """The problem line of a file whose grid no scan can have, after ``"<key> file "``."""
    return f"has an impossible voxel grid: {path} ({error.reason})"


def case_geometry(entry: Mapping, keys: Sequence[str] = PATH_KEYS) -> CaseGeometry:
    """The :class:`CaseGeometry` of a datalist entry (its ``keys`` that are given and not ``None``)."""
    return CaseGeometry(tuple(file_geometry(key, entry[key]) for key in keys if entry.get(key) is not None))


def file_geometry(key: str, path: str | os.PathLike) -> FileGeometry:
    """The :class:`FileGeometry` of one file, its header read at most once per version of the file."""
    path = os.fspath(path)
    try:
        stat = os.stat(path)
        stamp = (stat.st_size, stat.st_mtime_ns)
    except OSError:
        stamp = None
    problem, grid = _read_file(path, stamp)
    return FileGeometry(key, path, problem, grid)


@functools.lru_cache(maxsize=65536)
def _read_file(path: str, stamp) -> tuple[str | None, readers.Volume | None]:
    # ``stamp`` (size, modification time) is only part of the cache key: a rewritten file is read again.
    if not path_exists(path):
        return f"missing: {path}", None
    if image_format(path) is None:
        return f"unsupported format: {path} (supported: {supported_text()})", None
    try:
        header = readers.read_header(path)
    except readers.ImpossibleGeometryError as e:
        return impossible_grid(path, e), None
    except readers.UnreadableError as e:
        return f"unreadable: {path} ({e.cause})", None
    except ReaderError as e:  # checked above; a file removed in between
        return f"unreadable: {e}", None
    if header is None:
        return None, None
    # The nibabel header itself is not kept: thousands of cached records stay small.
    return None, readers.Volume(None, header.affine, header.format, None, header.shape)


def clear_cache() -> None:
    """Forget every header read (tests; a long-lived process that rewrites files in place)."""
    _read_file.cache_clear()
