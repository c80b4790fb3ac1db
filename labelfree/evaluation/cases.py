"""The cases of an evaluation: a datalist's ``validation`` list, or every scan of a folder.

Shared by ``validation.py`` (which segments them) and ``labelfree-score`` (which scores the
predictions of the labelled ones). It reads no image and imports neither torch nor MONAI,
so the scorer stays light.
"""

from __future__ import annotations

import os
from pathlib import Path

from labelfree.data.datalist import DatalistError, check_datalist_files, load_datalist
from labelfree.io.formats import case_name, list_image_files


def evaluation_cases(json_dir: str | os.PathLike | None = None, val_dir: str | os.PathLike | None = None,
                     images: str | os.PathLike | None = None) -> list[dict]:
    """Cases to evaluate: ``{"image", "name"[, "label"]}`` with absolute paths, checked to exist.

    Args:
        json_dir: a datalist JSON; its ``validation`` list is taken.
        val_dir: the root its relative paths are relative to.
        images: instead of a datalist, a folder: every scan in it (NIfTI, NRRD, MetaImage
            files and DICOM sub-folders), without labels.

    Raises:
        DatalistError: no input given (or both), a missing or unreadable file (all listed),
            two cases with the same name. (Shapes, affines and contents are checked by
            ``labelfree.data.preflight`` once the organ convention is known.)
    """
    if images and json_dir:
        raise DatalistError("give either --json_dir (datalist) or --images DIR, not both")
    if images:
        folder = Path(images)
        if not folder.is_dir():
            raise DatalistError(f"--images {folder}: not a folder")
        items = [{"image": str(p.absolute())} for p in list_image_files(folder)]
        if not items:
            raise DatalistError(f"--images {folder}: no scan found (NIfTI, NRRD, MetaImage or DICOM sub-folders)")
    elif json_dir:
        items = load_datalist(json_dir, "validation", val_dir)
        if not items:
            raise DatalistError(f"datalist {json_dir} has an empty 'validation' list")
    else:
        raise DatalistError("give --json_dir (a datalist) or --images DIR")
    check_datalist_files(items, what=f"validation list of {json_dir or images}")

    names: dict[str, str] = {}
    problems = []
    for item in items:
        item["name"] = case_name(item["image"])
        if item["name"] in names:
            problems.append(f"two cases named {item['name']}: {names[item['name']]} and {item['image']}")
        names[item["name"]] = item["image"]
        if not item.get("label"):
            item.pop("label", None)
    if problems:
        raise DatalistError(f"{len(problems)} problem(s) with the cases:\n  " + "\n  ".join(problems))
    return items
