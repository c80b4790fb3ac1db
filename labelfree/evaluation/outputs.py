"""The output folder of ``validation.py``: refuse to mix two evaluations in one folder.

``<save_dir>/<run>/<overlap>/`` holds ``pred/<case>.nii.gz``, ``metrics.csv`` and
``summary.json``. Evaluating another datalist into a folder that already holds results would
leave the earlier predictions in ``pred/`` beside the new ones while ``metrics.csv`` lists
only the new cases. So an occupied folder is refused, and ``--overwrite`` first deletes the
earlier results (only those files: predictions, metrics.csv, summary.json), so that
``metrics.csv`` and ``pred/`` always describe the same cases.
"""

from __future__ import annotations

import os
from pathlib import Path

from labelfree.io.atomic import remove_stale_temp_files

PRED_DIR = "pred"
RESULT_FILES = ("metrics.csv", "summary.json")
PREDICTION_SUFFIXES = (".nii.gz", ".nii")


def earlier_results(out_dir: str | os.PathLike) -> list[Path]:
    """Files of an earlier evaluation in ``out_dir``: predictions, metrics.csv, summary.json."""
    out_dir = Path(out_dir)
    found = [out_dir / name for name in RESULT_FILES if (out_dir / name).is_file()]
    pred = out_dir / PRED_DIR
    if pred.is_dir():
        found += sorted(p for p in pred.iterdir() if p.is_file() and p.name.endswith(PREDICTION_SUFFIXES)
                        and not p.name.startswith("."))
    return found


def occupied_message(out_dir: str | os.PathLike) -> str | None:
    """Why ``out_dir`` cannot take a new evaluation without ``--overwrite``, or ``None``."""
    found = earlier_results(out_dir)
    if not found:
        return None
    n_pred = sum(p.parent.name == PRED_DIR for p in found)
    others = [p.name for p in found if p.parent.name != PRED_DIR]
    held = ", ".join(([f"{n_pred} prediction(s) in {PRED_DIR}/"] if n_pred else []) + others)
    return (f"output folder {out_dir} already holds an earlier evaluation ({held}); give --overwrite to delete it "
            f"and write the new one, or another --save_dir")


def clear_earlier_results(out_dir: str | os.PathLike) -> int:
    """Delete the earlier evaluation in ``out_dir`` (and stale temporary files); return the count removed."""
    found = earlier_results(out_dir)
    for path in found:
        path.unlink(missing_ok=True)
    remove_stale_temp_files(out_dir)
    remove_stale_temp_files(Path(out_dir) / PRED_DIR)
    return len(found)
