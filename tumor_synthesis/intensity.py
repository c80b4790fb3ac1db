"""Intensity model: how a tumor mask and a texture change the HU values.

Inside the organ, ``image = image + sign * texture * soft_mask * difference`` where
``soft_mask`` is the binary tumor mask blurred by a Gaussian of sigma ~ U(1, 2) mm (soft
edges) and ``difference`` ~ U(65, 145) HU, both drawn once per sample; ``sign`` is -1 for
the liver (tumors darker than the parenchyma). Voxels outside the organ never change
(except for exophytic tumors, see ``engine``).

Lung nodules use the "target" model instead (:func:`sample_target_intensity`,
:func:`target_change`): ``image = image + soft_mask * max(target - image, 0)`` with a
per-sample target HU of the drawn nodule kind, varied by the texture.

The blur is computed on cluster boxes only (see :func:`merge_boxes`), each extended by the
kernel radius; with scipy's "reflect" border this equals blurring the whole crop, as the
original does, because the mask is zero within one kernel radius of every box face that is
not a face of the crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tumor_synthesis.separable import TRUNCATE, apply_separable, blur_matrix


@dataclass(frozen=True)
class IntensityParams:
    """Per-sample intensity parameters.

    Attributes:
        difference_hu: intensity difference at full texture and full mask (HU, > 0).
        blur_sigma_mm: sigma of the edge blur (mm).
        sign: -1 darker, +1 brighter.
        kind: lesion kind of the "target" model (e.g. "solid"), else None.
        target_hu: target intensity (HU) of the "target" model, else None.
    """

    difference_hu: float
    blur_sigma_mm: float
    sign: int
    kind: str | None = None
    target_hu: float | None = None


def sample_intensity(rng: np.random.Generator, difference_hu, blur_sigma_mm, sign: int) -> IntensityParams:
    """Draw the difference and the edge blur uniformly in their ranges."""
    blur = float(rng.uniform(*blur_sigma_mm))
    difference = float(rng.uniform(*difference_hu))
    return IntensityParams(difference, blur, int(sign))


def sample_target_intensity(rng: np.random.Generator, lesion_kinds, blur_sigma_mm) -> IntensityParams:
    """Draw the edge blur, a lesion kind (by its probability) and its target HU uniformly in its range.

    ``difference_hu`` is left at 0: the change depends on each voxel's own HU.
    """
    blur = float(rng.uniform(*blur_sigma_mm))
    p = np.array([k.probability for k in lesion_kinds], dtype=np.float64)
    kind = lesion_kinds[int(rng.choice(len(lesion_kinds), p=p / p.sum()))]
    target = float(rng.uniform(*kind.hu_range))
    return IntensityParams(0.0, blur, 1, kind.name, target)


def target_change(soft: np.ndarray, texture: np.ndarray, image: np.ndarray, target_hu: float, jitter_hu: float) -> np.ndarray:
    """Change (HU, float32) that raises ``image`` towards the textured target, never lowers it.

    Args:
        soft: blurred tumor mask in [0, 1].
        texture: texture in [0, 1] on the same box.
        image: HU of the box.
        target_hu: the sample's target intensity.
        jitter_hu: the texture moves the target by up to +-``jitter_hu``.
    """
    target = np.float32(target_hu) + np.float32(jitter_hu) * (2.0 * texture - 1.0)
    return soft * np.maximum(target - image.astype(np.float32), 0.0)


def blur_sigma_vox(sigma_mm: float, spacing) -> tuple[float, float, float]:
    """Per-axis blur sigma in voxels."""
    return tuple(sigma_mm / s for s in spacing)


def blur_radius_vox(sigma_vox) -> tuple[int, int, int]:
    """Per-axis support radius of scipy's truncated Gaussian kernel (voxels)."""
    return tuple(int(TRUNCATE * s + 0.5) for s in sigma_vox)


#: Masks of at least this many voxels skip their empty lines in the first blur pass (below it
#: finding them costs more than it saves).
SPARSE_MIN_VOXELS = 500_000


def soft_mask(mask: np.ndarray, sigma_vox) -> np.ndarray:
    """Blur a bool (h, w, d) mask into a float32 field in [0, 1] (scipy, "reflect" border).

    Equal to ``scipy.ndimage.gaussian_filter`` of the mask within float32 rounding (a few
    1e-8; scipy sums in float64), with the same support: a voxel is exactly zero where scipy's
    is. One matrix product per axis (:mod:`tumor_synthesis.separable`).
    """
    import torch  # here: the scorer imports the organ profiles, which import this module, and stays free of torch

    # scipy skips an axis of a zero sigma too.
    matrices = [blur_matrix(n, sigma) if sigma > 1e-15 else None for n, sigma in zip(mask.shape, sigma_vox)]
    h, w, d = mask.shape
    lines = mask.reshape(h * w, d)
    # A cluster box of scattered tumors is mostly empty: the last axis is blurred on the
    # lines (x, y) that hold mask voxels only; the others are exactly zero.
    live = np.flatnonzero(lines.any(axis=1)) if matrices[2] is not None and mask.size >= SPARSE_MIN_VOXELS else None
    if live is None or 2 * live.size > h * w:
        return apply_separable(torch.from_numpy(mask.astype(np.float32)), matrices).numpy()
    first = torch.zeros((h * w, d), dtype=torch.float32)
    first[torch.from_numpy(live)] = apply_separable(torch.from_numpy(lines[live].astype(np.float32))[None],
                                                    [None, None, matrices[2]])[0]
    return apply_separable(first.reshape(h, w, d), [matrices[0], matrices[1], None]).numpy()


def merge_boxes(boxes: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray, list[int]]]:
    """Merge overlapping boxes until no two overlap.

    Args:
        boxes: ``(lo, hi)`` integer corner pairs, ``hi`` exclusive.

    Returns:
        ``(lo, hi, members)`` of each merged box, ``members`` the indices of the input
        boxes it covers.
    """
    merged = [(np.asarray(lo), np.asarray(hi), [i]) for i, (lo, hi) in enumerate(boxes)]
    changed = True
    while changed:
        changed = False
        out: list[tuple[np.ndarray, np.ndarray, list[int]]] = []
        for lo, hi, members in merged:
            for k, (olo, ohi, omembers) in enumerate(out):
                if np.all(lo < ohi) and np.all(olo < hi):
                    out[k] = (np.minimum(lo, olo), np.maximum(hi, ohi), omembers + members)
                    changed = True
                    break
            else:
                out.append((lo, hi, members))
        merged = out
    return merged


def apply_change(image_box: np.ndarray, organ_box: np.ndarray, change: np.ndarray) -> None:
    """Add ``change`` (HU, float32) to the organ voxels of ``image_box``, in place.

    Integer images are rounded to the nearest integer; float images keep their precision.
    Voxels with a zero change or outside ``organ_box`` are not written.
    """
    where = organ_box & (change != 0)
    if not where.any():
        return
    image_box[where] = changed_values(image_box[where], change[where])


def changed_values(values: np.ndarray, change: np.ndarray) -> np.ndarray:
    """``values`` (HU, any dtype) plus ``change`` (HU, float32), in ``values``' dtype.

    Integer images are rounded to the nearest integer and clipped to their dtype's range;
    float images keep their precision.
    """
    if np.issubdtype(values.dtype, np.floating):
        return values + change.astype(values.dtype)
    new = np.rint(values.astype(np.float32) + change)
    info = np.iinfo(values.dtype)
    return np.clip(new, info.min, info.max).astype(values.dtype)
