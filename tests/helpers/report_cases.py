"""A tiny evaluation on disk for the HTML report's tests: three cases with a missed lesion and false positives.

Scans, labels, predictions and a datalist as real NIfTI files, so that the scoring CLI scores them
and writes ``metrics.csv`` and ``report/``:

* ``liver_a`` (LPS voxel order, 1 x 1 x 2 mm): tumor 1 found, tumor 2 missed, one false positive;
* ``liver_b`` (RAS, 1.5 x 1.5 x 2 mm): one tumor, predicted exactly;
* ``liver_c`` (RAS, 0.8 x 0.8 x 2.5 mm): no tumor, one false positive.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.helpers.evaluation import save_volume

SHAPE = (40, 36, 24)
LIVER = (slice(6, 34), slice(6, 30), slice(3, 21))
#: Boxes in each case's own voxel order.
FOUND = (slice(10, 16), slice(10, 16), slice(6, 10))
MISSED = (slice(24, 30), slice(20, 26), slice(14, 18))
FALSE_POSITIVE = (slice(8, 12), slice(24, 28), slice(16, 19))
AFFINES = {
    "liver_a": np.diag([-1.0, -1.0, 2.0, 1.0]),
    "liver_b": np.diag([1.5, 1.5, 2.0, 1.0]),
    "liver_c": np.diag([0.8, 0.8, 2.5, 1.0]),
}


def _scan(seed: int) -> np.ndarray:
    """CT in HU: air, a body box (fat, -100 HU), a liver block (60 HU); 8 HU of noise."""
    rng = np.random.default_rng(seed)
    image = np.full(SHAPE, -1000.0)
    image[2:38, 2:34, :] = -100.0
    image[LIVER] = 60.0
    return (image + rng.normal(0.0, 8.0, SHAPE)).astype(np.int16)


def write_tiny_evaluation(root: Path) -> tuple[Path, Path]:
    """Write the three cases under ``root``; returns (datalist, prediction folder)."""
    entries = []
    pred_dir = root / "outs" / "run" / "0.5" / "pred"
    for seed, (name, affine) in enumerate(AFFINES.items()):
        image = _scan(seed)
        label = np.zeros(SHAPE, np.uint8)
        label[LIVER] = 1
        pred = label.copy()
        if name == "liver_a":
            for box in (FOUND, MISSED):
                label[box] = 2
                image[box] -= 40
            pred[11:16, 10:15, 6:10] = 2  # overlaps FOUND
            pred[FALSE_POSITIVE] = 2
        elif name == "liver_b":
            label[FOUND] = 2
            pred[FOUND] = 2
        else:
            pred[FALSE_POSITIVE] = 2
        save_volume(root / "data" / "img" / f"{name}.nii.gz", image, affine)
        save_volume(root / "data" / "label" / f"{name}.nii.gz", label, affine)
        save_volume(pred_dir / f"{name}.nii.gz", pred, affine)
        entries.append({"image": f"img/{name}.nii.gz", "label": f"label/{name}.nii.gz"})
    datalist = root / "data" / "fold.json"
    datalist.write_text(json.dumps({"training": [], "validation": entries}))
    return datalist, pred_dir


def ras_range(name: str, box: tuple[slice, ...], axis: int) -> range:
    """Voxel indices along RAS ``axis`` that ``box`` (in case ``name``'s own voxel order) covers."""
    flipped = AFFINES[name][axis, axis] < 0  # the test affines are diagonal
    lo, hi = box[axis].start, box[axis].stop
    return range(SHAPE[axis] - hi, SHAPE[axis] - lo) if flipped else range(lo, hi)
