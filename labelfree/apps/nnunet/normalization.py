"""HU <-> nnU-Net v2's CT normalisation, and the axes of nnU-Net's preprocessed arrays.

nnU-Net's preprocessing of a ``"CT"`` channel (``CTNormalization``) clips the image to the
dataset's foreground 0.5 and 99.5 percentiles (``lower``, ``upper``, in HU) and z-scores it
with the foreground mean and std (HU): ``x = (clip(hu, lower, upper) - mean) / std``. Values
inside the window convert back exactly, ``hu = x * std + mean``; what preprocessing clipped
stays at the window's edge. The four numbers are in the plans
(``foreground_intensity_properties_per_channel["0"]``).

A painted patch is converted to HU, painted, clipped to the same window and normalised
again, so the network sees a synthetic tumor exactly as nnU-Net would have preprocessed it
had it been in the scan. One consequence to know: a fingerprint taken on healthy scans has
the organ as its only foreground, so the window is the organ's intensity range and darker
tumors are clipped at ``lower`` (their texture is lost below it) during training and, by
the same plans, at inference. :func:`widen_ct_window` lowers ``lower`` in a plans file
before preprocessing to keep them (``labelfree-nnunet widen-window``; see the README).

Axes: nnU-Net's readers return arrays with the voxel axes reversed (reader axis ``r`` is
voxel axis ``2 - r``), and the planner transposes them by ``transpose_forward``. The
synthesis engine needs the inferior-superior axis last; :func:`superior_axis` finds it from
a case's stored geometry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labelfree.io.atomic import write_json_atomic


class NnunetSetupError(ValueError):
    """The plans or the preprocessed data do not fit the on-the-fly synthesis (names the file)."""


@dataclass(frozen=True)
class CTWindow:
    """nnU-Net's CT normalisation of one channel (all in HU)."""

    mean: float
    std: float
    lower: float
    upper: float

    @classmethod
    def from_plans(cls, plans: dict, configuration: str, where: str = "plans") -> "CTWindow":
        """The normalisation of channel 0 of ``configuration``; it must be nnU-Net's CTNormalization."""
        try:
            schemes = plans["configurations"][configuration]["normalization_schemes"]
            props = plans["foreground_intensity_properties_per_channel"]["0"]
        except KeyError as e:
            raise NnunetSetupError(f"{where}: no {e} for configuration {configuration!r}") from e
        if list(schemes) != ["CTNormalization"]:
            raise NnunetSetupError(f"{where}: configuration {configuration!r} normalises with {schemes}; synthetic "
                                   "tumors are painted in HU and need one CT channel (channel_names {'0': 'CT'})")
        return cls(float(props["mean"]), max(float(props["std"]), 1e-8), float(props["percentile_00_5"]),
                   float(props["percentile_99_5"]))

    def to_hu(self, x: np.ndarray) -> np.ndarray:
        """Normalised values -> HU (float32)."""
        return (np.asarray(x, dtype=np.float32) * np.float32(self.std) + np.float32(self.mean)).astype(np.float32)

    def from_hu(self, hu: np.ndarray) -> np.ndarray:
        """HU -> normalised values, clipped to the window first, as nnU-Net's preprocessing does."""
        clipped = np.clip(np.asarray(hu, dtype=np.float32), self.lower, self.upper)
        return ((clipped - np.float32(self.mean)) / np.float32(self.std)).astype(np.float32)


def superior_axis(properties: dict, transpose_forward, where: str = "case") -> int:
    """Axis (0, 1 or 2) of a preprocessed array that runs inferior-superior.

    Args:
        properties: a case's preprocessed properties (its ``.pkl``): ``sitk_stuff`` (SimpleITK
            reader: ``direction``, row-major 3x3) or ``nibabel_stuff`` (nibabel readers:
            ``reoriented_affine`` or ``original_affine``).
        transpose_forward: the plans' axis order of the preprocessed arrays.
    """
    if "sitk_stuff" in properties:
        directions = np.asarray(properties["sitk_stuff"]["direction"], dtype=np.float64).reshape(3, 3)
    elif "nibabel_stuff" in properties:
        stuff = properties["nibabel_stuff"]
        affine = stuff.get("reoriented_affine", stuff.get("original_affine"))
        directions = np.asarray(affine, dtype=np.float64)[:3, :3]
    else:
        raise NnunetSetupError(f"{where}: the preprocessed properties hold no image geometry "
                               "(sitk_stuff / nibabel_stuff); cannot find the inferior-superior axis")
    # Column c: world direction of voxel axis c; row 2: its superior (z) component (RAS and LPS agree).
    voxel_axis = int(np.argmax(np.abs(directions[2])))
    reader_axis = 2 - voxel_axis
    return int(list(transpose_forward).index(reader_axis))


def widen_ct_window(plans_file: str | Path, lower_hu: float) -> dict:
    """Lower the CT window's ``percentile_00_5`` of a plans file to ``lower_hu`` (never raises it).

    Run between planning and preprocessing (``nnUNetv2_plan_experiment`` then this then
    ``nnUNetv2_preprocess``), so that tumors darker than the healthy organ keep their texture.

    Returns:
        ``{"file", "old_lower", "new_lower"}``.
    """
    path = Path(plans_file)
    try:
        plans = json.loads(path.read_text())
        props = plans["foreground_intensity_properties_per_channel"]["0"]
    except (OSError, json.JSONDecodeError, KeyError) as e:
        raise NnunetSetupError(f"{path}: not an nnU-Net plans file with channel 0 intensity properties ({e})") from e
    old = float(props["percentile_00_5"])
    props["percentile_00_5"] = min(old, float(lower_hu))
    write_json_atomic(path, plans)
    return {"file": str(path), "old_lower": old, "new_lower": props["percentile_00_5"]}
