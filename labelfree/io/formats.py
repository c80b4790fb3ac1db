"""Scan formats by name: which files are scans, of which format, and how they are named.

Decided from paths alone, never by opening a file (a datalist check can name a missing
file's format). :mod:`labelfree.io.readers` reads them; :mod:`labelfree.io.image_reader` is
the MONAI reader class the pipelines load with.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: Format name -> file name endings (checked in this order; ``.seg.nrrd`` is an ``.nrrd``).
SUFFIXES = {
    "nifti": (".nii.gz", ".nii"),
    "nrrd": (".seg.nrrd", ".nrrd"),
    "metaimage": (".mhd", ".mha"),
}
#: The name of a DICOM series: a folder holding its slices.
DICOM = "dicom"
FORMATS = (*SUFFIXES, DICOM)


class ReaderError(ValueError):
    """A path is not in a supported format, or cannot be read as a 3D volume."""


def image_format(path: str | os.PathLike) -> str | None:
    """``"nifti"``, ``"nrrd"``, ``"metaimage"``, ``"dicom"`` (a folder) or ``None`` (unsupported).

    Decided from the name (and, for a folder, from its being a folder), never by opening
    the file, so that a datalist check can name a missing file's format.
    """
    name = os.fspath(path)
    if os.path.isdir(name):
        return DICOM
    lower = name.lower()
    for fmt, suffixes in SUFFIXES.items():
        if lower.endswith(suffixes):
            return fmt
    return None


def case_name(path: str | os.PathLike) -> str:
    """File name without its format suffix: ``liver_3.nii.gz`` -> ``liver_3``, ``LNDb-0001.mhd``
    -> ``LNDb-0001``, ``CTChest4.nrrd`` -> ``CTChest4``; a DICOM folder -> the folder's name."""
    name = Path(path).name
    lower = name.lower()
    for suffixes in SUFFIXES.values():
        for suffix in suffixes:
            if lower.endswith(suffix):
                return name[: -len(suffix)]
    return name


def path_exists(path: str | os.PathLike) -> bool:
    """A file, or a DICOM folder that holds at least one file."""
    p = Path(path)
    if p.is_dir():
        return any(child.is_file() for child in p.iterdir())
    return p.is_file()


def is_dicom_file(path: Path) -> bool:
    """DICOM Part 10 file: the magic ``DICM`` after the 128-byte preamble."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """Every scan in ``folder``: files of a supported format, and sub-folders holding DICOM slices.

    Hidden files (macOS ``._x.nii.gz`` resource forks) are left out; the ``.raw`` / ``.zraw``
    data files of MetaImage headers are not scans of their own. Sorted naturally
    (``case_2`` before ``case_10``).
    """
    folder = Path(folder)
    found = []
    for p in folder.iterdir():
        if p.name.startswith("."):
            continue
        if p.is_file() and image_format(p) is not None:
            found.append(p)
        elif p.is_dir() and any(is_dicom_file(c) for c in sorted(p.iterdir())[:5] if c.is_file()):
            found.append(p)
    return sorted(found, key=lambda p: natural_key(p.name))


def supported_text() -> str:
    return ", ".join(s for suffixes in SUFFIXES.values() for s in suffixes) + ", or a folder of DICOM slices"


def natural_key(text: str) -> tuple:
    """Sort key that orders ``liver_2`` before ``liver_10``."""
    return tuple(int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", text))


def checked_format(path) -> str:
    fmt = image_format(path)
    if fmt is None:
        raise ReaderError(f"{path}: not a supported scan (supported: {supported_text()})")
    if not path_exists(path):
        raise ReaderError(f"{path}: {'empty DICOM folder' if fmt == DICOM else 'file not found'}")
    return fmt
