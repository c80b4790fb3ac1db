"""Task labels of the abdomen phantom: single-organ (0/1/2) and multi-organ (FreeTumor 0..6).

Every label of an abdomen case is derived from two maps of the case, so the labels of one
case cannot disagree with each other:

* the organ map (BTCV numbering, :data:`phantom.tissues.BTCV_LABELS`), in which a tumour
  belongs to its organ (an exophytic kidney tumour's voxels outside the kidney are given to
  that kidney, as in KiTS annotations);
* the tissue map, in which tumour voxels are :attr:`phantom.tissues.Tissue.LESION`.

Multi-organ convention (FreeTumor): 0 background, 1 liver, 2 liver tumour, 3 pancreas,
4 pancreas tumour, 5 kidney (both), 6 kidney tumour. Single-organ convention: 0 background,
1 organ, 2 tumour of that organ; all other organs are background.
"""

from __future__ import annotations

import numpy as np

from tumor_synthesis.organs import FREETUMOR_CLASS_NAMES, FREETUMOR_LABELS

from .tissues import BTCV_LABELS, Tissue

#: Organs with a tumour task in the abdomen phantom.
TASK_ORGANS = ("liver", "pancreas", "kidney")

#: BTCV organ-map codes that make up each task organ.
ORGAN_BTCV_CODES = {
    "liver": (BTCV_LABELS["liver"],),
    "pancreas": (BTCV_LABELS["pancreas"],),
    "kidney": (BTCV_LABELS["right_kidney"], BTCV_LABELS["left_kidney"]),
}

#: Multi-organ (FreeTumor) label value of each organ; its tumour is the value + 1.
MULTIORGAN_ORGAN_VALUES = {organ: organ_label for organ, organ_label, _ in FREETUMOR_LABELS}

#: Names of the multi-organ label values (as in a decathlon datalist's ``labels``).
MULTIORGAN_LABELS = dict(enumerate(FREETUMOR_CLASS_NAMES))


def _check_organ(organ: str) -> None:
    if organ not in TASK_ORGANS:
        raise ValueError(f"organ must be one of {TASK_ORGANS}, got {organ!r}")


def organ_mask(organs: np.ndarray, organ: str) -> np.ndarray:
    """Bool (H, W, D) mask of a task organ (tumour included) in a BTCV organ map."""
    _check_organ(organ)
    return np.isin(organs, ORGAN_BTCV_CODES[organ])


def multiorgan_label(organs: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """The FreeTumor multi-organ label of an abdomen case.

    Args:
        organs: (H, W, D) uint8 BTCV organ map.
        tissue: (H, W, D) uint8 :class:`phantom.tissues.Tissue` map of the same geometry.

    Returns:
        (H, W, D) uint8 label: 0 background, 1/3/5 liver/pancreas/kidney, 2/4/6 their tumours.
    """
    organs, tissue = np.asarray(organs), np.asarray(tissue)
    if organs.shape != tissue.shape:
        raise ValueError(f"organ map shape {organs.shape} differs from tissue map shape {tissue.shape}")
    lookup = np.zeros(256, dtype=np.uint8)
    for organ, value in MULTIORGAN_ORGAN_VALUES.items():
        lookup[list(ORGAN_BTCV_CODES[organ])] = value
    label = lookup[organs]
    # A tumour voxel of a task organ moves from the organ's value to the tumour value.
    label[(tissue == Tissue.LESION) & (label > 0)] += 1
    return label


def single_organ_label(multiorgan: np.ndarray, organ: str) -> np.ndarray:
    """The single-organ label (0 background, 1 organ, 2 tumour) of ``organ`` in a multi-organ label.

    Args:
        multiorgan: (H, W, D) FreeTumor label (values 0..6).
        organ: ``"liver"``, ``"pancreas"`` or ``"kidney"``.

    Returns:
        (H, W, D) uint8 label with values 0/1/2.
    """
    _check_organ(organ)
    value = MULTIORGAN_ORGAN_VALUES[organ]
    lookup = np.zeros(256, dtype=np.uint8)
    lookup[value], lookup[value + 1] = 1, 2
    return lookup[np.asarray(multiorgan, dtype=np.uint8)]
