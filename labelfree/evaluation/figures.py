"""PNG figures of an evaluation: prediction overlays per case and bar plots per experiment arm.

Everything renders with matplotlib's Agg backend (no display needed) and is written
atomically through :mod:`labelfree.io.atomic`. Slices are shown in radiological convention, as the
phantom previews: arrays are brought to RAS voxel order first, then an axial slice has
anterior at the top and the patient's right on the viewer's left.
"""

from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage

from labelfree.io.atomic import atomic_path

#: (level, width) display window in HU of the abdomen overlays.
ABDOMEN_WINDOW = (40.0, 400.0)
#: Outline colours: organ and tumor of the reference, organ and tumor of the prediction.
REFERENCE_COLOURS = {"organ": "lime", "tumor": "yellow"}
PREDICTION_COLOURS = {"organ": "deepskyblue", "tumor": "red"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike, dpi: int) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi)
    _pyplot().close(fig)


def largest_lesion_slice(tumor_mask: np.ndarray, fallback_mask: np.ndarray | None = None) -> int:
    """Index along the last axis of the slice through the largest lesion's biggest cross-section.

    Args:
        tumor_mask: boolean (H, W, D) mask of the lesions (reference, usually).
        fallback_mask: used when ``tumor_mask`` is empty (e.g. the organ): its largest slice.

    Returns:
        A slice index in ``[0, D)``; the middle slice when both masks are empty.
    """
    tumor_mask = np.asarray(tumor_mask, dtype=bool)
    if tumor_mask.any():
        # 26-connected components, as evaluation.lesions counts lesions.
        components, n = ndimage.label(tumor_mask, structure=np.ones((3, 3, 3), dtype=bool))
        sizes = np.bincount(components.ravel(), minlength=n + 1)
        sizes[0] = 0
        largest = components == int(np.argmax(sizes))
        return int(np.argmax(largest.sum(axis=(0, 1))))
    if fallback_mask is not None and np.any(fallback_mask):
        return int(np.argmax(np.asarray(fallback_mask, dtype=bool).sum(axis=(0, 1))))
    return tumor_mask.shape[2] // 2


