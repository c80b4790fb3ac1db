"""MONAI decathlon datalists: ``{"training": [...], "validation": [...]}``.

Each entry is a dict with an ``"image"`` and (optionally) a ``"label"`` path. As in the
original project, training paths are relative to ``--train_dir`` and validation paths to
``--val_dir``; absolute paths are kept as they are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

from labelfree.data.case_geometry import PATH_KEYS, case_geometry


class DatalistError(ValueError):
    """A datalist or one of the files it names is missing, unreadable or malformed."""


def read_datalist_json(json_path: str | os.PathLike) -> dict:
    """Read a decathlon datalist JSON file, with a clear error naming the file."""
    json_path = Path(json_path)
    if not json_path.is_file():
        raise DatalistError(f"datalist not found: {json_path}")
    try:
        # UTF-8 whatever the locale: JSON is UTF-8 (RFC 8259), and a datalist written on one
        # machine must read the same on another.
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
    except UnicodeDecodeError as e:
        raise DatalistError(f"datalist {json_path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                            f"{e.start}); save it as UTF-8 JSON") from e
    except json.JSONDecodeError as e:
        raise DatalistError(f"datalist {json_path} is not valid JSON: {e}") from e
    except OSError as e:
        raise DatalistError(f"datalist {json_path} cannot be read: {e.strerror or e}") from e
    if not isinstance(data, dict):
        raise DatalistError(f"datalist {json_path} must hold a JSON object with 'training'/'validation' lists")
    return data


def load_datalist(json_path: str | os.PathLike, split: str, base_dir: str | os.PathLike | None) -> list[dict]:
    """Return the entries of ``split`` with paths resolved against ``base_dir``.

    Args:
        json_path: the datalist file.
        split: ``"training"`` or ``"validation"`` (any key of the JSON object).
        base_dir: directory that relative paths are relative to (``--train_dir`` for
            training, ``--val_dir`` for validation). ``None`` keeps relative paths relative
            to the current directory.

    Returns:
        A list of dicts; path keys (``image``, ``label``) hold absolute path strings, other
        keys are copied unchanged. Entries may be plain strings (image only).
    """
    data = read_datalist_json(json_path)
    if split not in data:
        raise DatalistError(f"datalist {json_path} has no '{split}' list (keys: {sorted(data)})")
    entries = data[split]
    if not isinstance(entries, list):
        raise DatalistError(f"datalist {json_path}: '{split}' must be a list")
    base = Path(base_dir) if base_dir is not None else Path(".")
    resolved = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"image": entry}
        if not isinstance(entry, dict) or "image" not in entry:
            raise DatalistError(f"datalist {json_path}: entry {i} of '{split}' has no 'image' path")
        item = dict(entry)
        for key in PATH_KEYS:
            if key in item and item[key] is not None:
                p = Path(item[key])
                item[key] = str((p if p.is_absolute() else base / p).absolute())
        resolved.append(item)
    return resolved


def find_unreadable_files(items: Iterable[dict], keys: Sequence[str] = PATH_KEYS) -> list[str]:
    """List every problem with the files that ``items`` name, one line each.

    A file is a problem when it does not exist (a DICOM series: an empty folder), is not
    in a supported format, or is a NIfTI file whose header nibabel cannot read. Only headers
    are read (once per file: :func:`labelfree.data.case_geometry.case_geometry`, which the
    pre-flight then reuses), so this stays fast for hundreds of cases.
    """
    return [line for item in items for line in case_geometry(item, keys).file_problems()]


def check_datalist_files(items: Iterable[dict], what: str = "datalist", keys: Sequence[str] = PATH_KEYS) -> None:
    """Raise one :class:`DatalistError` listing every missing or unreadable file."""
    problems = find_unreadable_files(list(items), keys)
    if problems:
        lines = "\n  ".join(problems)
        raise DatalistError(f"{len(problems)} problem(s) with the files of the {what}:\n  {lines}")
