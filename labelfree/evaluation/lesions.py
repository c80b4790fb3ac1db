"""Lesion-level detection: per-lesion sensitivity, false-positive lesions, radius bins.

A *lesion* is a connected component of a tumor mask (26-connectivity by default: voxels
touching by a face, an edge or a corner belong to the same lesion). A reference lesion
is *detected* when at least one voxel of it is predicted as tumor, i.e. when any
predicted component overlaps it. A predicted component overlapping no reference lesion
is a *false-positive lesion*.

A lesion's size is the radius in mm of the sphere with the same volume,
``r = (3 V / (4 pi)) ** (1/3)`` with ``V`` = voxel count x voxel volume (mm^3); lesions
are binned by that radius into [0, 5), [5, 10), [10, 15), [15, 20) and [20, inf) mm.
Sensitivity over a data set pools lesions of all cases (see :mod:`evaluation.report`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from labelfree.evaluation.metrics import mask_pair

from labelfree.masks import check_spacing, union_bounding_box
from labelfree.masks import label_components

RADIUS_BIN_EDGES_MM = (0.0, 5.0, 10.0, 15.0, 20.0, math.inf)


def radius_bin_names(edges: Sequence[float] = RADIUS_BIN_EDGES_MM) -> list[str]:
    """Column-friendly names of the radius bins, e.g. ``"r0_5"``, ``"r20_inf"``."""

    def fmt(x: float) -> str:
        return "inf" if math.isinf(x) else f"{x:g}".replace(".", "p")

    return [f"r{fmt(lo)}_{fmt(hi)}" for lo, hi in zip(edges[:-1], edges[1:])]


def equivalent_sphere_radius_mm(n_voxels: np.ndarray | int, spacing_mm: Sequence[float]) -> np.ndarray:
    """Radius in mm of the sphere whose volume equals ``n_voxels`` voxels of ``spacing_mm``."""
    volume_mm3 = np.asarray(n_voxels, dtype=np.float64) * float(np.prod(spacing_mm))
    return np.cbrt(3.0 * volume_mm3 / (4.0 * math.pi))



@dataclass(frozen=True)
class LesionMatch:
    """The lesions of one case, matched: what :func:`detect_lesions` counts, lesion by lesion.

    Attributes:
        reference: int32 (H, W, D) reference lesions numbered 1..n (0 outside).
        predicted: int32 (H, W, D) predicted components numbered 1..m (0 outside).
        detected: (n,) bool, reference lesion i + 1 overlaps a predicted component.
        false_positive: (m,) bool, predicted component j + 1 overlaps no reference lesion.
        reference_radius_mm, predicted_radius_mm: (n,) and (m,) equivalent-sphere radii in mm.
        reference_voxels, predicted_voxels: (n,) and (m,) voxel counts.
    """

    reference: np.ndarray
    predicted: np.ndarray
    detected: np.ndarray
    false_positive: np.ndarray
    reference_radius_mm: np.ndarray
    predicted_radius_mm: np.ndarray
    reference_voxels: np.ndarray
    predicted_voxels: np.ndarray


def match_lesions(pred: np.ndarray, ref: np.ndarray, spacing_mm: Sequence[float], connectivity: int = 3) -> LesionMatch:
    """Number the lesions of both masks and match them by overlap (the rule of this module).

    Args:
        pred: predicted tumor mask (H, W, D).
        ref: reference tumor mask of the same shape.
        spacing_mm: voxel size in mm along the three array axes.
        connectivity: neighbourhood defining a lesion (see :func:`label_components`).
    """
    pred, ref = mask_pair(pred, ref)
    spacing = check_spacing(spacing_mm, pred.ndim)
    ref_labels, n_ref = label_components(ref, connectivity)
    pred_labels, n_pred = label_components(pred, connectivity)
    detected = np.zeros(n_ref + 1, dtype=bool)
    detected[np.unique(ref_labels[pred])] = True
    touching = np.zeros(n_pred + 1, dtype=bool)
    touching[np.unique(pred_labels[ref])] = True
    ref_voxels = np.bincount(ref_labels.ravel(), minlength=n_ref + 1)[1:]
    pred_voxels = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)[1:]
    return LesionMatch(ref_labels, pred_labels, detected[1:], ~touching[1:],
                       equivalent_sphere_radius_mm(ref_voxels, spacing),
                       equivalent_sphere_radius_mm(pred_voxels, spacing), ref_voxels, pred_voxels)


def radius_bin_index(radius_mm: np.ndarray, radius_bin_edges_mm: Sequence[float] = RADIUS_BIN_EDGES_MM) -> np.ndarray:
    """Bin of each radius: bin i holds ``edges[i] <= r < edges[i + 1]`` (names: :func:`radius_bin_names`)."""
    edges = np.asarray(radius_bin_edges_mm, dtype=np.float64)
    return np.searchsorted(edges[1:-1], np.asarray(radius_mm, dtype=np.float64), side="right")


def detect_lesions(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing_mm: Sequence[float],
    connectivity: int = 3,
    radius_bin_edges_mm: Sequence[float] = RADIUS_BIN_EDGES_MM,
) -> dict[str, int]:
    """Count reference lesions, detected lesions and false-positive lesions of one case.

    Args:
        pred: predicted tumor mask (H, W, D).
        ref: reference tumor mask of the same shape.
        spacing_mm: voxel size in mm along the three array axes.
        connectivity: neighbourhood defining a lesion (see :func:`label_components`).
        radius_bin_edges_mm: increasing bin edges in mm of the equivalent-sphere radius.

    Returns:
        A dict of counts: ``lesions`` (reference lesions), ``detected``,
        ``predicted_lesions``, ``false_positives``, and per radius bin ``lesions_<bin>``
        and ``detected_<bin>`` (bin names from :func:`radius_bin_names`).
    """
    pred, ref = mask_pair(pred, ref)
    spacing = check_spacing(spacing_mm, pred.ndim)
    names = radius_bin_names(radius_bin_edges_mm)
    counts = {"lesions": 0, "detected": 0, "predicted_lesions": 0, "false_positives": 0}
    for name in names:
        counts[f"lesions_{name}"] = 0
        counts[f"detected_{name}"] = 0

    box = union_bounding_box(pred, ref, margin=1)
    if box is None:
        return counts
    match = match_lesions(pred[box], ref[box], spacing, connectivity)
    bin_index = radius_bin_index(match.reference_radius_mm, radius_bin_edges_mm)

    counts["lesions"] = int(match.detected.size)
    counts["detected"] = int(np.count_nonzero(match.detected))
    counts["predicted_lesions"] = int(match.false_positive.size)
    counts["false_positives"] = int(np.count_nonzero(match.false_positive))
    for i, name in enumerate(names):
        in_bin = bin_index == i
        counts[f"lesions_{name}"] = int(np.count_nonzero(in_bin))
        counts[f"detected_{name}"] = int(np.count_nonzero(match.detected & in_bin))
    return counts
