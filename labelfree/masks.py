"""Binary-mask geometry shared by label conversion, post-processing and metrics.

Bounding boxes, connected components and the largest component of (H, W, D) boolean masks,
and the check of a voxel spacing in mm. Pure numpy / scipy functions, imported by the data,
inference and evaluation layers alike (so none of them imports another for these).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage


def check_spacing(spacing_mm: Sequence[float], ndim: int) -> tuple[float, ...]:
    """The spacing as a tuple of ``ndim`` positive floats (mm), or a ``ValueError``."""
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != ndim or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be {ndim} positive finite values in mm, got {spacing_mm}")
    return spacing


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding every ``True`` voxel, grown by ``margin`` voxels.

    Args:
        mask: boolean array of any dimension.
        margin: voxels added on each side, clipped to the array.

    Returns:
        One slice per axis, or ``None`` when the mask is empty.
    """
    slices = []
    for axis in range(mask.ndim):
        other_axes = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(np.any(mask, axis=other_axes))
        if hits.size == 0:
            return None
        lo = max(int(hits[0]) - margin, 0)
        hi = min(int(hits[-1]) + 1 + margin, mask.shape[axis])
        slices.append(slice(lo, hi))
    return tuple(slices)


def union_bounding_box(*masks: np.ndarray, margin: int = 1) -> tuple[slice, ...] | None:
    """:func:`bounding_box` of the union of same-shaped masks (``None`` if all are empty)."""
    union = masks[0].copy()
    for m in masks[1:]:
        union |= m
    return bounding_box(union, margin)


def label_components(mask: np.ndarray, connectivity: int = 3) -> tuple[np.ndarray, int]:
    """Connected components of a boolean mask.

    Args:
        mask: boolean array (H, W, D).
        connectivity: 1 (faces, 6-neighbourhood), 2 (+edges, 18) or 3 (+corners, 26).

    Returns:
        ``(labels, n)``: an int32 array with components numbered 1..n (0 outside), and n.
    """
    structure = ndimage.generate_binary_structure(mask.ndim, connectivity)
    labels, n = ndimage.label(mask, structure=structure, output=np.int32)
    return labels, int(n)


def largest_component(mask: np.ndarray, connectivity: int = 3, count: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the largest connected component of ``mask`` (empty stays empty).

    Args:
        mask: boolean array (H, W, D).
        connectivity: 1 (6-neighbourhood), 2 (18) or 3 (26).
        count: optional boolean array; when given, "largest" means holding the most
            ``count`` voxels (e.g. the most organ voxels among organ-plus-tumor
            components, so that a big false tumor blob cannot outvote the organ).
    """
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=bool)
    box = bounding_box(mask)
    if box is None:
        return out
    labels, n = label_components(mask[box], connectivity)
    if n <= 1:
        out[box] = labels > 0
        return out
    counted = labels if count is None else labels[np.asarray(count, dtype=bool)[box]]
    sizes = np.bincount(counted.ravel(), minlength=n + 1)
    sizes[0] = 0
    out[box] = labels == int(np.argmax(sizes))
    return out