def largest_false_positive_slice(pred_tumor: np.ndarray, ref_tumor: np.ndarray) -> int | None:
    """Slice (last axis) through the biggest cross-section of the largest false-positive lesion.

    A false-positive lesion is a 26-connected component of ``pred_tumor`` that touches no
    voxel of ``ref_tumor`` (the rule of :mod:`evaluation.lesions`).

    Returns:
        The slice index, or ``None`` when there is no false-positive lesion.
    """
    pred_tumor, ref_tumor = np.asarray(pred_tumor, dtype=bool), np.asarray(ref_tumor, dtype=bool)
    components, n = ndimage.label(pred_tumor, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return None
    sizes = np.bincount(components.ravel(), minlength=n + 1)
    sizes[np.unique(components[ref_tumor])] = 0  # components touching a reference lesion (and background)
    sizes[0] = 0
    if not sizes.any():
        return None
    return int(np.argmax((components == int(np.argmax(sizes))).sum(axis=(0, 1))))


def _to_display(slice_2d: np.ndarray) -> np.ndarray:
    """(H, W) RAS slice -> rows top (anterior) to bottom, columns patient right to left."""
    return slice_2d.T[::-1, ::-1]


def save_overlay(
    image: np.ndarray,
    reference: np.ndarray,
    prediction: np.ndarray,
    path: str | os.PathLike,
    *,
    spacing_mm: Sequence[float] = (1.0, 1.0, 1.0),
    organ_label: int = 1,
    tumor_label: int = 2,
    window: tuple[float, float] = ABDOMEN_WINDOW,
    title: str | None = None,
    slice_index: int | None = None,
    dpi: int = 72,
) -> int:
    """Write a PNG of one axial slice: CT, the reference outlines, the predicted outlines.

    Three panels side by side on the same slice (through the largest reference lesion by
    default): the plain CT, the CT with the reference organ/tumor outlined, and the CT with
    the predicted organ/tumor outlined plus the reference tumor dashed, so misses and false
    positives stand out.

    Args:
        image: (H, W, D) CT in HU, RAS voxel order.
        reference: (H, W, D) integer label map of the same grid (0 bg, organ, tumor).
        prediction: (H, W, D) predicted label map of the same grid.
        path: destination ``.png``.
        spacing_mm: voxel size in mm along (H, W, D); sets the pixel aspect ratio.
        organ_label, tumor_label: label values.
        window: (level, width) display window in HU.
        title: figure title.
        slice_index: axial slice to show (default: :func:`largest_lesion_slice`).
        dpi: output resolution (72 keeps a three-panel figure well under 300 KB).

    Returns:
        The slice index shown.
    """
    image, reference, prediction = (np.asarray(a) for a in (image, reference, prediction))
    if not (image.ndim == 3 and image.shape == reference.shape == prediction.shape):
        raise ValueError(
            f"image, reference and prediction must be (H, W, D) arrays of one shape, got "
            f"{image.shape}, {reference.shape}, {prediction.shape} ({path})"
        )
    if slice_index is None:
        slice_index = largest_lesion_slice(reference == tumor_label, fallback_mask=reference == organ_label)
    if not 0 <= slice_index < image.shape[2]:
        raise ValueError(f"slice_index {slice_index} outside [0, {image.shape[2]}) ({path})")

    plt = _pyplot()
    level, width = window
    ct = _to_display(image[:, :, slice_index])
    ref2d = _to_display(reference[:, :, slice_index])
    pred2d = _to_display(prediction[:, :, slice_index])
    aspect = float(spacing_mm[1]) / float(spacing_mm[0])

    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.9))
    panels = (("CT", None, None), ("reference", ref2d, REFERENCE_COLOURS), ("prediction", pred2d, PREDICTION_COLOURS))
    for ax, (name, labels, colours) in zip(axes, panels):
        ax.imshow(ct, cmap="gray", vmin=level - width / 2, vmax=level + width / 2, aspect=aspect,
                  interpolation="nearest")
        if labels is not None:
            _outline(ax, labels == organ_label, colours["organ"], 0.8)
            _outline(ax, labels == tumor_label, colours["tumor"], 1.2)
        if name == "prediction":
            _outline(ax, ref2d == tumor_label, REFERENCE_COLOURS["tumor"], 0.8, linestyle="--")
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_xlabel(f"axial slice {slice_index} (R <-> L, radiological)", fontsize=8)
    axes[2].set_xlabel("red: predicted tumor, dashed yellow: reference tumor", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    _save(fig, path, dpi)
    return slice_index


def _outline(ax, mask: np.ndarray, colour: str, linewidth: float, linestyle: str = "-") -> None:
    if mask.any():
        ax.contour(mask.astype(np.float32), levels=[0.5], colors=colour, linewidths=linewidth, linestyles=linestyle)


def save_arm_bars(
    values: Mapping[str, Mapping[str, float | None]],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    ylabel: str = "score",
    dpi: int = 80,
) -> None:
    """Grouped bar plot: one group per metric, one bar per arm (``None``/NaN bars are left out).

    Args:
        values: ``{arm: {metric: value}}``; every arm should name the same metrics (the
            first arm's order is used). Values are plotted as given (e.g. Dice in 0..1).
        path: destination ``.png``.
        title: figure title.
        ylabel: y-axis label.
        dpi: output resolution.
    """
    if not values:
        raise ValueError(f"no arms to plot ({path})")
    arms = list(values)
    metrics = list(next(iter(values.values())))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(metrics) * len(arms) / 2 + 2), 3.4))
    width = 0.8 / len(arms)
    x = np.arange(len(metrics))
    for i, arm in enumerate(arms):
        heights = [values[arm].get(m) for m in metrics]
        heights = [np.nan if h is None else float(h) for h in heights]
        bars = ax.bar(x + (i - (len(arms) - 1) / 2) * width, np.nan_to_num(heights, nan=0.0), width, label=arm)
        for bar, h in zip(bars, heights):
            text = "n/a" if np.isnan(h) else f"{h:.2f}"
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, 0 if np.isnan(h) else h), ha="center",
                        va="bottom", fontsize=7, xytext=(0, 1), textcoords="offset points")
    ax.set_xticks(x)
    ax.set_xticklabels(metrics, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.1)
    ax.legend(fontsize=8, loc="upper right")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path, dpi)


def shrink_png(path: str | os.PathLike, max_bytes: int = 300_000) -> int:
    """Make a PNG at most ``max_bytes`` by downscaling it (colours untouched); returns its size.

    A file already small enough is left as it is. Palette quantisation would be smaller, but
    it drops rare colours, i.e. exactly the thin outlines these figures exist for, so the
    image is resized instead (Lanczos), by the factor its size suggests, until it fits.

    Args:
        path: PNG file, replaced atomically when it changes.
        max_bytes: size limit.
    """
    from PIL import Image

    size = os.path.getsize(path)
    if size <= max_bytes:
        return size
    with Image.open(path) as source:
        image = source.convert("RGB")
    scale = 1.0
    while size > max_bytes and min(image.size) * scale >= 32:
        scale *= 0.9 * math.sqrt(max_bytes / size)  # PNG size grows roughly with the pixel count
        resized = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                               Image.Resampling.LANCZOS)
        with atomic_path(path, suffix=".png") as tmp:
            resized.save(tmp, optimize=True)
        size = os.path.getsize(path)
    return size
