"""Tiny labelled cases on disk for the scoring tests: a label, and predictions saved in several ways.

numpy and nibabel only (no torch), so that the tests of the light scorer stay light.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (20, 18, 12)
#: RAS voxel -> world mm: anisotropic, with an origin, so that a flip or a shift shows.
RAS_AFFINE = np.array([[0.8, 0.0, 0.0, -12.0], [0.0, 0.9, 0.0, 30.0], [0.0, 0.0, 2.0, 5.0], [0.0, 0.0, 0.0, 1.0]])


def reference_and_prediction(tumors: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, D) uint8 reference and prediction: an organ block (1) with four lesions (2) and a partial prediction.

    The prediction's organ is shifted by two voxels along the first axis; it finds three of
    the four lesions (one of them only in part) and adds one false-positive lesion. Off-centre
    on every axis, so that a flipped array scores differently.
    """
    ref = np.zeros(SHAPE, np.uint8)
    ref[3:15, 2:13, 1:9] = 1
    pred = np.zeros(SHAPE, np.uint8)
    pred[5:17, 2:13, 1:9] = 1
    if tumors:
        for lo in ((4, 3, 2), (10, 3, 2), (4, 9, 5), (11, 9, 5)):
            ref[tuple(slice(a, a + 2) for a in lo)] = 2
        pred[4:6, 3:5, 2:4] = 2       # lesion 1, found
        pred[10:12, 3:5, 2:4] = 2     # lesion 2, found
        pred[11, 9, 5] = 2            # lesion 4, one voxel of it
        pred[16, 11, 7] = 2           # a false-positive lesion
    return ref, pred


def save(path: Path, array: np.ndarray, affine: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array, np.uint8), affine), str(path))
    return str(path)


def as_lps(array: np.ndarray, affine: np.ndarray = RAS_AFFINE) -> tuple[np.ndarray, np.ndarray]:
    """The same voxels stored the other way along the first two axes (an LPS-ordered file), and its affine.

    Voxel ``(i, j, k)`` of the result is voxel ``(H-1-i, W-1-j, k)`` of ``array``: the
    affine puts it at the same world point.
    """
    h, w, _ = array.shape
    flip = np.array([[-1.0, 0, 0, h - 1], [0, -1.0, 0, w - 1], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    return array[::-1, ::-1, :].copy(), affine @ flip


def as_permuted(array: np.ndarray, affine: np.ndarray = RAS_AFFINE) -> tuple[np.ndarray, np.ndarray]:
    """The same voxels with the axes stored in the order (D, H, W) and the last one flipped, and its affine."""
    d = array.shape[2]
    stored = np.transpose(array, (2, 0, 1))[::-1, :, :].copy()  # stored[p, q, r] = array[q, r, d-1-p]
    to_original = np.array([[0, 1.0, 0, 0], [0, 0, 1.0, 0], [-1.0, 0, 0, d - 1], [0, 0, 0, 1.0]])
    return stored, affine @ to_original


def shifted(affine: np.ndarray = RAS_AFFINE, voxels=(1, 0, 0)) -> np.ndarray:
    """``affine`` with its origin moved by ``voxels`` voxels (a grid shifted in world space)."""
    moved = affine.copy()
    moved[:3, 3] += affine[:3, :3] @ np.asarray(voxels, dtype=np.float64)
    return moved


def hand_dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """2 |P and R| / (|P| + |R|) of two boolean masks, written out (NaN when both are empty)."""
    total = int(pred.sum()) + int(ref.sum())
    return float("nan") if total == 0 else 2.0 * int((pred & ref).sum()) / total
